//go:build !race

package main

// raceEnabled makes the diaryd binary built by the tests a race build
// only when the tests are one.
const raceEnabled = false
