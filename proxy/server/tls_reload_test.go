package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/testnet"
)

// tlsConfig is a proxy with one TLS listener serving certFile and keyFile
// and answering every request itself.
func tlsConfig(certFile, keyFile string) string {
	return fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
listeners:
  - name: in
    address: 127.0.0.1:0
    protocols: [http1]
    tls: {cert_file: %s, key_file: %s}
    virtual_hosts: [{domains: ['*'], routes: [{match: {prefix: /}, direct_response: {status: 200, body: ok}}]}]
`, certFile, keyFile)
}

// dialTLS opens a TLS connection to addr that accepts any certificate,
// and returns it with the serial number of the certificate it got.
func dialTLS(t *testing.T, addr string) (*tls.Conn, int64) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, testnet.CertSerial(t, c.ConnectionState().PeerCertificates[0].Raw)
}

// get sends one HTTP/1.1 request on c and checks the answer.
func get(t *testing.T, c *tls.Conn, br *bufio.Reader) {
	t.Helper()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatalf("request on the established connection: %v", err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response on the established connection: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

// TestReloadPicksUpRenewedCertificate: the files are renewed at the same
// paths, so the config is unchanged; a reload (SIGHUP) serves the new
// certificate to new connections while an established one goes on. A bad
// renewal on a later reload keeps the new one serving and is counted, and
// the reload itself goes through.
func TestReloadPicksUpRenewedCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testnet.NewKeyPair(t, 1, time.Now().Add(72*time.Hour)).Write(t, dir)
	cfg := load(t, tlsConfig(certFile, keyFile))
	s := started(t, cfg)
	addr := s.ListenerAddr("in")
	if n := s.stats.Server().DaysUntilFirstCertExpiring.Value(); n != 2 {
		t.Errorf("days_until_first_cert_expiring = %d, want 2", n)
	}

	est, serial := dialTLS(t, addr)
	if serial != 1 {
		t.Fatalf("first connection got serial %d, want 1", serial)
	}
	br := bufio.NewReader(est)
	get(t, est, br)

	testnet.NewKeyPair(t, 2, time.Now().Add(240*time.Hour)).Write(t, dir)
	if err := s.Reload(load(t, tlsConfig(certFile, keyFile))); err != nil {
		t.Fatal(err)
	}
	if _, serial := dialTLS(t, addr); serial != 2 {
		t.Errorf("a new connection after the reload got serial %d, want 2", serial)
	}
	get(t, est, br) // the established connection is still served
	if n := s.stats.Server().CertUpdate.Value(); n != 1 {
		t.Errorf("cert_update = %d, want 1", n)
	}
	if n := s.stats.Server().DaysUntilFirstCertExpiring.Value(); n != 9 {
		t.Errorf("days_until_first_cert_expiring = %d, want 9", n)
	}

	testnet.ReplaceFile(t, keyFile, testnet.NewKeyPair(t, 3, time.Now().Add(240*time.Hour)).Key) // not the certificate's key
	if err := s.Reload(load(t, tlsConfig(certFile, keyFile))); err != nil {
		t.Fatalf("a reload with a bad renewal failed: %v", err)
	}
	if _, serial := dialTLS(t, addr); serial != 2 {
		t.Errorf("after a bad renewal a new connection got serial %d, want 2", serial)
	}
	if n := s.stats.Server().CertUpdateRejected.Value(); n != 1 {
		t.Errorf("cert_update_rejected = %d, want 1", n)
	}
}

// TestUpstreamClientCertificateFollowsRenewal: the TLS config of a
// cluster with a client certificate presents the renewed pair after a
// reload, without the cluster being rebuilt.
func TestUpstreamClientCertificateFollowsRenewal(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testnet.NewKeyPair(t, 1, time.Now().Add(72*time.Hour)).Write(t, dir)
	body := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
server: {drain_time: 10ms}
clusters:
  - name: a
    endpoints: [{address: 127.0.0.1:1}]
    tls: {cert_file: %s, key_file: %s}
`, certFile, keyFile)
	s := started(t, load(t, body))
	opts, err := s.upstreamOptions(s.Config().Clusters[0])
	if err != nil {
		t.Fatal(err)
	}
	presented := func() int64 {
		c, err := opts.TLS.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return testnet.CertSerial(t, c.Certificate[0])
	}
	if got := presented(); got != 1 {
		t.Fatalf("presents serial %d, want 1", got)
	}
	before := s.cur.Load().byName["a"]
	testnet.NewKeyPair(t, 2, time.Now().Add(72*time.Hour)).Write(t, dir)
	if err := s.Reload(load(t, body)); err != nil {
		t.Fatal(err)
	}
	if got := presented(); got != 2 {
		t.Errorf("presents serial %d after the renewal, want 2", got)
	}
	if s.cur.Load().byName["a"] != before {
		t.Error("the cluster was rebuilt for a renewed certificate")
	}
}
