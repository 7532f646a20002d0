package server

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is the server's SQLite store: one writer connection, which SQLite
// requires anyway and which makes sequence numbers commit in order, and a
// pool of readers that WAL lets run beside it.
type DB struct {
	path  string
	write *sql.DB
	read  *sql.DB
	now   func() time.Time

	syncTimes syncTimes
	bulk      bulkStmts
}

// DBOptions tunes OpenDB.
type DBOptions struct {
	// Synchronous is SQLite's synchronous setting: "FULL" (the default)
	// makes every commit durable before the call returns; "NORMAL" may
	// lose the last commits on power loss (not on a process crash).
	Synchronous string
	// Readers is the size of the read pool (default 4).
	Readers int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// OpenDB opens (creating if needed) the database file at path and applies
// any migrations not yet applied.
func OpenDB(ctx context.Context, file string, opts DBOptions) (*DB, error) {
	if opts.Synchronous == "" {
		opts.Synchronous = "FULL"
	}
	switch strings.ToUpper(opts.Synchronous) {
	case "FULL", "NORMAL", "EXTRA":
	default:
		return nil, fmt.Errorf("synchronous must be FULL, NORMAL or EXTRA, not %q", opts.Synchronous)
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous("+strings.ToUpper(opts.Synchronous)+")")
		for i := 0; i+1 < len(extra); i += 2 {
			q.Add(extra[i], extra[i+1])
		}
		return "file:" + file + "?" + q.Encode()
	}
	// Diary entries are sensitive: the database is readable by its owner
	// only. SQLite creates the -wal and -shm files with the same mode.
	if f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	w, err := sql.Open("sqlite", dsn("_txlock", "immediate"))
	if err != nil {
		return nil, fmt.Errorf("cannot open database %q: %w", file, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	db := &DB{path: file, write: w, now: opts.Now}
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("cannot open database %q: %w", file, err)
	}
	if err := db.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn("_pragma", "query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("cannot open database %q for reading: %w", file, err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	db.read = r
	return db, nil
}

// Close closes both connection pools.
func (db *DB) Close() error {
	db.closeBulk()
	return errors.Join(db.read.Close(), db.write.Close())
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

func (db *DB) nowMillis() int64 { return db.now().UnixMilli() }

// migrate applies, in order and each in its own transaction, every
// embedded migration not yet recorded in schema_migrations.
func (db *DB) migrate(ctx context.Context) error {
	if _, err := db.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("cannot create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migration %q: name must start with a number and '_'", base)
		}
		if err := db.applyMigration(ctx, version, base, name); err != nil {
			return err
		}
	}
	return nil
}

func (db *DB) applyMigration(ctx context.Context, version int, base, name string) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin migration %s: %w", base, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
		return fmt.Errorf("cannot read schema_migrations: %w", err)
	}
	if n > 0 {
		return nil
	}
	body, err := migrationFS.ReadFile(name)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("cannot apply migration %s: %w", base, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, version, base, db.nowMillis()); err != nil {
		return fmt.Errorf("cannot record migration %s: %w", base, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit migration %s: %w", base, err)
	}
	return nil
}

// writeTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it.
// The commit is durable when writeTx returns nil.
func (db *DB) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin write: %w", err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit: %w", err)
	}
	return nil
}

// readTx runs fn in a read transaction: one snapshot of the database.
func (db *DB) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("cannot begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// nextSeqs reserves n sequence numbers in tx and returns the first.
func nextSeqs(ctx context.Context, tx *sql.Tx, n int) (int64, error) {
	var last int64
	if err := tx.QueryRowContext(ctx, `UPDATE sequence SET value = value + ? WHERE id = 1 RETURNING value`, n).Scan(&last); err != nil {
		return 0, fmt.Errorf("cannot reserve sequence numbers: %w", err)
	}
	return last - int64(n) + 1, nil
}

// currentSeq returns the last sequence number handed out.
func currentSeq(ctx context.Context, q querier) (int64, error) {
	var v int64
	if err := q.QueryRowContext(ctx, `SELECT value FROM sequence WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("cannot read sequence: %w", err)
	}
	return v, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
