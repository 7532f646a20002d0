//go:build race

package main

// raceEnabled makes the diaryd binary built by the tests a race build too,
// so that it reuses the packages the test binary already compiled.
const raceEnabled = true
