// Package litedb opens SQLite databases the way diarysync uses them: WAL,
// a busy timeout, foreign keys, one writer connection that takes its lock
// at BEGIN (so writers queue instead of failing), a pool of readers, and
// embedded migrations applied in order, each in its own transaction.
package litedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DB is a SQLite database with a single writer connection and a pool of
// readers.
type DB struct {
	Path  string
	Write *sql.DB
	Read  *sql.DB

	beforeCommit func(ctx context.Context, tx *sql.Tx) error
	ckpt         *checkpointer
}

// Options tunes Open.
type Options struct {
	// Synchronous is SQLite's synchronous setting: FULL (the default)
	// makes every commit durable before it returns.
	Synchronous string
	// Readers is the size of the read pool (default 4).
	Readers int
	// SecureDelete overwrites deleted content with zeros (SQLite's
	// secure_delete), so that erased or replaced diary text does not
	// linger in free pages of the file.
	SecureDelete bool
	// Migrations holds the migrations as NNNN_name.sql files under dir.
	Migrations fs.FS
	Dir        string
	// Now returns the time recorded with applied migrations, in Unix ms.
	Now func() int64
	// MaxPageCount, if not 0, caps the file at that many pages (SQLite's
	// max_page_count), so that tests can fill "the disk".
	MaxPageCount int
	// BackgroundCheckpoints moves checkpoints out of the commits into a
	// goroutine of their own (see checkpoint.go): for a server, whose
	// commits answer many callers. Without it SQLite checkpoints as usual,
	// inside the commit that takes the log past 1,000 pages, which on a
	// phone means fewer syncs of the disk.
	BackgroundCheckpoints bool
	// BeforeCommit, if set, runs at the end of every WriteTx after the
	// migrations, in its transaction, before it commits; an error rolls
	// the transaction back. It finishes work that triggers left for the
	// transaction.
	BeforeCommit func(ctx context.Context, tx *sql.Tx) error
}

// Errors SQLite reports that callers handle on their own, tested with
// errors.Is.
var (
	// ErrFull is a write that found the disk, or the file's size limit,
	// full. The transaction was rolled back: nothing of it was written.
	ErrFull = errors.New("database or disk is full")
	// ErrCorrupt is a read or write that found the file damaged.
	ErrCorrupt = errors.New("the database file is damaged")
)

// classified is an SQLite error marked as one of the errors above.
type classified struct {
	kind error
	err  error
}

func (c *classified) Error() string        { return c.err.Error() }
func (c *classified) Unwrap() error        { return c.err }
func (c *classified) Is(target error) bool { return target == c.kind }

// Classify marks an error of SQLite's that says the disk is full or the
// file is damaged, so that errors.Is(err, ErrFull) or ErrCorrupt holds;
// other errors are returned as they are.
func Classify(err error) error {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL:
		return &classified{ErrFull, err}
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return &classified{ErrCorrupt, err}
	}
	return err
}

// Open opens (creating, with mode 0600, if needed) the database at file
// and applies the migrations not yet applied.
func Open(ctx context.Context, file string, opts Options) (*DB, error) {
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
	dsn := func(extra ...string) string {
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous("+strings.ToUpper(opts.Synchronous)+")")
		if opts.SecureDelete {
			q.Add("_pragma", "secure_delete(1)")
		}
		if opts.MaxPageCount > 0 {
			q.Add("_pragma", fmt.Sprintf("max_page_count(%d)", opts.MaxPageCount))
		}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Add(extra[i], extra[i+1])
		}
		return "file:" + file + "?" + q.Encode()
	}
	// The data is sensitive: the file is readable by its owner only, and
	// SQLite gives the -wal and -shm files the same mode. A file made
	// wider by hand is tightened.
	if f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("cannot create database %q: %w", file, err)
	} else {
		f.Close()
	}
	for _, f := range []string{file, file + "-wal", file + "-shm"} {
		if err := TightenMode(f, 0o600); err != nil {
			return nil, err
		}
	}
	// The writer keeps its savepoints' journal in memory: every push of
	// a group commit is a savepoint, and a journal in a file costs a
	// write call for each page a push first changes. It holds one push's
	// pages at a time: SQLite empties it when the savepoint is released.
	writer := []string{"_txlock", "immediate", "_pragma", "temp_store(MEMORY)"}
	if opts.BackgroundCheckpoints {
		writer = append(writer, "_pragma", fmt.Sprintf("wal_autocheckpoint(%d)", writerCheckpointPages))
	}
	w, err := sql.Open("sqlite", dsn(writer...))
	if err != nil {
		return nil, fmt.Errorf("cannot open database %q: %w", file, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("cannot open database %q: %w", file, Classify(err))
	}
	db := &DB{Path: file, Write: w}
	if opts.Migrations != nil {
		if err := db.migrate(ctx, opts); err != nil {
			w.Close()
			return nil, err
		}
	}
	// Only once the schema is complete: the hook may use its tables.
	db.beforeCommit = opts.BeforeCommit
	r, err := sql.Open("sqlite", dsn("_pragma", "query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("cannot open database %q for reading: %w", file, err)
	}
	r.SetMaxOpenConns(opts.Readers)
	r.SetMaxIdleConns(opts.Readers)
	db.Read = r
	if opts.BackgroundCheckpoints {
		c, err := sql.Open("sqlite", dsn())
		if err != nil {
			r.Close()
			w.Close()
			return nil, fmt.Errorf("cannot open database %q for checkpoints: %w", file, err)
		}
		c.SetMaxOpenConns(1)
		c.SetMaxIdleConns(1)
		c.SetConnMaxLifetime(0)
		c.SetConnMaxIdleTime(0)
		db.ckpt = startCheckpointer(c)
	}
	return db, nil
}

// TightenMode makes path (a file or directory, if it exists) accessible
// to its owner only, as mode (0600 or 0700) says, when it is open to
// others. It fails, saying why, when it cannot: the path belongs to
// someone else, or the file system ignores modes.
func TightenMode(path string, mode os.FileMode) error {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("%s is open to other users (mode %04o) and cannot be made private (%04o): %w", path, st.Mode().Perm(), mode, err)
	}
	if st, err := os.Stat(path); err == nil && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is open to other users (mode %04o) and its file system does not let it be made private: move it to one that does", path, st.Mode().Perm())
	}
	return nil
}

// QuickCheck runs SQLite's quick_check over the file and returns nil if
// it is sound, or an error wrapping ErrCorrupt that says what is wrong.
func (db *DB) QuickCheck(ctx context.Context) error {
	rows, err := db.Write.QueryContext(ctx, `PRAGMA quick_check(5)`)
	if err != nil {
		return fmt.Errorf("cannot check %s: %w", db.Path, Classify(err))
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("cannot check %s: %w", db.Path, Classify(err))
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot check %s: %w", db.Path, Classify(err))
	}
	if len(problems) > 0 {
		return &classified{ErrCorrupt, fmt.Errorf("%s", strings.Join(problems, "; "))}
	}
	return nil
}

// Close stops the background checkpoints and closes the connections.
func (db *DB) Close() error {
	return errors.Join(db.ckpt.close(), db.Read.Close(), db.Write.Close())
}

func (db *DB) migrate(ctx context.Context, opts Options) error {
	if _, err := db.Write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("cannot create schema_migrations: %w", err)
	}
	names, err := fs.Glob(opts.Migrations, path.Join(opts.Dir, "*.sql"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	// Versions are recorded by number, so two files with one number
	// would leave the second unapplied without a word.
	seen := make(map[int]string, len(names))
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return fmt.Errorf("migration %q: name must start with a number and '_'", base)
		}
		if other, dup := seen[version]; dup {
			return fmt.Errorf("migrations %q and %q have the same number", other, base)
		}
		seen[version] = base
	}
	for _, name := range names {
		base := path.Base(name)
		num, _, _ := strings.Cut(base, "_")
		version, _ := strconv.Atoi(num)
		body, err := fs.ReadFile(opts.Migrations, name)
		if err != nil {
			return err
		}
		var now int64
		if opts.Now != nil {
			now = opts.Now()
		}
		err = db.WriteTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, version).Scan(&n); err != nil {
				return fmt.Errorf("cannot read schema_migrations: %w", err)
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("cannot apply migration %s: %w", base, Classify(err))
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, version, base, now); err != nil {
				return fmt.Errorf("cannot record migration %s: %w", base, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// WriteTx runs fn in a write transaction and commits it; with
// synchronous FULL the commit is durable when WriteTx returns nil.
func (db *DB) WriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.Write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cannot begin write: %w", Classify(err))
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return Classify(err)
	}
	if db.beforeCommit != nil {
		if err := db.beforeCommit(ctx, tx); err != nil {
			return Classify(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cannot commit: %w", Classify(err))
	}
	db.ckpt.committed()
	return nil
}

// ReadTx runs fn in a read transaction: one snapshot of the database.
func (db *DB) ReadTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.Read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("cannot begin read: %w", Classify(err))
	}
	defer tx.Rollback()
	return Classify(fn(tx))
}

// Placeholders returns "(?,?,?),(?,?,?)" for rows rows of cols columns.
func Placeholders(rows, cols int) string {
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}
