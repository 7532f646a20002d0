package postgres

import (
	"context"
	"testing"
)

// TestDropIncompleteExports checks what a starting process does with the
// exports left incomplete: it drops the one whose lock nobody holds (its
// process stopped) and keeps the one whose process is still making it.
func TestDropIncompleteExports(t *testing.T) {
	db, url := openTestURL(t)
	ctx := context.Background()
	// Another process making an export: its snapshot's transaction holds
	// the lock its row names.
	making, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer making.Rollback(ctx)
	if _, err := making.Exec(ctx, `SELECT pg_advisory_xact_lock(4343)`); err != nil {
		t.Fatal(err)
	}
	for _, key := range []int64{4242, 4343} {
		var id int64
		if err := db.pool.QueryRow(ctx, `INSERT INTO exports (created_at, actor, position, lock_key) VALUES (1, 'test', 0, $1) RETURNING id`, key).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if _, err := db.pool.Exec(ctx, `INSERT INTO export_entries (export_id, entry_id) VALUES ($1, '\x00')`, id); err != nil {
			t.Fatal(err)
		}
	}
	keys := func() []int64 {
		t.Helper()
		got, err := queryIDs(ctx, db.pool, `SELECT lock_key FROM exports ORDER BY lock_key`)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	other, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if got := keys(); len(got) != 1 || got[0] != 4343 {
		t.Fatalf("after a process started, incomplete exports %v remain; want only the one being made (4343)", got)
	}
	if err := making.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	other, err = Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	if got := keys(); len(got) != 0 {
		t.Fatalf("after its process stopped, incomplete exports %v remain", got)
	}
	var entries int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM export_entries`).Scan(&entries); err != nil || entries != 0 {
		t.Fatalf("%d kept entries of dropped exports remain (%v)", entries, err)
	}
}
