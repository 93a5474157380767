//go:build race

package ratelimit

// raceEnabled: the race detector slows the map-heavy tests about tenfold.
const raceEnabled = true
