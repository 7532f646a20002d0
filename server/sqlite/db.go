// Package sqlite is the study store on embedded SQLite: the default, for
// a study that runs on one machine. It holds all of that store's SQL and
// its migrations, and implements study.Store by calling the rules of
// package study.
//
// The store keeps each entry's merged state (syncengine's canonical
// encoding) beside the columns visibility needs, an append-only history of
// every accepted change, and a feed per non-owning reader that orders, by
// one store-wide sequence, both data changes and visibility changes
// (unsharing, unassignment, erasure), so a reader's next Pull carries the
// removal notices too. SQLite has one writer, so sequence numbers commit
// in the order they are handed out, and "everything after N" is complete.
package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

var _ study.Store = (*DB)(nil)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DB is the study store on SQLite: one writer connection, which SQLite
// requires anyway and which makes sequence numbers commit in order, and a
// pool of readers that WAL lets run beside it.
type DB struct {
	lite  *litedb.DB
	path  string
	write *sql.DB
	read  *sql.DB
	now   func() time.Time
	rand  io.Reader // ids, tokens and codes

	limit     study.AttemptLimit
	syncTimes syncTimes
	bulk      bulkStmts
	rq, wq    *stmtSet // hot queries, prepared (stmts.go)
	group     groupCommitter
	redactors redactorCache
}

// Options tunes Open.
type Options struct {
	// Synchronous is SQLite's synchronous setting: "FULL" (the default)
	// makes every commit durable before the call returns; "NORMAL" may
	// lose the last commits on power loss (not on a process crash).
	Synchronous string
	// Readers is the size of the read pool (default 4).
	Readers int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the source of replica ids, device ids, tokens and
	// enrolment codes (default crypto/rand). Only a deterministic
	// simulation passes anything else.
	Rand io.Reader
	// EnrollLimit limits wrong enrolment codes per client address
	// (default study.DefaultEnrollLimit).
	EnrollLimit study.AttemptLimit
	// MaxPageCount, for tests of a full disk only, caps the file at that
	// many pages (of 4 KiB): a write past it fails as on a full disk.
	MaxPageCount int
}

// Open opens (creating, readable by its owner only, if needed) the
// database file at path and applies any migrations not yet applied.
func Open(ctx context.Context, file string, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	lite, err := litedb.Open(ctx, file, litedb.Options{
		Synchronous: opts.Synchronous,
		Readers:     opts.Readers,
		// Erasure must leave no copy of the text in the file.
		SecureDelete: true,
		// Its commits answer many pushes: none of them waits for a
		// checkpoint.
		BackgroundCheckpoints: true,
		Migrations:            migrationFS,
		Dir:                   "migrations",
		Now:                   func() int64 { return opts.Now().UnixMilli() },
		MaxPageCount:          opts.MaxPageCount,
	})
	if err != nil {
		return nil, err
	}
	db := &DB{lite: lite, path: file, write: lite.Write, read: lite.Read, now: opts.Now, rand: lockedReader{mu: new(sync.Mutex), r: opts.Rand}, limit: opts.EnrollLimit.OrDefault()}
	if err := db.dropIncompleteExports(ctx); err != nil {
		lite.Close()
		return nil, err
	}
	if err := db.prepareBulk(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if db.rq, err = prepareStmts(ctx, db.read, readQueries); err != nil {
		db.Close()
		return nil, err
	}
	if db.wq, err = prepareStmts(ctx, db.write, writeQueries); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Close closes both connection pools.
func (db *DB) Close() error {
	db.closeBulk()
	db.rq.close()
	db.wq.close()
	return db.lite.Close()
}

// Path returns the database file's path.
func (db *DB) Path() string { return db.path }

// Now returns the store's clock.
func (db *DB) Now() time.Time { return db.now() }

func (db *DB) nowMillis() int64 { return db.now().UnixMilli() }

// errStorageFull is what a write that found the disk full answers: the
// transaction was rolled back, so nothing of it is stored.
var errStorageFull = syncengine.Errorf(syncengine.ENOSPACE, "the server's storage is full: nothing was written; try again later (the server's administrator must free space)")

// writeTx runs fn in a write transaction (BEGIN IMMEDIATE) and commits it.
// The commit is durable when writeTx returns nil. A full disk is
// ENOSPACE: the transaction was rolled back whole.
func (db *DB) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return storageFull(db.lite.WriteTx(ctx, fn))
}

// storageFull turns SQLite's full-disk error into errStorageFull, and
// returns any other error as it is.
func storageFull(err error) error {
	if errors.Is(err, litedb.ErrFull) {
		return fmt.Errorf("%w (%v)", errStorageFull, err)
	}
	return err
}

// readTx runs fn in a read transaction: one snapshot of the database.
func (db *DB) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.lite.ReadTx(ctx, fn)
}

// lockedReader makes a random source safe for concurrent use.
type lockedReader struct {
	mu *sync.Mutex
	r  io.Reader
}

func (l lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return io.ReadFull(l.r, p)
}

// queryIDs runs a query whose rows are one integer each and returns them.
func queryIDs(ctx context.Context, q querier, query string, args ...any) ([]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// nextSeqs reserves n sequence numbers in tx and returns the first; at
// (Unix milliseconds) is when, as an export's snapshot time.
var (
	qNextSeqs   = writeQuery(`UPDATE sequence SET value = value + ?, changed_at = max(changed_at, ?) WHERE id = 1 RETURNING value`)
	qCurrentSeq = readQuery(`SELECT value FROM sequence WHERE id = 1`)
)

func nextSeqs(ctx context.Context, tx querier, n int, at int64) (int64, error) {
	var last int64
	if err := tx.QueryRowContext(ctx, qNextSeqs, n, at).Scan(&last); err != nil {
		return 0, fmt.Errorf("cannot reserve sequence numbers: %w", err)
	}
	return last - int64(n) + 1, nil
}

// currentSeq returns the last sequence number handed out.
func currentSeq(ctx context.Context, q querier) (int64, error) {
	var v int64
	if err := q.QueryRowContext(ctx, qCurrentSeq).Scan(&v); err != nil {
		return 0, fmt.Errorf("cannot read sequence: %w", err)
	}
	return v, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
