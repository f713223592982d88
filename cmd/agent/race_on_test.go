//go:build race

package main

// raceEnabled: the race detector multiplies the agent process's memory (its
// shadow memory), so memory bounds are scaled under it.
const raceEnabled = true
