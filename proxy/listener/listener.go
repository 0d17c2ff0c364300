// Package listener serves one configured downstream socket with net/http:
// HTTP/1.1 and prior-knowledge HTTP/2 (h2c) on the same plaintext port, or
// TLS with ALPN choosing h2 or http/1.1.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/stats"
)

// Listener is one running downstream socket.
type Listener struct {
	Name string
	cfg  config.Listener
	srv  *http.Server
	ln   net.Listener
	tls  bool
	log  zerolog.Logger
	done chan struct{}
}

// Stats are the connection stats a listener keeps.
type Stats struct {
	Listener *stats.Listener // listener.<address>.downstream_cx_*
	HTTP     *stats.HTTP     // http.<stat_prefix>.downstream_cx_*
}

// New prepares a listener; Start binds it. It does no I/O beyond reading
// the TLS key pair.
func New(cfg config.Listener, handler http.Handler, st Stats, lg zerolog.Logger) (*Listener, error) {
	l := &Listener{Name: cfg.Name, cfg: cfg, log: lg.With().Str("listener", cfg.Name).Logger(), done: make(chan struct{})}
	protos := new(http.Protocols)
	for _, p := range cfg.Protocols {
		switch p {
		case "http1":
			protos.SetHTTP1(true)
		case "h2c":
			protos.SetUnencryptedHTTP2(true)
		case "h2":
			protos.SetHTTP2(true)
		}
	}
	lim := cfg.Limits
	l.srv = &http.Server{
		Handler:           capRequests(handler, lim.MaxRequestsPerConnection),
		Protocols:         protos,
		ReadHeaderTimeout: lim.HeaderReadTimeout.D(),
		IdleTimeout:       lim.IdleTimeout.D(),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          lim.MaxConcurrentStreams,
			MaxDecoderHeaderTableSize:     4096,
			MaxReceiveBufferPerConnection: 4 << 20,
			MaxReceiveBufferPerStream:     1 << 20,
		},
		ErrorLog:  log.New(zerologWriter{l.log}, "", 0),
		ConnState: countConns(st),
	}
	if lim.MaxRequestsPerConnection > 0 {
		l.srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, connCounterKey{}, new(atomic.Int64))
		}
	}
	if cfg.TLS != nil {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("listener %s: loading TLS key pair: %w", cfg.Name, err)
		}
		l.tls = true
		var alpn []string
		if protos.HTTP2() {
			alpn = append(alpn, "h2")
		}
		if protos.HTTP1() {
			alpn = append(alpn, "http/1.1")
		}
		l.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: alpn, MinVersion: tls.VersionTLS12}
	}
	return l, nil
}

// Start binds the socket and serves in the background.
func (l *Listener) Start() error {
	ln, err := net.Listen("tcp", l.cfg.Address)
	if err != nil {
		return fmt.Errorf("listener %s: %w", l.cfg.Name, err)
	}
	l.ln = ln
	go func() {
		defer close(l.done)
		var err error
		if l.tls {
			err = l.srv.ServeTLS(ln, "", "")
		} else {
			err = l.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error().Err(err).Msg("listener stopped")
		}
	}()
	l.log.Info().Str("address", ln.Addr().String()).Strs("protocols", l.cfg.Protocols).Msg("listening")
	return nil
}

// Addr returns the bound address ("127.0.0.1:10000"), useful when the config
// asked for port 0.
func (l *Listener) Addr() string {
	if l.ln == nil {
		return l.cfg.Address
	}
	return l.ln.Addr().String()
}

// TLS reports whether the listener terminates TLS.
func (l *Listener) TLS() bool { return l.tls }

// Shutdown stops accepting, sends GOAWAY on every HTTP/2 connection, closes
// idle HTTP/1.1 connections, and waits for in-flight requests until ctx ends;
// then it closes what is left.
func (l *Listener) Shutdown(ctx context.Context) error {
	err := l.srv.Shutdown(ctx)
	if err != nil {
		l.srv.Close()
	}
	if l.ln != nil {
		<-l.done
	}
	return err
}

// countConns keeps the downstream connection stats from net/http's
// connection state changes: every connection is new once and closed (or
// hijacked) once.
func countConns(st Stats) func(net.Conn, http.ConnState) {
	return func(_ net.Conn, cs http.ConnState) {
		switch cs {
		case http.StateNew:
			st.Listener.DownstreamCxTotal.Inc(1)
			st.Listener.DownstreamCxActive.Inc()
			st.HTTP.DownstreamCxTotal.Inc(1)
			st.HTTP.DownstreamCxActive.Inc()
		case http.StateClosed, http.StateHijacked:
			st.Listener.DownstreamCxActive.Dec()
			st.HTTP.DownstreamCxActive.Dec()
		}
	}
}

type connCounterKey struct{}

// capRequests closes a connection gracefully after max requests (0: never).
// "Connection: close" makes net/http end an HTTP/1.1 connection after the
// response and start a graceful GOAWAY on an HTTP/2 one.
func capRequests(h http.Handler, max int) http.Handler {
	if max <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, ok := r.Context().Value(connCounterKey{}).(*atomic.Int64); ok && n.Add(1) >= int64(max) {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// zerologWriter sends net/http's server log lines (TLS handshake errors and
// the like) to the listener's logger at debug level: they are about clients,
// not about the proxy.
type zerologWriter struct{ log zerolog.Logger }

func (z zerologWriter) Write(p []byte) (int, error) {
	z.log.Debug().Msg(string(trimNewline(p)))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}
