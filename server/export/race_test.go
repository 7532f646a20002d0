//go:build race

package export

// raceEnabled scales the memory test down under the race detector, which
// makes compression many times slower without changing what the test
// shows.
const raceEnabled = true
