package router

import (
	"context"
	"errors"
	"time"

	"github.com/sightline-proxy/sightline/proxy/host"
	"github.com/sightline-proxy/sightline/proxy/upstream"
)

// Attempt is one try of a codec that blocks on its upstream (net/http's
// client: the HTTP/1.1 handler, the HTTP/2 engine's bridge to http1
// clusters): it sends the request to h and reports how it ended, keeping
// the response, if any, for itself. h has been begun (Call.Begin).
type Attempt func(h *host.Host) Outcome

// Settle runs before a retry, with the attempt being retried: the codec
// drops its response and ends its span. It may block, e.g. until the
// whole request body is kept; false means the retry cannot go (the codec
// has answered the client) and Run stops.
type Settle func(o *Outcome) bool

// Run drives a blocking codec's attempts, from the first host (which the
// codec has picked and begun): it asks ShouldRetry of each outcome, and
// for a retry settles the attempt, waits the back-off (ended early by
// ctx), and picks and begins another host. It returns the outcome of the last attempt, for the codec to
// forward or to fail, and whether the call ended between attempts instead:
// then the outcome is the call's and reply what the client gets: the
// deadline passed during the back-off (ReplyTimeout; no host is picked or
// charged for it), no host was left for the retry (ReplyNoHealthyUpstream),
// or, with a zero reply, the client went away (EndCancelled) or Settle
// answered it. Flags ShouldRetry decided are in c.Flags.
//
// replayable reports whether the codec can send the request again (its
// body was kept whole); it is asked at each retriable outcome.
func (c *Call) Run(ctx context.Context, deadline time.Time, replayable func() bool, first *host.Host, try Attempt, settle Settle) (o Outcome, reply Reply, between bool) {
	h := first
	for {
		o = try(h)
		if o.End == EndCancelled || o.End == EndTimeout {
			return o, Reply{}, false
		}
		again, f := c.ShouldRetry(&o, false, replayable(), deadline)
		c.Flags |= f
		if !again {
			return o, Reply{}, false
		}
		ok := settle(&o)
		c.Retried(&o)
		if !ok {
			return o, Reply{}, true
		}
		t := time.NewTimer(c.BackoffWait(deadline))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		switch {
		case ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
			return Outcome{GRPCStatus: -1, End: EndCancelled}, Reply{}, true
		case ctx.Err() != nil || !deadline.IsZero() && !time.Now().Before(deadline):
			// The back-off is cut to the deadline and may end a
			// moment before the context's own timer.
			return Outcome{GRPCStatus: -1, End: EndTimeout}, ReplyTimeout, true
		}
		if h = c.Pick(); h == nil {
			return Outcome{GRPCStatus: -1, End: EndNoHealthy}, ReplyNoHealthyUpstream, true
		}
		c.Begin(h)
	}
}

// Classify is how an attempt that got no response ended, from the error
// of a net/http-style round trip: ctx is the call's (its deadline), gone
// reports that the client went away, perTry that the attempt's per-try
// timer fired.
func Classify(err error, ctx context.Context, gone, perTry bool) End {
	switch {
	case perTry:
		return EndPerTryTimeout
	case gone:
		return EndCancelled
	case ctx.Err() != nil:
		return EndTimeout
	case errors.Is(err, upstream.ErrOverflow):
		return EndOverflow
	case errors.Is(err, upstream.ErrConnect):
		return EndConnectFailure
	}
	return EndReset
}
