package xds

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// TLSConfig is the stream's TLS config from dynamic.ads.tls (nil: nil,
// plaintext): the CA and client certificate from files or inline PEM, as
// a cluster's. The files are read once; a new stream after a change of
// the file needs a reload of the config.
func TLSConfig(t *config.UpstreamTLS) (*tls.Config, error) {
	if t == nil {
		return nil, nil
	}
	tc := &tls.Config{ServerName: t.SNI, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	ca := []byte(t.CAPEM)
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("dynamic.ads.tls.ca_file: %w", err)
		}
		ca = b
	}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("dynamic.ads.tls: the CA holds no PEM certificate")
		}
		tc.RootCAs = pool
	}
	switch {
	case t.CertPEM != "":
		cert, err := tls.X509KeyPair([]byte(t.CertPEM), []byte(t.KeyPEM))
		if err != nil {
			return nil, fmt.Errorf("dynamic.ads.tls: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("dynamic.ads.tls: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
