package h2

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// TestEncodeFreshFields: a request ID and a deadline, new on every call,
// are added to the dynamic table once and then sent never indexed, so
// that the fields repeating on every call stay indexed: every block after
// the first two is the same size, and the peer decodes every value.
func TestEncodeFreshFields(t *testing.T) {
	c := &conn{}
	c.initState(4096)
	var got []hpack.HeaderField
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) { got = append(got, f) })
	size := 0
	for i := range 200 {
		id := fmt.Sprintf("0f8fad5b-d9cb-469f-a165-%012d", i)
		timeout := fmt.Sprintf("%du", 19999000-i)
		fields := []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":authority", Value: "backend:50051"}, {Name: ":path", Value: "/grpc.testing.TestService/UnaryCall"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "user-agent", Value: "grpc-go/1.70.0"},
			{Name: "te", Value: "trailers"}, {Name: "grpc-timeout", Value: timeout},
			{Name: "x-request-id", Value: id}, {Name: "authorization", Value: "Bearer x", Sensitive: true},
		}
		block := encodeDecoded(t, c, dec, &got, fields, fmt.Sprintf("call %d", i))
		for _, f := range got {
			if f.Sensitive != (f.Name == "authorization" || i > 0 && fresh(f.Name) != 0) {
				t.Errorf("call %d: %s never indexed: %v", i, f.Name, f.Sensitive)
			}
		}
		// The values' Huffman codes may differ in length by a byte.
		switch {
		case i == 1:
			size = len(block)
		case i > 1 && len(block) > size+2:
			t.Fatalf("call %d: block of %d bytes, call 1's was %d: the table churns", i, len(block), size)
		}
	}
}

// TestEncodeMemo: blocks drawn from a few fields, some repeating, some
// new each time, some never indexed, with the peer's table resized now and
// then and the encoder dropped as an idle connection's is, decode to what
// was encoded: an index copied from the memo is the one the encoder would
// write. A field of a block like the last comes from the memo.
func TestEncodeMemo(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c := &conn{}
	c.initState(4096)
	var got []hpack.HeaderField
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) { got = append(got, f) })
	head := []hpack.HeaderField{
		{Name: ":status", Value: "200"}, {Name: "content-type", Value: "application/grpc"},
		{Name: "server", Value: "backend"}, {Name: "x-shard", Value: "a"},
	}
	trailers := []hpack.HeaderField{{Name: "grpc-status", Value: "0"}, {Name: "grpc-message", Value: ""}}
	hits, total := 0, 0
	for i := range 5000 {
		var fields []hpack.HeaderField
		if i%2 == 0 {
			fields = append(fields, head...)
		} else {
			fields = append(fields, trailers...)
		}
		switch rng.IntN(8) {
		case 0: // a value seen before, or a new one: added to the table
			fields[len(fields)-1].Value = fmt.Sprint(rng.IntN(40))
		case 1: // a field in the middle, new each time
			fields = append(fields[:1], append([]hpack.HeaderField{{Name: "x-new", Value: fmt.Sprint(i)}}, fields[1:]...)...)
		case 2:
			fields[len(fields)-1].Sensitive = true
		case 3:
			fields = append(fields, hpack.HeaderField{Name: "x-request-id", Value: fmt.Sprint(i)})
		case 4: // long enough for a length of two or three bytes
			fields = append(fields, hpack.HeaderField{Name: "x-request-id", Value: strings.Repeat("aZ~", rng.IntN(9000))})
		}
		switch rng.IntN(200) {
		case 0:
			size := uint32(rng.IntN(4097))
			c.setEncoderTable(size)
			dec.SetAllowedMaxDynamicTableSize(4096)
		case 1:
			c.dropEncoderLocked()
		}
		memo := *c.memo.kind(fields)
		for j, f := range fields {
			if j < len(memo) && memo[j].n > 0 && memo[j].name == f.Name && (memo[j].literal && f.Sensitive || !memo[j].literal && memo[j].value == f.Value && !f.Sensitive) {
				hits++
			}
		}
		total += len(fields)
		encodeDecoded(t, c, dec, &got, fields, fmt.Sprintf("block %d", i))
	}
	if hits < total/3 {
		t.Errorf("%d of %d fields copied from the memo, want a third or more", hits, total)
	}
}

// encodeDecoded encodes fields on c and decodes the block with dec, whose
// emit function appends to *got, and fails the test unless every field
// comes back with its name and value, in order; it returns the block.
func encodeDecoded(t *testing.T, c *conn, dec *hpack.Decoder, got *[]hpack.HeaderField, fields []hpack.HeaderField, what string) []byte {
	t.Helper()
	block, err := c.encode(fields)
	if err != nil {
		t.Fatal(err)
	}
	*got = (*got)[:0]
	if _, err := dec.Write(block); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := dec.Close(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(*got) != len(fields) {
		t.Fatalf("%s: decoded %d fields, want %d", what, len(*got), len(fields))
	}
	for j, f := range *got {
		if f.Name != fields[j].Name || f.Value != fields[j].Value {
			t.Fatalf("%s: field %d decoded as %s: %q, want %s: %q", what, j, f.Name, f.Value, fields[j].Name, fields[j].Value)
		}
		if fields[j].Sensitive && !f.Sensitive {
			t.Fatalf("%s: field %d (%s) decoded as indexable, want never-indexed", what, j, f.Name)
		}
	}
	return block
}

// BenchmarkEncode encodes a gRPC request's header block as an upstream
// connection does on every call: the fields of the call before, a new
// request ID and deadline.
func BenchmarkEncode(b *testing.B) {
	c := &conn{}
	c.initState(4096)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "backend:50051"}, {Name: ":path", Value: "/grpc.testing.TestService/UnaryCall"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "user-agent", Value: "grpc-go/1.70.0"},
		{Name: "te", Value: "trailers"}, {Name: "grpc-timeout", Value: "19999000u"},
		{Name: "x-request-id", Value: "0f8fad5b-d9cb-469f-a165-70867728950e"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.encode(fields); err != nil {
			b.Fatal(err)
		}
	}
}
