//go:build race

package main

// raceEnabled scales the fault and crash tests down under the race
// detector, which slows the test process (the pure-Go SQLite above all)
// many times over.
const raceEnabled = true
