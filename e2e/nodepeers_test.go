package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The tests in this file put peers nobody here wrote on the other side of
// the proxy: Node.js's own http2 module and @grpc/grpc-js, run from the
// scripts in e2e/node. scripts/test.sh installs Node.js and npm where they
// are absent and runs `npm ci` there; without them these tests fail and
// say so rather than skip.

// nodeBodyBytes is the size of every body e2e/node/h2_server.js sends;
// byte i of a body is i % 251.
const nodeBodyBytes = 1 << 20

// nodeDir is the directory of the Node.js scripts and their packages.
func nodeDir() string { return filepath.Join(repoRoot, "e2e", "node") }

// requireNode fails the test unless node is on PATH and, when modules is
// set, e2e/node's npm packages are installed.
func requireNode(t *testing.T, modules bool) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH (%v): these tests need Node.js; scripts/test.sh installs it (Debian's nodejs and npm)", err)
	}
	if !modules {
		return
	}
	if _, err := os.Stat(filepath.Join(nodeDir(), "node_modules", "@grpc", "grpc-js", "package.json")); err != nil {
		t.Fatalf("@grpc/grpc-js is not installed in %s (%v): run `npm ci` there, as scripts/test.sh does", nodeDir(), err)
	}
}

// nodeProc is one node process running a script of e2e/node.
type nodeProc struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	lines  chan string   // stdout line by line, closed at EOF
	output *lockedBuffer // stdout and stderr, for failure messages
	exited chan struct{} // closed once the process has exited
}

// startNode runs `node SCRIPT ARGS...` in e2e/node. The process is killed
// when the test ends, and its output shown if the test failed.
func startNode(t *testing.T, script string, args ...string) *nodeProc {
	t.Helper()
	n := &nodeProc{
		t:      t,
		name:   script,
		lines:  make(chan string, 1024),
		output: &lockedBuffer{},
		exited: make(chan struct{}),
	}
	n.cmd = exec.Command("node", append([]string{script}, args...)...)
	n.cmd.Dir = nodeDir()
	n.cmd.Stderr = n.output
	stdout, err := n.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting node %s: %v", script, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.output.Write(append(sc.Bytes(), '\n'))
			n.lines <- sc.Text()
		}
		close(n.lines)
		n.cmd.Wait() // after the last read, as StdoutPipe asks
		close(n.exited)
	}()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			t.Logf("node %s output:\n%s", script, tail(n.output.String(), 4000))
		}
	})
	return n
}

// kill SIGKILLs the process and waits until it has exited.
func (n *nodeProc) kill() {
	n.cmd.Process.Kill()
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
		n.t.Errorf("node %s did not exit within %v of SIGKILL", n.name, stopTimeout)
	}
}

// next returns the next line of the process's stdout; it fails the test
// if none comes within timeout or the process ends its output first.
func (n *nodeProc) next(timeout time.Duration) string {
	n.t.Helper()
	select {
	case l, ok := <-n.lines:
		if !ok {
			n.t.Fatalf("node %s ended its output (%v) before the line the test waits for:\n%s", n.name, n.cmd.ProcessState, tail(n.output.String(), 4000))
		}
		return l
	case <-time.After(timeout):
		n.t.Fatalf("node %s printed nothing more within %v:\n%s", n.name, timeout, tail(n.output.String(), 4000))
	}
	return ""
}

// listening waits for the "listening PORT" line the servers print once
// they accept connections, and returns 127.0.0.1:PORT.
func (n *nodeProc) listening() string {
	n.t.Helper()
	l := n.next(readyTimeout)
	port, ok := strings.CutPrefix(l, "listening ")
	if !ok {
		n.t.Fatalf("node %s printed %q, want \"listening PORT\"", n.name, l)
	}
	return "127.0.0.1:" + port
}

// checkNodeBody fails unless b is a whole body of h2_server.js.
func checkNodeBody(b []byte) error {
	if len(b) != nodeBodyBytes {
		return fmt.Errorf("%d bytes, want %d", len(b), nodeBodyBytes)
	}
	for i, c := range b {
		if c != byte(i%251) {
			return fmt.Errorf("byte %d is %d, want %d", i, c, i%251)
		}
	}
	return nil
}

// rawNodeResponse is what one stream of a raw HTTP/2 client saw.
type rawNodeResponse struct {
	body      []byte
	endStream bool           // a DATA or HEADERS frame carried END_STREAM
	rst       *http2.ErrCode // the RST_STREAM code, if one came
}

// rawGet sends one GET for path to an h2c server and reads the response
// frame by frame, with a stream window of window bytes that it refunds
// after each DATA frame: what the server's own framing is, which a client
// library would hide. It reads until RST_STREAM, or until END_STREAM and
// then whatever RST_STREAM follows within a moment.
func rawGet(t *testing.T, addr, path string, window uint32) rawNodeResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(callTimeout))
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":path", path}, {":authority", addr}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := errors.Join(
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window}),
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hdr.Bytes(), EndHeaders: true, EndStream: true}),
	); err != nil {
		t.Fatal(err)
	}
	var r rawNodeResponse
	for {
		f, err := fr.ReadFrame()
		if r.endStream && errors.Is(err, os.ErrDeadlineExceeded) {
			return r // END_STREAM and no RST_STREAM after it
		}
		if err != nil {
			t.Fatalf("reading %s's response to GET %s after %d bytes: %v", addr, path, len(r.body), err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamEnded() {
				r.endStream = true
			}
		case *http2.DataFrame:
			r.body = append(r.body, f.Data()...)
			if n := uint32(len(f.Data())); n > 0 {
				fr.WriteWindowUpdate(0, n)
				fr.WriteWindowUpdate(1, n)
			}
			if f.StreamEnded() {
				r.endStream = true
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			}
		case *http2.RSTStreamFrame:
			code := f.ErrCode
			r.rst = &code
			return r
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v from %s after %d bytes", f.ErrCode, addr, len(r.body))
		}
	}
}

// slowH2CClient is an h2c client whose streams start with a 16 KiB window
// and whose connection has the smallest window HTTP/2 allows: the proxy
// has to hold what the client does not read yet.
func slowH2CClient() (*http.Client, *http.Transport) {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: p,
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     16 << 10,
			MaxReceiveBufferPerConnection: 65535,
		},
	}
	return &http.Client{Timeout: 2 * time.Minute, Transport: tr}, tr
}

// slowRead reads r to its end 4 KiB at a time, pausing between reads as a
// client busy with what it read would.
func slowRead(r io.Reader) ([]byte, error) {
	var out bytes.Buffer
	buf := make([]byte, 4<<10)
	for {
		n, err := r.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			return out.Bytes(), nil
		}
		if err != nil {
			return out.Bytes(), err
		}
		time.Sleep(time.Millisecond)
	}
}

// TestNodeH2ServerResetAfterBody: Node's http2 server answers with 1 MiB
// and ends each stream with RST_STREAM(NO_ERROR) instead of END_STREAM,
// which RFC 9113 §8.1 allows after a complete response. Slow HTTP/2
// clients reading several such responses at once through the proxy get
// every byte of each and a clean end, and the access log says 200 with
// the whole body. (The proxy once dropped what it had queued for the
// client at that reset and reset the client with NO_ERROR too.)
func TestNodeH2ServerResetAfterBody(t *testing.T) {
	requireNode(t, false)
	node := startNode(t, "h2_server.js")
	backend := node.listening()

	// The peer must end its streams as this test says, or the test
	// proves nothing: all the bytes, then RST_STREAM(NO_ERROR), and no
	// END_STREAM, for a client with a small window as the proxy is.
	for _, path := range []string{"/", "/sized"} {
		r := rawGet(t, backend, path, 16<<10)
		if err := checkNodeBody(r.body); err != nil {
			t.Fatalf("Node's server, directly, GET %s: body: %v", path, err)
		}
		if r.endStream || r.rst == nil || *r.rst != http2.ErrCodeNo {
			t.Fatalf("Node's server, directly, GET %s: END_STREAM %v, RST_STREAM %v; want RST_STREAM(NO_ERROR) and no END_STREAM", path, r.endStream, r.rst)
		}
	}

	logPath := filepath.Join(t.TempDir(), "access.log")
	p := startProxy(t, routedConfig{
		listener: fmt.Sprintf("access_log: [{path: %q, flush_interval: 100ms}]", logPath),
		cluster:  "protocol: http2\nendpoints: " + endpoints(backend),
	}.String())
	addr := p.listener("ingress")

	client, tr := slowH2CClient()
	defer tr.CloseIdleConnections()
	const streams = 6
	errs, _ := runParallel(streams, streams, func(i int) error {
		path := []string{"/", "/sized"}[i%2]
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("X-Request-Id", fmt.Sprintf("node-h2-%d", i))
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			return fmt.Errorf("GET %s: %s %d, want HTTP/2 200", path, resp.Proto, resp.StatusCode)
		}
		body, err := slowRead(resp.Body)
		if err != nil {
			return fmt.Errorf("GET %s: the body ended with an error after %d of %d bytes: %w", path, len(body), nodeBodyBytes, err)
		}
		if err := checkNodeBody(body); err != nil {
			return fmt.Errorf("GET %s: body: %w", path, err)
		}
		return nil
	})
	for _, err := range errs {
		t.Error(err)
	}

	// Node reset every stream it served with NO_ERROR: the two direct
	// ones and the proxy's.
	for served := 0; served < 2+streams; {
		l := node.next(callTimeout)
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "closed" {
			continue
		}
		if f[2] != "0" {
			t.Errorf("Node's server: %q, want every stream closed with code 0 (NO_ERROR)", l)
		}
		served++
	}

	for i := 0; i < streams; i++ {
		line := waitAccessLine(t, logPath, fmt.Sprintf("node-h2-%d", i))
		code, _ := line["response_code"].(float64)
		sent, _ := line["bytes_sent"].(float64)
		if code != 200 || sent != nodeBodyBytes {
			t.Errorf("access log for stream %d: response_code %v, bytes_sent %v; want 200 and %d", i, line["response_code"], line["bytes_sent"], nodeBodyBytes)
		}
		if flags := fmt.Sprint(line["response_flags"]); flags != "" && flags != "-" && flags != "<nil>" {
			t.Errorf("access log for stream %d: response_flags %q, want none", i, flags)
		}
	}
}

// The Echo service of e2e/node/echo_service.js, in grpc-go: every message
// is a google.protobuf.BytesValue.
const (
	echoUnary         = "/sightline.e2e.Echo/Unary"
	echoStream        = "/sightline.e2e.Echo/Stream"
	echoDieAfterFirst = "/sightline.e2e.Echo/DieAfterFirst"
)

var echoStreamDesc = &grpc.StreamDesc{ServerStreams: true}

// echoPattern is message i of a Stream answer, as echo_service.js makes it.
func echoPattern(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte((i*31 + j) % 251)
	}
	return b
}

// echoServer is a grpc-go server of the Echo service. DieAfterFirst sends
// response headers and one message, then waits until the test cuts the
// server's connections.
type echoServer struct {
	mu    sync.Mutex
	conns []net.Conn
	sent  chan struct{} // one value per DieAfterFirst whose message was sent
}

// startEchoServer serves Echo with grpc-go on a loopback port until the
// test ends.
func startEchoServer(t *testing.T) (*echoServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{sent: make(chan struct{}, 16)}
	srv := grpc.NewServer()
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "sightline.e2e.Echo",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Unary",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				req := new(wrapperspb.BytesValue)
				if err := dec(req); err != nil {
					return nil, err
				}
				return req, nil
			},
		}},
		Streams: []grpc.StreamDesc{
			{StreamName: "Stream", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				req := new(wrapperspb.BytesValue)
				if err := ss.RecvMsg(req); err != nil {
					return err
				}
				var count, size int
				if _, err := fmt.Sscanf(string(req.GetValue()), "%d %d", &count, &size); err != nil {
					return status.Errorf(codes.InvalidArgument, "want \"COUNT SIZE\": %v", err)
				}
				for i := 0; i < count; i++ {
					if err := ss.SendMsg(wrapperspb.Bytes(echoPattern(i, size))); err != nil {
						return err
					}
				}
				return nil
			}},
			{StreamName: "DieAfterFirst", ServerStreams: true, Handler: func(_ any, ss grpc.ServerStream) error {
				req := new(wrapperspb.BytesValue)
				if err := ss.RecvMsg(req); err != nil {
					return err
				}
				if err := ss.SendMsg(req); err != nil {
					return err
				}
				s.sent <- struct{}{}
				<-ss.Context().Done()
				return ss.Context().Err()
			}},
		},
	}, struct{}{})
	go srv.Serve(trackingListener{ln, s})
	t.Cleanup(srv.Stop)
	return s, ln.Addr().String()
}

// trackingListener notes every connection it accepts, so that the test
// can cut them as a lost host would.
type trackingListener struct {
	net.Listener
	s *echoServer
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns = append(l.s.conns, c)
		l.s.mu.Unlock()
	}
	return c, err
}

// cut closes every connection the server has accepted, under the running
// calls' feet.
func (s *echoServer) cut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// dieAfterFirst calls DieAfterFirst on conn, checks the first message, then
// calls lose (which takes the server away) and returns the call's error.
func dieAfterFirst(t *testing.T, conn *grpc.ClientConn, lose func()) error {
	t.Helper()
	ctx := callCtx(t)
	want := echoPattern(7, 1000)
	st, err := conn.NewStream(ctx, echoStreamDesc, echoDieAfterFirst)
	if err != nil {
		t.Fatalf("DieAfterFirst: %v", err)
	}
	if err := st.SendMsg(wrapperspb.Bytes(want)); err != nil {
		t.Fatalf("DieAfterFirst: sending: %v", err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	got := new(wrapperspb.BytesValue)
	if err := st.RecvMsg(got); err != nil {
		t.Fatalf("DieAfterFirst: the first message: %v", err)
	}
	if !bytes.Equal(got.GetValue(), want) {
		t.Fatalf("DieAfterFirst: the first message is %d bytes and differs from the %d sent", len(got.GetValue()), len(want))
	}
	lose()
	err = st.RecvMsg(got)
	if err == nil {
		t.Fatalf("DieAfterFirst: a second message after the server died")
	}
	return err
}

// doomedListener is a listener named doomed whose every call goes to the
// cluster doomed, for a backend that a test takes away.
const doomedListener = `- name: doomed
  address: 127.0.0.1:0
  virtual_hosts:
    - name: all
      domains: ['*']
      routes:
        - match: {prefix: /}
          cluster: doomed
`

// TestGRPCJSServerBehindProxy: a @grpc/grpc-js server behind the proxy,
// called by grpc-go. Unary and server-streaming calls come back intact, and
// a server that is killed after its response headers and one message
// leaves the client with UNAVAILABLE, as it would calling the server
// directly, not with a stream reset it would report as INTERNAL.
func TestGRPCJSServerBehindProxy(t *testing.T) {
	requireNode(t, true)
	steady := startNode(t, "grpc_server.js").listening()
	doomedDirect := startNode(t, "grpc_server.js")
	doomedDirectAddr := doomedDirect.listening()
	doomed := startNode(t, "grpc_server.js")
	doomedAddr := doomed.listening()

	p := startProxy(t, routedConfig{
		cluster:   "endpoints: " + endpoints(steady),
		listeners: doomedListener,
		clusters:  "- {name: doomed, endpoints: " + endpoints(doomedAddr) + "}\n",
	}.String())
	conn, _ := dialGRPC(t, p.listener("ingress"))

	t.Run("unary", func(t *testing.T) {
		want := echoPattern(3, 100_000)
		got := new(wrapperspb.BytesValue)
		if err := conn.Invoke(callCtx(t), echoUnary, wrapperspb.Bytes(want), got); err != nil {
			t.Fatalf("Unary: %v", err)
		}
		if !bytes.Equal(got.GetValue(), want) {
			t.Fatalf("Unary: %d bytes back that differ from the %d sent", len(got.GetValue()), len(want))
		}
	})

	t.Run("server stream", func(t *testing.T) {
		const count, size = 16, 64 << 10
		st, err := conn.NewStream(callCtx(t), echoStreamDesc, echoStream)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(wrapperspb.Bytes(fmt.Appendf(nil, "%d %d", count, size))); err != nil {
			t.Fatal(err)
		}
		st.CloseSend()
		for i := 0; ; i++ {
			got := new(wrapperspb.BytesValue)
			err := st.RecvMsg(got)
			if err == io.EOF {
				if i != count {
					t.Fatalf("Stream: %d messages, want %d", i, count)
				}
				break
			}
			if err != nil {
				t.Fatalf("Stream: message %d: %v", i, err)
			}
			if !bytes.Equal(got.GetValue(), echoPattern(i, size)) {
				t.Fatalf("Stream: message %d (%d bytes) is not what the server sent", i, len(got.GetValue()))
			}
		}
	})

	t.Run("server killed after the first message", func(t *testing.T) {
		direct, _ := dialGRPC(t, doomedDirectAddr)
		errDirect := dieAfterFirst(t, direct, doomedDirect.kill)
		if status.Code(errDirect) != codes.Unavailable {
			t.Fatalf("calling grpc-js directly: %v, want Unavailable (the reference this test holds the proxy to)", errDirect)
		}
		proxied, _ := dialGRPC(t, p.listener("doomed"))
		err := dieAfterFirst(t, proxied, doomed.kill)
		if got := status.Code(err); got != codes.Unavailable {
			t.Fatalf("through the proxy: %v (code %d), want Unavailable (14) as directly (%v)", err, got, errDirect)
		}
	})
}

// grpcJSResult is what e2e/node/grpc_client.js printed for one call.
type grpcJSResult struct {
	messages []grpcJSMessage
	code     int
	details  string
}

type grpcJSMessage struct {
	Message int  `json:"message"`
	Bytes   int  `json:"bytes"`
	Intact  bool `json:"intact"`
}

// grpcJSLine reads the client's next line: a message, or the final status
// (done set).
func grpcJSLine(t *testing.T, n *nodeProc, r *grpcJSResult) (done bool) {
	t.Helper()
	l := n.next(callTimeout)
	var v struct {
		grpcJSMessage
		Code    *int   `json:"code"`
		Details string `json:"details"`
	}
	if err := json.Unmarshal([]byte(l), &v); err != nil {
		t.Fatalf("grpc_client.js printed %q: %v", l, err)
	}
	if v.Code != nil {
		r.code, r.details = *v.Code, v.Details
		return true
	}
	r.messages = append(r.messages, v.grpcJSMessage)
	return false
}

// runGRPCJSClient runs one call of grpc_client.js to completion.
func runGRPCJSClient(t *testing.T, args ...string) grpcJSResult {
	t.Helper()
	n := startNode(t, "grpc_client.js", args...)
	var r grpcJSResult
	for !grpcJSLine(t, n, &r) {
	}
	return r
}

// checkIntact fails unless r is a call that succeeded with count intact
// messages of size bytes.
func checkIntact(t *testing.T, r grpcJSResult, count, size int) {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("status %d %q, want OK", r.code, r.details)
	}
	if len(r.messages) != count {
		t.Fatalf("%d messages, want %d", len(r.messages), count)
	}
	for i, m := range r.messages {
		if m.Message != i || m.Bytes != size || !m.Intact {
			t.Errorf("message %d: %+v, want message %d intact with %d bytes", i, m, i, size)
		}
	}
}

// TestGRPCJSClientThroughProxy: a @grpc/grpc-js client calls grpc-go
// servers through the proxy. Unary and server-streaming calls come back
// intact, and a call whose backend is lost after its response headers and
// one message ends with UNAVAILABLE (14), as it does calling the server
// directly, not INTERNAL (13): grpc-js makes INTERNAL of any stream reset
// without a gRPC status.
func TestGRPCJSClientThroughProxy(t *testing.T) {
	requireNode(t, true)
	_, steady := startEchoServer(t)
	doomed, doomedAddr := startEchoServer(t)
	doomedDirect, doomedDirectAddr := startEchoServer(t)
	p := startProxy(t, routedConfig{
		cluster:   "endpoints: " + endpoints(steady),
		listeners: doomedListener,
		clusters:  "- {name: doomed, endpoints: " + endpoints(doomedAddr) + "}\n",
	}.String())
	addr := p.listener("ingress")

	t.Run("unary", func(t *testing.T) {
		checkIntact(t, runGRPCJSClient(t, addr, "Unary", "100000"), 1, 100_000)
	})
	t.Run("server stream", func(t *testing.T) {
		checkIntact(t, runGRPCJSClient(t, addr, "Stream", "16", strconv.Itoa(64<<10)), 16, 64<<10)
	})
	// lost calls DieAfterFirst from grpc_client.js on target, served by
	// backend, cuts the backend's connections once the client has the
	// first message, and returns the client's result.
	lost := func(t *testing.T, target string, backend *echoServer) grpcJSResult {
		t.Helper()
		n := startNode(t, "grpc_client.js", target, "DieAfterFirst", "1000")
		var r grpcJSResult
		if grpcJSLine(t, n, &r) {
			t.Fatalf("the call ended with %d %q before its first message", r.code, r.details)
		}
		if m := r.messages[0]; m.Bytes != 1000 || !m.Intact {
			t.Fatalf("the first message: %+v, want 1000 intact bytes", m)
		}
		select {
		case <-backend.sent:
		case <-time.After(callTimeout):
			t.Fatal("the backend never sent its message")
		}
		backend.cut()
		for !grpcJSLine(t, n, &r) {
		}
		if len(r.messages) != 1 {
			t.Errorf("%d messages, want 1", len(r.messages))
		}
		return r
	}
	t.Run("backend lost after the first message", func(t *testing.T) {
		direct := lost(t, doomedDirectAddr, doomedDirect)
		if direct.code != int(codes.Unavailable) {
			t.Fatalf("calling grpc-go directly: status %d %q, want 14 (UNAVAILABLE) (the reference this test holds the proxy to)", direct.code, direct.details)
		}
		r := lost(t, p.listener("doomed"), doomed)
		if r.code != int(codes.Unavailable) {
			t.Fatalf("through the proxy: status %d %q, want 14 (UNAVAILABLE) as directly (%q)", r.code, r.details, direct.details)
		}
	})
}
