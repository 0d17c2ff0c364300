// Package certs keeps the TLS key pairs the proxy serves (listener
// certificates) and presents (upstream client certificates) fresh without
// a restart and without touching established connections.
//
// Each (cert_file, key_file) pair is loaded once and handed out through
// callbacks (tls.Config.GetCertificate, GetClientCertificate) that read an
// atomic pointer, so that every new handshake gets the current pair and
// connections already established keep the one they were made with. The
// Manager loads a pair again when its files' content changes, whether its
// own watch of the files notices it or a config reload asks (Refresh): a
// renewed certificate at an unchanged path is picked up either way.
//
// A new pair that does not load (an unparsable file, a key that does not
// match the certificate, a file half written) leaves the old pair
// serving; the Manager logs why and counts server.cert_update_rejected.
// A certificate and its key replaced one after the other may be seen
// mismatched in between: that is refused and counted once, and the pair
// is swapped in when the second file lands. Writing both and renaming them
// into place, or updating a Kubernetes secret (one ..data symlink swap),
// avoids it.
//
// The Manager also keeps server.days_until_first_cert_expiring: whole days
// until the first certificate of any pair it holds (leaf or chain)
// expires, 0 once one has, 4294967295 when it holds none.
package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config/watch"
	"github.com/sightline-proxy/sightline/stats"
)

// noCertificate is the expiry gauge's value when no pair is held: no
// expiry in sight.
const noCertificate = math.MaxUint32

// Stats are the stats a Manager keeps; nil fields are not kept.
type Stats struct {
	DaysUntilFirstCertExpiring *stats.Gauge   // server.days_until_first_cert_expiring
	Updated                    *stats.Counter // server.cert_update
	Rejected                   *stats.Counter // server.cert_update_rejected
}

// Options tune a Manager; the zero value is ready to use.
type Options struct {
	Stats Stats
	Log   zerolog.Logger
	// Watch is passed to the file watcher (its debounce, polling).
	Watch watch.Options
	// Now is the clock the expiry gauge is computed with; nil is
	// time.Now.
	Now func() time.Time
}

// Manager holds the key pairs of the running config. Its methods are safe
// to call from any goroutine.
type Manager struct {
	st  Stats
	log zerolog.Logger
	wo  watch.Options
	now func() time.Time

	mu      sync.Mutex
	pairs   map[pairKey]*Pair
	w       *watch.Watcher // nil until Start, or when watching failed
	started bool
	closed  bool
	timer   *time.Timer // sets the expiry gauge when its value changes next
}

// pairKey identifies a pair: its files, or the id of an inline one.
type pairKey struct{ cert, key, inline string }

// New returns a Manager holding no pair. It does no I/O and starts nothing.
func New(opts Options) *Manager {
	m := &Manager{st: opts.Stats, log: opts.Log, wo: opts.Watch, now: opts.Now, pairs: map[pairKey]*Pair{}}
	if m.now == nil {
		m.now = time.Now
	}
	if m.wo.Log.GetLevel() == zerolog.Disabled {
		m.wo.Log = m.log
	}
	return m
}

// Pair is one certificate and key, loaded from their files and swapped for
// a new load when their content changes, or given inline (see Inline).
type Pair struct {
	certFile, keyFile string
	inline            string // the id of an inline pair, "" for files
	cur               atomic.Pointer[tls.Certificate]

	// Guarded by the Manager's mu.
	sum      [sha256.Size]byte // of the content last loaded or refused
	notAfter time.Time         // the soonest expiry of the current chain
	// seen is the files' content last read, for the watch to compare
	// with: a change made after the read is then seen even if it came
	// before the watch began.
	seen watch.Seen
}

// CertFile and KeyFile are the files the pair is read from.
func (p *Pair) CertFile() string { return p.certFile }
func (p *Pair) KeyFile() string  { return p.keyFile }

// Certificate returns the current certificate.
func (p *Pair) Certificate() *tls.Certificate { return p.cur.Load() }

// GetCertificate is tls.Config.GetCertificate for a listener serving the
// pair; it never blocks.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.cur.Load(), nil
}

// GetClientCertificate is tls.Config.GetClientCertificate for the
// upstream connections of a cluster presenting the pair; it never blocks.
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.cur.Load(), nil
}

// Pair returns the pair of certFile and keyFile, loading it the first
// time it is asked for. An error (the files do not load) leaves nothing
// held. The pair is held, and watched once Start has run, until Retain
// drops it.
func (m *Manager) Pair(certFile, keyFile string) (*Pair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := pairKey{cert: certFile, key: keyFile}
	if p, ok := m.pairs[k]; ok {
		return p, nil
	}
	p := &Pair{certFile: certFile, keyFile: keyFile}
	certPEM, keyPEM, err := read(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cert, notAfter, err := parse(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	p.sum, p.notAfter = digest(certPEM, keyPEM), notAfter
	p.seen = seenOf(p, certPEM, keyPEM)
	p.cur.Store(cert)
	m.pairs[k] = p
	m.changedLocked()
	return p, nil
}

// Inline returns the pair held under id (such as "listener ingress"),
// made of certPEM and keyPEM the first time it is asked for. A pair
// already held under id is returned as it serves, new content or not:
// SetInline swaps the content in once the config that brings it is
// sure to run, so that a reload that fails half way leaves the old pair
// serving. The new content must parse all the same, or Inline fails.
// The pair is held until Retain drops it; nothing watches it.
func (m *Manager) Inline(id, certPEM, keyPEM string) (*Pair, error) {
	cert, notAfter, err := parse([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := pairKey{inline: id}
	if p, ok := m.pairs[k]; ok {
		return p, nil
	}
	p := &Pair{inline: id, sum: digest([]byte(certPEM), []byte(keyPEM)), notAfter: notAfter}
	p.cur.Store(cert)
	m.pairs[k] = p
	m.changedLocked()
	return p, nil
}

// SetInline swaps certPEM and keyPEM in for the pair held under id, when
// they are not what it serves already: new handshakes get the new pair,
// established connections keep theirs. It counts server.cert_update, or
// server.cert_update_rejected (and logs why) when they do not parse,
// leaving the old pair serving. An id not held is ignored.
func (m *Manager) SetInline(id, certPEM, keyPEM string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pairs[pairKey{inline: id}]
	sum := digest([]byte(certPEM), []byte(keyPEM))
	if !ok || sum == p.sum {
		return
	}
	p.sum = sum
	cert, notAfter, err := parse([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		m.st.Rejected.Inc(1)
		m.log.Error().Err(err).Str("pair", id).Msg("new certificate refused; the previous one keeps serving")
		return
	}
	p.notAfter = notAfter
	p.cur.Store(cert)
	m.st.Updated.Inc(1)
	m.log.Info().Str("pair", id).Time("not_after", notAfter).Msg("certificate swapped in")
	m.changedLocked()
}

// Retain drops every pair but those in keep, as after a reload that no
// longer names some files; a dropped pair goes on serving the connections
// that hold it, but is no longer watched or counted in the expiry gauge.
func (m *Manager) Retain(keep []*Pair) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, p := range m.pairs {
		if !slices.Contains(keep, p) {
			delete(m.pairs, k)
		}
	}
	m.changedLocked()
}

// Refresh loads every held pair whose files' content changed since it was
// last read, swapping in those that load and refusing (logged, counted)
// those that do not. A config reload calls it, so that renewed files are
// picked up even when the watch missed them; the watch calls it too. It
// reports how many pairs were swapped and how many refused.
func (m *Manager) Refresh() (updated, rejected int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.pairs {
		if p.inline != "" {
			continue // no file to read again: SetInline swaps it
		}
		certPEM, keyPEM, err := read(p.certFile, p.keyFile)
		// What was seen: the content, or the failure to read it, so that
		// one failure is refused (and counted) once, until it changes.
		var sum [sha256.Size]byte
		if err != nil {
			sum = sha256.Sum256([]byte(err.Error()))
			p.seen = nil
		} else {
			sum = digest(certPEM, keyPEM)
			p.seen = seenOf(p, certPEM, keyPEM)
		}
		if sum == p.sum {
			continue
		}
		p.sum = sum
		var cert *tls.Certificate
		var notAfter time.Time
		if err == nil {
			cert, notAfter, err = parse(certPEM, keyPEM)
		}
		if err != nil {
			rejected++
			m.st.Rejected.Inc(1)
			m.log.Error().Err(err).Str("cert_file", p.certFile).Str("key_file", p.keyFile).
				Msg("new certificate refused; the previous one keeps serving")
			continue
		}
		p.notAfter = notAfter
		p.cur.Store(cert)
		updated++
		m.st.Updated.Inc(1)
		m.log.Info().Str("cert_file", p.certFile).Str("key_file", p.keyFile).Time("not_after", notAfter).
			Msg("certificate reloaded")
	}
	m.changedLocked()
	return updated, rejected
}

// Start watches the held pairs' files, and those of the pairs added
// later, until Close. A watch that cannot be set up is logged: Refresh on
// reload still picks up new files.
func (m *Manager) Start() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started || m.closed {
		return
	}
	m.started = true
	m.watchLocked()
}

// Close stops watching and the expiry gauge's timer. It is idempotent;
// the pairs go on serving.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	w := m.w
	m.w = nil
	if m.timer != nil {
		m.timer.Stop()
	}
	m.mu.Unlock()
	if w != nil {
		w.Close() // waits for a Refresh in progress, which takes mu
	}
}

// changedLocked follows a change of the held pairs: the watched files and
// the expiry gauge. m.mu must be held.
func (m *Manager) changedLocked() {
	if m.started && !m.closed {
		m.watchLocked()
	}
	m.expiryLocked()
}

// watchLocked makes the watch cover the files of the held pairs.
func (m *Manager) watchLocked() {
	var files []string
	seen := watch.Seen{}
	for _, p := range m.pairs {
		if p.inline == "" {
			files = append(files, p.certFile, p.keyFile)
			maps.Copy(seen, p.seen)
		}
	}
	slices.Sort(files)
	files = slices.Compact(files)
	if m.w != nil {
		m.w.SetFiles(files, seen)
		return
	}
	if len(files) == 0 {
		return
	}
	wo := m.wo
	wo.Seen = seen
	w, err := watch.New(files, func() { m.Refresh() }, wo)
	if err != nil {
		m.log.Error().Err(err).Msg("cannot watch certificate files; a reload still picks up new ones")
		return
	}
	m.w = w
}

// expiryLocked sets the expiry gauge, and arms a timer for the moment its
// value changes next (a day boundary before the soonest expiry).
func (m *Manager) expiryLocked() {
	var soonest time.Time
	for _, p := range m.pairs {
		if soonest.IsZero() || p.notAfter.Before(soonest) {
			soonest = p.notAfter
		}
	}
	now := m.now()
	days, next := DaysUntil(soonest, now)
	m.st.DaysUntilFirstCertExpiring.Set(days)
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	if next > 0 && !m.closed {
		m.timer = time.AfterFunc(next, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.expiryLocked()
		})
	}
}

// DaysUntil is the value of server.days_until_first_cert_expiring for a
// soonest expiry notAfter (zero: no certificate) at now: whole days left,
// 0 once it has passed, 4294967295 when there is no certificate. next is
// how long until the value changes, 0 when it never will.
func DaysUntil(notAfter, now time.Time) (days int64, next time.Duration) {
	if notAfter.IsZero() {
		return noCertificate, 0
	}
	left := notAfter.Sub(now)
	if left <= 0 {
		return 0, 0
	}
	const day = 24 * time.Hour
	days = int64(left / day)
	return days, left - time.Duration(days)*day + time.Nanosecond
}

// seenOf is what the watch of p's files compares with once they were
// read as certPEM and keyPEM.
func seenOf(p *Pair, certPEM, keyPEM []byte) watch.Seen {
	return watch.Seen{p.certFile: watch.Hash(certPEM), p.keyFile: watch.Hash(keyPEM)}
}

func read(certFile, keyFile string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(certFile); err != nil {
		return nil, nil, fmt.Errorf("reading cert_file: %w", err)
	}
	if keyPEM, err = os.ReadFile(keyFile); err != nil {
		return nil, nil, fmt.Errorf("reading key_file: %w", err)
	}
	return certPEM, keyPEM, nil
}

// parse makes a certificate of a PEM chain and key, checking that the key
// is the leaf's, and finds the soonest expiry in the chain.
func parse(certPEM, keyPEM []byte) (*tls.Certificate, time.Time, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("loading key pair: %w", err)
	}
	var soonest time.Time
	for i, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("certificate %d of the chain: %w", i, err)
		}
		if soonest.IsZero() || c.NotAfter.Before(soonest) {
			soonest = c.NotAfter
		}
	}
	if soonest.IsZero() {
		return nil, time.Time{}, errors.New("loading key pair: no certificate")
	}
	return &cert, soonest, nil
}

func digest(certPEM, keyPEM []byte) [sha256.Size]byte {
	return sha256.Sum256(bytes.Join([][]byte{certPEM, keyPEM}, []byte{0}))
}
