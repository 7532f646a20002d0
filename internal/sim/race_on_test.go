//go:build race

package sim

// raceEnabled scales the default number of seeds down under the race
// detector, which makes the pure-Go SQLite many times slower; .ci/run
// also runs the full number without it.
const raceEnabled = true
