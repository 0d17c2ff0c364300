package xds

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sightline-proxy/sightline/internal/version"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// Options configure a Client.
type Options struct {
	// Dynamic is the config's dynamic section, defaults applied.
	Dynamic config.Dynamic
	// Node is who the proxy is to the control plane.
	Node config.Node
	// TLS is the stream's TLS config (from dynamic.ads.tls); nil for
	// plaintext HTTP/2.
	TLS *tls.Config
	// Apply makes each complete set of resources the running config.
	Apply Applier
	// Stats are the control plane's stats; nil counts nothing.
	Stats *stats.XDS
	Log   zerolog.Logger
	// Rand draws the back-off's jitter, a number in [0, n); nil is
	// math/rand/v2.
	Rand func(n int64) int64
}

// Client is a proxy's stream to its control plane. New does no I/O; Run
// keeps the stream up until its context ends.
type Client struct {
	opts    Options
	log     zerolog.Logger
	st      *stats.XDS
	m       *machine
	backOff backOff
	// ready is closed once the first complete set is applied, or the
	// initial fetch timeout passed.
	ready     chan struct{}
	readyOnce sync.Once
	// dump is what /config_dump shows, published after each decision.
	dump atomic.Pointer[Dump]
	// running guards against a second Run: the machine is one
	// goroutine's.
	running atomic.Bool
}

// New makes a client for the control plane of opts.Dynamic.
func New(opts Options) *Client {
	st := opts.Stats
	if st == nil {
		st = (*stats.Store)(nil).XDS()
	}
	r := opts.Rand
	if r == nil {
		r = rand.Int64N
	}
	c := &Client{
		opts:  opts,
		log:   opts.Log.With().Str("component", "xds").Str("control_plane", opts.Dynamic.ADS.Address).Logger(),
		st:    st,
		ready: make(chan struct{}),
		backOff: backOff{
			base: opts.Dynamic.ADS.RetryBackOff.BaseInterval.D(),
			max:  opts.Dynamic.ADS.RetryBackOff.MaxInterval.D(),
			rand: r,
		},
	}
	var want [numKinds]bool
	want[clusters] = opts.Dynamic.Wants(config.DynamicClusters)
	want[listeners] = opts.Dynamic.Wants(config.DynamicListeners)
	c.m = newMachine(nodeOf(opts.Node), want, opts.Apply, st, time.Now)
	c.m.repeatBase, c.m.repeatMax = c.backOff.base, c.backOff.max
	c.dump.Store(&Dump{})
	return c
}

// nodeOf is the proxy's identity as the control plane sees it: Envoy's
// node id, cluster and locality zone, and the proxy's name and version.
func nodeOf(n config.Node) *corev3.Node {
	node := &corev3.Node{
		Id:                   n.ID,
		Cluster:              n.Cluster,
		UserAgentName:        "sightline",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: version.Get().Version},
	}
	if n.Zone != "" {
		node.Locality = &corev3.Locality{Zone: n.Zone}
	}
	return node
}

// Ready is closed once the first complete set of resources runs, or
// initial_fetch_timeout passed without one: /ready may then pass.
func (c *Client) Ready() <-chan struct{} { return c.ready }

func (c *Client) markReady() { c.readyOnce.Do(func() { close(c.ready) }) }

// Run keeps the stream to the control plane up until ctx ends, applying
// what it sends. Between streams it waits as the back-off says, the last
// accepted resources serving. It returns when ctx ends.
func (c *Client) Run(ctx context.Context) {
	if !c.running.CompareAndSwap(false, true) {
		panic("xds: Client.Run called twice")
	}
	var initial <-chan time.Time
	if d := c.opts.Dynamic.ADS.InitialFetch(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		initial = t.C
	}
	for {
		got, err := c.stream(ctx, &initial)
		c.st.ConnectedState.Set(0)
		if ctx.Err() != nil {
			return
		}
		for k := range numKinds {
			if c.m.types[k].requested {
				c.m.stats[k].UpdateFailure.Inc(1)
			}
		}
		if got {
			c.backOff.reset()
		}
		wait := c.backOff.next()
		c.log.Warn().Err(err).Dur("retry_in", wait).Msg("control plane stream ended; the last accepted config keeps serving")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-initial:
			t.Stop()
			c.initialTimeout()
		}
	}
}

// initialTimeout gives up waiting for the first complete set: what there
// is is applied, and the proxy reports ready.
func (c *Client) initialTimeout() {
	select {
	case <-c.ready:
		return
	default:
	}
	miss := c.m.missing(c.m.candidate())
	for k := range numKinds {
		if !c.m.types[k].received {
			if k == clusters || k == listeners {
				if c.m.want[k] {
					c.m.stats[k].InitFetchTimeout.Inc(1)
				}
				continue
			}
			if c.m.types[k].requested || len(c.m.types[k].names) > 0 {
				c.m.stats[k].InitFetchTimeout.Inc(1)
			}
		}
	}
	c.log.Warn().Strs("missing", miss).Dur("initial_fetch_timeout", c.opts.Dynamic.ADS.InitialFetch()).
		Msg("the control plane sent no complete set in time; ready with what there is")
	if c.m.waiting() {
		c.m.decide(true)
		c.publish()
	}
	c.markReady()
}

// stream runs one stream until it fails or ctx ends, and reports whether
// it got a response. initial is the initial fetch timer, set to nil once
// it fired.
func (c *Client) stream(ctx context.Context, initial *<-chan time.Time) (got bool, err error) {
	creds := insecure.NewCredentials()
	if c.opts.TLS != nil {
		creds = credentials.NewTLS(c.opts.TLS)
	}
	conn, err := grpc.NewClient(c.opts.Dynamic.ADS.Address, grpc.WithTransportCredentials(creds))
	if err != nil {
		return false, fmt.Errorf("connecting to %s: %w", c.opts.Dynamic.ADS.Address, err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx, grpc.WaitForReady(false))
	if err != nil {
		return false, fmt.Errorf("opening the stream: %w", err)
	}
	// The stream is open on a connected transport: the RPC fails fast
	// otherwise.
	c.st.ConnectedState.Set(1)
	c.log.Info().Msg("control plane stream up")
	// Sends happen on this goroutine only; a failed send shows as a
	// failed receive, which ends the stream.
	c.m.send = func(r *discoveryv3.DiscoveryRequest) {
		if err := st.Send(r); err != nil {
			c.log.Debug().Err(err).Str("type", r.GetTypeUrl()).Msg("sending a request")
		}
	}
	type recv struct {
		resp *discoveryv3.DiscoveryResponse
		err  error
	}
	in := make(chan recv)
	go func() {
		for {
			resp, err := st.Recv()
			select {
			case in <- recv{resp, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	c.m.streamStarted()
	var wait, held *time.Timer
	var waitC, heldC <-chan time.Time
	defer func() {
		if wait != nil {
			wait.Stop()
		}
		if held != nil {
			held.Stop()
		}
	}()
	// armHeld sets the timer of the NACKs held for repeated responses.
	armHeld := func() {
		at := c.m.heldUntil()
		if at.IsZero() {
			heldC = nil
			return
		}
		if held == nil {
			held = time.NewTimer(time.Until(at))
		} else {
			held.Reset(time.Until(at))
		}
		heldC = held.C
	}
	for {
		select {
		case <-ctx.Done():
			return got, ctx.Err()
		case <-*initial:
			*initial = nil
			c.initialTimeout()
		case <-heldC:
			heldC = nil
			c.m.sendHeld(time.Now())
			armHeld()
		case <-waitC:
			// The responses waited long enough for what they name.
			waitC = nil
			c.m.decide(true)
			c.publish()
		case r := <-in:
			if r.err != nil {
				return got, fmt.Errorf("receiving: %w", r.err)
			}
			got = true
			c.m.receive(r.resp)
			c.publish()
			armHeld()
			if c.m.applied {
				c.markReady()
			}
			// Responses that wait for resources they name wait
			// initial_fetch_timeout at most, then are decided with what
			// there is.
			if !c.m.waiting() {
				waitC = nil
			} else if waitC == nil {
				if d := c.opts.Dynamic.ADS.InitialFetch(); d > 0 {
					if wait == nil {
						wait = time.NewTimer(d)
					} else {
						wait.Reset(d)
					}
					waitC = wait.C
				}
			}
		}
	}
}
