package router

import (
	"strings"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/grpcproto"
	"github.com/sightline-proxy/sightline/proxy/retry"
	"github.com/sightline-proxy/sightline/proxy/route"
)

// mapHeaders serves lower-case header names from a map.
type mapHeaders map[string]string

func (m mapHeaders) Get(_, lower string) (string, bool) {
	v, ok := m[strings.ToLower(lower)]
	return v, ok
}

func dur(d time.Duration) *config.Duration {
	c := config.Duration(d)
	return &c
}

func TestGRPCTimeout(t *testing.T) {
	tests := []struct {
		name    string
		give    config.Route
		timeout time.Duration // the route's, or the override's
		header  string        // grpc-timeout; "" = none
		want    time.Duration
	}{
		{name: "no max: smaller of route and header", timeout: 15 * time.Second, header: "2S", want: 2 * time.Second},
		{name: "no max: route when smaller", timeout: time.Second, header: "2S", want: time.Second},
		{name: "no max: header without route timeout", header: "3S", want: 3 * time.Second},
		{name: "no max: no header", timeout: time.Second, want: time.Second},
		{name: "no max: offset", give: config.Route{GRPCTimeoutOffset: config.Duration(500 * time.Millisecond)}, header: "2S", want: 1500 * time.Millisecond},
		{name: "offset not smaller than header: kept whole", give: config.Route{GRPCTimeoutOffset: config.Duration(3 * time.Second)}, header: "2S", want: 2 * time.Second},
		{name: "max: header under cap, route ignored", give: config.Route{MaxGRPCTimeout: dur(10 * time.Second)}, timeout: time.Second, header: "5S", want: 5 * time.Second},
		{name: "max: header over cap", give: config.Route{MaxGRPCTimeout: dur(10 * time.Second)}, header: "1M", want: 10 * time.Second},
		{name: "max: no header", give: config.Route{MaxGRPCTimeout: dur(10 * time.Second)}, timeout: time.Second, want: 10 * time.Second},
		{name: "max 0: header unbounded", give: config.Route{MaxGRPCTimeout: dur(0)}, timeout: time.Second, header: "1M", want: time.Minute},
		{name: "max 0: no header, no timeout", give: config.Route{MaxGRPCTimeout: dur(0)}, timeout: time.Second, want: 0},
		{name: "max and offset", give: config.Route{MaxGRPCTimeout: dur(10 * time.Second), GRPCTimeoutOffset: config.Duration(time.Second)}, header: "5S", want: 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := mapHeaders{}
			if tt.header != "" {
				h["grpc-timeout"] = tt.header
			}
			rt := &route.Route{Config: &tt.give}
			if got := grpcTimeout(rt, h, tt.timeout); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAttemptTimeout(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name     string
		perTry   time.Duration
		deadline time.Time
		want     time.Duration
		wantOK   bool
	}{
		{name: "no bound", wantOK: false},
		{name: "deadline only", deadline: now.Add(3 * time.Second), want: 3 * time.Second, wantOK: true},
		{name: "per-try under deadline", perTry: time.Second, deadline: now.Add(3 * time.Second), want: time.Second, wantOK: true},
		{name: "deadline under per-try", perTry: 5 * time.Second, deadline: now.Add(2 * time.Second), want: 2 * time.Second, wantOK: true},
		{name: "per-try only", perTry: time.Second, want: time.Second, wantOK: true},
		{name: "deadline passed: 1ms, never 0", deadline: now.Add(-time.Second), want: time.Millisecond, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Call
			c.Plan.Retry = retry.Policy{PerTryTimeout: tt.perTry}
			got, ok := c.AttemptTimeout(tt.deadline, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %v %v, want %v %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFormatGRPCTimeout(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 999, 99999999, 100000000, 1500 * time.Millisecond, 3 * time.Second, 40 * time.Hour, 1<<63 - 1} {
		v := FormatGRPCTimeout(d)
		got, ok := grpcproto.ParseTimeout(v)
		if !ok || len(v) > 9 {
			t.Errorf("%v: %q does not parse", d, v)
			continue
		}
		if d > 0 && (got < d || got-d > got/1e7+time.Nanosecond) {
			t.Errorf("%v: %q means %v", d, v, got)
		}
	}
}
