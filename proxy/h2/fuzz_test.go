package h2

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/sightline-proxy/sightline/proxy/cluster"
	"github.com/sightline-proxy/sightline/proxy/config"
	"github.com/sightline-proxy/sightline/proxy/route"
)

var (
	fuzzSrvOnce sync.Once
	fuzzSrv     *Server
)

// fuzzServer is a Server whose only route goes to a cluster without hosts,
// so every request is answered locally (503) and fuzzing stays in memory.
func fuzzServer(t testing.TB) *Server {
	fuzzSrvOnce.Do(func() {
		c, err := cluster.New(config.Cluster{Name: "none", LBPolicy: "round_robin"}, cluster.Options{Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		table, err := route.New([]config.VirtualHost{{Name: "all", Domains: []string{"*"},
			Routes: []config.Route{{Match: config.RouteMatch{Prefix: "/"}, Cluster: "none"}}}},
			map[string]*cluster.Cluster{"none": c})
		if err != nil {
			t.Fatal(err)
		}
		fuzzSrv = NewServer(ServerOptions{Routes: table, Log: zerolog.Nop(),
			Limits: config.Limits{HeaderReadTimeout: config.Duration(time.Second)}})
	})
	return fuzzSrv
}

// frameSeeds are byte strings of frames for the corpora.
func frameSeeds() [][]byte {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	fr.AllowIllegalWrites = true
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "x"}, {Name: ":path", Value: "/p"}, {Name: "content-type", Value: "application/grpc"}, {Name: "content-length", Value: "3"}} {
		enc.WriteField(f)
	}
	block := hb.Bytes()
	var seeds [][]byte
	add := func(fn func()) {
		buf.Reset()
		fn()
		seeds = append(seeds, bytes.Clone(buf.Bytes()))
	}
	add(func() { fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}) })
	add(func() {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true})
		fr.WriteData(1, true, []byte("abc"))
	})
	add(func() {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:3]})
		fr.WriteContinuation(1, true, block[3:])
		fr.WriteRSTStream(1, http2.ErrCodeCancel)
	})
	add(func() {
		fr.WritePing(false, [8]byte{1})
		fr.WriteWindowUpdate(0, 100)
		fr.WritePriority(3, http2.PriorityParam{StreamDep: 1})
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	add(func() { fr.WriteDataPadded(1, false, []byte("x"), make([]byte, 10)) })
	return seeds
}

// FuzzServerFrames feeds arbitrary bytes after a valid preface and
// SETTINGS to a server connection: it must neither panic nor hang.
func FuzzServerFrames(f *testing.F) {
	for _, s := range frameSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srv := fuzzServer(t)
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(server)
		}()
		go io.Copy(io.Discard, client)
		client.SetDeadline(time.Now().Add(2 * time.Second))
		var pre bytes.Buffer
		pre.WriteString(http2.ClientPreface)
		http2.NewFramer(&pre, nil).WriteSettings()
		client.Write(pre.Bytes())
		client.Write(data)
		// Let the server act on what it read, then hang up.
		time.Sleep(time.Millisecond)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("ServeConn did not return after the client closed")
		}
	})
}

// FuzzHeaderBlock decodes arbitrary header blocks through the engine's
// decode path (its HPACK emit function and the request and response
// checks): no panic, whatever the block.
func FuzzHeaderBlock(f *testing.F) {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, fl := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":path", Value: "/"},
		{Name: ":status", Value: "200"}, {Name: "te", Value: "trailers"}, {Name: "cookie", Value: "a=b", Sensitive: true}} {
		enc.WriteField(fl)
	}
	f.Add(hb.Bytes(), false)
	f.Add(hb.Bytes(), true)
	f.Add([]byte{0x3f, 0xe1, 0x1f}, true) // dynamic table size update
	f.Fuzz(func(t *testing.T, block []byte, server bool) {
		c := &conn{server: server}
		c.initState(4096)
		for range 2 { // twice: the dynamic table carries over
			c.hb.reset(1, true, false)
			c.fields = c.fields[:0]
			dec := c.decoder()
			dec.SetEmitEnabled(true)
			if _, err := dec.Write(block); err != nil {
				return
			}
			if err := dec.Close(); err != nil {
				return
			}
			if server {
				checkRequest(&c.hb)
				routePath(c.hb.path)
			} else {
				checkResponse(&c.hb)
			}
			if c.hb.size > c.maxHeaderList {
				t.Fatalf("kept a header list of %d bytes over the %d limit", c.hb.size, c.maxHeaderList)
			}
		}
	})
}
