package forward

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/flags"
	"github.com/sightline-proxy/sightline/proxy/router"
)

// HTTP/1.1 upgrades (WebSocket and any other Upgrade type a route allows),
// as Envoy's upgrade_configs: the request goes to an HTTP/1.1 upstream
// with its Connection: Upgrade and Upgrade headers; a 101 turns both
// connections into one tunnel, which the handler splices until either
// side closes; any other answer is forwarded as a normal response. The
// handler returns when the tunnel ends, so the request's stats,
// downstream_rq_active among them, and its one access-log line (status
// 101, the tunnel's bytes each way and its whole duration) cover the
// tunnel.

// refuseUpgrade says why an upgrade request cannot go where it was routed:
// a status and a message, or 0 when it may go.
func refuseUpgrade(c *router.Call, r *http.Request, typ string) (int, string) {
	if c.Route == nil || c.Route.Config == nil || !c.Route.Config.Upgrade(typ) {
		// Envoy answers 403 to an upgrade its config does not allow.
		return http.StatusForbidden, "upgrade not allowed on this route"
	}
	if !http1Upstream(c, r) {
		// An HTTP/2 upstream would need extended CONNECT (RFC 8441).
		return http.StatusNotImplemented, "upgrades to an HTTP/2 cluster are not supported"
	}
	return 0, ""
}

// refuse answers an upgrade request the proxy will not forward.
func (h *Handler) refuse(w http.ResponseWriter, rec *record, status int, msg string) int {
	body := msg + "\n"
	rec.tx = int64(len(body))
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
	return status
}

// tunnel answers a 101 from the upstream: it takes the client's
// connection from net/http, writes the 101 with the upstream's headers,
// and copies bytes both ways until either side closes or fails; then it
// closes both. It returns the status the client got.
func (h *Handler) tunnel(w http.ResponseWriter, rc *http.ResponseController, rec *record, resp *http.Response) int {
	up, ok := resp.Body.(io.ReadWriteCloser)
	switch {
	case rec.upgrade == "":
		return h.badSwitch(w, rec, "upstream switched protocols unasked")
	case !strings.EqualFold(strings.TrimSpace(resp.Header.Get("Upgrade")), rec.upgrade):
		return h.badSwitch(w, rec, "upstream switched to another protocol than the one asked for")
	case !ok || rec.call.Cluster.Protocol == cluster.HTTP2:
		return h.badSwitch(w, rec, "upstream switched protocols on a connection that cannot carry it")
	}
	hdr := w.Header()
	copyHeader(hdr, resp.Header)
	hdr["Connection"] = []string{"Upgrade"}
	hdr["Upgrade"] = resp.Header["Upgrade"]
	hdr[headerUpstreamServiceTime] = []string{strconv.FormatInt(rec.upTime.Milliseconds(), 10)}
	rec.upStatus = http.StatusSwitchingProtocols

	conn, brw, err := rc.Hijack()
	if err != nil {
		return h.badSwitch(w, rec, "the client's connection cannot be switched")
	}
	defer conn.Close()
	// Counted before the client can see the 101.
	st := h.Stats
	st.DownstreamCxUpgradesTotal.Inc(1)
	st.DownstreamCxUpgradesActive.Inc()
	defer st.DownstreamCxUpgradesActive.Dec()
	head := &http.Response{StatusCode: http.StatusSwitchingProtocols, ProtoMajor: 1, ProtoMinor: 1, Header: hdr}
	if err = head.Write(brw); err == nil {
		err = brw.Flush()
	}
	if err != nil {
		rec.flags |= flags.DownstreamConnectionTerm
		return http.StatusSwitchingProtocols
	}
	rx, tx := splice(conn, brw.Reader, up)
	rec.rx.Store(rx)
	rec.tx = tx
	return http.StatusSwitchingProtocols
}

// badSwitch answers a 101 that cannot become a tunnel with 502, as an
// upstream protocol error.
func (h *Handler) badSwitch(w http.ResponseWriter, rec *record, msg string) int {
	rec.upStatus = http.StatusSwitchingProtocols
	h.Log.Debug().Str("upgrade", rec.upgrade).Msg(msg)
	return h.refuse(w, rec, http.StatusBadGateway, msg)
}

// splice copies client → upstream (from fromClient: net/http's reader of
// the client's connection, which may hold bytes the client sent after its
// request) and upstream → client until one way ends: a close, a reset or
// an error. Then it closes both connections, which ends the other way,
// and returns the bytes each way carried.
func splice(client net.Conn, fromClient io.Reader, up io.ReadWriteCloser) (rx, tx int64) {
	done := make(chan int64, 1)
	go func() {
		n := copyPooled(up, fromClient)
		up.Close()
		client.Close()
		done <- n
	}()
	tx = copyPooled(client, up)
	up.Close()
	client.Close()
	return <-done, tx
}

// copyPooled copies src to dst with a pooled buffer, until EOF or an
// error, and returns the bytes written.
func copyPooled(dst io.Writer, src io.Reader) int64 {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, _ := io.CopyBuffer(dst, src, *bp)
	return n
}
