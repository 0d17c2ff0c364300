package h2

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
)

// TestDataRun: which DATA frames after a first one of n bytes join it.
func TestDataRun(t *testing.T) {
	type frame struct {
		typ    http2.FrameType
		flags  http2.Flags
		stream uint32
		size   int
	}
	data := func(stream uint32, size int) frame { return frame{http2.FrameData, 0, stream, size} }
	tests := []struct {
		name   string
		first  int // the first frame's payload, whose header was read
		frames []frame
		cut    int // bytes cut off the end of the buffer
		limit  int
		want   int
		total  int
		end    bool
	}{
		{"alone", 5, nil, 0, 100, 0, 5, false},
		{"a run", 5, []frame{data(1, 5), data(1, 7), data(1, 1)}, 0, 100, 3, 18, false},
		{"ends at END_STREAM", 5, []frame{data(1, 5), {http2.FrameData, http2.FlagDataEndStream, 1, 5}, data(1, 5)}, 0, 100, 2, 15, true},
		{"another stream", 5, []frame{data(1, 5), data(3, 5), data(1, 5)}, 0, 100, 1, 10, false},
		{"another type", 5, []frame{data(1, 5), {http2.FramePing, 0, 0, 8}, data(1, 5)}, 0, 100, 1, 10, false},
		{"padded", 5, []frame{{http2.FrameData, http2.FlagDataPadded, 1, 5}}, 0, 100, 0, 5, false},
		{"empty", 5, []frame{data(1, 0), data(1, 5)}, 0, 100, 0, 5, false},
		{"over the limit", 5, []frame{data(1, 5), data(1, 6)}, 0, 15, 1, 10, false},
		{"at the limit", 5, []frame{data(1, 5), data(1, 5)}, 0, 15, 2, 15, false},
		{"a payload not all read", 5, []frame{data(1, 5), data(1, 5)}, 1, 100, 1, 10, false},
		{"a header not all read", 5, []frame{data(1, 5), data(1, 5)}, 10, 100, 1, 10, false},
		{"the first payload not all read", 5, nil, 1, 100, 0, 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wire bytes.Buffer
			wire.Write(make([]byte, tt.first))
			fr := http2.NewFramer(&wire, nil)
			for _, f := range tt.frames {
				fr.WriteRawFrame(f.typ, f.flags, f.stream, make([]byte, f.size))
			}
			buf := wire.Bytes()[:wire.Len()-tt.cut]
			b := rbuf{buf: buf, w: len(buf)}
			frames, total, end := b.dataRun(1, tt.first, tt.limit)
			if frames != tt.want || total != tt.total || end != tt.end {
				t.Errorf("dataRun = %d frames, %d bytes, end %v; want %d, %d, %v", frames, total, end, tt.want, tt.total, tt.end)
			}
			if b.r != 0 {
				t.Errorf("dataRun consumed %d bytes", b.r)
			}
		})
	}
}
