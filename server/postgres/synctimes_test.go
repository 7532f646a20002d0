package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestFlushSyncTimesBesideAGroup: a group of pushes holds the write lock
// and updates its devices' rows one push at a time. Writing the devices'
// sync times meanwhile must wait for the group, not take some of those
// rows and then wait for another: that is a deadlock, which PostgreSQL
// breaks after deadlock_timeout by failing one side (a whole group of
// pushes, or the flush).
func TestFlushSyncTimesBesideAGroup(t *testing.T) {
	db := openTestDB(t)
	ctx := context.Background()
	const devices = 20
	ids := make([]int64, devices)
	for i := range ids {
		ids[i] = mustEnroll(t, db, fmt.Sprintf("PN-%02d", i)).DeviceID
	}
	// Twice, each time with a different device's row taken first; with
	// the flush taking rows in its own order, each round deadlocks unless
	// that row happens to be the flush's first.
	for round, first := range []int64{ids[0], ids[devices-1]} {
		for _, id := range ids {
			db.TouchDevice(id)
		}
		// What a group does: the lock, then the first push's device row.
		group, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := group.Exec(ctx, `SELECT value FROM sequence WHERE id = 1 FOR UPDATE`); err != nil {
			t.Fatal(err)
		}
		if _, err := group.Exec(ctx, `UPDATE devices SET applied_changes = applied_changes + 1 WHERE id = $1`, first); err != nil {
			t.Fatal(err)
		}
		flushed := make(chan error, 1)
		go func() { flushed <- db.FlushSyncTimes(ctx) }()
		waitForLockWait(t, db)
		// The group's next pushes: every other device's row.
		_, err = group.Exec(ctx, `UPDATE devices SET applied_changes = applied_changes + 1 WHERE id = ANY($1) AND id <> $2`, ids, first)
		if err != nil {
			group.Rollback(ctx)
			t.Fatalf("round %d: the group's next pushes: %v", round, err)
		}
		if err := group.Commit(ctx); err != nil {
			t.Fatalf("round %d: the group's commit: %v", round, err)
		}
		if err := <-flushed; err != nil {
			t.Fatalf("round %d: flush: %v", round, err)
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM devices WHERE id = ANY($1) AND last_sync_at IS NOT NULL AND applied_changes = 2`, ids); n != devices {
		t.Fatalf("%d of %d devices have both their sync time and both counts", n, devices)
	}
}

// waitForLockWait waits until a connection to the test's database waits
// for a lock.
func waitForLockWait(t *testing.T, db *DB) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		n := countRows(t, db, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing waits for a lock")
		}
		time.Sleep(time.Millisecond)
	}
}
