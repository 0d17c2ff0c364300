package grpcproto

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// msg returns one length-prefixed message with an n-byte payload.
func msg(n int, compressed bool) []byte {
	b := make([]byte, prefixLen+n)
	if compressed {
		b[0] = 1
	}
	binary.BigEndian.PutUint32(b[1:prefixLen], uint32(n))
	for i := range n {
		b[prefixLen+i] = byte(i) | 0x80 // payload bytes that look like prefixes would be wrong
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// cuts splits b at the given offsets.
func cuts(b []byte, at ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, a := range at {
		out = append(out, b[prev:a])
		prev = a
	}
	return append(out, b[prev:])
}

func TestMessageCounter(t *testing.T) {
	three := cat(msg(3, false), msg(0, false), msg(10, true))
	for _, tc := range []struct {
		name     string
		chunks   [][]byte
		want     []int // messages completed per chunk
		inMsgEnd bool  // the stream ends inside a message
	}{
		{name: "nothing", chunks: nil},
		{name: "empty chunk", chunks: [][]byte{{}}, want: []int{0}},
		{name: "one message whole", chunks: [][]byte{msg(7, false)}, want: []int{1}},
		{name: "zero-length message", chunks: [][]byte{msg(0, false)}, want: []int{1}},
		{name: "zero-length messages in a row", chunks: [][]byte{cat(msg(0, false), msg(0, true), msg(0, false))}, want: []int{3}},
		{name: "many messages in one chunk", chunks: [][]byte{three}, want: []int{3}},
		{name: "prefix split after the flag", chunks: cuts(msg(4, false), 1), want: []int{0, 1}},
		{name: "prefix split in the length", chunks: cuts(msg(4, false), 3), want: []int{0, 1}},
		{name: "prefix byte by byte", chunks: cuts(msg(2, false), 1, 2, 3, 4, 5, 6), want: []int{0, 0, 0, 0, 0, 0, 1}},
		{name: "zero-length message split in its prefix", chunks: cuts(msg(0, false), 2), want: []int{0, 1}},
		{name: "prefix whole, payload in the next chunk", chunks: cuts(msg(4, false), 5), want: []int{0, 1}},
		{name: "payload split", chunks: cuts(msg(10, false), 8, 12), want: []int{0, 0, 1}},
		{name: "message ends where the chunk ends", chunks: cuts(three, 8), want: []int{1, 2}},
		{name: "next prefix starts in the same chunk", chunks: cuts(three, 14), want: []int{2, 1}},
		{name: "zero-length message completes with the next prefix split", chunks: cuts(three, 9, 15), want: []int{1, 1, 1}},
		{name: "empty chunks between", chunks: [][]byte{three[:4], {}, three[4:9], {}, three[9:]}, want: []int{0, 0, 1, 0, 2}},
		{name: "cut in a payload", chunks: cuts(msg(10, false), 7)[:1], want: []int{0}, inMsgEnd: true},
		{name: "cut in a prefix", chunks: [][]byte{cat(msg(1, false), msg(1, false)[:3])}, want: []int{1}, inMsgEnd: true},
		{name: "length with every byte set", chunks: [][]byte{{0, 0x01, 0x02, 0x03, 0x04}}, want: []int{0}, inMsgEnd: true},
		{name: "largest length", chunks: [][]byte{{0, 0xff, 0xff, 0xff, 0xff}, make([]byte, 1<<16)}, want: []int{0, 0}, inMsgEnd: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c MessageCounter
			var got []int
			for _, ch := range tc.chunks {
				got = append(got, c.Feed(ch))
			}
			if !equalInts(got, tc.want) {
				t.Errorf("messages per chunk %v, want %v", got, tc.want)
			}
			if c.InMessage() != tc.inMsgEnd {
				t.Errorf("InMessage() = %v at the end, want %v", c.InMessage(), tc.inMsgEnd)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestMessageCounterLargeMessage checks a payload longer than any chunk,
// and one whose length needs all four bytes.
func TestMessageCounterLargeMessage(t *testing.T) {
	var c MessageCounter
	const n = 1<<24 + 3
	prefix := make([]byte, prefixLen)
	binary.BigEndian.PutUint32(prefix[1:], n)
	if got := c.Feed(prefix); got != 0 {
		t.Fatalf("prefix completed %d messages", got)
	}
	chunk := make([]byte, 16384)
	fed, total := 0, 0
	for fed+len(chunk) <= n {
		total += c.Feed(chunk)
		fed += len(chunk)
	}
	if total != 0 || !c.InMessage() {
		t.Fatalf("%d of %d payload bytes: %d messages, InMessage %v; want 0 and true", fed, n, total, c.InMessage())
	}
	// The rest of the payload and a zero-length message.
	if got := c.Feed(append(make([]byte, n-fed), msg(0, false)...)); got != 2 {
		t.Errorf("the last bytes completed %d messages, want 2", got)
	}
	if c.InMessage() {
		t.Error("InMessage() after the last message")
	}
}

func TestMessageCounterReset(t *testing.T) {
	var c MessageCounter
	c.Feed(msg(5, false)[:3])
	c.Reset()
	if c.InMessage() {
		t.Fatal("InMessage() after Reset")
	}
	if got := c.Feed(msg(5, false)); got != 1 {
		t.Errorf("a whole message after Reset counted %d, want 1", got)
	}
}

func TestMessageCounterNoAllocations(t *testing.T) {
	stream := cat(msg(3, false), msg(0, false), msg(100, true), msg(1, false))
	var c MessageCounter
	if n := testing.AllocsPerRun(100, func() {
		for i := 0; i < len(stream); i += 7 {
			c.Feed(stream[i:min(i+7, len(stream))])
		}
	}); n != 0 {
		t.Errorf("%v allocations per stream, want 0", n)
	}
}

// buildStream turns fuzz bytes into a valid stream of messages: each
// message takes one byte for its length (lengths 0–199 as they are, larger
// bytes as multiples of 300 up to about 16 KiB) and its payload from the
// bytes after. It returns the stream and where each message ends.
func buildStream(raw []byte) (stream []byte, ends []int) {
	for len(raw) > 0 && len(stream) < 1<<20 {
		n := int(raw[0])
		if n >= 200 {
			n = (n - 199) * 300
		}
		raw = raw[1:]
		payload := make([]byte, n)
		copy(payload, raw)
		raw = raw[min(n, len(raw)):]
		m := msg(0, n%3 == 0)
		binary.BigEndian.PutUint32(m[1:], uint32(n))
		stream = append(append(stream, m...), payload...)
		ends = append(ends, len(stream))
	}
	return stream, ends
}

// FuzzMessageCounter checks that however a stream is cut into chunks
// (split is cycled through for the chunk sizes, empty chunks included) each chunk
// reports exactly the messages that end in it, and that on arbitrary bytes
// the total does not depend on the cuts either.
func FuzzMessageCounter(f *testing.F) {
	f.Add([]byte{3, 'a', 'b', 'c', 0, 0, 250, 1}, []byte{1})
	f.Add([]byte{0, 0, 0, 0}, []byte{0, 2, 5})
	f.Add([]byte{199, 200, 255}, []byte{4, 17, 5, 100})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, []byte{})
	f.Fuzz(func(t *testing.T, raw, split []byte) {
		// A 0 is an empty chunk, any other byte 1 to 22 bytes; a split
		// with no other byte would never get through the stream.
		if bytes.Count(split, []byte{0}) == len(split) {
			split = append(split, 0xff)
		}
		chunkLen := func(i int) int {
			if b := split[i%len(split)]; b != 0 {
				return 1 + int(b)%22
			}
			return 0
		}

		// A valid stream: each chunk completes the messages ending in it.
		stream, ends := buildStream(raw)
		var whole MessageCounter
		if got := whole.Feed(stream); got != len(ends) || whole.InMessage() {
			t.Fatalf("whole stream: %d messages, InMessage %v; want %d and false", got, whole.InMessage(), len(ends))
		}
		var c MessageCounter
		off, next := 0, 0
		for i := 0; off < len(stream); i++ {
			end := min(off+chunkLen(i), len(stream))
			want := 0
			for next < len(ends) && ends[next] <= end {
				want++
				next++
			}
			if got := c.Feed(stream[off:end]); got != want {
				t.Fatalf("chunk [%d:%d): %d messages, want %d", off, end, got, want)
			}
			off = end
		}
		if c.InMessage() {
			t.Fatal("InMessage() at the end of a valid stream")
		}

		// Arbitrary bytes: any cut counts what the whole does.
		var a, b MessageCounter
		total := a.Feed(raw)
		sum := 0
		for i, off := 0, 0; off < len(raw); i++ {
			end := min(off+chunkLen(i), len(raw))
			sum += b.Feed(raw[off:end])
			off = end
		}
		if sum != total || a != b {
			t.Fatalf("raw bytes: %d messages in chunks, %d whole (state %+v vs %+v)", sum, total, b, a)
		}
	})
}

// BenchmarkMessageCounter feeds a stream of small messages as an HTTP/2
// engine would, in DATA frames of 16 KiB, and in frames cut at odd sizes.
func BenchmarkMessageCounter(b *testing.B) {
	var stream []byte
	for len(stream) < 1<<20 {
		stream = append(stream, msg(len(stream)%200, false)...)
	}
	for _, frame := range []int{16384, 1000, 7} {
		b.Run(frameName(frame), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(stream)))
			var c MessageCounter
			for b.Loop() {
				for i := 0; i < len(stream); i += frame {
					c.Feed(stream[i:min(i+frame, len(stream))])
				}
			}
		})
	}
}

func frameName(n int) string {
	switch n {
	case 16384:
		return "frame=16KiB"
	case 1000:
		return "frame=1000"
	}
	return "frame=7"
}
