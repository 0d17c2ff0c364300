package listener

import (
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when a goroutine the tests started outlives
// them: every listener is shut down, which ends its accept loop, its
// HTTP/1.1 server, its connections and its byte sweeper.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, 10*time.Second)
}
