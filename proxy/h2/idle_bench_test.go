package h2

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/sightline-proxy/sightline/proxy/config"
)

// BenchmarkIdleConnections measures what an idle HTTP/2 connection costs
// the proxy: 2,000 clients finish the handshake (preface, SETTINGS both
// ways) and then send nothing, over h2c or over TLS. It reports the heap
// and goroutine stacks the server holds per connection, measured after a
// GC. The TLS clients run in a process of their own (idleTLSClients), so
// that their crypto/tls state is not counted as the server's.
func BenchmarkIdleConnections(b *testing.B) {
	b.Run("h2c", func(b *testing.B) { benchIdle(b, false) })
	b.Run("tls", func(b *testing.B) { benchIdle(b, true) })
}

const idleConns = 2000

// idleHandshake is a client's preface, an empty SETTINGS and the ACK of
// the server's, as raw bytes: the client side costs next to nothing.
var idleHandshake = append([]byte(http2.ClientPreface),
	0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS
	0, 0, 0, 4, 1, 0, 0, 0, 0) // SETTINGS ACK

func benchIdle(b *testing.B, useTLS bool) {
	// Clients that never ask for anything are closed after the header
	// read timeout: not while they are measured.
	p := okProxy(b, okHandler, proxyOpts{tls: useTLS, limits: config.Limits{HeaderReadTimeout: config.Duration(time.Minute)}})
	for range b.N {
		before := memInUse()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		closeClients := openIdle(b, p.addr, useTLS)
		deadline := time.Now().Add(10 * time.Second)
		for p.srv.Stats().Conns < idleConns && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(writerLinger + 200*time.Millisecond) // the ACKs are read, the writers idle out
		// and, where parking works, the readers park.
		for parkable := runtime.GOOS == "linux"; parkable && p.srv.Stats().Parked < idleConns && time.Now().Before(deadline.Add(2*parkAfter)); {
			time.Sleep(10 * time.Millisecond)
		}
		b.ReportMetric(float64(p.srv.Stats().Parked), "parked")
		after := memInUse()
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(after-before)/idleConns, "B/conn")
		b.ReportMetric(float64(int64(ms1.StackInuse)-int64(ms0.StackInuse))/idleConns, "stackB/conn")
		closeClients()
	}
}

// openIdle opens idleConns idle clients to addr and returns what closes
// them: in this process over h2c, in a child process over TLS.
func openIdle(b *testing.B, addr string, useTLS bool) (closeAll func()) {
	if !useTLS {
		var cs []net.Conn
		for range idleConns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			cs = append(cs, c)
			if _, err := c.Write(idleHandshake); err != nil {
				b.Fatal(err)
			}
		}
		return func() {
			for _, c := range cs {
				c.Close()
			}
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), idleClientsEnv+"="+addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("idle TLS clients: %q, %v", line, err)
	}
	return func() {
		stdin.Close()
		cmd.Wait()
	}
}

// idleClientsEnv names the address a test binary started as the idle TLS
// clients of BenchmarkIdleConnections connects to (TestMain).
const idleClientsEnv = "H2_IDLE_TLS_CLIENTS"

// idleTLSClients is that process: it opens idleConns TLS connections
// (ALPN h2) to addr, sends each its handshake, says "ready", and holds
// them until its standard input closes.
func idleTLSClients(addr string) {
	var cs []net.Conn
	for range idleConns {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err == nil {
			_, err = c.Write(idleHandshake)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "idle TLS client:", err)
			os.Exit(1)
		}
		cs = append(cs, c)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range cs {
		c.Close()
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
