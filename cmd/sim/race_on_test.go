//go:build race

package main

// raceEnabled: this test binary runs with the race detector, so binaries it
// builds use it too (and reuse the packages the test build compiled).
const raceEnabled = true
