package litedb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
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

// TestCheckpointAfterCommits: with BackgroundCheckpoints, a commit's
// pages reach the database file soon after it without any caller
// checkpointing, though the log is far below SQLite's own threshold;
// TruncateLog empties the log, with background checkpoints or without.
func TestCheckpointAfterCommits(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "db")
	fsys := fstest.MapFS{"m/0001_a.sql": {Data: []byte(`CREATE TABLE a (x BLOB);`)}}
	db, err := Open(ctx, file, Options{Migrations: fsys, Dir: "m", Now: func() int64 { return 1 }, BackgroundCheckpoints: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	size := func(f string) int64 {
		t.Helper()
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	before := size(file)
	// 1 MiB: about 256 pages, a quarter of SQLite's default threshold.
	err = db.WriteTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 256)
			INSERT INTO a (x) SELECT randomblob(4000) FROM n`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for size(file) < before+1<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes 30 s after the commit (%d before): not checkpointed", size(file), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if size(file+"-wal") == 0 {
		t.Fatal("the log is empty before TruncateLog")
	}
	if err := db.TruncateLog(ctx); err != nil {
		t.Fatal(err)
	}
	if n := size(file + "-wal"); n != 0 {
		t.Fatalf("the log holds %d bytes after TruncateLog", n)
	}
	var n int
	if err := db.Read.QueryRowContext(ctx, `SELECT count(*) FROM a`).Scan(&n); err != nil || n != 256 {
		t.Fatalf("read %d rows, %v", n, err)
	}

	plain, err := Open(ctx, filepath.Join(t.TempDir(), "db"), Options{Migrations: fsys, Dir: "m", Now: func() int64 { return 1 }})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := plain.WriteTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO a (x) VALUES (randomblob(4000))`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if size(plain.Path+"-wal") == 0 {
		t.Fatal("the log is empty after a commit without background checkpoints")
	}
	if err := plain.TruncateLog(ctx); err != nil {
		t.Fatal(err)
	}
	if n := size(plain.Path + "-wal"); n != 0 {
		t.Fatalf("the log holds %d bytes after TruncateLog without background checkpoints", n)
	}
}
