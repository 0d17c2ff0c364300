package h2

import (
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when connection goroutines of this package
// outlive the tests: every server and pool the tests start is shut down,
// so its readers and writers must be gone.
func TestMain(m *testing.M) {
	leakcheck.Main(m, 10*time.Second,
		"proxy/h2.(*conn).writeLoop", "proxy/h2.(*conn).readLoop", "proxy/h2.(*bridge).run")
}
