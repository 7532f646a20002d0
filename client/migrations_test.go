package client

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	_ "modernc.org/sqlite"
)

// appliedMigrations lists the versions recorded in a replica's
// schema_migrations.
func appliedMigrations(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// embeddedMigrations lists the versions of the migrations the client
// carries, in the order their names sort.
func embeddedMigrations(t *testing.T) []int {
	t.Helper()
	entries, err := migrations.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("migration %q: %v", e.Name(), err)
		}
		out = append(out, v)
	}
	return out
}

// TestMigrations: a fresh replica applies every migration in the order of
// their numbers, and a replica made before merged text (enrolled, with a
// write still queued) takes the merged-text migration on opening, keeps
// its queue and syncs it.
func TestMigrations(t *testing.T) {
	want := embeddedMigrations(t)
	if !slices.IsSorted(want) || !slices.Contains(want, 4) {
		t.Fatalf("embedded migrations %v: want sorted versions including 4 (merged text)", want)
	}

	t.Run("Fresh", func(t *testing.T) {
		c := MustOpen(t, Options{})
		if got := appliedMigrations(t, c.db.Read); !slices.Equal(got, want) {
			t.Fatalf("applied %v, want %v", got, want)
		}
		var merged int
		if err := c.db.Read.QueryRow(`SELECT count(*) FROM pragma_table_info('outbox') WHERE name IN ('text', 'hold', 'base', 'rebuilds')`).Scan(&merged); err != nil || merged != 4 {
			t.Fatalf("outbox has %d of the merged-text columns (%v), want 4", merged, err)
		}
	})

	t.Run("Existing", func(t *testing.T) {
		ts := startServer(t)
		ctx := context.Background()
		path := filepath.Join(t.TempDir(), "replica.db")
		c, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
			t.Fatal(err)
		}
		id := mustCreate(t, c, Draft{Title: "before the upgrade", Body: "written offline"})
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}

		// Take the replica back to the schema it had before merged text:
		// without the migration's columns and without its record.
		raw, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range []string{
			`ALTER TABLE profile DROP COLUMN merged_text`,
			`ALTER TABLE outbox DROP COLUMN text`,
			`ALTER TABLE outbox DROP COLUMN hold`,
			`ALTER TABLE outbox DROP COLUMN base`,
			`ALTER TABLE outbox DROP COLUMN rebuilds`,
			`ALTER TABLE refused DROP COLUMN text`,
			`DELETE FROM schema_migrations WHERE version = 4`,
		} {
			if _, err := raw.Exec(stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		before := appliedMigrations(t, raw)
		var queued int
		if err := raw.QueryRow(`SELECT count(*) FROM outbox`).Scan(&queued); err != nil || queued == 0 {
			t.Fatalf("outbox before the upgrade: %d rows (%v), want the queued entry", queued, err)
		}
		raw.Close()

		c, err = Open(ctx, path, Options{Synchronous: "NORMAL"})
		if err != nil {
			t.Fatalf("opening a replica made before merged text: %v", err)
		}
		defer c.Close()
		got := appliedMigrations(t, c.db.Read)
		// Later migrations stay applied once; only 4 is added.
		if slices.Contains(before, 4) || !slices.Equal(got, want) {
			t.Fatalf("applied %v after %v, want %v: 4 added and the others kept", got, before, want)
		}
		var n int
		if err := c.db.Read.QueryRow(`SELECT count(*) FROM outbox WHERE text = 0 AND hold = 0`).Scan(&n); err != nil || n != queued {
			t.Fatalf("outbox after the upgrade: %d plain rows (%v), want the %d queued", n, err, queued)
		}
		mustSync(t, c)
		other := MustOpen(t, Options{})
		enr, err := other.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "tablet")
		if err != nil {
			t.Fatal(err)
		}
		// A second device of the account waits for the first to approve it.
		if _, err := c.ApproveDevice(ctx, enr.DeviceID); err != nil {
			t.Fatal(err)
		}
		mustSync(t, other)
		if e, err := other.Get(ctx, id); err != nil || e.Body != "written offline" {
			t.Fatalf("the entry queued before the upgrade, on another device: %+v, %v", e, err)
		}
		var merged int
		if err := c.db.Read.QueryRow(`SELECT merged_text FROM profile WHERE id = 1`).Scan(&merged); err != nil || merged != 1 {
			t.Fatalf("profile.merged_text %d (%v) after syncing with a server that merges text, want 1", merged, err)
		}
	})
}
