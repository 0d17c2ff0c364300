//go:build !race

package h2

// raceEnabled: built with the race detector.
const raceEnabled = false
