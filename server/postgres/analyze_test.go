package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// TestPlansFollowGrowth: a connection that planned the lookup of a
// push's entries while the study was small, as every connection of a new
// study does, plans it again once the study has grown, without waiting
// for autovacuum: the store analyzes the tables pushes grow.
func TestPlansFollowGrowth(t *testing.T) {
	db, url := openTestURL(t)
	ctx := context.Background()
	// Only the store's own analyses count here.
	if _, err := db.pool.Exec(ctx, `ALTER TABLE entries SET (autovacuum_enabled = false);
		ALTER TABLE history SET (autovacuum_enabled = false);
		ALTER TABLE feed SET (autovacuum_enabled = false)`, pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	nav := mustEnroll(t, db, "PN-A")
	clock := syncengine.NewClock(nil)
	today := time.Now().Format(time.DateOnly)
	push := func(entries int) {
		t.Helper()
		for entries > 0 {
			var in []study.Incoming
			for range min(entries, 100) {
				in = append(in, newEntry(nav.Replica, clock, today)...)
			}
			entries -= 100
			if _, _, err := db.Push(ctx, nav, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A small study, analyzed as autovacuum would at this size.
	push(300)
	if _, err := db.pool.Exec(ctx, `ANALYZE entries, history, feed`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The generic plan, which a server's connections keep after a few
	// runs of a statement.
	if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE lookup(bytea[]) AS `+loadEntriesSQL); err != nil {
		t.Fatal(err)
	}
	plan := func() string {
		t.Helper()
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE lookup(ARRAY['\x01'::bytea, '\x02'::bytea])`, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	if p := plan(); !strings.Contains(p, "Seq Scan") {
		t.Fatalf("the small study's plan does not read the whole table, so this test shows nothing:\n%s", p)
	}

	push(10000)
	for deadline := time.Now().Add(time.Minute); ; {
		p := plan()
		if !strings.Contains(p, "Seq Scan") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the study grew to %d entries the lookup still reads the whole table:\n%s",
				countRows(t, db, `SELECT count(*) FROM entries`), p)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := countRows(t, db, `SELECT analyze_count::int FROM pg_stat_user_tables WHERE relname = 'entries'`); n < 2 {
		t.Fatalf("entries analyzed %d times, want the test's and at least one of the store's", n)
	}
}
