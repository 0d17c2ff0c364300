//go:build race

package h2

// raceDetector: the tests run under the race detector.
const raceDetector = true
