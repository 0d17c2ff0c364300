package testnet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyPair is a certificate and its key in PEM, with the certificate's
// serial number, so that a test can tell which one a handshake got.
type KeyPair struct {
	Cert, Key []byte
	Serial    int64
}

// NewKeyPair makes a self-signed certificate for 127.0.0.1 and localhost
// with the given serial number, valid until notAfter, good for servers
// and clients.
func NewKeyPair(t testing.TB, serial int64, notAfter time.Time) KeyPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "sightline test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              notAfter,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return KeyPair{
		Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
		Serial: serial,
	}
}

// Write writes p as cert.pem and key.pem in dir, each replaced at once
// (ReplaceFile), and returns their paths.
func (p KeyPair) Write(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ReplaceFile(t, certFile, p.Cert)
	ReplaceFile(t, keyFile, p.Key)
	return certFile, keyFile
}

// ReplaceFile replaces path with data at once: written aside, then
// renamed over, as tools that renew certificates do.
func ReplaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// CertSerial returns the serial number of the leaf of a chain in DER, as
// tls.ConnectionState.PeerCertificates or tls.Certificate hold it.
func CertSerial(t testing.TB, der []byte) int64 {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Int64()
}

// WriteCert writes a self-signed certificate for 127.0.0.1 and localhost,
// valid for a day, and its key to dir, and returns their paths and a pool
// that trusts the certificate.
func WriteCert(t testing.TB, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	p := NewKeyPair(t, 1, time.Now().Add(24*time.Hour))
	certFile, keyFile = p.Write(t, dir)
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(p.Cert)
	return certFile, keyFile, pool
}
