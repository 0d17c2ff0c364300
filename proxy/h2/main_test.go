package h2

import (
	"os"
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when any goroutine the tests started outlives
// them: every server, pool, bridge and timer callback is shut down, so
// nothing but the runtime's and the testing package's own may be left.
func TestMain(m *testing.M) {
	if addr := os.Getenv(idleClientsEnv); addr != "" {
		idleTLSClients(addr)
		return
	}
	leakcheck.MainAll(m, 10*time.Second)
}
