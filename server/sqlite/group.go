package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/study"
)

// Group commit. SQLite has one writer and, with synchronous=FULL, every
// commit waits for the disk. When every push is its own transaction, a
// morning on which every phone syncs at once is bounded by fsyncs, not
// by work: about one push per fsync whatever the number of devices.
// Instead, pushes that arrive while a commit is under way wait for it to
// finish and are then applied together, each inside a savepoint of its
// own, in one transaction with one fsync. A push that fails rolls back to
// its savepoint and fails alone; its neighbours commit. Each push is
// answered only after the commit that holds it is durable, so what is
// acknowledged is on disk exactly as before.
//
// The first push to find no commit under way runs the group itself (it
// leads): its own push is then at the head of the queue, so the first
// group it runs holds it. If more pushes queued meanwhile, it hands the
// lead to a goroutine that runs groups until the queue is empty, and
// returns: no caller is kept waiting for other callers' pushes.

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
}

// GroupStats returns the group commit counters.
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

var (
	qSavepoint  = writeQuery(`SAVEPOINT push`)
	qRollbackTo = writeQuery(`ROLLBACK TO push`)
	qRelease    = writeQuery(`RELEASE push`)
)

// runGroup applies the pushes of batch in one transaction, each in a
// savepoint of its own, commits, and tells each push its fate.
func (db *DB) runGroup(batch []*pushJob) {
	// The transaction belongs to every push in it: no single caller's
	// cancellation may roll it back. A push whose caller gave up before
	// its turn is skipped.
	ctx := context.Background()
	began := time.Now()
	applied := make([]*pushJob, 0, len(batch))
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		q := db.wq.in(tx)
		applied = applied[:0]
		for _, j := range batch {
			if err := j.ctx.Err(); err != nil {
				j.err = err
				continue
			}
			if _, err := q.ExecContext(ctx, qSavepoint); err != nil {
				return fmt.Errorf("cannot begin push: %w", err)
			}
			*j.wake = study.Wakeups{}
			if err := litedb.Classify(db.push(ctx, tx, j.who, j.in, j.candidates, j.results, j.wake, j.now)); err != nil {
				// Rolled back to its savepoint: nothing of this push is
				// written, whatever the others in the group do.
				j.err = storageFull(err)
				if _, rerr := q.ExecContext(ctx, qRollbackTo); rerr != nil {
					if errors.Is(err, litedb.ErrFull) {
						// SQLite may roll back the whole transaction on a
						// full disk: then nothing of the group is written.
						return err
					}
					return fmt.Errorf("cannot roll back a failed push: %w", rerr)
				}
			} else {
				applied = append(applied, j)
			}
			if _, err := q.ExecContext(ctx, qRelease); err != nil {
				return fmt.Errorf("cannot end push: %w", err)
			}
		}
		return nil
	})
	db.group.busy.Add(int64(time.Since(began)))
	if err == nil && len(applied) > 0 {
		db.group.commits.Add(1)
		db.group.pushes.Add(int64(len(applied)))
	}
	for _, j := range batch {
		if err != nil && j.err == nil {
			// Nothing of the group was written.
			j.err = err
		}
		close(j.done)
	}
}
