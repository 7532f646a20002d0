// Package sim holds the deterministic simulation of diarysync: one
// goroutine drives a real server store and ten client replicas (real
// SQLite files) through a seeded schedule of writes, sharing changes,
// erasures, feedback, assignments, offline periods, cut syncs, lost,
// duplicated and replayed requests, server and device restarts, and clock
// jumps. Every request goes through an in-process transport that calls
// the server's handler directly, so no socket or scheduler adds
// randomness: a seed names one run exactly and reproduces it.
//
// After a quiet final sync the simulation checks the laws of the system
// against the server's tables, read on their own: every replica holds
// exactly what its user may see, byte for byte; no acknowledged change is
// missing and none is stored twice; every local write was either accepted
// or is listed as refused on its device; and replaying each entry's
// history in any order rebuilds the entry the server holds.
//
// The simulation is a test:
//
//	go test ./internal/sim -run TestSimulation                  # 200 seeds (20 under -race or -short)
//	go test ./internal/sim -run TestSimulation -sim.seeds 1000  # what .ci/run runs
//	go test ./internal/sim -run TestSimulation -sim.seed 42 -v  # one seed, with its trace
//	go test ./internal/sim -run TestSimulation -sim.soak 30m    # new seeds until 30 minutes pass
package sim
