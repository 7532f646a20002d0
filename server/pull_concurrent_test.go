package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// TestPull_ConcurrentWriters runs many writers and readers against one
// store at once and checks that no reader ever misses or repeats a
// change. Eight devices of one navigator push new entries (each shared
// with the supervisor, and never written again) as fast as they can,
// while readers pull what is new after their cursors, over and over: two
// as another device of the navigator (the owner's rows) and two as the
// supervisor (the feed). Every entry must reach every reader exactly
// once. On an engine with concurrent writers this holds only if sequence
// numbers commit in the order they are handed out: a reader that has
// pulled a number must never later find a smaller one committed.
func TestPull_ConcurrentWriters(t *testing.T) {
	const writers, batches, perBatch, readers = 8, 25, 4, 4
	ctx := context.Background()
	db := MustOpenDB(t)
	MustEnroll(t, db, study.RoleSupervisor, "SUP-1")
	MustEnroll(t, db, study.RoleNavigator, "PN-A")
	MustAssign(t, db, "SUP-1", "PN-A")
	var devices []*study.Identity
	for range writers {
		devices = append(devices, MustEnroll(t, db, study.RoleNavigator, "PN-A"))
	}
	readAs := []*study.Identity{MustEnroll(t, db, study.RoleNavigator, "PN-A"), MustEnroll(t, db, study.RoleNavigator, "PN-A"),
		MustEnroll(t, db, study.RoleSupervisor, "SUP-1"), MustEnroll(t, db, study.RoleSupervisor, "SUP-1")}

	var written sync.Map // entry id → true, once its push was acknowledged
	var writing atomic.Int32
	writing.Store(writers)
	errs := make(chan error, writers+readers)
	var wg sync.WaitGroup
	for w, dev := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer writing.Add(-1)
			clock := syncengine.NewClock(nil)
			for b := range batches {
				var in []study.Incoming
				var ids []syncengine.EntryID
				for i := range perBatch {
					id := syncengine.NewEntryID()
					ids = append(ids, id)
					for _, c := range []syncengine.Change{
						{Field: syncengine.FieldTitle, Text: fmt.Sprintf("writer %d batch %d entry %d", w, b, i)},
						{Field: syncengine.FieldShareSupervisor, Flag: true},
					} {
						c.Entry, c.Replica, c.Clock = id, dev.Replica, clock.Now()
						in = append(in, study.Incoming{Change: c})
					}
				}
				results, _, err := db.Push(ctx, dev, in)
				if err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				for i, r := range results {
					if r.Outcome != study.OutcomeApplied {
						errs <- fmt.Errorf("writer %d change %d: %+v", w, i, r)
						return
					}
				}
				for _, id := range ids {
					written.Store(id, true)
				}
			}
		}()
	}
	seen := make([]map[syncengine.EntryID]int64, readers) // entry → the cursor it came at
	var pulls atomic.Int64
	for r, who := range readAs {
		seen[r] = map[syncengine.EntryID]int64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cursor int64
			for {
				last := writing.Load() == 0 // the writers were done before this round began
				for {
					page, err := db.Pull(ctx, who, study.PullRequest{Cursor: cursor, PageSize: 7})
					if err != nil {
						errs <- fmt.Errorf("reader %d: %w", r, err)
						return
					}
					pulls.Add(1)
					for _, e := range page.Entries {
						if at, dup := seen[r][e.ID]; dup {
							errs <- fmt.Errorf("reader %d (%s) got entry %s twice: after cursor %d and after cursor %d", r, who.Role, e.ID, at, cursor)
							return
						}
						seen[r][e.ID] = cursor
					}
					if page.Next < cursor {
						errs <- fmt.Errorf("reader %d: cursor went back from %d to %d", r, cursor, page.Next)
						return
					}
					cursor = page.Next
					if !page.More {
						break
					}
				}
				if last {
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	total := 0
	written.Range(func(any, any) bool { total++; return true })
	if total != writers*batches*perBatch {
		t.Fatalf("%d entries acknowledged, want %d", total, writers*batches*perBatch)
	}
	for r := range readers {
		missing := 0
		written.Range(func(k, _ any) bool {
			if _, ok := seen[r][k.(syncengine.EntryID)]; !ok {
				missing++
			}
			return true
		})
		if missing > 0 || len(seen[r]) != total {
			t.Errorf("reader %d (%s) missed %d of %d entries (holds %d)", r, readAs[r].Role, missing, total, len(seen[r]))
		}
	}
	t.Logf("%d entries from %d writers, %d pulls by %d readers", total, writers, pulls.Load(), readers)
}
