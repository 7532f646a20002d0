package main

import (
	"context"
	"time"
)

// The server's group commits over the push phase. A diarysync store has
// one writer, which applies the pushes that arrive together in one
// transaction; how many a commit held and how much of the time the
// writer was busy say whether pushes queued behind the writer (busy
// near 1) or behind the machine (the writer often idle while the cores
// are busy). Read from the server's metrics; absent for a server whose
// metrics do not have them.

// groupReport is what the server's group commits did while the
// navigators pushed.
type groupReport struct {
	Commits         int64    `json:"commits"`
	PushesPerCommit *float64 `json:"pushes_per_commit,omitempty"`
	// WriterBusy is the share of the push phase's wall time the writer
	// spent running groups (0 to 1; over 1 only when a group that began
	// before the first reading, of another client's pushes, ended after
	// it).
	WriterBusy *float64 `json:"writer_busy"`
}

// groupMark is one reading of the server's group commit counters,
// taken between before and after.
type groupMark struct {
	commits, pushes, busy float64
	before, after         time.Time
}

// markGroups reads the counters now; ok is false where they cannot be
// read.
func markGroups(ctx context.Context, t *target) (m groupMark, ok bool) {
	if t.metrics == nil {
		return groupMark{}, false
	}
	return t.metrics.groupCounters(ctx)
}

// groupsSince is what the group commits did from a to b.
func groupsSince(a, b groupMark) *groupReport {
	r := &groupReport{Commits: int64(b.commits - a.commits)}
	if r.Commits > 0 {
		r.PushesPerCommit = round3((b.pushes - a.pushes) / float64(r.Commits))
	}
	// From before the first reading to after the second: at least the
	// time between the server's two readings, so a writer busy all that
	// time is busy at most 1 of it.
	if span := b.after.Sub(a.before).Seconds(); span > 0 {
		r.WriterBusy = round3((b.busy - a.busy) / span)
	}
	return r
}
