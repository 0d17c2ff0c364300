package diff

import (
	"slices"
	"testing"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// TestInlinePairRotation: a new inline key pair (a rotated secret) keeps
// the listener and the cluster, and is named in Certificates; any other
// change of their TLS rebuilds them.
func TestInlinePairRotation(t *testing.T) {
	withTLS := func(lt config.ListenerTLS, ut config.UpstreamTLS) *config.Config {
		c := base()
		c.Listeners[1].TLS = &lt
		c.Listeners[1].Protocols = []string{"h2"}
		c.Clusters[0].TLS = &ut
		return c
	}
	from := withTLS(config.ListenerTLS{CertPEM: "c1", KeyPEM: "k1"}, config.UpstreamTLS{CAPEM: "ca1", CertPEM: "c1", KeyPEM: "k1"})
	tests := []struct {
		name             string
		to               *config.Config
		wantCertificates []string
		wantListeners    []string // changed
		wantClusters     []string // changed
	}{
		{
			name:             "both pairs rotated",
			to:               withTLS(config.ListenerTLS{CertPEM: "c2", KeyPEM: "k2"}, config.UpstreamTLS{CAPEM: "ca1", CertPEM: "c2", KeyPEM: "k2"}),
			wantCertificates: []string{"cluster " + from.Clusters[0].Name, "listener internal"},
		},
		{
			name:         "a new CA rebuilds the cluster",
			to:           withTLS(config.ListenerTLS{CertPEM: "c1", KeyPEM: "k1"}, config.UpstreamTLS{CAPEM: "ca2", CertPEM: "c1", KeyPEM: "k1"}),
			wantClusters: []string{from.Clusters[0].Name},
		},
		{
			name:          "a pair moved to files rebuilds the listener",
			to:            withTLS(config.ListenerTLS{CertFile: "c.pem", KeyFile: "k.pem"}, config.UpstreamTLS{CAPEM: "ca1", CertPEM: "c1", KeyPEM: "k1"}),
			wantListeners: []string{"internal"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compute(from, tt.to)
			if !slices.Equal(p.Certificates, tt.wantCertificates) {
				t.Errorf("certificates %q, want %q", p.Certificates, tt.wantCertificates)
			}
			if !slices.Equal(p.Listeners.Changed, tt.wantListeners) {
				t.Errorf("listeners changed %q, want %q", p.Listeners.Changed, tt.wantListeners)
			}
			if !slices.Equal(p.Clusters.Changed, tt.wantClusters) {
				t.Errorf("clusters changed %q, want %q", p.Clusters.Changed, tt.wantClusters)
			}
			if p.Unchanged() {
				t.Error("Unchanged: the reload would be skipped")
			}
		})
	}
}
