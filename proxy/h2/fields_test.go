package h2

import (
	"fmt"
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
		block, err := c.encode(fields)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		if _, err := dec.Write(block); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if len(got) != len(fields) {
			t.Fatalf("call %d: decoded %d fields, want %d", i, len(got), len(fields))
		}
		for j, f := range got {
			if f.Name != fields[j].Name || f.Value != fields[j].Value {
				t.Fatalf("call %d: decoded %s: %s, want %s: %s", i, f.Name, f.Value, fields[j].Name, fields[j].Value)
			}
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
