package postgres

import (
	"context"
	"fmt"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The round trips of a group. Its pushes run one after another in one
// transaction, and every round trip to PostgreSQL is one the whole group
// waits for; on a busy machine each also costs the leader and the
// database's backend a wake-up. So a group's pushes go in runs:
// consecutive pushes that have nothing in common (other devices, no
// entry in common), none of which can read what another writes. A run's
// reads travel in one batch and its writes in the next, each push's
// writes in a savepoint of its own, and the batch that carries a run's
// writes also carries the next run's reads. Pushes from as many devices
// as the group holds, as on a morning when every phone syncs at once,
// take two round trips in all instead of one each.
//
// Only navigators' pushes share a run. Deciding a supervisor's push may
// read more (the supervisors of the owner of an entry it comments on), so
// it runs alone, as does each push of a run whose reads failed, read
// again (so that the push whose read failed fails alone): its savepoint
// opens with its reads, and whatever fails up to its writes rolls back to
// it.

// groupRun runs the pushes of one group in its transaction.
type groupRun struct {
	db    *DB
	ctx   context.Context
	t     *tx
	batch []*pushJob

	next      int // index in batch of the next push to start
	soloUntil int // the pushes before this index run alone
}

// pushRun is pushes of a group whose reads go in one batch.
type pushRun struct {
	jobs  []int // indexes in batch, in order
	reads []*pushReads
	// shared: the reads are in savepoint "reads" and each push's
	// writes in a savepoint of its own. Else the run is one push whose
	// savepoint opened with its reads.
	shared bool
}

// run applies the group's pushes, appending to applied those that are
// part of the transaction.
func (g *groupRun) run(applied *[]*pushJob) error {
	var ready *pushRun // a run whose reads were answered
	for {
		if ready == nil {
			r := g.take()
			if r == nil {
				return nil
			}
			b := &pgx.Batch{}
			g.queueReads(b, r)
			if err := g.send(b); err != nil {
				if err := g.readsFailed(r, err); err != nil {
					return err
				}
				continue
			}
			ready = r
		}
		// A push whose reads were answered goes on even if its caller
		// gives up now.
		r := ready
		ready = nil
		w := &pgx.Batch{}
		if r.shared {
			w.Queue(`RELEASE SAVEPOINT reads`)
		}
		released := make([]bool, len(r.jobs))
		var sent []int // positions in r.jobs of the pushes whose writes are in w
		for i, k := range r.jobs {
			j := g.batch[k]
			wj := &pgx.Batch{}
			if err := g.db.decide(g.ctx, g.t, j, r.reads[i], wj); err != nil {
				if r.shared {
					// Nothing of it was sent, and deciding read nothing.
					j.err = storageFull(err)
					continue
				}
				if err := g.fail(j, err); err != nil {
					return err
				}
				continue
			}
			if r.shared {
				w.Queue(`SAVEPOINT push`)
			}
			w.QueuedQueries = append(w.QueuedQueries, wj.QueuedQueries...)
			// Once its release is answered the push is part of the
			// transaction, whatever happens after it in the batch.
			w.Queue(`RELEASE SAVEPOINT push`).Exec(func(pgconn.CommandTag) error {
				released[i] = true
				return nil
			})
			sent = append(sent, i)
		}
		if !r.shared && len(sent) == 0 {
			// The push failed and was rolled back: the next run's reads
			// go on their own.
			continue
		}
		next := g.take()
		if next != nil {
			g.queueReads(w, next)
		}
		err := g.send(w)
		failed := -1
		for _, i := range sent {
			if !released[i] {
				failed = i
				break
			}
			j := g.batch[r.jobs[i]]
			*applied = append(*applied, j)
			g.t.notify(j.wake)
		}
		switch {
		case failed >= 0:
			// This push's writes failed, and the database ran nothing
			// after them: the run's later pushes and the next run start
			// again, their reads going on their own.
			if err == nil {
				err = fmt.Errorf("no answer to the release of its savepoint")
			}
			if err := g.fail(g.batch[r.jobs[failed]], fmt.Errorf("cannot write the push: %w", err)); err != nil {
				return err
			}
			g.next = r.jobs[failed] + 1
		case err != nil && next == nil:
			return fmt.Errorf("cannot write the pushes: %w", err)
		case err != nil:
			// Every push of the run is written; the next run's reads
			// failed.
			if err := g.readsFailed(next, err); err != nil {
				return err
			}
		default:
			ready = next
		}
	}
}

// send sends b and reads its answers.
func (g *groupRun) send(b *pgx.Batch) error {
	g.db.group.trips.Add(1)
	return g.t.SendBatch(g.ctx, b).Close()
}

// exec runs sql on its own.
func (g *groupRun) exec(sql string) error {
	g.db.group.trips.Add(1)
	_, err := g.t.Exec(g.ctx, sql)
	return err
}

// take starts the next run, or returns nil when every push of the group
// has been started. A push whose caller gave up before its reads were
// sent is skipped.
func (g *groupRun) take() *pushRun {
	r := &pushRun{}
	devices := map[int64]bool{}
	entries := map[syncengine.EntryID]bool{}
	for g.next < len(g.batch) {
		k := g.next
		j := g.batch[k]
		if err := j.ctx.Err(); err != nil {
			j.err = err
			g.next++
			continue
		}
		alone := j.who.Role != study.RoleNavigator || k < g.soloUntil
		if len(r.jobs) > 0 && (alone || !independent(j, devices, entries)) {
			break
		}
		r.shared = !alone
		g.next++
		j.err = nil
		*j.wake = study.Wakeups{}
		for _, i := range j.candidates {
			j.results[i] = study.ChangeResult{}
		}
		r.jobs = append(r.jobs, k)
		if !r.shared {
			break
		}
		devices[j.who.DeviceID] = true
		for _, i := range j.candidates {
			entries[j.in[i].Change.Entry] = true
		}
	}
	if len(r.jobs) == 0 {
		return nil
	}
	return r
}

// independent says whether j touches none of the devices and entries of
// the pushes before it in its run.
func independent(j *pushJob, devices map[int64]bool, entries map[syncengine.EntryID]bool) bool {
	if devices[j.who.DeviceID] {
		return false
	}
	for _, i := range j.candidates {
		if entries[j.in[i].Change.Entry] {
			return false
		}
	}
	return true
}

// queueReads queues the reads of the run's pushes in b.
func (g *groupRun) queueReads(b *pgx.Batch, r *pushRun) {
	if r.shared {
		b.Queue(`SAVEPOINT reads`)
	}
	r.reads = r.reads[:0]
	for _, k := range r.jobs {
		j := g.batch[k]
		r.reads = append(r.reads, queueReads(b, j.who, j.in, j.candidates, !r.shared))
	}
}

// readsFailed rolls back the reads of a run that failed. A push alone
// fails; a shared run's pushes start again, each alone, so that only
// the push whose read failed fails.
func (g *groupRun) readsFailed(r *pushRun, err error) error {
	if !r.shared {
		return g.fail(g.batch[r.jobs[0]], err)
	}
	if rerr := g.exec(`ROLLBACK TO SAVEPOINT reads; RELEASE SAVEPOINT reads`); rerr != nil {
		return fmt.Errorf("cannot roll back the reads of failed pushes: %w", rerr)
	}
	if len(r.jobs) == 1 {
		g.batch[r.jobs[0]].err = storageFull(err)
		return nil
	}
	g.next, g.soloUntil = r.jobs[0], r.jobs[len(r.jobs)-1]+1
	return nil
}

// fail rolls the push back to its savepoint: nothing of it is written,
// whatever the others in the group do. When its savepoint cannot be
// rolled back to, the transaction cannot go on.
func (g *groupRun) fail(j *pushJob, err error) error {
	j.err = storageFull(err)
	if rerr := g.exec(`ROLLBACK TO SAVEPOINT push; RELEASE SAVEPOINT push`); rerr != nil {
		return fmt.Errorf("cannot roll back a failed push: %w", rerr)
	}
	return nil
}
