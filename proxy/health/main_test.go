package health

import (
	"testing"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when any goroutine outlives the tests: every
// checker, upstream and connection the tests start is shut down.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, wait)
}
