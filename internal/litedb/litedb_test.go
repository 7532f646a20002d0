package litedb

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestMigrate: migrations apply in the order of their numbers, whatever
// gaps lie between them, each once; two with one number are refused
// before anything is applied.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	var tick int64
	now := func() int64 { tick++; return tick } // orders the records as applied
	t.Run("OK", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "db")
		fsys := fstest.MapFS{
			"m/0001_a.sql": {Data: []byte(`CREATE TABLE a (x INTEGER);`)},
			"m/0004_c.sql": {Data: []byte(`ALTER TABLE a ADD COLUMN z INTEGER;`)},
		}
		db, err := Open(ctx, file, Options{Migrations: fsys, Dir: "m", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		// A migration numbered into the gap, added later, is applied on
		// the next open; the others are not applied again.
		fsys["m/0003_b.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE a ADD COLUMN y INTEGER;`)}
		db, err = Open(ctx, file, Options{Migrations: fsys, Dir: "m", Now: now})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var got []string
		rows, err := db.Read.Query(`SELECT name FROM schema_migrations ORDER BY applied_at`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			got = append(got, n)
		}
		if strings.Join(got, " ") != "0001_a.sql 0004_c.sql 0003_b.sql" {
			t.Fatalf("applied %v", got)
		}
		if _, err := db.Write.Exec(`INSERT INTO a (x, y, z) VALUES (1, 2, 3)`); err != nil {
			t.Fatalf("the columns of every migration: %v", err)
		}
	})
	t.Run("ErrSameNumber", func(t *testing.T) {
		fsys := fstest.MapFS{
			"m/0001_a.sql":       {Data: []byte(`CREATE TABLE a (x INTEGER);`)},
			"m/0002_b.sql":       {Data: []byte(`CREATE TABLE b (x INTEGER);`)},
			"m/0002_another.sql": {Data: []byte(`CREATE TABLE c (x INTEGER);`)},
		}
		db, err := Open(ctx, filepath.Join(t.TempDir(), "db"), Options{Migrations: fsys, Dir: "m"})
		if err == nil {
			db.Close()
			t.Fatal("opened with two migrations numbered 2")
		}
		if !strings.Contains(err.Error(), "0002_another.sql") || !strings.Contains(err.Error(), "0002_b.sql") {
			t.Fatalf("error %q does not name both migrations", err)
		}
	})
}
