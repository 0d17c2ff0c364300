package forward

import (
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when a goroutine the tests started outlives them:
// every test proxy, backend, pool and tunnel is closed when its test ends.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, 10*time.Second)
}
