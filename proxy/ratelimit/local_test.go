package ratelimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// fakeClock is a clock the test steps by hand.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) read() time.Duration { return c.now }

// newStats returns real counters for one stat_prefix.
func newStats(t *testing.T) *stats.LocalRateLimit {
	t.Helper()
	st, err := stats.New(config.Stats{FlushInterval: config.Duration(time.Hour)}, config.Node{}, stats.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st.LocalRateLimit("test")
}

// step is a number of requests sent at one instant.
type step struct {
	at       time.Duration
	send     int
	admitted int
}

func TestLocalBucketWindows(t *testing.T) {
	tests := []struct {
		name  string
		give  TokenBucket
		steps []step
	}{
		{
			name:  "starts full, then one fill per interval",
			give:  TokenBucket{MaxTokens: 10, TokensPerFill: 5, FillInterval: time.Second},
			steps: []step{{0, 12, 10}, {999 * time.Millisecond, 3, 0}, {time.Second, 7, 5}, {2500 * time.Millisecond, 1, 1}},
		},
		{
			name:  "fills never exceed max_tokens",
			give:  TokenBucket{MaxTokens: 3, TokensPerFill: 2, FillInterval: 100 * time.Millisecond},
			steps: []step{{0, 3, 3}, {10 * time.Second, 5, 3}},
		},
		{
			name:  "several intervals passed add several fills",
			give:  TokenBucket{MaxTokens: 100, TokensPerFill: 1, FillInterval: time.Second},
			steps: []step{{0, 100, 100}, {3 * time.Second, 5, 3}, {3 * time.Second, 1, 0}},
		},
		{
			name:  "a clock read before the last fill changes nothing",
			give:  TokenBucket{MaxTokens: 2, TokensPerFill: 2, FillInterval: time.Second},
			steps: []step{{0, 2, 2}, {time.Second, 1, 1}, {500 * time.Millisecond, 2, 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{}
			st := newStats(t)
			l := NewLocal(LocalConfig{Bucket: tt.give, EnabledPercent: 100, EnforcedPercent: 100}, st, clk.read)
			sent, admitted := 0, 0
			for i, s := range tt.steps {
				clk.now = s.at
				got := 0
				for range s.send {
					if !l.Check(nil).Limited {
						got++
					}
				}
				if got != s.admitted {
					t.Errorf("step %d at %s: admitted %d of %d, want %d", i, s.at, got, s.send, s.admitted)
				}
				sent += s.send
				admitted += got
			}
			if v := st.Enabled.Value(); v != int64(sent) {
				t.Errorf("enabled = %d, want %d", v, sent)
			}
			if v := st.OK.Value(); v != int64(admitted) {
				t.Errorf("ok = %d, want %d", v, admitted)
			}
			if v := st.RateLimited.Value(); v != int64(sent-admitted) {
				t.Errorf("rate_limited = %d, want %d", v, sent-admitted)
			}
			if v := st.Enforced.Value(); v != int64(sent-admitted) {
				t.Errorf("enforced = %d, want %d", v, sent-admitted)
			}
		})
	}
}

func TestLocalResultHeaders(t *testing.T) {
	clk := &fakeClock{now: 250 * time.Millisecond}
	l := NewLocal(LocalConfig{Bucket: TokenBucket{MaxTokens: 2, TokensPerFill: 1, FillInterval: time.Second}, EnabledPercent: 100, EnforcedPercent: 100}, nil, clk.read)
	clk.now += 300 * time.Millisecond
	tests := []struct {
		name string
		want Result
	}{
		{"first", Result{Checked: true, Limit: 2, Remaining: 1, Reset: 700 * time.Millisecond}},
		{"second", Result{Checked: true, Limit: 2, Remaining: 0, Reset: 700 * time.Millisecond}},
		{"refused", Result{Limited: true, Checked: true, Limit: 2, Remaining: 0, Reset: 700 * time.Millisecond}},
	}
	for _, tt := range tests {
		if got := l.Check(nil); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestLocalShadowMode(t *testing.T) {
	st := newStats(t)
	l := NewLocal(LocalConfig{Bucket: TokenBucket{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Second}, EnabledPercent: 100, EnforcedPercent: 0}, st, (&fakeClock{}).read)
	for range 5 {
		if l.Check(nil).Limited {
			t.Fatal("refused with filter_enforced 0")
		}
	}
	if st.OK.Value() != 1 || st.RateLimited.Value() != 4 || st.Enforced.Value() != 0 {
		t.Errorf("ok %d rate_limited %d enforced %d, want 1 4 0", st.OK.Value(), st.RateLimited.Value(), st.Enforced.Value())
	}
	off := NewLocal(LocalConfig{Bucket: TokenBucket{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Second}, EnabledPercent: 0, EnforcedPercent: 100}, st, (&fakeClock{}).read)
	for range 5 {
		if r := off.Check(nil); r.Limited || r.Checked {
			t.Fatalf("filter_enabled 0 checked: %+v", r)
		}
	}
}

func desc(entries ...Entry) *Descriptors {
	var ds Descriptors
	d := ds.Next()
	for _, e := range entries {
		d.Add(e.Key, e.Value)
	}
	ds.Commit()
	return &ds
}

func TestLocalDescriptors(t *testing.T) {
	one := TokenBucket{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Minute}
	two := TokenBucket{MaxTokens: 2, TokensPerFill: 2, FillInterval: time.Minute}
	cfg := LocalConfig{
		Bucket: TokenBucket{MaxTokens: 5, TokensPerFill: 5, FillInterval: time.Minute},
		Descriptors: []DescriptorConfig{
			{Entries: []Entry{{Key: "user", Value: "vip"}}, Bucket: TokenBucket{MaxTokens: 100, TokensPerFill: 1, FillInterval: time.Minute}},
			{Entries: []Entry{{Key: "user"}}, Bucket: one},
			{Entries: []Entry{{Key: "remote_address"}, {Key: "method", Value: "GET"}}, Bucket: two},
		},
		EnabledPercent: 100, EnforcedPercent: 100,
	}
	type req struct {
		d    *Descriptors
		want bool // admitted
	}
	tests := []struct {
		name         string
		alwaysDef    bool
		reqs         []req
		wantDefault  int // tokens taken from the default bucket
		wantRefusals int
	}{
		{
			name: "a bucket per value of an any-value entry",
			reqs: []req{
				{desc(Entry{"user", "a"}), true}, {desc(Entry{"user", "a"}), false},
				{desc(Entry{"user", "b"}), true}, {desc(Entry{"user", "b"}), false},
			},
			wantRefusals: 2,
		},
		{
			name: "an exact value wins when listed first",
			reqs: []req{{desc(Entry{"user", "vip"}), true}, {desc(Entry{"user", "vip"}), true}, {desc(Entry{"user", "vip"}), true}},
		},
		{
			name: "entries must match in number and order",
			reqs: []req{
				{desc(Entry{"remote_address", "10.0.0.1"}, Entry{"method", "GET"}), true},
				{desc(Entry{"remote_address", "10.0.0.1"}, Entry{"method", "GET"}), true},
				{desc(Entry{"remote_address", "10.0.0.1"}, Entry{"method", "GET"}), false},
				{desc(Entry{"remote_address", "10.0.0.1"}, Entry{"method", "POST"}), true}, // no match: default bucket
				{desc(Entry{"method", "GET"}, Entry{"remote_address", "10.0.0.1"}), true},  // no match: default bucket
			},
			wantDefault:  2,
			wantRefusals: 1,
		},
		{
			name:      "always_consume_default_token_bucket takes from both",
			alwaysDef: true,
			reqs: []req{
				{desc(Entry{"user", "c"}), true},
				{desc(Entry{"user", "d"}), true},
				{desc(Entry{"user", "e"}), true},
				{desc(Entry{"user", "f"}), true},
				{desc(Entry{"user", "g"}), true},
				{desc(Entry{"user", "h"}), false}, // the default bucket is empty
			},
			wantDefault:  5,
			wantRefusals: 1,
		},
		{
			name:        "no descriptors: the default bucket",
			reqs:        []req{{nil, true}, {nil, true}, {nil, true}, {nil, true}, {nil, true}, {nil, false}},
			wantDefault: 5, wantRefusals: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			c.AlwaysConsumeDefault = tt.alwaysDef
			st := newStats(t)
			l := NewLocal(c, st, (&fakeClock{}).read)
			for i, r := range tt.reqs {
				if got := !l.Check(r.d).Limited; got != r.want {
					t.Errorf("request %d: admitted %v, want %v", i, got, r.want)
				}
			}
			if used := int(l.def.state.Load() >> 32); used != tt.wantDefault {
				t.Errorf("default bucket: %d tokens taken, want %d", used, tt.wantDefault)
			}
			if v := st.Enforced.Value(); v != int64(tt.wantRefusals) {
				t.Errorf("enforced = %d, want %d", v, tt.wantRefusals)
			}
		})
	}
}

func TestDynamicTableRecycles(t *testing.T) {
	clk := &fakeClock{}
	cfg := LocalConfig{
		Descriptors:           []DescriptorConfig{{Entries: []Entry{{Key: "client"}}, Bucket: TokenBucket{MaxTokens: 1, TokensPerFill: 1, FillInterval: time.Second}}},
		MaxDynamicDescriptors: 4,
		EnabledPercent:        100, EnforcedPercent: 100,
	}
	l := NewLocal(cfg, nil, clk.read)
	// Far more clients than slots: each gets its first request through,
	// whatever was recycled, and nothing is allocated for them.
	for i := range 200 {
		d := desc(Entry{"client", fmt.Sprint(i)})
		if l.Check(d).Limited {
			t.Fatalf("client %d refused on its first request", i)
		}
	}
	if n := len(l.descs[0].dyn.slots); n != 8 {
		t.Errorf("slots = %d, want 8", n)
	}
	// A client seen just now is refused on its second request.
	d := desc(Entry{"client", "199"})
	if !l.Check(d).Limited {
		t.Error("client 199 admitted twice in one interval")
	}
}

// TestLocalConcurrent checks, under -race, that concurrent checks never
// admit more than the bucket holds.
func TestLocalConcurrent(t *testing.T) {
	clk := &fakeClock{}
	l := NewLocal(LocalConfig{Bucket: TokenBucket{MaxTokens: 1000, TokensPerFill: 1, FillInterval: time.Hour}, EnabledPercent: 100, EnforcedPercent: 100}, nil, clk.read)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted := 0
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 500 {
				if !l.Check(nil).Limited {
					n++
				}
			}
			mu.Lock()
			admitted += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if admitted != 1000 {
		t.Errorf("admitted %d of 4000, want exactly 1000", admitted)
	}
}

func TestLocalCheckAllocatesNothing(t *testing.T) {
	cfg := LocalConfig{
		Bucket:         TokenBucket{MaxTokens: 1 << 30, TokensPerFill: 1, FillInterval: time.Second},
		Descriptors:    []DescriptorConfig{{Entries: []Entry{{Key: "client"}}, Bucket: TokenBucket{MaxTokens: 1 << 30, TokensPerFill: 1, FillInterval: time.Second}}},
		EnabledPercent: 100, EnforcedPercent: 100,
	}
	l := NewLocal(cfg, nil, nil)
	d := desc(Entry{"client", "10.1.2.3"})
	if n := testing.AllocsPerRun(1000, func() { l.Check(d) }); n != 0 {
		t.Errorf("Check allocates %v times per call, want 0", n)
	}
}

func BenchmarkLocalCheck(b *testing.B) {
	tb := TokenBucket{MaxTokens: 1 << 31, TokensPerFill: 1, FillInterval: time.Second}
	b.Run("default_bucket", func(b *testing.B) {
		l := NewLocal(LocalConfig{Bucket: tb, EnabledPercent: 100, EnforcedPercent: 100}, nil, nil)
		b.ReportAllocs()
		for b.Loop() {
			l.Check(nil)
		}
	})
	b.Run("per_client_descriptor", func(b *testing.B) {
		l := NewLocal(LocalConfig{Bucket: tb, Descriptors: []DescriptorConfig{{Entries: []Entry{{Key: "remote_address"}}, Bucket: tb}}, EnabledPercent: 100, EnforcedPercent: 100}, nil, nil)
		d := desc(Entry{"remote_address", "10.1.2.3"})
		b.ReportAllocs()
		for b.Loop() {
			l.Check(d)
		}
	})
	b.Run("default_bucket_parallel", func(b *testing.B) {
		l := NewLocal(LocalConfig{Bucket: tb, EnabledPercent: 100, EnforcedPercent: 100}, nil, nil)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Check(nil)
			}
		})
	})
}
