package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// openTestDB opens a store on a new database of the server
// DIARYSYNC_TEST_POSTGRES names (skipping without one), dropped when the
// test ends. (internal/storetest, which other packages use, imports this
// package, so its tests cannot use it.)
func openTestDB(t testing.TB) *DB {
	t.Helper()
	db, _ := openTestURL(t)
	return db
}

// openTestURL is openTestDB that also returns the database's URL.
func openTestURL(t testing.TB) (*DB, string) {
	t.Helper()
	u := newTestDatabase(t)
	db, err := Open(context.Background(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, u
}

// newTestDatabase creates an empty database on the server
// DIARYSYNC_TEST_POSTGRES names (skipping without one), drops it when the
// test ends, and returns its URL.
func newTestDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv("DIARYSYNC_TEST_POSTGRES")
	if base == "" {
		t.Skip("DIARYSYNC_TEST_POSTGRES is not set: no PostgreSQL server to test against (.ci/run starts one)")
	}
	ctx := context.Background()
	var id [6]byte
	rand.Read(id[:])
	name := "diarysync_group_" + hex.EncodeToString(id[:])
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Error(err)
		}
	})
	return u.String()
}

func mustEnroll(t testing.TB, db *DB, code string) *study.Identity {
	t.Helper()
	ctx := context.Background()
	if _, err := db.CreateUser(ctx, code, study.RoleNavigator, ""); err != nil {
		t.Fatal(err)
	}
	c, _, err := db.IssueEnrollmentCode(ctx, code, 0)
	if err != nil {
		t.Fatal(err)
	}
	enr, err := db.Enroll(ctx, study.EnrollRequest{Code: c, DeviceName: "test device"})
	if err != nil {
		t.Fatal(err)
	}
	id, err := db.Authenticate(ctx, enr.Token)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newEntry returns the two changes that create an entry dated date.
func newEntry(replica syncengine.ReplicaID, clock *syncengine.Clock, date string) []study.Incoming {
	id := syncengine.NewEntryID()
	mk := func(c syncengine.Change) study.Incoming {
		c.Entry, c.Replica, c.Clock = id, replica, clock.Now()
		return study.Incoming{Change: c}
	}
	return []study.Incoming{
		mk(syncengine.Change{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"}),
		mk(syncengine.Change{Field: syncengine.FieldDate, Text: date}),
	}
}

// holdWriteLock takes the study's write lock (the sequence row) on a
// connection of its own until release is called, so that a group waits
// for it while more pushes queue.
func holdWriteLock(t *testing.T, db *DB) (release func()) {
	t.Helper()
	ctx := context.Background()
	ptx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ptx.Exec(ctx, `SELECT value FROM sequence WHERE id = 1 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := ptx.Rollback(ctx); err != nil {
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

func countRows(t *testing.T, db *DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// leadBehindLock holds the study's write lock and starts a push of a new
// entry by lead, which leads a group and waits for the lock; the pushes
// made before release queue behind it, and done says how it ended.
func leadBehindLock(t *testing.T, db *DB, lead *study.Identity) (release func(), done <-chan error) {
	t.Helper()
	release = holdWriteLock(t, db)
	ch := make(chan error, 1)
	go func() {
		_, _, err := db.Push(context.Background(), lead, newEntry(lead.Replica, syncengine.NewClock(nil), time.Now().Format(time.DateOnly)))
		ch <- err
	}()
	waitQueued(t, db, 0)
	return release, ch
}

// forbidPoisonDate adds a constraint that fails, in the database, the
// write of an entry dated 1999-09-09.
func forbidPoisonDate(t *testing.T, db *DB) {
	t.Helper()
	if _, err := db.pool.Exec(context.Background(), `ALTER TABLE entries ADD CONSTRAINT no_poison CHECK (date <> '1999-09-09')`); err != nil {
		t.Fatal(err)
	}
}

type pushOutcome struct {
	results []study.ChangeResult
	err     error
}

func TestGroupCommit(t *testing.T) {
	today := time.Now().Format(time.DateOnly)
	t.Run("OK", func(t *testing.T) {
		db := openTestDB(t)
		const devices = 20
		navs := make([]*study.Identity, devices)
		for i := range navs {
			navs[i] = mustEnroll(t, db, "PN-"+string(rune('A'+i)))
		}
		before, trips := db.GroupStats(), db.group.trips.Load()
		began := time.Now()
		release := holdWriteLock(t, db)
		out := make([]pushOutcome, devices)
		var wg sync.WaitGroup
		for i, nav := range navs {
			wg.Go(func() {
				r, _, err := db.Push(context.Background(), nav, newEntry(nav.Replica, syncengine.NewClock(nil), today))
				out[i] = pushOutcome{r, err}
			})
		}
		// The first push leads and waits for the lock; the others queue
		// behind it.
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
		// The pushes have nothing in common (grouprun.go): the leader's
		// group, then the 19 queued behind it, each a batch of reads and
		// a batch of writes.
		if got := db.group.trips.Load() - trips; got != 4 {
			t.Errorf("%d round trips for %d pushes in two groups, want 4", got, devices)
		}
		if n := countRows(t, db, `SELECT count(*) FROM history`); n != devices*2 {
			t.Fatalf("%d history rows, want %d", n, devices*2)
		}
		// Every entry has a sequence number of its own.
		if n := countRows(t, db, `SELECT count(DISTINCT seq) FROM entries`); n != devices {
			t.Fatalf("%d distinct sequence numbers for %d entries", n, devices)
		}
	})

	// A push that fails in the database (here a constraint the test adds)
	// leaves the transaction aborted until its savepoint is rolled back;
	// one that fails in Go (a stored state that cannot be decoded) does
	// not. Both fail alone, and the pushes beside them commit. The four
	// queued pushes share a run (grouprun.go) whose reads fail at B's, so
	// each is read again alone, its reads travelling with the writes of
	// the push before it: B's reads fail in the batch that writes D's
	// push, and E's reads are in the batch whose writes (C's) fail, so
	// they are sent again.
	t.Run("ErrOneFailsAlone", func(t *testing.T) {
		db := openTestDB(t)
		ctx := context.Background()
		forbidPoisonDate(t, db)
		a, b, c, d, e := mustEnroll(t, db, "PN-A"), mustEnroll(t, db, "PN-B"), mustEnroll(t, db, "PN-C"), mustEnroll(t, db, "PN-D"), mustEnroll(t, db, "PN-E")
		clockB := syncengine.NewClock(nil)
		stored := newEntry(b.Replica, clockB, today)
		if _, _, err := db.Push(ctx, b, stored); err != nil {
			t.Fatal(err)
		}
		if _, err := db.pool.Exec(ctx, `UPDATE entries SET state = '\xff' WHERE id = $1`, stored[0].Change.Entry[:]); err != nil {
			t.Fatal(err)
		}
		rows := countRows(t, db, `SELECT count(*) FROM history`)

		release := holdWriteLock(t, db)
		first := make(chan pushOutcome, 1)
		go func() {
			r, _, err := db.Push(ctx, a, newEntry(a.Replica, syncengine.NewClock(nil), today))
			first <- pushOutcome{r, err}
		}()
		waitQueued(t, db, 0)
		edit := stored[0]
		edit.Change.Clock, edit.Change.Text = clockB.Now(), "edited"
		pushes := [][]study.Incoming{
			newEntry(d.Replica, syncengine.NewClock(nil), today),        // D: fine
			append(newEntry(b.Replica, clockB, today), edit),            // B: touches the damaged entry
			newEntry(c.Replica, syncengine.NewClock(nil), "1999-09-09"), // C: breaks the constraint
			newEntry(e.Replica, syncengine.NewClock(nil), today),        // E: fine
		}
		who := []*study.Identity{d, b, c, e}
		out := make([]pushOutcome, len(pushes))
		var wg sync.WaitGroup
		for i := range pushes {
			wg.Go(func() {
				r, _, err := db.Push(ctx, who[i], pushes[i])
				out[i] = pushOutcome{r, err}
			})
			waitQueued(t, db, i+1)
		}
		before := db.GroupStats()
		release()
		wg.Wait()
		if o := <-first; o.err != nil {
			t.Fatalf("the leader's push: %v", o.err)
		}
		if syncengine.ErrorCode(out[1].err) != syncengine.EINTERNAL || syncengine.ErrorCode(out[2].err) != syncengine.EINTERNAL {
			t.Fatalf("the failing pushes: %v and %v, want internal errors", out[1].err, out[2].err)
		}
		for _, k := range []int{0, 3} {
			if out[k].err != nil {
				t.Fatalf("push %d, queued beside them: %v", k, out[k].err)
			}
			for _, r := range out[k].results {
				if r.Outcome != study.OutcomeApplied {
					t.Fatalf("push %d: %+v", k, r)
				}
			}
		}
		if got := db.GroupStats(); got.Commits-before.Commits != 2 || got.Pushes-before.Pushes != 3 {
			t.Fatalf("%d pushes in %d commits, want 3 in 2: the failed pushes shared their group with D's and E's", got.Pushes-before.Pushes, got.Commits-before.Commits)
		}
		if n := countRows(t, db, `SELECT count(*) FROM history`); n != rows+2+2+2 {
			t.Fatalf("%d history rows after the group, want %d: a failed push left rows behind or a good one was lost", n, rows+6)
		}
		for _, u := range []*study.Identity{b, c, d, e} {
			want := map[*study.Identity]int{b: 1, c: 0, d: 1, e: 1}[u]
			if n := countRows(t, db, `SELECT count(*) FROM entries WHERE owner_id = $1`, u.UserID); n != want {
				t.Fatalf("user %d has %d entries, want %d", u.UserID, n, want)
			}
		}
	})

	t.Run("ErrCancelledWhileQueued", func(t *testing.T) {
		db := openTestDB(t)
		a, b := mustEnroll(t, db, "PN-A"), mustEnroll(t, db, "PN-B")
		release := holdWriteLock(t, db)
		lead := make(chan error, 1)
		go func() {
			_, _, err := db.Push(context.Background(), a, newEntry(a.Replica, syncengine.NewClock(nil), today))
			lead <- err
		}()
		waitQueued(t, db, 0)
		ctx, cancel := context.WithCancel(context.Background())
		queued := make(chan error, 1)
		go func() {
			_, _, err := db.Push(ctx, b, newEntry(b.Replica, syncengine.NewClock(nil), today))
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
		if n := countRows(t, db, `SELECT count(*) FROM history`); n != 2 {
			t.Fatalf("%d history rows, want only the leader's 2", n)
		}
	})
}

// TestGroupRuns checks how a group's pushes share round trips
// (grouprun.go; TestGroupCommit/OK counts them): a push that touches what
// one before it in the group wrote reads it, and a push whose writes fail
// in a batch shared with others fails alone while the pushes after it
// are written.
func TestGroupRuns(t *testing.T) {
	today := time.Now().Format(time.DateOnly)
	ctx := context.Background()

	// The same device creates an entry and then, in the same group,
	// dates it anew: the second push must read the entry the first
	// wrote, or it would write the entry as new, without its title.
	t.Run("DependentReadsWhatBeforeWrote", func(t *testing.T) {
		db := openTestDB(t)
		lead, a, b := mustEnroll(t, db, "PN-L"), mustEnroll(t, db, "PN-A"), mustEnroll(t, db, "PN-B")
		release, done := leadBehindLock(t, db, lead)
		clockA := syncengine.NewClock(nil)
		create := newEntry(a.Replica, clockA, today)
		redate := create[1]
		redate.Change.Clock, redate.Change.Text = clockA.Now(), "2026-01-02"
		pushes := []struct {
			who *study.Identity
			in  []study.Incoming
		}{
			{a, create},
			{b, newEntry(b.Replica, syncengine.NewClock(nil), today)},
			{a, []study.Incoming{redate}},
		}
		errs := make([]error, len(pushes))
		var wg sync.WaitGroup
		for i, p := range pushes {
			wg.Go(func() { _, _, errs[i] = db.Push(ctx, p.who, p.in) })
			waitQueued(t, db, i+1)
		}
		release()
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for i, err := range errs {
			if err != nil {
				t.Fatalf("push %d: %v", i, err)
			}
		}
		var state []byte
		if err := db.pool.QueryRow(ctx, `SELECT state FROM entries WHERE id = $1`, create[0].Change.Entry[:]).Scan(&state); err != nil {
			t.Fatal(err)
		}
		e, err := syncengine.DecodeEntry(state)
		if err != nil {
			t.Fatal(err)
		}
		if e.Title.Value != create[0].Change.Text || e.Date.Value != "2026-01-02" {
			t.Errorf("entry titled %q, dated %q; want %q, dated anew", e.Title.Value, e.Date.Value, create[0].Change.Text)
		}
	})

	// C's writes break a constraint in the batch that writes D's, C's
	// and E's pushes: D's are written before it, E's are sent again.
	t.Run("ErrWriteFailsAlone", func(t *testing.T) {
		db := openTestDB(t)
		forbidPoisonDate(t, db)
		lead, c, d, e := mustEnroll(t, db, "PN-L"), mustEnroll(t, db, "PN-C"), mustEnroll(t, db, "PN-D"), mustEnroll(t, db, "PN-E")
		release, done := leadBehindLock(t, db, lead)
		pushes := []struct {
			who  *study.Identity
			date string
		}{{d, today}, {c, "1999-09-09"}, {e, today}}
		errs := make([]error, len(pushes))
		var wg sync.WaitGroup
		for i, p := range pushes {
			wg.Go(func() { _, _, errs[i] = db.Push(ctx, p.who, newEntry(p.who.Replica, syncengine.NewClock(nil), p.date)) })
			waitQueued(t, db, i+1)
		}
		before := db.GroupStats()
		trips := db.group.trips.Load()
		release()
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if errs[0] != nil || errs[2] != nil || syncengine.ErrorCode(errs[1]) != syncengine.EINTERNAL {
			t.Fatalf("pushes of D, C, E: %v, %v, %v; want C's alone to fail", errs[0], errs[1], errs[2])
		}
		if got := db.GroupStats(); got.Commits-before.Commits != 2 || got.Pushes-before.Pushes != 3 {
			t.Fatalf("%d pushes in %d commits, want the leader's, then D's and E's", got.Pushes-before.Pushes, got.Commits-before.Commits)
		}
		// The leader's reads and writes; the run's reads, its writes
		// failing at C, C's rollback, E's reads and E's writes.
		if got := db.group.trips.Load() - trips; got != 7 {
			t.Errorf("%d round trips, want 7", got)
		}
		for u, want := range map[*study.Identity]int{c: 0, d: 1, e: 1} {
			if n := countRows(t, db, `SELECT count(*) FROM entries WHERE owner_id = $1`, u.UserID); n != want {
				t.Errorf("user %d has %d entries, want %d", u.UserID, n, want)
			}
		}
		if n := countRows(t, db, `SELECT count(*) FROM history`); n != 2*3 {
			t.Errorf("%d history rows, want the leader's, D's and E's 2 each", n)
		}
	})
}

// TestGroupRunsAsOneByOne checks, over random mixes of pushes, that a
// group sharing round trips among its pushes ends as the same pushes do
// one at a time: the same pushes fail, and every entry holds the same
// title and date. Each navigator creates entries and edits its own, some
// pushes in the group depend on pushes before them, and some break a
// constraint the test adds.
func TestGroupRunsAsOneByOne(t *testing.T) {
	ctx := context.Background()
	const navigators, pushes = 6, 40
	type step struct {
		nav    int
		create bool
		entry  int    // index into the entries made so far (an edit), or the new entry's
		date   string // "1999-09-09" breaks the constraint
		// An edit changes one field: the date, or with retitle the title.
		retitle bool
	}
	for seed := range uint64(4) {
		rng := mrand.New(mrand.NewPCG(seed, 26))
		// The steps, and the entries they make: each entry is its
		// navigator's.
		var steps []step
		var owner []int
		for range pushes {
			s := step{nav: rng.IntN(navigators), date: fmt.Sprintf("2026-%02d-%02d", 1+rng.IntN(12), 1+rng.IntN(28))}
			var own []int
			for e, o := range owner {
				if o == s.nav {
					own = append(own, e)
				}
			}
			if len(own) == 0 || rng.IntN(3) == 0 {
				s.create, s.entry = true, len(owner)
				owner = append(owner, s.nav)
			} else {
				s.entry, s.retitle = own[rng.IntN(len(own))], rng.IntN(2) == 0
			}
			if rng.IntN(8) == 0 {
				s.date = "1999-09-09"
			}
			steps = append(steps, s)
		}
		ids := make([]syncengine.EntryID, len(owner))
		for e := range ids {
			ids[e] = syncengine.NewEntryID()
		}

		// run applies the steps on a new database, all queued behind one
		// group when grouped, else one after another, and returns which
		// failed and each entry's title and date.
		run := func(grouped bool) (failed []bool, fields map[syncengine.EntryID][2]string) {
			db := openTestDB(t)
			forbidPoisonDate(t, db)
			// The leader's push, in a group of its own, is alike in both.
			leader := mustEnroll(t, db, "PN-L")
			navs := make([]*study.Identity, navigators)
			clocks := make([]*syncengine.Clock, navigators)
			for i := range navs {
				navs[i], clocks[i] = mustEnroll(t, db, fmt.Sprintf("PN-%02d", i)), syncengine.NewClock(nil)
			}
			changes := func(s step) []study.Incoming {
				mk := func(f syncengine.Field, text string) study.Incoming {
					c := syncengine.Change{Entry: ids[s.entry], Field: f, Text: text}
					c.Replica, c.Clock = navs[s.nav].Replica, clocks[s.nav].Now()
					return study.Incoming{Change: c}
				}
				if s.create {
					return []study.Incoming{mk(syncengine.FieldTitle, fmt.Sprintf("entry %d", s.entry)), mk(syncengine.FieldDate, s.date)}
				}
				if s.retitle {
					return []study.Incoming{mk(syncengine.FieldTitle, fmt.Sprintf("entry %d, retitled", s.entry))}
				}
				return []study.Incoming{mk(syncengine.FieldDate, s.date)}
			}
			errs := make([]error, len(steps))
			if grouped {
				release, lead := leadBehindLock(t, db, leader)
				var wg sync.WaitGroup
				for i, s := range steps {
					in := changes(s)
					wg.Go(func() { _, _, errs[i] = db.Push(ctx, navs[s.nav], in) })
					waitQueued(t, db, i+1)
				}
				release()
				wg.Wait()
				if err := <-lead; err != nil {
					t.Fatal(err)
				}
			} else {
				if _, _, err := db.Push(ctx, leader, newEntry(leader.Replica, syncengine.NewClock(nil), time.Now().Format(time.DateOnly))); err != nil {
					t.Fatal(err)
				}
				for i, s := range steps {
					_, _, errs[i] = db.Push(ctx, navs[s.nav], changes(s))
				}
			}
			for _, err := range errs {
				if err != nil && syncengine.ErrorCode(err) != syncengine.EINTERNAL {
					t.Fatalf("seed %d: a push failed with %v, want only the constraint's internal errors", seed, err)
				}
				failed = append(failed, err != nil)
			}
			fields = map[syncengine.EntryID][2]string{}
			rows, err := db.pool.Query(ctx, `SELECT id, state FROM entries`)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var id, state []byte
				if err := rows.Scan(&id, &state); err != nil {
					t.Fatal(err)
				}
				e, err := syncengine.DecodeEntry(state)
				if err != nil {
					t.Fatal(err)
				}
				fields[syncengine.EntryID(id)] = [2]string{e.Title.Value, e.Date.Value}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return failed, fields
		}
		gotFailed, got := run(true)
		wantFailed, want := run(false)
		for i := range steps {
			if gotFailed[i] != wantFailed[i] {
				t.Errorf("seed %d, push %d (%+v): failed %v in a group, %v alone", seed, i, steps[i], gotFailed[i], wantFailed[i])
			}
		}
		if len(got) != len(want) {
			t.Errorf("seed %d: %d entries in a group, %d alone", seed, len(got), len(want))
		}
		for id, w := range want {
			if g, ok := got[id]; ok && g != w {
				t.Errorf("seed %d: entry %s is %q in a group, %q alone", seed, id, g, w)
			}
		}
	}
}
