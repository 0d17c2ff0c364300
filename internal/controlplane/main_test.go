package controlplane

import (
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the package when a test leaves a goroutine behind: a
// stream, a watch or a timer that outlives what started it.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, 5*time.Second)
}
