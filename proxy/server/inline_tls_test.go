package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// inlineTLSConfig is tlsConfig with the key pair inline, and a cluster
// presenting it as its client certificate, as a control plane's secrets
// give them.
func inlineTLSConfig(kp, ca testnet.KeyPair) string {
	q := func(b []byte) string { return strconv.Quote(string(b)) }
	return fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
listeners:
  - name: in
    address: 127.0.0.1:0
    protocols: [http1]
    tls: {cert_pem: %[1]s, key_pem: %[2]s}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200, body: ok}}]}]
clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:1}]
    tls: {ca_pem: %[3]s, cert_pem: %[1]s, key_pem: %[2]s}
`, q(kp.Cert), q(kp.Key), q(ca.Cert))
}

// TestInlinePairRotates: a new inline pair (a rotated secret) is served
// to new connections and presented upstream, the listener and the
// cluster are not rebuilt, and an established connection goes on.
func TestInlinePairRotates(t *testing.T) {
	ca := testnet.NewKeyPair(t, 9, time.Now().Add(720*time.Hour))
	s := started(t, load(t, inlineTLSConfig(testnet.NewKeyPair(t, 1, time.Now().Add(72*time.Hour)), ca)))
	addr := s.ListenerAddr("in")
	est, serial := dialTLS(t, addr)
	if serial != 1 {
		t.Fatalf("first connection got serial %d, want 1", serial)
	}
	br := bufio.NewReader(est)
	get(t, est, br)
	before := s.cur.Load()

	if err := s.Reload(load(t, inlineTLSConfig(testnet.NewKeyPair(t, 2, time.Now().Add(240*time.Hour)), ca))); err != nil {
		t.Fatal(err)
	}
	if _, serial := dialTLS(t, addr); serial != 2 {
		t.Errorf("a new connection after the rotation got serial %d, want 2", serial)
	}
	get(t, est, br) // the established connection is still served
	after := s.cur.Load()
	if after.listeners[0] != before.listeners[0] || after.byName["a"] != before.byName["a"] {
		t.Error("the listener or the cluster was rebuilt for a rotated pair")
	}
	opts, err := s.upstreamOptions(s.Config().Clusters[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := opts.TLS.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if got := testnet.CertSerial(t, c.Certificate[0]); got != 2 {
		t.Errorf("the cluster presents serial %d, want 2", got)
	}
	if n := s.stats.Server().CertUpdate.Value(); n != 2 {
		t.Errorf("cert_update = %d, want 2 (the listener's pair and the cluster's)", n)
	}
	if n := s.stats.Server().DaysUntilFirstCertExpiring.Value(); n != 9 {
		t.Errorf("days_until_first_cert_expiring = %d, want 9", n)
	}
}
