// Package statsd pushes Sightline's stats to a statsd agent over UDP or
// TCP, plain (flat names) or DogStatsD (tagged names with |#tags).
//
// At each flush the sink sends what changed since the last one: counters as
// deltas (|c), gauges with their value (|g, every flush once set, so a lost
// datagram heals), and histograms (|ms, or DogStatsD's |h or |d) either as
// every sample recorded since, each its own line as Envoy sends them
// (histograms: samples), or aggregated (histograms: buckets): one line per
// bucket that got samples, the bucket's middle as the value and 1/n as the
// sample rate (|ms|@0.01 is 100 samples). Samples are kept per histogram
// and per flush up to maxSamples; past it a uniform sample of them is kept
// and sent with the rate that scales it back. Lines are packed into
// datagrams of at most the MTU (1432 bytes) at the flush, never a datagram
// per sample, and sent by a goroutine of the sink's own, so a slow or dead
// agent never holds up the flush, let alone a request: while the sender is
// still busy with the last batch, the next flush sends nothing and the one
// after sends both intervals' changes together.
//
// The line protocol is written here rather than through a client library:
// the libraries at hand send only UDP, print sample rates to six decimals
// (a bucket with two million samples would get rate 0) and flush on timers
// of their own, where the sink needs one batch per flush.
package statsd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/uber-go/tally/v4"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

const (
	// MTU is the largest datagram sent: Ethernet's 1500 less IP and UDP
	// headers and room for tunnels, the size statsd itself recommends.
	MTU = 1432
	// dialTimeout and writeTimeout bound how long the sender waits on a TCP
	// agent before giving the batch up.
	dialTimeout  = time.Second
	writeTimeout = time.Second
	// maxSamples bounds the samples a histogram keeps between two flushes
	// (64 KiB each): at a second's flush interval, every sample up to
	// 8192 calls/s per histogram, and a uniform sample beyond.
	maxSamples = 8192
)

// Sink is a statsd push sink. Its tally.CachedStatsReporter methods are for
// the stats Store.
type Sink struct {
	network   string
	address   string
	prefix    string
	dogstatsd bool
	// constant is the config's constant_tags, joined (constantTags):
	// added to every line's DogStatsD tags.
	constant string
	// histType is a histogram line's type: ms, or for DogStatsD also h
	// (histogram) or d (distribution).
	histType string
	// samples sends every histogram sample rather than bucket counts.
	samples   bool
	emitZeros bool
	log       zerolog.Logger
	name      string           // in its own stats
	st        *stats.SinkStats // its own stats, once BindStats ran; nil counts nothing
	// values are the statsd values of the histogram buckets, in ms.
	values [][]byte

	mu     sync.Mutex
	series []*series

	// batches hands packets to the sender; it holds one batch at most.
	batches   chan [][]byte
	startOnce sync.Once
	started   atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

// New returns a sink for cfg (defaults applied: protocol and tags set). It
// does no I/O; the agent's address is resolved when the first batch is sent.
func New(cfg config.StatsdSink, o stats.SinkOptions) (*Sink, error) {
	s := &Sink{
		address:   cfg.Address,
		prefix:    cfg.Prefix,
		emitZeros: o.EmitZeros,
		histType:  cmp.Or(cfg.HistogramType, "ms"),
		log:       o.Log.With().Str("sink", "statsd").Str("address", cfg.Address).Logger(),
		name:      cmp.Or(o.Name, "statsd"),
		values:    bucketValues(),
		batches:   make(chan [][]byte, 1),
		done:      make(chan struct{}),
	}
	switch cfg.Protocol {
	case "udp", "tcp":
		s.network = cfg.Protocol
	default:
		return nil, fmt.Errorf("statsd: protocol %q: want udp or tcp", cfg.Protocol)
	}
	switch cfg.Tags {
	case "none":
	case "dogstatsd":
		s.dogstatsd = true
		s.constant = constantTags(cfg.ConstantTags)
	default:
		return nil, fmt.Errorf("statsd: tags %q: want none or dogstatsd", cfg.Tags)
	}
	switch cfg.Histograms {
	case "", "samples":
		s.samples = true
	case "buckets":
	default:
		return nil, fmt.Errorf("statsd: histograms %q: want samples or buckets", cfg.Histograms)
	}
	return s, nil
}

// constantTags joins the config's constant_tags as DogStatsD tags, in key
// order so that every line carries them alike: "env:prod,zone:us-east-1a".
func constantTags(tags map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + ":" + tags[k])
	}
	return b.String()
}

// bucketValues returns, per histogram bucket, the value its samples are
// sent as: the middle of the bucket, half the first bound for the first,
// the last bound for the +Inf bucket.
func bucketValues() [][]byte {
	bounds := stats.BoundsMillis()
	values := make([][]byte, len(bounds)+1)
	lo := 0.0
	for i, hi := range bounds {
		values[i] = strconv.AppendFloat(nil, (lo+hi)/2, 'f', -1, 64)
		lo = hi
	}
	values[len(bounds)] = strconv.AppendFloat(nil, lo, 'f', -1, 64)
	return values
}

// series is one stat as the sink sends it. The pending fields are what
// changed since the last batch; only the flush goroutine touches them.
type series struct {
	kind stats.Kind
	name []byte // prefix and name, sanitized
	tags []byte // "|#key:value,…" for DogStatsD, else empty

	count    int64
	gauge    float64
	gaugeSet bool
	buckets  []pendingBucket
	// recorded holds the samples since the last batch, with histograms:
	// samples; nil otherwise.
	recorded *sampleBuffer
	// released is set when the Store handed the series back (Release):
	// the next batch sends what it holds and drops it.
	released atomic.Bool
}

type pendingBucket struct{ n int64 }

// ReportSamples adds samples to the bucket.
func (b *pendingBucket) ReportSamples(n int64) { b.n += n }

func (s *Sink) add(name string, tags map[string]string) *series {
	d, values, err := stats.Resolve(name, tags)
	if err != nil {
		panic(err) // only the Store allocates, and only catalog stats
	}
	x := &series{kind: d.Kind()}
	var full string
	if s.dogstatsd {
		full = d.Name()
		for i, k := range d.TagKeys() {
			if i == 0 {
				x.tags = append(x.tags, "|#"...)
			} else {
				x.tags = append(x.tags, ',')
			}
			x.tags = append(x.tags, k...)
			x.tags = append(x.tags, ':')
			x.tags = append(x.tags, tagValueReplacer.Replace(values[i])...)
		}
		if s.constant != "" {
			if len(x.tags) == 0 {
				x.tags = append(x.tags, "|#"...)
			} else {
				x.tags = append(x.tags, ',')
			}
			x.tags = append(x.tags, s.constant...)
		}
	} else {
		full = d.FlatName(values)
	}
	if s.prefix != "" {
		full = s.prefix + "." + full
	}
	x.name = []byte(nameReplacer.Replace(full))
	s.mu.Lock()
	s.series = append(s.series, x)
	s.mu.Unlock()
	return x
}

// nameReplacer and tagValueReplacer take out what the statsd line protocol
// uses as separators: a listener "[::1]:10000" is "[__1]_10000" in a name.
// DogStatsD tag values keep their colons: only the first one splits.
var (
	nameReplacer     = strings.NewReplacer(":", "_", "|", "_", "@", "_", "#", "_", ",", "_", " ", "_", "\n", "_")
	tagValueReplacer = strings.NewReplacer("|", "_", "#", "_", ",", "_", " ", "_", "\n", "_")
)

// AllocateCounter implements tally.CachedStatsReporter.
func (s *Sink) AllocateCounter(name string, tags map[string]string) tally.CachedCount {
	return s.add(name, tags)
}

// AllocateGauge implements tally.CachedStatsReporter.
func (s *Sink) AllocateGauge(name string, tags map[string]string) tally.CachedGauge {
	return s.add(name, tags)
}

// AllocateHistogram implements tally.CachedStatsReporter. With histograms:
// samples the histogram takes every sample (stats.SampleRecorder) and no
// bucket counts.
func (s *Sink) AllocateHistogram(name string, tags map[string]string, b tally.Buckets) tally.CachedHistogram {
	x := s.add(name, tags)
	if s.samples {
		x.recorded = &sampleBuffer{series: x}
		return x.recorded
	}
	x.buckets = make([]pendingBucket, b.Len()+1)
	return x
}

// Release implements stats.Releaser: the series goes with the next batch,
// once it has sent what it holds. A gauge released is no longer sent every
// flush: the Store releases a gauge only once it has stayed the same for
// stats.compact_after, and the agent keeps its last value.
func (s *Sink) Release(h any) {
	switch x := h.(type) {
	case *series:
		x.released.Store(true)
	case *sampleBuffer:
		x.series.released.Store(true)
	}
}

// AllocateTimer implements tally.CachedStatsReporter; the Store has no
// timers.
func (s *Sink) AllocateTimer(string, map[string]string) tally.CachedTimer { return stats.Discard }

// Capabilities implements tally.CachedStatsReporter.
func (s *Sink) Capabilities() tally.Capabilities { return s }

// Reporting implements tally.Capabilities.
func (s *Sink) Reporting() bool { return true }

// Tagging implements tally.Capabilities: tags reach the agent with
// DogStatsD only.
func (s *Sink) Tagging() bool { return s.dogstatsd }

// ReportCount adds a counter's increase.
func (x *series) ReportCount(delta int64) { x.count += delta }

// ReportGauge sets a gauge.
func (x *series) ReportGauge(v float64) { x.gauge, x.gaugeSet = v, true }

// DurationBucket returns the bucket whose upper bound is upper.
func (x *series) DurationBucket(_, upper time.Duration) tally.CachedHistogramBucket {
	return &x.buckets[stats.BucketIndex(upper)]
}

// ValueBucket implements tally.CachedHistogram; the Store's histograms are
// all duration histograms.
func (x *series) ValueBucket(float64, float64) tally.CachedHistogramBucket { return stats.Discard }

// Flush turns what changed since the last batch into packets and hands them
// to the sender, unless the sender is still busy with the last batch: then
// the changes wait for the next flush.
func (s *Sink) Flush() {
	if len(s.batches) == cap(s.batches) {
		return
	}
	if pkts := s.pack(); len(pkts) > 0 {
		s.batches <- pkts
	}
}

// pack writes the changes since the last batch into packets, starting the
// sender when there is something to send.
func (s *Sink) pack() [][]byte {
	s.mu.Lock()
	all := s.series
	s.mu.Unlock()

	p := packer{mtu: MTU}
	released := false
	for _, x := range all {
		s.lines(&p, x)
		released = released || x.released.Load()
	}
	if released {
		s.mu.Lock()
		s.series = slices.DeleteFunc(s.series, func(x *series) bool { return x.released.Load() })
		s.mu.Unlock()
	}
	pkts := p.packets()
	if len(pkts) > 0 {
		s.startOnce.Do(func() {
			s.started.Store(true)
			go s.send()
		})
	}
	return pkts
}

// lines writes x's lines and clears what they carry.
func (s *Sink) lines(p *packer, x *series) {
	switch x.kind {
	case stats.KindCounter:
		if x.count != 0 || s.emitZeros {
			p.value = strconv.AppendInt(p.value[:0], x.count, 10)
			p.line(x, p.value, "c", 1)
			x.count = 0
		}
	case stats.KindGauge:
		if !x.gaugeSet && !s.emitZeros {
			return
		}
		if x.gauge < 0 {
			// A signed gauge value is a change in statsd; to set a negative
			// value, zero it first.
			p.line(x, []byte("0"), "g", 1)
		}
		p.value = strconv.AppendFloat(p.value[:0], x.gauge, 'f', -1, 64)
		p.line(x, p.value, "g", 1)
	case stats.KindHistogram:
		if x.recorded != nil {
			s.sampleLines(p, x)
			return
		}
		for i := range x.buckets {
			if n := x.buckets[i].n; n > 0 {
				p.line(x, s.values[i], s.histType, 1/float64(n))
				x.buckets[i].n = 0
			}
		}
	}
}

// sampleLines writes one line per sample kept since the last batch, in
// milliseconds to the microsecond, with the rate that scales the kept
// samples to all those recorded when there were more than maxSamples.
func (s *Sink) sampleLines(p *packer, x *series) {
	kept, seen := x.recorded.take()
	rate := 1.0
	if seen > uint64(len(kept)) {
		rate = float64(len(kept)) / float64(seen)
	}
	for _, d := range kept {
		p.value = strconv.AppendFloat(p.value[:0], float64(d.Microseconds())/1000, 'f', -1, 64)
		p.line(x, p.value, s.histType, rate)
	}
}

// packer packs lines into packets of at most mtu bytes; a line longer than
// that goes alone.
type packer struct {
	mtu  int
	pkts [][]byte
	cur  []byte
	// value and buf are reused for each line's value and the line itself.
	value []byte
	buf   []byte
}

// line adds "name:value|typ[|@rate][|#tags]\n", the rate in full
// precision (a rate of 1 is left out): the agent multiplies the line back
// into 1/rate samples.
func (p *packer) line(x *series, value []byte, typ string, rate float64) {
	l := append(p.buf[:0], x.name...)
	l = append(l, ':')
	l = append(l, value...)
	l = append(l, '|')
	l = append(l, typ...)
	if rate < 1 {
		l = append(l, "|@"...)
		l = strconv.AppendFloat(l, rate, 'g', -1, 64)
	}
	l = append(l, x.tags...)
	l = append(l, '\n')
	p.buf = l
	if len(p.cur) > 0 && len(p.cur)+len(l) > p.mtu {
		p.pkts = append(p.pkts, p.cur)
		p.cur = nil
	}
	p.cur = append(p.cur, l...)
}

func (p *packer) packets() [][]byte {
	if len(p.cur) > 0 {
		p.pkts = append(p.pkts, p.cur)
	}
	return p.pkts
}

// BindStats takes the sink's own stats from the Store it reports to; the
// Store calls it once, before the first flush.
func (s *Sink) BindStats(st *stats.Store) { s.st = st.SinkStats(s.name) }

// send writes batches until Close; it owns the connection.
func (s *Sink) send() {
	defer close(s.done)
	var conn net.Conn
	// A failing agent is logged once, and its recovery once. A UDP send
	// that succeeds proves only that the datagram left: to a closed port,
	// the refusal comes back as the next send's error, so every other
	// send fails. Over UDP, recovery takes two good batches in a row, and
	// a batch that seemed to go out while failing is counted as dropped
	// when the next send fails with its refusal.
	confirm := 1
	if s.network == "udp" {
		confirm = 2
	}
	failing, unconfirmed := false, 0
	for pkts := range s.batches {
		var err error
		conn, err = s.write(conn, pkts)
		switch {
		case err != nil:
			s.countDropped(1 + unconfirmed)
			if !failing {
				s.log.Warn().Err(err).Msg("sending stats failed; trying again every flush")
			}
			failing, unconfirmed = true, 0
		case failing:
			if unconfirmed++; unconfirmed >= confirm {
				s.log.Info().Msg("sending stats again")
				if s.st != nil {
					s.st.Reconnects.Inc(1)
				}
				failing, unconfirmed = false, 0
			}
		}
	}
	if conn != nil {
		_ = conn.Close()
	}
}

// countDropped adds n batches to sink.<name>.batches_dropped.
func (s *Sink) countDropped(n int) {
	if s.st != nil {
		s.st.BatchesDropped.Inc(int64(n))
	}
}

// write sends a batch, dialing first if needed. A TCP connection that fails
// is dropped, to be dialed again next batch; a UDP write that fails (no
// one listening) fails alone.
func (s *Sink) write(conn net.Conn, pkts [][]byte) (net.Conn, error) {
	if conn == nil {
		c, err := net.DialTimeout(s.network, s.address, dialTimeout)
		if err != nil {
			return nil, fmt.Errorf("dialing %s: %w", s.address, err)
		}
		conn = c
	}
	var errs []error
	for _, pkt := range pkts {
		if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
			errs = append(errs, err)
		}
		if _, err := conn.Write(pkt); err != nil {
			errs = append(errs, err)
			if s.network == "tcp" {
				_ = conn.Close()
				return nil, errors.Join(errs...)
			}
		}
	}
	return conn, errors.Join(errs...)
}

// Close sends what the last flush left (it keeps changes back while the
// sender is busy) and lets the sender deliver it, waiting until ctx is done
// at most. The Store calls it once, after the last Flush.
func (s *Sink) Close(ctx context.Context) error {
	var err error
	s.closeOnce.Do(func() {
		if pkts := s.pack(); len(pkts) > 0 {
			select {
			case s.batches <- pkts:
			case <-ctx.Done():
				err = fmt.Errorf("statsd: the last batch was not sent: %w", ctx.Err())
			}
		}
		close(s.batches)
	})
	if err != nil || !s.started.Load() {
		return err
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("statsd: the last batch was not sent: %w", ctx.Err())
	}
}

var _ tally.CachedStatsReporter = (*Sink)(nil)
