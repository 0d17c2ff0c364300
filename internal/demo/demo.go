// Package demo runs the one-command first look at Sightline: the proxy in
// front of four sample gRPC backends in two zones, with a light stream of
// calls through it, and a line a few seconds showing where the calls went.
package demo

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/sightline-proxy/sightline/internal/backend"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/server"
)

// Options configure the demo.
type Options struct {
	Listen string // the proxy listener, e.g. 127.0.0.1:10000
	Admin  string // the admin server, e.g. 127.0.0.1:9901
	Out    io.Writer
	Log    zerolog.Logger
	// Every is how often a summary line is printed (default 3s).
	Every time.Duration
	// Rate is calls per second of the traffic loop (default 20).
	Rate int
}

// Run starts everything and blocks until ctx is done, then stops it all.
func Run(ctx context.Context, o Options) error {
	if o.Every <= 0 {
		o.Every = 3 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 20
	}
	zones := []string{"zone-a", "zone-a", "zone-b", "zone-b"}
	var backends []*backend.Backend
	defer func() {
		for _, b := range backends {
			b.Stop()
		}
	}()
	for i, z := range zones {
		b, err := backend.Start("127.0.0.1:0", fmt.Sprintf("backend-%d", i+1), z)
		if err != nil {
			return err
		}
		backends = append(backends, b)
	}

	dir, err := os.MkdirTemp("", "sightline-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(path, []byte(configYAML(o, backends)), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	srv, err := server.New(cfg, o.Log)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()

	proxyAddr := srv.ListenerAddr("ingress")
	fmt.Fprintf(o.Out, `Sightline demo
  gRPC/HTTP listener  http://%s   (h2c and HTTP/1.1; try: grpcurl -plaintext %s list)
  status page         http://%s/   (open it in a browser; also /clusters, /stats, /config_dump, /server_info)
  backends            %s
Calls go through one client connection; the proxy balances each call on its own. Ctrl-C stops.
`, proxyAddr, proxyAddr, srv.AdminAddr(), describe(backends))

	conn, err := grpc.NewClient(proxyAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := testgrpc.NewTestServiceClient(conn)

	var ok, failed atomic.Int64
	tick := time.NewTicker(time.Second / time.Duration(o.Rate))
	defer tick.Stop()
	report := time.NewTicker(o.Every)
	defer report.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			fmt.Fprintln(o.Out, "stopping")
			return nil
		case <-report.C:
			fmt.Fprintf(o.Out, "%s calls ok=%d failed=%d | %s\n", time.Now().Format("15:04:05"), ok.Load(), failed.Load(), perBackend(backends))
		case <-tick.C:
			go func(n int) {
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				var err error
				if n%10 == 9 {
					err = streamCall(cctx, client)
				} else {
					_, err = client.UnaryCall(cctx, &testgrpc.SimpleRequest{ResponseSize: 64})
				}
				if err != nil && ctx.Err() == nil {
					failed.Add(1)
					return
				}
				ok.Add(1)
			}(n)
		}
	}
}

// streamCall makes one server-streaming call of three messages.
func streamCall(ctx context.Context, c testgrpc.TestServiceClient) error {
	st, err := c.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 16}, {Size: 16}, {Size: 16}},
	})
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func configYAML(o Options, bs []*backend.Backend) string {
	var eps strings.Builder
	for _, b := range bs {
		fmt.Fprintf(&eps, "      - {address: %s, zone: %s}\n", b.Addr, b.Zone)
	}
	return fmt.Sprintf(`node: {id: demo, zone: zone-a}
admin: {address: %q}
listeners:
  - name: ingress
    address: %q
    virtual_hosts:
      - name: demo
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: demo
            retry_policy: {retry_on: 'connect-failure,reset,unavailable', num_retries: 2}
clusters:
  - name: demo
    lb_policy: round_robin
    health_check: {grpc: {}, interval: 1s, timeout: 500ms}
    outlier_detection: {consecutive_5xx: 5}
    endpoints:
%s`, o.Admin, o.Listen, eps.String())
}

func describe(bs []*backend.Backend) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = fmt.Sprintf("%s %s (%s)", b.Name, b.Addr, b.Zone)
	}
	return strings.Join(parts, ", ")
}

func perBackend(bs []*backend.Backend) string {
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = fmt.Sprintf("%s/%s %d", b.Name, b.Zone, b.Calls())
	}
	return strings.Join(parts, "  ")
}
