package router

import (
	"github.com/sightline-proxy/sightline/proxy/overload"
	"github.com/sightline-proxy/sightline/stats"
)

// Admit is load shedding, before anything else is done for a request: the
// overload manager refuses new requests while stop_accepting_requests is
// on, and past the concurrency budget (overload.max_active_requests), so
// that an overloaded proxy answers at once, 503 or UNAVAILABLE with flag
// OM, instead of queueing work it cannot do. A refusal is counted in the
// listener's downstream_rq_overload_close. held says that the request
// counts against the budget: the codec calls m.Release once it ends. A nil
// manager admits everything; with no budget set, Admit counts nothing.
func Admit(m *overload.Manager, st *stats.HTTP) (rp Reply, ok, held bool) {
	ok, held = m.Admit()
	if !ok {
		st.DownstreamRqOverloadClose.Inc(1)
		return ReplyOverloaded, false, false
	}
	return Reply{}, true, held
}
