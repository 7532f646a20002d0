package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diarysync/diarysync/study"
)

// Group commit. Every push locks the sequence row for its whole
// transaction, commit included, so pushes run one after the other, and
// each waits for the previous one's commit to reach the WAL on disk
// (synchronous_commit): PostgreSQL's own grouping of WAL flushes cannot
// help transactions that never overlap. Instead, as in the SQLite store,
// pushes that arrive while a group is under way wait for it and are then
// applied together, each in a savepoint of its own, in one transaction
// that takes the lock once and flushes once. A push that fails rolls back
// to its savepoint and fails alone; its neighbours commit. Each push is
// answered only after the commit that holds it, so what is acknowledged
// is durable exactly as before.
//
// Groups form within one process; processes sharing the database still
// take turns at the lock, a group at a time.
//
// The first push to find no group under way runs the group itself (it
// leads); if more pushes queued meanwhile, it hands the lead to a
// goroutine that runs groups until the queue is empty, and returns.

// Bounds on one group, so that one commit stays short and a push behind
// a long queue is not held for many groups' worth of work.
const (
	maxGroupPushes  = 64
	maxGroupChanges = 16 << 10
)

// pushJob is one push waiting for a group commit.
type pushJob struct {
	ctx        context.Context
	who        *study.Identity
	in         []study.Incoming
	candidates []int
	results    []study.ChangeResult
	wake       *study.Wakeups
	now        time.Time

	err  error
	done chan struct{}
}

// groupCommitter queues pushes for the next group.
type groupCommitter struct {
	mu      sync.Mutex
	queue   []*pushJob
	leading bool // a leader is running groups

	// Counters, for tests and metrics.
	commits atomic.Int64 // group transactions committed
	pushes  atomic.Int64 // pushes committed in them
	busy    atomic.Int64 // nanoseconds spent running groups
	trips   atomic.Int64 // batches and statements groups sent (grouprun.go), for tests
}

// GroupStats returns the group commit counters of this process.
func (db *DB) GroupStats() study.GroupStats {
	return study.GroupStats{
		Commits: db.group.commits.Load(),
		Pushes:  db.group.pushes.Load(),
		Busy:    time.Duration(db.group.busy.Load()),
	}
}

// commitPush queues j and returns once the group holding it committed or
// j failed.
func (db *DB) commitPush(j *pushJob) error {
	j.done = make(chan struct{})
	g := &db.group
	g.mu.Lock()
	g.queue = append(g.queue, j)
	if g.leading {
		g.mu.Unlock()
		<-j.done
		return j.err
	}
	g.leading = true
	batch := g.take()
	g.mu.Unlock()
	db.runGroup(batch)
	g.mu.Lock()
	if len(g.queue) > 0 {
		go db.leadRest()
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	<-j.done
	return j.err
}

// leadRest runs groups until the queue is empty.
func (db *DB) leadRest() {
	g := &db.group
	for {
		g.mu.Lock()
		batch := g.take()
		if len(batch) == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		g.mu.Unlock()
		db.runGroup(batch)
	}
}

// take removes the next group from the queue; g.mu is held.
func (g *groupCommitter) take() []*pushJob {
	n, changes := 0, 0
	for n < len(g.queue) && n < maxGroupPushes {
		changes += len(g.queue[n].candidates)
		n++
		if changes >= maxGroupChanges {
			break
		}
	}
	batch := g.queue[:n:n]
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil // do not keep the backing array of a burst
	}
	return batch
}

// runGroup applies the pushes of batch in one transaction that holds the
// write lock, each in a savepoint of its own, commits, and tells each
// push its fate. Only the wake-ups of pushes that were applied are
// announced.
func (db *DB) runGroup(batch []*pushJob) {
	// The transaction belongs to every push in it: no single caller's
	// cancellation may roll it back. A push whose caller gave up before
	// its turn is skipped.
	ctx := context.Background()
	began := time.Now()
	applied := make([]*pushJob, 0, len(batch))
	err := db.writeTx(ctx, func(t *tx) error {
		// A transaction rolled back and run again starts afresh.
		applied = applied[:0]
		for _, j := range batch {
			j.err = nil
		}
		g := groupRun{db: db, ctx: ctx, t: t, batch: batch}
		return g.run(&applied)
	})
	db.group.busy.Add(int64(time.Since(began)))
	if err == nil && len(applied) > 0 {
		db.group.commits.Add(1)
		db.group.pushes.Add(int64(len(applied)))
		changes := 0
		for _, j := range applied {
			changes += len(j.candidates)
		}
		db.grew(changes)
	}
	for _, j := range batch {
		if err != nil && j.err == nil {
			// Nothing of the group was written.
			j.err = err
		}
		close(j.done)
	}
}
