package logfield

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
)

func TestWith(t *testing.T) {
	var buf bytes.Buffer
	base := zerolog.New(&buf).Level(zerolog.InfoLevel).With().Str("component", "x").Logger()
	l := With(With(base, "cluster", "c1"), "upstream", "127.0.0.1:1")
	l.Debug().Msg("not written")
	l.Info().Int("n", 1).Msg("written")
	base.Info().Msg("base")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(lines[0], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"component": "x", "cluster": "c1", "upstream": "127.0.0.1:1", "n": 1.0, "level": "info", "message": "written"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (line %s)", k, got[k], v, lines[0])
		}
	}
	if bytes.Contains(lines[1], []byte("cluster")) {
		t.Errorf("the base logger gained the field: %s", lines[1])
	}
}

func TestWithCost(t *testing.T) {
	base := zerolog.Nop()
	n := testing.AllocsPerRun(100, func() { _ = With(base, "cluster", "c1") })
	if n > 2 {
		t.Errorf("With allocates %v times, want at most 2", n)
	}
}
