package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// holdWriter takes the store's one writer connection until release is
// called, so that pushes made meanwhile queue for one group.
func holdWriter(t *testing.T, db *DB) (release func()) {
	t.Helper()
	held, done := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- db.writeTx(context.Background(), func(tx *sql.Tx) error {
			close(held)
			<-done
			return nil
		})
	}()
	<-held
	return func() {
		close(done)
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// waitQueued waits until a push leads a group and n more wait in the
// queue behind it.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		db.group.mu.Lock()
		queued, leading := len(db.group.queue), db.group.leading
		db.group.mu.Unlock()
		if leading && queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes queued, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func historyRows(t *testing.T, db *DB) int {
	t.Helper()
	var n int
	if err := db.read.QueryRow(`SELECT count(*) FROM history`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type pushOutcome struct {
	results []study.ChangeResult
	err     error
}

func TestGroupCommit(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		db := MustOpenDB(t)
		const devices = 20
		navs := make([]*study.Identity, devices)
		for i := range navs {
			navs[i] = MustEnroll(t, db, study.RoleNavigator, "PN-"+string(rune('A'+i)))
		}
		before := db.GroupStats()
		began := time.Now()
		release := holdWriter(t, db)
		out := make([]pushOutcome, devices)
		var wg sync.WaitGroup
		for i, nav := range navs {
			wg.Go(func() {
				r, _, err := db.Push(context.Background(), nav, entryChanges(nav.Replica, syncengine.NewClock(nil), true))
				out[i] = pushOutcome{r, err}
			})
		}
		// The first push leads and waits for the writer; the others
		// queue behind it.
		waitQueued(t, db, devices-1)
		release()
		wg.Wait()
		for i, o := range out {
			if o.err != nil {
				t.Fatalf("push %d: %v", i, o.err)
			}
			for _, r := range o.results {
				if r.Outcome != study.OutcomeApplied {
					t.Fatalf("push %d: %+v", i, r)
				}
			}
		}
		got := db.GroupStats()
		if commits, pushes := got.Commits-before.Commits, got.Pushes-before.Pushes; commits != 2 || pushes != devices {
			t.Fatalf("%d pushes in %d commits, want %d in 2 (the leader's, then everyone queued behind it)", pushes, commits, devices)
		}
		// Both groups ran, one after the other, while the pushes waited.
		if busy, span := got.Busy-before.Busy, time.Since(began); busy <= 0 || busy > span {
			t.Fatalf("the writer was busy %v running groups within %v", busy, span)
		}
		if n := historyRows(t, db); n != devices*3 {
			t.Fatalf("%d history rows, want %d", n, devices*3)
		}
	})

	t.Run("ErrOneFailsAlone", func(t *testing.T) {
		db := MustOpenDB(t)
		a := MustEnroll(t, db, study.RoleNavigator, "PN-A")
		b := MustEnroll(t, db, study.RoleNavigator, "PN-B")
		c := MustEnroll(t, db, study.RoleNavigator, "PN-C")
		clockB := syncengine.NewClock(nil)
		broken := entryChanges(b.Replica, clockB, false)
		MustPush(t, db, b, broken)
		// Damage B's stored entry: the next push that touches it cannot
		// decode it and fails as a whole.
		if _, err := db.write.Exec(`UPDATE entries SET state = x'ff' WHERE id = ?`, broken[0].Change.Entry[:]); err != nil {
			t.Fatal(err)
		}
		rows := historyRows(t, db)

		release := holdWriter(t, db)
		first := make(chan pushOutcome, 1)
		go func() {
			r, _, err := db.Push(context.Background(), a, entryChanges(a.Replica, syncengine.NewClock(nil), true))
			first <- pushOutcome{r, err}
		}()
		waitQueued(t, db, 0)
		// B's push holds a new entry and an edit of the damaged one.
		edit := broken[0]
		edit.Change.Clock, edit.Change.Text = clockB.Now(), "edited"
		bad := append(entryChanges(b.Replica, clockB, false), edit)
		var wg sync.WaitGroup
		var badOut, goodOut pushOutcome
		wg.Go(func() {
			r, _, err := db.Push(context.Background(), b, bad)
			badOut = pushOutcome{r, err}
		})
		waitQueued(t, db, 1)
		wg.Go(func() {
			r, _, err := db.Push(context.Background(), c, entryChanges(c.Replica, syncengine.NewClock(nil), true))
			goodOut = pushOutcome{r, err}
		})
		waitQueued(t, db, 2)
		before := db.GroupStats()
		release()
		wg.Wait()
		if o := <-first; o.err != nil {
			t.Fatalf("the leader's push: %v", o.err)
		}
		if badOut.err == nil || syncengine.ErrorCode(badOut.err) != syncengine.EINTERNAL {
			t.Fatalf("the push touching a damaged entry: %v, want an internal error", badOut.err)
		}
		if goodOut.err != nil {
			t.Fatalf("the push queued beside it: %v", goodOut.err)
		}
		if got := db.GroupStats(); got.Commits-before.Commits != 2 {
			t.Fatalf("%d commits, want 2: the failed push shared its group with the one after it", got.Commits-before.Commits)
		}
		// The leader's and C's entries are stored; nothing of B's push is.
		if n := historyRows(t, db); n != rows+3+3 {
			t.Fatalf("%d history rows after the group, want %d: a failed push left rows behind or a good one was lost", n, rows+6)
		}
		var bEntries int
		if err := db.read.QueryRow(`SELECT count(*) FROM entries WHERE owner_id = ?`, b.UserID).Scan(&bEntries); err != nil || bEntries != 1 {
			t.Fatalf("B has %d entries (%v), want the one stored before", bEntries, err)
		}
	})

	t.Run("ErrCancelledWhileQueued", func(t *testing.T) {
		db := MustOpenDB(t)
		a := MustEnroll(t, db, study.RoleNavigator, "PN-A")
		b := MustEnroll(t, db, study.RoleNavigator, "PN-B")
		release := holdWriter(t, db)
		lead := make(chan error, 1)
		go func() {
			_, _, err := db.Push(context.Background(), a, entryChanges(a.Replica, syncengine.NewClock(nil), false))
			lead <- err
		}()
		waitQueued(t, db, 0)
		ctx, cancel := context.WithCancel(context.Background())
		queued := make(chan error, 1)
		go func() {
			_, _, err := db.Push(ctx, b, entryChanges(b.Replica, syncengine.NewClock(nil), false))
			queued <- err
		}()
		waitQueued(t, db, 1)
		cancel()
		release()
		if err := <-lead; err != nil {
			t.Fatal(err)
		}
		if err := <-queued; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want the caller's cancellation", err)
		}
		if n := historyRows(t, db); n != 2 {
			t.Fatalf("%d history rows, want only the leader's 2", n)
		}
	})
}
