package zoneaware

import (
	"testing"
	"time"

	"github.com/sightline-proxy/sightline/internal/leakcheck"
)

// TestMain fails the run when any goroutine outlives the tests.
func TestMain(m *testing.M) {
	leakcheck.MainAll(m, 5*time.Second)
}
