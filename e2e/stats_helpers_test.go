package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"

	"github.com/sightline-proxy/sightline/internal/backend"
)

// The stats tests run the proxy with every kind of push sink pointed at
// receivers of their own: a plain statsd agent over UDP, a DogStatsD agent
// over TCP, and OTLP collectors over gRPC and HTTP. The receivers keep
// everything they were sent, so a test can check the whole history (a stat
// that was never sent) as well as the totals.

const (
	// statsCluster has dots, so that a sink that takes a tag back out of a
	// flat name by splitting on dots gets it wrong.
	statsCluster = "api.example.com"
	// statsPlainPrefix and statsDogPrefix are the two statsd sinks'
	// prefixes.
	statsPlainPrefix = "sightline"
	statsDogPrefix   = "dd"
	// statsFlushTimeout bounds a wait for the sinks to show a value: many
	// flushes at 200ms, on a slow shared machine.
	statsFlushTimeout = 15 * time.Second
)

// statsExclude are the stats.exclude expressions of every stats test: the
// cluster's own upstream_rq_time (but not the zone pairs' or the gRPC
// methods' upstream_rq_time, which end the same way) and every listener's
// downstream_rq_time.
var statsExclude = []string{
	`^cluster\.api\.example\.com\.upstream_rq_time$`,
	`^http\..*\.downstream_rq_time$`,
}

// statsEnv is a proxy with every sink, its receivers and its backends.
type statsEnv struct {
	p          *proxy
	plain, dog *statsdReceiver
	otlpGRPC   *otlpReceiver
	otlpHTTP   *otlpReceiver
	zoneA      []*backend.Backend
	zoneB      []*backend.Backend
	client     testgrpc.TestServiceClient
}

// startStatsEnv starts the receivers, two backends in zone-a and two in
// zone-b, and a proxy (node zone-a) flushing every flushInterval whose only
// cluster, api.example.com, balances over the four round robin.
func startStatsEnv(t *testing.T, flushInterval string) *statsEnv {
	t.Helper()
	e := &statsEnv{
		plain:    startStatsdUDP(t),
		dog:      startStatsdTCP(t),
		otlpGRPC: startOTLPGRPC(t),
		otlpHTTP: startOTLPHTTP(t),
	}
	for i := 0; i < 2; i++ {
		e.zoneA = append(e.zoneA, startStatsBackend(t, fmt.Sprintf("a-%d", i+1), "zone-a"))
		e.zoneB = append(e.zoneB, startStatsBackend(t, fmt.Sprintf("b-%d", i+1), "zone-b"))
	}
	var eps []string
	for i := range e.zoneA {
		eps = append(eps, fmt.Sprintf("{address: %q, zone: zone-a}", e.zoneA[i].Addr))
		eps = append(eps, fmt.Sprintf("{address: %q, zone: zone-b}", e.zoneB[i].Addr))
	}
	quoted := make([]string, len(statsExclude))
	for i, x := range statsExclude {
		quoted[i] = "'" + x + "'"
	}
	cfg := fmt.Sprintf(`node: {id: e2e, zone: zone-a}
server: {drain_time: 1ms, drain_timeout: 3s}
stats:
  flush_interval: %s
  exclude: [%s]
  sinks:
    - statsd: {address: %q, prefix: %s, protocol: udp, tags: none}
    - statsd: {address: %q, prefix: %s, protocol: tcp, tags: dogstatsd}
    - otlp: {endpoint: %q, protocol: grpc, insecure: true}
    - otlp: {endpoint: %q, protocol: http, insecure: true}
listeners:
  - name: ingress
    address: 127.0.0.1:0
    virtual_hosts:
      - name: all
        domains: ['*']
        routes:
          - match: {prefix: /}
            cluster: %s
clusters:
  - name: %s
    lb_policy: round_robin
    endpoints: [%s]
`, flushInterval, strings.Join(quoted, ", "),
		e.plain.addr, statsPlainPrefix, e.dog.addr, statsDogPrefix,
		e.otlpGRPC.endpoint, e.otlpHTTP.endpoint,
		statsCluster, statsCluster, strings.Join(eps, ", "))
	e.p = startProxy(t, cfg)
	e.client = testClient(t, e.p.listener("ingress"))
	return e
}

func startStatsBackend(t *testing.T, name, zone string) *backend.Backend {
	t.Helper()
	b, err := backend.Start("127.0.0.1:0", name, zone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// unaryCalls makes n successful UnaryCalls from 8 goroutines.
func (e *statsEnv) unaryCalls(t *testing.T, n int) {
	t.Helper()
	errs, failed := runParallel(n, 8, func(int) error {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		_, err := e.client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 8})
		return err
	})
	if failed > 0 {
		t.Fatalf("%d of %d UnaryCalls failed; first errors: %v", failed, n, errs)
	}
}

// zoneCalls returns how many calls the backends of each zone served.
func (e *statsEnv) zoneCalls() (a, b int64) {
	for _, x := range e.zoneA {
		a += x.Calls()
	}
	for _, x := range e.zoneB {
		b += x.Calls()
	}
	return a, b
}

// ---- /stats ----

// statsText GETs /stats with query (e.g. "?filter=x") and returns its lines
// as name → value, failing on a line that is not "name: value" or a name
// given twice.
func statsText(t *testing.T, p *proxy, query string) (map[string]string, []string) {
	t.Helper()
	status, body := p.adminGet("/stats" + query)
	if status != http.StatusOK {
		t.Fatalf("GET /stats%s: status %d: %s", query, status, body)
	}
	out := map[string]string{}
	var names []string
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ": ")
		if !ok {
			t.Fatalf("GET /stats%s: line %q is not \"name: value\"", query, line)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("GET /stats%s: %s appears twice", query, name)
		}
		out[name] = value
		names = append(names, name)
	}
	return out, names
}

// statsInt reads an integer stat from /stats lines; ok is false when absent.
func statsInt(t *testing.T, m map[string]string, name string) (int64, bool) {
	t.Helper()
	v, ok := m[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("/stats: %s: %q is not an integer", name, v)
	}
	return n, true
}

// ---- /stats/prometheus ----

// statsPromScrape GETs /stats/prometheus with query and parses the exposition.
func statsPromScrape(t *testing.T, p *proxy, query string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	return statsPromScrapeAt(t, p, "/stats/prometheus"+query)
}

// statsPromScrapeAt scrapes the Prometheus exposition at path.
func statsPromScrapeAt(t *testing.T, p *proxy, path string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	status, body := p.adminGet(path)
	if status != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", path, status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: not a valid text exposition: %v\n%s", path, err, tail(body, 4000))
	}
	return fams, body
}

// statsPromValue returns the value of the counter or gauge of family fam whose
// labels are exactly labels.
func statsPromValue(fams map[string]*dto.MetricFamily, fam string, labels map[string]string) (float64, bool) {
	mf := fams[fam]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if !maps.Equal(got, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// statsPromHist returns the sample count and sum of the histogram series of
// family fam whose labels are exactly labels.
func statsPromHist(fams map[string]*dto.MetricFamily, fam string, labels map[string]string) (count uint64, sum float64, ok bool) {
	for _, m := range fams[fam].GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if maps.Equal(got, labels) && m.Histogram != nil {
			return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), true
		}
	}
	return 0, 0, false
}

// ---- statsd ----

// statsdLine is one statsd line: name:value|type[|@rate][|#tags].
type statsdLine struct {
	name  string
	value float64
	typ   string
	rate  float64
	tags  map[string]string
	// signed is a gauge value with a sign: a change, not a value.
	signed bool
}

// statsdReceiver is a statsd agent that keeps every line it was sent.
type statsdReceiver struct {
	addr string

	mu    sync.Mutex
	lines []statsdLine
	bad   []string
}

func (r *statsdReceiver) add(raw string) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return
	}
	l, err := parseStatsdLine(raw)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, fmt.Sprintf("%q: %v", raw, err))
		return
	}
	r.lines = append(r.lines, l)
}

func parseStatsdLine(raw string) (statsdLine, error) {
	l := statsdLine{rate: 1}
	name, rest, ok := strings.Cut(raw, ":")
	if !ok || name == "" {
		return l, fmt.Errorf("no name")
	}
	l.name = name
	parts := strings.Split(rest, "|")
	if len(parts) < 2 {
		return l, fmt.Errorf("no type")
	}
	v, err := strconv.ParseFloat(parts[0], 64)
	if err != nil {
		return l, fmt.Errorf("value: %v", err)
	}
	l.value, l.typ = v, parts[1]
	l.signed = strings.HasPrefix(parts[0], "+") || strings.HasPrefix(parts[0], "-")
	switch l.typ {
	case "c", "g", "ms", "h", "d":
	default:
		return l, fmt.Errorf("unknown type %q", l.typ)
	}
	for _, p := range parts[2:] {
		switch {
		case strings.HasPrefix(p, "@"):
			l.rate, err = strconv.ParseFloat(p[1:], 64)
			if err != nil || l.rate <= 0 || l.rate > 1 {
				return l, fmt.Errorf("bad sample rate %q", p)
			}
		case strings.HasPrefix(p, "#"):
			l.tags = map[string]string{}
			for _, kv := range strings.Split(p[1:], ",") {
				k, v, _ := strings.Cut(kv, ":")
				l.tags[k] = v
			}
		default:
			return l, fmt.Errorf("unknown field %q", p)
		}
	}
	return l, nil
}

// startStatsdUDP runs a statsd agent on a UDP socket of its own.
func startStatsdUDP(t *testing.T) *statsdReceiver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	r := &statsdReceiver{addr: pc.LocalAddr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				r.add(line)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return r
}

// startStatsdTCP runs a statsd agent on a TCP listener of its own: lines
// separated by newlines, over any number of connections.
func startStatsdTCP(t *testing.T) *statsdReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &statsdReceiver{addr: ln.Addr().String()}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc := bufio.NewScanner(c)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for sc.Scan() {
					r.add(sc.Text())
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return r
}

// snapshot returns the lines received so far and the lines that did not
// parse.
func (r *statsdReceiver) snapshot() ([]statsdLine, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines), slices.Clone(r.bad)
}

// counterSum adds up the deltas of counter name with exactly tags (nil for
// plain statsd), each scaled by its sample rate.
func (r *statsdReceiver) counterSum(name string, tags map[string]string) int64 {
	lines, _ := r.snapshot()
	var sum float64
	for _, l := range lines {
		if l.typ == "c" && l.name == name && statsdTagsEqual(l.tags, tags) {
			sum += l.value / l.rate
		}
	}
	return int64(sum + 0.5)
}

// gauge returns the value of gauge name with exactly tags as an agent
// keeps it, a signed value being a change; -1 when it never arrived.
func (r *statsdReceiver) gauge(name string, tags map[string]string) int64 {
	lines, _ := r.snapshot()
	v, seen := 0.0, false
	for _, l := range lines {
		if l.typ != "g" || l.name != name || !statsdTagsEqual(l.tags, tags) {
			continue
		}
		if l.signed {
			v += l.value
		} else {
			v = l.value
		}
		seen = true
	}
	if !seen {
		return -1
	}
	return int64(v)
}

// samples counts the timing samples of histogram name whose tags include
// tags (nil: any), each line standing for 1/rate samples.
func (r *statsdReceiver) samples(name string, tags map[string]string) int64 {
	lines, _ := r.snapshot()
	var n float64
	for _, l := range lines {
		if (l.typ == "ms" || l.typ == "d" || l.typ == "h") && l.name == name && statsTagsInclude(l.tags, tags) {
			n += 1 / l.rate
		}
	}
	return int64(n + 0.5)
}

// linesMatching returns every line received whose name satisfies match,
// rendered for a failure message.
func (r *statsdReceiver) linesMatching(match func(statsdLine) bool) []string {
	lines, _ := r.snapshot()
	var out []string
	for _, l := range lines {
		if match(l) {
			out = append(out, fmt.Sprintf("%s:%g|%s tags=%v", l.name, l.value, l.typ, l.tags))
		}
	}
	return out
}

func statsdTagsEqual(got, want map[string]string) bool {
	if len(got) == 0 && len(want) == 0 {
		return true
	}
	return maps.Equal(got, want)
}

func statsTagsInclude(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// ---- OTLP ----

// otlpPoint is the newest data point of one series an OTLP receiver saw.
type otlpPoint struct {
	kind       string // sum, gauge, histogram
	time       uint64
	value      int64   // sum and gauge
	count      uint64  // histogram
	sum        float64 // histogram
	monotonic  bool
	cumulative bool
	attrs      map[string]string
}

// otlpReceiver is an OTLP metrics collector that keeps the newest data
// point of every series and the name of every metric it was sent.
type otlpReceiver struct {
	endpoint string

	mu       sync.Mutex
	exports  int
	names    map[string]bool
	points   map[string]*otlpPoint // by otlpSeriesKey
	resource map[string]string     // of the newest export
	bad      []string
}

func newOTLPReceiver() *otlpReceiver {
	return &otlpReceiver{names: map[string]bool{}, points: map[string]*otlpPoint{}}
}

// otlpSeriesKey names one series: the metric name and its sorted attributes.
func otlpSeriesKey(name string, attrs map[string]string) string {
	keys := slices.Sorted(maps.Keys(attrs))
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, attrs[k])
	}
	b.WriteByte('}')
	return b.String()
}

func otlpAttrs(kvs []*commonpb.KeyValue) map[string]string {
	out := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		out[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return out
}

func (r *otlpReceiver) record(req *collectormetrics.ExportMetricsServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exports++
	keep := func(name string, p *otlpPoint) {
		k := otlpSeriesKey(name, p.attrs)
		if old := r.points[k]; old == nil || p.time >= old.time {
			r.points[k] = p
		}
	}
	for _, rm := range req.GetResourceMetrics() {
		r.resource = otlpAttrs(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				r.names[m.GetName()] = true
				switch {
				case m.GetSum() != nil:
					s := m.GetSum()
					for _, dp := range s.GetDataPoints() {
						keep(m.GetName(), &otlpPoint{
							kind: "sum", time: dp.GetTimeUnixNano(), value: dp.GetAsInt(),
							monotonic:  s.GetIsMonotonic(),
							cumulative: s.GetAggregationTemporality() == 2, // CUMULATIVE
							attrs:      otlpAttrs(dp.GetAttributes()),
						})
					}
				case m.GetGauge() != nil:
					for _, dp := range m.GetGauge().GetDataPoints() {
						keep(m.GetName(), &otlpPoint{kind: "gauge", time: dp.GetTimeUnixNano(), value: dp.GetAsInt(), attrs: otlpAttrs(dp.GetAttributes())})
					}
				case m.GetHistogram() != nil:
					h := m.GetHistogram()
					for _, dp := range h.GetDataPoints() {
						var bucketTotal uint64
						for _, n := range dp.GetBucketCounts() {
							bucketTotal += n
						}
						if bucketTotal != dp.GetCount() {
							r.bad = append(r.bad, fmt.Sprintf("%s: bucket counts add up to %d, count is %d", m.GetName(), bucketTotal, dp.GetCount()))
						}
						keep(m.GetName(), &otlpPoint{
							kind: "histogram", time: dp.GetTimeUnixNano(), count: dp.GetCount(), sum: dp.GetSum(),
							cumulative: h.GetAggregationTemporality() == 2,
							attrs:      otlpAttrs(dp.GetAttributes()),
						})
					}
				default:
					r.bad = append(r.bad, fmt.Sprintf("%s: unexpected data type %T", m.GetName(), m.GetData()))
				}
			}
		}
	}
}

// point returns the newest data point of a series.
func (r *otlpReceiver) point(name string, attrs map[string]string) (otlpPoint, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.points[otlpSeriesKey(name, attrs)]
	if p == nil {
		return otlpPoint{}, false
	}
	return *p, true
}

// counter returns the newest value of a counter (cumulative) or gauge
// series, -1 when it never arrived.
func (r *otlpReceiver) counter(name string, attrs map[string]string) int64 {
	p, ok := r.point(name, attrs)
	if !ok {
		return -1
	}
	return p.value
}

// histCount adds up the newest counts of every series of histogram name
// whose attributes include attrs.
func (r *otlpReceiver) histCount(name string, attrs map[string]string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n uint64
	prefix := name + "{"
	for k, p := range r.points {
		if strings.HasPrefix(k, prefix) && p.kind == "histogram" && statsTagsInclude(p.attrs, attrs) {
			n += p.count
		}
	}
	return n
}

// seen reports whether a metric of that name ever arrived.
func (r *otlpReceiver) seen(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.names[name]
}

func (r *otlpReceiver) state() (exports int, resource map[string]string, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.exports, maps.Clone(r.resource), slices.Clone(r.bad)
}

type otlpService struct {
	collectormetrics.UnimplementedMetricsServiceServer
	r *otlpReceiver
}

func (s *otlpService) Export(_ context.Context, req *collectormetrics.ExportMetricsServiceRequest) (*collectormetrics.ExportMetricsServiceResponse, error) {
	s.r.record(req)
	return &collectormetrics.ExportMetricsServiceResponse{}, nil
}

// startOTLPGRPC runs the collector's gRPC MetricsService.
func startOTLPGRPC(t *testing.T) *otlpReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newOTLPReceiver()
	r.endpoint = ln.Addr().String()
	srv := grpc.NewServer()
	collectormetrics.RegisterMetricsServiceServer(srv, &otlpService{r: r})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return r
}

// startOTLPHTTP runs an OTLP/HTTP collector: protobuf POSTs to /v1/metrics.
func startOTLPHTTP(t *testing.T) *otlpReceiver {
	t.Helper()
	r := newOTLPReceiver()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		fail := func(msg string) {
			r.mu.Lock()
			r.bad = append(r.bad, msg)
			r.mu.Unlock()
			http.Error(w, msg, http.StatusBadRequest)
		}
		if req.Method != http.MethodPost || req.URL.Path != "/v1/metrics" {
			fail(fmt.Sprintf("%s %s: want POST /v1/metrics", req.Method, req.URL.Path))
			return
		}
		if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
			fail(fmt.Sprintf("Content-Type %q: want application/x-protobuf", ct))
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				fail(err.Error())
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			fail(err.Error())
			return
		}
		var export collectormetrics.ExportMetricsServiceRequest
		if err := proto.Unmarshal(b, &export); err != nil {
			fail("decoding the export: " + err.Error())
			return
		}
		r.record(&export)
		resp, _ := proto.Marshal(&collectormetrics.ExportMetricsServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = io.Copy(w, bytes.NewReader(resp))
	}))
	t.Cleanup(srv.Close)
	r.endpoint = srv.Listener.Addr().String()
	return r
}
