package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// victimResult is what a victim run writes: the latency of its successful
// calls and its failures by gRPC code.
type victimResult struct {
	Label    string         `json:"label"`
	Seconds  float64        `json:"seconds"`
	Calls    int            `json:"calls"`
	OK       int            `json:"ok"`
	Failures map[string]int `json:"failures,omitempty"`
	FirstErr string         `json:"first_error,omitempty"`
	P50Ms    float64        `json:"p50_ms"`
	P99Ms    float64        `json:"p99_ms"`
	MaxMs    float64        `json:"max_ms"`
}

// runVictim makes EmptyCalls through the proxy on one grpc-go connection
// at a fixed rate (open loop: a slow call does not delay the next one).
func runVictim(args []string) error {
	fs := flag.NewFlagSet("victim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18100", "the proxy's h2c listener")
	rate := fs.Int("rate", 100, "calls per second")
	d := fs.Duration("d", 20*time.Second, "how long to call")
	timeout := fs.Duration("timeout", time.Second, "deadline of each call")
	label := fs.String("label", "", "name of the run, for the report")
	out := fs.String("out", "", "write the result (JSON) here; default stdout")
	trace := fs.String("trace", "", "also write one line per successful call here: its start in seconds from the run's start, and its latency in ms")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cc, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	// One call that waits for the connection, not counted.
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, _ = client.EmptyCall(wctx, &testgrpc.Empty{}, grpc.WaitForReady(true))
	wcancel()

	var (
		mu   sync.Mutex
		lat  []time.Duration
		at   []time.Duration // when each call of lat started
		res  = victimResult{Label: *label, Failures: map[string]int{}}
		wg   sync.WaitGroup
		tick = time.NewTicker(time.Second / time.Duration(*rate))
	)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < *d {
		<-tick.C
		wg.Add(1)
		res.Calls++
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), *timeout)
			defer cancel()
			t0 := time.Now()
			_, err := client.EmptyCall(ctx, &testgrpc.Empty{})
			el := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				st := status.Convert(err)
				res.Failures[st.Code().String()]++
				if res.FirstErr == "" {
					res.FirstErr = fmt.Sprintf("at %.1f s: %s", time.Since(start).Seconds(), trim(st.Message(), 100))
				}
				return
			}
			lat = append(lat, el)
			at = append(at, t0.Sub(start))
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.OK = len(lat)
	if len(res.Failures) == 0 {
		res.Failures = nil
	}
	if *trace != "" {
		if err := writeTrace(*trace, at, lat); err != nil {
			return err
		}
	}
	if len(lat) > 0 {
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		ms := func(q float64) float64 {
			i := min(int(q*float64(len(lat))), len(lat)-1)
			return float64(lat[i].Microseconds()) / 1000
		}
		res.P50Ms, res.P99Ms, res.MaxMs = ms(0.50), ms(0.99), float64(lat[len(lat)-1].Microseconds())/1000
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(*out, b, 0o644)
}

// writeTrace writes each call's start and latency, to see when in a run
// the slow calls were.
func writeTrace(path string, at, lat []time.Duration) error {
	var b []byte
	for i := range lat {
		b = fmt.Appendf(b, "%.3f %.3f\n", at[i].Seconds(), float64(lat[i].Microseconds())/1000)
	}
	return os.WriteFile(path, b, 0o644)
}
