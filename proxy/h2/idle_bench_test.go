package h2

import (
	"net"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// BenchmarkIdleConnections measures what an idle HTTP/2 connection costs
// the proxy: 2,000 clients finish the handshake (preface, SETTINGS both
// ways) and then send nothing. It reports the heap and goroutine stacks
// the server holds per connection, measured after a GC.
func BenchmarkIdleConnections(b *testing.B) {
	const conns = 2000
	handshake := []byte(http2.ClientPreface)
	handshake = append(handshake, 0, 0, 0, 4, 0, 0, 0, 0, 0) // SETTINGS
	handshake = append(handshake, 0, 0, 0, 4, 1, 0, 0, 0, 0) // SETTINGS ACK
	p := okProxy(b, okHandler, proxyOpts{})
	for range b.N {
		before := memInUse()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		var cs []net.Conn
		for range conns {
			c, err := net.Dial("tcp", p.addr)
			if err != nil {
				b.Fatal(err)
			}
			cs = append(cs, c)
			// Preface, an empty SETTINGS and the ACK of the server's, as
			// raw bytes: the client side costs next to nothing here.
			if _, err := c.Write(handshake); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for p.srv.Stats().Conns < conns && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(writerLinger + 200*time.Millisecond) // the ACKs are read, the writers idle out
		// and, where parking works, the readers park.
		for parkable := runtime.GOOS == "linux"; parkable && p.srv.Stats().Parked < conns && time.Now().Before(deadline.Add(2*parkAfter)); {
			time.Sleep(10 * time.Millisecond)
		}
		b.ReportMetric(float64(p.srv.Stats().Parked), "parked")
		after := memInUse()
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(after-before)/conns, "B/conn")
		b.ReportMetric(float64(int64(ms1.StackInuse)-int64(ms0.StackInuse))/conns, "stackB/conn")
		for _, c := range cs {
			c.Close()
		}
	}
}

// memInUse is the heap in use plus goroutine stacks, after two GCs (the
// second empties the pools' victim caches).
func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}
