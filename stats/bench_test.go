package stats

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// request counts one proxied gRPC call the way the data path will: the
// downstream, cluster, zone pair and method stats, start to end.
func request(h *HTTP, c *Cluster, z *ZonePair, d time.Duration) {
	h.DownstreamRqTotal.Inc(1)
	h.DownstreamRqActive.Inc()
	up := c.Upstream()
	up.RqTotal.Inc(1)
	up.RqActive.Inc()
	m := c.GRPC("/grpc.testing.TestService/UnaryCall")

	up.RqActive.Dec()
	up.RqCompleted(200)
	up.RqTime.RecordDuration(d)
	zu := z.Upstream()
	zu.RqCompleted(200)
	zu.RqTime.RecordDuration(d)
	m.Completed(0)
	m.RqTime.RecordDuration(d)
	h.DownstreamRqActive.Dec()
	h.RqCompleted(200)
	h.DownstreamRqTime.RecordDuration(d)
}

// BenchmarkRequestPath measures what the stats of one request cost the
// data path, with every stat on and with every stat excluded, serially and
// from all cores at once.
func BenchmarkRequestPath(b *testing.B) {
	for _, bc := range []struct {
		name    string
		exclude []string
	}{
		{"all", nil},
		{"excluded", []string{"."}},
	} {
		s, _ := newStore(b, config.Stats{Exclude: bc.exclude}, Options{})
		h, c := s.HTTP("ingress"), s.Cluster("primary")
		z := c.Zone("zone-b")
		request(h, c, z, time.Millisecond) // first sightings happen once, outside the loop
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				request(h, c, z, time.Duration(i%5000)*time.Microsecond)
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					request(h, c, z, 700*time.Microsecond)
				}
			})
		})
	}
}

func BenchmarkCounterInc(b *testing.B) {
	s, _ := newStore(b, config.Stats{}, Options{})
	c := s.Cluster("primary").Upstream().RqTotal
	b.ReportAllocs()
	for b.Loop() {
		c.Inc(1)
	}
}

// BenchmarkClusterMemory builds 10,000 clusters and reports the heap each
// costs: idle (built, never used), per host zone (a zone pair handle, which
// every host of the zone shares), and once a request has gone through.
func BenchmarkClusterMemory(b *testing.B) {
	const clusters = 10_000
	for b.Loop() {
		s, _ := newStore(b, config.Stats{}, Options{})
		names := make([]string, clusters)
		for i := range names {
			names[i] = "cluster-" + strconv.Itoa(i)
		}
		h := s.HTTP("ingress")

		base := heap()
		cs := make([]*Cluster, clusters)
		for i, n := range names {
			cs[i] = s.Cluster(n)
		}
		idle := heap()
		zs := make([]*ZonePair, clusters)
		for i, c := range cs {
			zs[i] = c.Zone("zone-b")
		}
		zoned := heap()
		for i, c := range cs {
			request(h, c, zs[i], time.Millisecond)
		}
		used := heap()

		b.ReportMetric(float64(idle-base)/clusters, "B/idle-cluster")
		b.ReportMetric(float64(zoned-idle)/clusters, "B/host-zone")
		b.ReportMetric(float64(used-zoned)/clusters, "B/used-cluster")
		runtime.KeepAlive(cs)
		runtime.KeepAlive(zs)
	}
}

func heap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkStatsHandler: /stats with 1,000 clusters that served traffic,
// all of it, as JSON, and one stat of each cluster by a filter. What it
// allocates is what a request for it holds (B/op).
func BenchmarkStatsHandler(b *testing.B) {
	s, _ := newStore(b, config.Stats{}, Options{})
	for i := range 1000 {
		c := s.Cluster(fmt.Sprintf("cluster-%d", i))
		up := c.Upstream()
		up.RqTotal.Inc(1)
		up.RqTime.RecordDuration(time.Millisecond)
		c.SetMembership(2, 2)
	}
	for _, target := range []string{"/stats", "/stats?format=json", `/stats?filter=^cluster\..*\.upstream_cx_active$`} {
		b.Run(target, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			b.ReportAllocs()
			for b.Loop() {
				s.Handler().ServeHTTP(nullWriter{}, req)
			}
		})
	}
}

// nullWriter is a ResponseWriter that keeps nothing.
type nullWriter struct{}

func (nullWriter) Header() http.Header         { return http.Header{} }
func (nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nullWriter) WriteHeader(int)             {}
