package ratelimit

import (
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sightline-proxy/sightline/stats"
)

// Limits of a request's descriptors: they are built in fixed arrays on the
// request path, so that building them allocates nothing. The config
// refuses more.
const (
	// MaxEntries is the most entries (actions) one descriptor holds.
	MaxEntries = 8
	// MaxDescriptors is the most descriptors (rate_limits entries) a
	// route or virtual host has.
	MaxDescriptors = 8
)

// Entry is one key/value pair of a descriptor, Envoy's
// RateLimitDescriptor.Entry.
type Entry struct {
	Key, Value string
}

// Descriptor is one descriptor of a request: the entries its rate_limits
// actions produced, in order.
type Descriptor struct {
	Entries [MaxEntries]Entry
	N       int
}

// Add appends an entry; false when the descriptor is full.
func (d *Descriptor) Add(key, value string) bool {
	if d.N == MaxEntries {
		return false
	}
	d.Entries[d.N] = Entry{Key: key, Value: value}
	d.N++
	return true
}

// List returns the entries added.
func (d *Descriptor) List() []Entry { return d.Entries[:d.N] }

// Descriptors are the descriptors of one request.
type Descriptors struct {
	List [MaxDescriptors]Descriptor
	N    int
}

// Next returns the next descriptor to fill, emptied; nil when there is no
// room. The caller calls Commit once it is complete.
func (ds *Descriptors) Next() *Descriptor {
	if ds.N == MaxDescriptors {
		return nil
	}
	d := &ds.List[ds.N]
	d.N = 0
	return d
}

// Commit keeps the descriptor Next returned.
func (ds *Descriptors) Commit() { ds.N++ }

// All returns the committed descriptors.
func (ds *Descriptors) All() []Descriptor { return ds.List[:ds.N] }

// DescriptorConfig is one descriptor of a local rate limit (Envoy's
// LocalRateLimitDescriptor): the entries a request descriptor must have,
// in order, and the bucket it then takes from. An entry with an empty
// Value matches any value, and each distinct value (of all such entries
// together) gets a bucket of its own: a bucket per client address, per
// user header, per gRPC method.
type DescriptorConfig struct {
	Entries []Entry
	Bucket  TokenBucket
}

// LocalConfig is one local rate limit: a listener's, a virtual host's or
// a route's.
type LocalConfig struct {
	// Bucket is the default bucket every request takes from (unless a
	// descriptor matched and AlwaysConsumeDefault is false). Its zero
	// value (MaxTokens 0) means no default bucket: only descriptors limit.
	Bucket      TokenBucket
	Descriptors []DescriptorConfig
	// AlwaysConsumeDefault: the default bucket is taken from even when a
	// descriptor matched (Envoy's always_consume_default_token_bucket,
	// true by default there and here).
	AlwaysConsumeDefault bool
	// EnabledPercent of requests are checked; EnforcedPercent of those
	// over the limit are refused, the others only counted (shadow mode).
	EnabledPercent, EnforcedPercent float64
	// MaxDynamicDescriptors bounds the buckets of each descriptor with
	// an any-value entry; past it, the least recently refilled of a few
	// candidates is recycled (Envoy's LRU of max_dynamic_descriptors).
	MaxDynamicDescriptors int
}

// Local is a compiled local rate limit. It is built once per config and
// shared by every request it applies to; Check is safe for concurrent use,
// takes no lock and allocates nothing.
type Local struct {
	cfg   LocalConfig
	clock Clock
	start time.Duration
	st    *stats.LocalRateLimit
	def   bucket
	descs []localDescriptor
}

type localDescriptor struct {
	entries []Entry
	tb      TokenBucket
	dynamic bool
	static  bucket
	dyn     dynTable
}

// NewLocal compiles cfg. st is its stat_prefix's stats (nil: none); clock
// is nil for the real one. Buckets start full.
func NewLocal(cfg LocalConfig, st *stats.LocalRateLimit, clock Clock) *Local {
	if clock == nil {
		clock = Monotonic
	}
	if st == nil {
		st = &stats.LocalRateLimit{}
	}
	l := &Local{cfg: cfg, clock: clock, start: clock(), st: st}
	l.descs = make([]localDescriptor, len(cfg.Descriptors))
	for i, dc := range cfg.Descriptors {
		d := &l.descs[i]
		d.entries, d.tb = dc.Entries, dc.Bucket
		for _, e := range dc.Entries {
			if e.Value == "" {
				d.dynamic = true
			}
		}
		if d.dynamic {
			d.dyn.init(cfg.MaxDynamicDescriptors)
		}
	}
	return l
}

// Result is the outcome of a check.
type Result struct {
	// Limited: the request is refused (over the limit, and enforced).
	Limited bool
	// Limit, Remaining and Reset describe the bucket that decided, for
	// the x-ratelimit-* headers: its max_tokens, the tokens left after
	// this request, and the time until its next fill. Checked is false
	// when no bucket was checked (the limit is not enabled for this
	// request, or nothing applied).
	Checked   bool
	Limit     uint32
	Remaining uint32
	Reset     time.Duration
}

// Check takes a token for a request with descriptors ds (nil: none) from
// each bucket that applies, and counts the outcome in the stat_prefix's
// enabled, ok, rate_limited and enforced. It takes no lock and allocates
// nothing.
func (l *Local) Check(ds *Descriptors) Result {
	if l.cfg.EnabledPercent < 100 && rand.Float64()*100 >= l.cfg.EnabledPercent {
		return Result{}
	}
	l.st.Enabled.Inc(1)
	now := l.clock() - l.start
	var r Result
	matched := false
	limited := false
	if ds != nil && len(l.descs) > 0 {
		for i := range ds.N {
			d := l.match(&ds.List[i])
			if d == nil {
				continue
			}
			matched = true
			b := &d.static
			if d.dynamic {
				b = d.dyn.get(d.hash(&ds.List[i]), &d.tb, now)
			}
			if !l.take(b, &d.tb, now, &r) {
				limited = true
				break
			}
		}
	}
	if !limited && l.cfg.Bucket.MaxTokens > 0 && (!matched || l.cfg.AlwaysConsumeDefault) {
		limited = !l.take(&l.def, &l.cfg.Bucket, now, &r)
	}
	if !limited {
		l.st.OK.Inc(1)
		return r
	}
	l.st.RateLimited.Inc(1)
	if l.cfg.EnforcedPercent < 100 && rand.Float64()*100 >= l.cfg.EnforcedPercent {
		return r
	}
	l.st.Enforced.Inc(1)
	r.Limited = true
	return r
}

// take takes a token from b and notes it in r: the first bucket checked,
// or the one with the fewest tokens left, is the one the headers
// describe; a refusal always is.
func (l *Local) take(b *bucket, tb *TokenBucket, now time.Duration, r *Result) bool {
	k, reset := tb.interval(now)
	ok, left := b.take(tb, k)
	if !r.Checked || !ok || left < r.Remaining {
		r.Checked, r.Limit, r.Remaining, r.Reset = true, tb.MaxTokens, left, reset
	}
	return ok
}

// match returns the first configured descriptor d matches, or nil.
func (l *Local) match(d *Descriptor) *localDescriptor {
	for i := range l.descs {
		c := &l.descs[i]
		if len(c.entries) != d.N {
			continue
		}
		ok := true
		for j, e := range c.entries {
			got := &d.Entries[j]
			if got.Key != e.Key || e.Value != "" && got.Value != e.Value {
				ok = false
				break
			}
		}
		if ok {
			return c
		}
	}
	return nil
}

// hash identifies the values of d's any-value entries: the dynamic
// bucket's key. It is never 0, which marks an empty slot.
func (c *localDescriptor) hash(d *Descriptor) uint64 {
	var h xxhash.Digest
	h.Reset()
	for j, e := range c.entries {
		if e.Value == "" {
			h.WriteString(d.Entries[j].Value)
			h.Write(sep[:])
		}
	}
	return h.Sum64() | 1
}

var sep = [1]byte{0}

// dynTable holds the buckets of one descriptor with any-value entries, by
// the hash of the values: open addressing over a power-of-two array of
// slots, probed a few slots at a time. A slot is claimed with a
// compare-and-swap on its key; when every probed slot holds another key,
// the one refilled longest ago is recycled, full again. Nothing is
// allocated after init and nothing is locked. A recycled key comes back
// with a full bucket, as an evicted entry of Envoy's LRU does.
type dynTable struct {
	mask  uint64
	slots []dynSlot
}

type dynSlot struct {
	key atomic.Uint64
	b   bucket
}

// probe is how many slots a key may live in.
const probe = 8

// DefaultMaxDynamicDescriptors is the default bound of the buckets of a
// descriptor with any-value entries.
const DefaultMaxDynamicDescriptors = 1024

func (t *dynTable) init(limit int) {
	if limit <= 0 {
		limit = DefaultMaxDynamicDescriptors
	}
	// Twice the bound, rounded up to a power of two, keeps probes short.
	n := uint64(1) << bits.Len64(uint64(2*limit-1))
	n = max(n, probe)
	t.mask = n - 1
	t.slots = make([]dynSlot, n)
}

// get returns the bucket of key h, claiming or recycling a slot for it.
func (t *dynTable) get(h uint64, tb *TokenBucket, now time.Duration) *bucket {
	first := h & t.mask
	for i := range uint64(probe) {
		s := &t.slots[(first+i)&t.mask]
		switch k := s.key.Load(); k {
		case h:
			return &s.b
		case 0:
			if s.key.CompareAndSwap(0, h) {
				return &s.b
			}
			if s.key.Load() == h {
				return &s.b
			}
		}
	}
	// Every slot holds another key: recycle the stalest, the one whose
	// bucket was refilled longest ago (or is fullest, when tied).
	kNow, _ := tb.interval(now)
	var victim *dynSlot
	var oldest uint32
	for i := range uint64(probe) {
		s := &t.slots[(first+i)&t.mask]
		age := kNow - uint32(s.b.state.Load())
		if victim == nil || age > oldest {
			victim, oldest = s, age
		}
	}
	old := victim.key.Load()
	if old != h && victim.key.CompareAndSwap(old, h) {
		victim.b.state.Store(0)
	}
	return &victim.b
}
