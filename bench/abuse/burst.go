package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// runBurst calls every cluster of a scale config once: the method
// /c<i>/Burst, which the config routes (prefix /c<i>/) to cluster c<i>,
// and which the backend answers UNIMPLEMENTED. The answer does not
// matter: each call goes through the proxy to a host of its cluster, so
// that every cluster has served traffic (bench/scale.sh).
func runBurst(args []string) error {
	fs := flag.NewFlagSet("burst", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:18180", "the proxy's h2c listener")
	clusters := fs.Int("clusters", 10000, "clusters c0 … c<n-1> to call")
	workers := fs.Int("c", 16, "calls in flight")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cc, err := grpc.NewClient("passthrough:///"+*addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	var (
		next  atomic.Int64
		mu    sync.Mutex
		codes = map[string]int{}
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range *workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(*clusters) {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := cc.Invoke(ctx, fmt.Sprintf("/c%d/Burst", i), &testgrpc.Empty{}, &testgrpc.Empty{})
				cancel()
				mu.Lock()
				codes[status.Code(err).String()]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	names := make([]string, 0, len(codes))
	for c := range codes {
		names = append(names, c)
	}
	sort.Strings(names)
	fmt.Printf("%d calls in %.1f s:", *clusters, time.Since(start).Seconds())
	for _, c := range names {
		fmt.Printf(" %s×%d", c, codes[c])
	}
	fmt.Println()
	return nil
}
