//go:build !race

package e2e

// raceEnabled reports whether the tests run under the race detector; the
// proxy binary is then built with it too.
const raceEnabled = false
