//go:build race

package client

// raceEnabled scales the heaviest tests down under the race detector,
// which makes the pure-Go SQLite about twenty times slower; .ci/run also
// runs them at full size without it.
const raceEnabled = true
