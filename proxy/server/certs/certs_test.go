package certs

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
	"github.com/sightline-proxy/sightline/internal/testnet"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/config/watch"
	"github.com/sightline-proxy/sightline/stats"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakcheck.WaitAll(5 * time.Second); leaked != "" {
			os.Stderr.WriteString("leaked goroutines:\n" + leaked + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// testManager is a Manager whose stats live in a real store.
func testManager(t *testing.T, now func() time.Time) (*Manager, *stats.Server) {
	t.Helper()
	store, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := store.Server()
	m := New(Options{
		Stats: Stats{DaysUntilFirstCertExpiring: st.DaysUntilFirstCertExpiring, Updated: st.CertUpdate, Rejected: st.CertUpdateRejected},
		Log:   zerolog.Nop(),
		Watch: watch.Options{Debounce: 20 * time.Millisecond},
		Now:   now,
	})
	t.Cleanup(m.Close)
	return m, st
}

func serving(t *testing.T, p *Pair) int64 {
	t.Helper()
	c, err := p.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return testnet.CertSerial(t, c.Certificate[0])
}

// heldPair writes a pair with serial 1 to dir and has m hold it.
func heldPair(t *testing.T, m *Manager, dir string) (p *Pair, certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = testnet.NewKeyPair(t, 1, time.Now().Add(48*time.Hour)).Write(t, dir)
	p, err := m.Pair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return p, certFile, keyFile
}

// TestRefreshSwapsNewContentAtTheSamePath: the reload path. The files are
// renewed in place; Refresh swaps the new pair in, for servers and
// clients alike, and counts it.
func TestRefreshSwapsNewContentAtTheSamePath(t *testing.T) {
	m, st := testManager(t, nil)
	dir := t.TempDir()
	p, certFile, keyFile := heldPair(t, m, dir)
	if again, _ := m.Pair(certFile, keyFile); again != p {
		t.Error("the same files gave a second pair")
	}
	if up, rej := m.Refresh(); up != 0 || rej != 0 {
		t.Errorf("Refresh with nothing changed = %d updated, %d rejected", up, rej)
	}
	testnet.NewKeyPair(t, 2, time.Now().Add(48*time.Hour)).Write(t, dir)
	if up, rej := m.Refresh(); up != 1 || rej != 0 {
		t.Errorf("Refresh = %d updated, %d rejected; want 1, 0", up, rej)
	}
	if got := serving(t, p); got != 2 {
		t.Errorf("serving serial %d after the renewal, want 2", got)
	}
	c, _ := p.GetClientCertificate(nil)
	if got := testnet.CertSerial(t, c.Certificate[0]); got != 2 {
		t.Errorf("presenting serial %d after the renewal, want 2", got)
	}
	if n := st.CertUpdate.Value(); n != 1 {
		t.Errorf("cert_update = %d, want 1", n)
	}
}

// TestBadNewPairKeepsTheOld: an unparsable file, a key of another
// certificate, a missing file: each is refused, counted once, and the old
// pair keeps serving; a good pair then goes in.
func TestBadNewPairKeepsTheOld(t *testing.T) {
	m, st := testManager(t, nil)
	dir := t.TempDir()
	p, certFile, keyFile := heldPair(t, m, dir)
	other := testnet.NewKeyPair(t, 9, time.Now().Add(48*time.Hour))
	steps := []struct {
		name  string
		write func()
	}{
		{"unparsable certificate", func() { testnet.ReplaceFile(t, certFile, []byte("not a certificate\n")) }},
		{"key of another certificate", func() {
			testnet.ReplaceFile(t, certFile, testnet.NewKeyPair(t, 3, time.Now().Add(48*time.Hour)).Cert)
			testnet.ReplaceFile(t, keyFile, other.Key)
		}},
		{"missing key", func() { os.Remove(keyFile) }},
	}
	for i, step := range steps {
		step.write()
		if up, rej := m.Refresh(); up != 0 || rej != 1 {
			t.Errorf("%s: Refresh = %d updated, %d rejected; want 0, 1", step.name, up, rej)
		}
		if up, rej := m.Refresh(); up != 0 || rej != 0 {
			t.Errorf("%s: refused again without a change: %d updated, %d rejected", step.name, up, rej)
		}
		if got := serving(t, p); got != 1 {
			t.Errorf("%s: serving serial %d, want the old 1", step.name, got)
		}
		if n := st.CertUpdateRejected.Value(); n != int64(i+1) {
			t.Errorf("%s: cert_update_rejected = %d, want %d", step.name, n, i+1)
		}
	}
	testnet.NewKeyPair(t, 4, time.Now().Add(48*time.Hour)).Write(t, dir)
	if up, _ := m.Refresh(); up != 1 || serving(t, p) != 4 {
		t.Errorf("a good pair after bad ones: %d updated, serving %d", up, serving(t, p))
	}
}

func TestPairThatDoesNotLoadIsNotHeld(t *testing.T) {
	m, st := testManager(t, nil)
	dir := t.TempDir()
	certFile := filepath.Join(dir, "cert.pem")
	testnet.ReplaceFile(t, certFile, []byte("garbage"))
	if _, err := m.Pair(certFile, filepath.Join(dir, "key.pem")); err == nil {
		t.Fatal("a pair that does not load was accepted")
	}
	if n := st.DaysUntilFirstCertExpiring.Value(); n != 0 {
		t.Errorf("the expiry gauge was set to %d by a pair not held", n)
	}
}

// TestWatchSwapsWithoutReload: the proxy's own watch of the files swaps a
// renewed pair in with no reload asked.
func TestWatchSwapsWithoutReload(t *testing.T) {
	m, st := testManager(t, nil)
	dir := t.TempDir()
	p, certFile, _ := heldPair(t, m, dir)
	m.Start()
	testnet.NewKeyPair(t, 2, time.Now().Add(48*time.Hour)).Write(t, dir)
	waitFor(t, "the renewed certificate to serve", func() bool { return serving(t, p) == 2 })
	if n := st.CertUpdate.Value(); n != 1 {
		t.Errorf("cert_update = %d, want 1", n)
	}
	// A bad one is refused by the watch too, and counted.
	testnet.ReplaceFile(t, certFile, []byte("garbage"))
	waitFor(t, "the bad certificate to be refused", func() bool { return st.CertUpdateRejected.Value() == 1 })
	if got := serving(t, p); got != 2 {
		t.Errorf("serving %d after a bad renewal, want 2", got)
	}
}

// TestWatchSeesRenewalBeforeStart: a pair renewed after it was loaded
// and before the watch began is swapped in by the watch, though no file
// event of the renewal reached it.
func TestWatchSeesRenewalBeforeStart(t *testing.T) {
	m, st := testManager(t, nil)
	dir := t.TempDir()
	p, _, _ := heldPair(t, m, dir)
	testnet.NewKeyPair(t, 2, time.Now().Add(48*time.Hour)).Write(t, dir)
	m.Start()
	waitFor(t, "the renewed certificate to serve", func() bool { return serving(t, p) == 2 })
	if n := st.CertUpdate.Value(); n != 1 {
		t.Errorf("cert_update = %d, want 1", n)
	}
}

// waitFor polls cond until it holds, failing the test after a deadline
// far beyond what a slow machine needs.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExpiryGauge(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	m, st := testManager(t, func() time.Time { return now })
	if n := st.DaysUntilFirstCertExpiring.Value(); n != 0 {
		t.Fatalf("gauge %d before any pair", n)
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := m.Pair(testnet.NewKeyPair(t, 1, now.Add(10*24*time.Hour+time.Hour)).Write(t, dirA))
	if err != nil {
		t.Fatal(err)
	}
	if n := st.DaysUntilFirstCertExpiring.Value(); n != 10 {
		t.Errorf("one pair, 10 days and an hour left: gauge %d, want 10", n)
	}
	if _, err := m.Pair(testnet.NewKeyPair(t, 2, now.Add(3*24*time.Hour)).Write(t, dirB)); err != nil {
		t.Fatal(err)
	}
	if n := st.DaysUntilFirstCertExpiring.Value(); n != 3 {
		t.Errorf("a second pair, 3 days left: gauge %d, want 3", n)
	}
	m.Retain([]*Pair{a})
	if n := st.DaysUntilFirstCertExpiring.Value(); n != 10 {
		t.Errorf("the 3-day pair dropped: gauge %d, want 10", n)
	}
	m.Retain(nil)
	if n := st.DaysUntilFirstCertExpiring.Value(); n != math.MaxUint32 {
		t.Errorf("no pair: gauge %d, want %d", n, uint32(math.MaxUint32))
	}
}

func TestDaysUntil(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	tests := []struct {
		name     string
		give     time.Time
		wantDays int64
		wantNext time.Duration
	}{
		{"no certificate", time.Time{}, math.MaxUint32, 0},
		{"expired", now.Add(-time.Hour), 0, 0},
		{"expires now", now, 0, 0},
		{"under a day", now.Add(5 * time.Hour), 0, 5*time.Hour + time.Nanosecond},
		{"exactly two days", now.Add(2 * day), 2, time.Nanosecond},
		{"two days and a minute", now.Add(2*day + time.Minute), 2, time.Minute + time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			days, next := DaysUntil(tt.give, now)
			if days != tt.wantDays || next != tt.wantNext {
				t.Errorf("DaysUntil = %d, %v; want %d, %v", days, next, tt.wantDays, tt.wantNext)
			}
		})
	}
}
