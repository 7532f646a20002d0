// Package postgres is the study store on PostgreSQL, for a programme
// that outgrows one machine: several diaryd processes share one database
// (self-hosted or managed), and any of them can be lost. It holds all of
// that store's SQL and its migrations, and implements study.Store and
// study.CommitWatcher by calling the rules of package study, exactly as
// the SQLite store does.
//
// Three things differ from SQLite, which has one writer:
//
//   - Sequence numbers. Every writing transaction locks the one row of
//     the sequence table first and takes its numbers from it, so a later
//     writer waits for the earlier one's commit and numbers commit in the
//     order they are handed out: "everything after N" stays complete.
//     Reads (pulls, heads, state hashes, exports) take no lock.
//   - Wake-ups. A commit that concerns some reader sends a NOTIFY inside
//     its transaction, delivered to every process at commit; WatchCommits
//     turns them into wake-ups of the server's Subscribe streams.
//   - Erasure. Deleted text lives on in dead row versions until VACUUM
//     removes them, so erasure vacuums the tables it touched after its
//     commit (see docs/RELIABILITY.md for what remains, and how long).
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	_ study.Store         = (*DB)(nil)
	_ study.CommitWatcher = (*DB)(nil)
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// lockKey is the advisory lock under which migrations run and the first
// administrator is created, so that processes starting at the same
// moment on an empty database agree. Advisory locks belong to one
// database, so studies in other databases of the cluster do not share
// it.
const lockKey int64 = 0x6469617279737963 // "diarysyc"

// channel is the NOTIFY channel that carries wake-ups between processes.
const channel = "diarysync_commits"

// DB is the study store on PostgreSQL.
type DB struct {
	pool     *pgxpool.Pool
	listen   *pgx.ConnConfig // a connection of its own for LISTEN
	now      func() time.Time
	rand     io.Reader
	log      *slog.Logger
	limit    study.AttemptLimit
	instance string // tags this process's notifications, which it ignores

	syncTimes syncTimes
	group     groupCommitter
	growth    growth
	redactors redactorCache
	// exportSlots bounds the exports made at once (see Export).
	exportSlots chan struct{}
}

// Options tunes Open.
type Options struct {
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the source of replica ids, device ids, tokens and
	// enrolment codes (default crypto/rand).
	Rand io.Reader
	// Logger receives what the store does on its own (vacuuming after an
	// erasure, losing the LISTEN connection); default: discard.
	Logger *slog.Logger
	// EnrollLimit limits wrong enrolment codes per client address
	// (default study.DefaultEnrollLimit).
	EnrollLimit study.AttemptLimit
	// MaxConns bounds the connection pool (default 16, or the URL's
	// pool_max_conns).
	MaxConns int32
}

// Open connects to the database at url (a postgres:// URL or a
// keyword/value string, as libpq takes them), applies the migrations not
// yet applied, and returns the store.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("cannot read the database URL: %w", errors.Unwrap(err))
	}
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(url, "pool_max_conns"):
		// pgxpool's default (four on a small machine) is too few for a
		// server whose writers wait on one lock while readers go on.
		cfg.MaxConns = 16
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "diaryd"
	}
	listen := cfg.ConnConfig.Copy()
	listen.RuntimeParams["application_name"] = "diaryd-listen"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to the database: %w", err)
	}
	var id [8]byte
	if _, err := io.ReadFull(rand.Reader, id[:]); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot make an instance id: %w", err)
	}
	db := &DB{
		pool:     pool,
		listen:   listen,
		now:      opts.Now,
		rand:     lockedReader{mu: new(sync.Mutex), r: opts.Rand},
		log:      opts.Logger,
		limit:    opts.EnrollLimit.OrDefault(),
		instance: hex.EncodeToString(id[:]),
		// A quarter of the pool: each export holds two connections.
		exportSlots: make(chan struct{}, max(1, cfg.MaxConns/4)),
	}
	if err := db.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.dropIncompleteExports(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := db.initGrowth(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("cannot read the size of the history: %w", err)
	}
	return db, nil
}

// Close stops an analysis under way (see analyze.go) and closes the
// connection pool.
func (db *DB) Close() error {
	db.stopGrowth()
	db.pool.Close()
	return nil
}

// Now returns the store's clock.
func (db *DB) Now() time.Time { return db.now() }

func (db *DB) nowMillis() int64 { return db.now().UnixMilli() }

// SchemaVersion names the migrations this package applies (their number
// and a digest of their text), so that a copy of a migrated database can
// be recognised as one of the same schema.
func SchemaVersion() string {
	names, _ := fs.Glob(migrationFS, "migrations/*.sql")
	sort.Strings(names)
	var b strings.Builder
	sum := uint32(2166136261)
	for _, n := range names {
		body, _ := fs.ReadFile(migrationFS, n)
		for _, c := range append([]byte(n), body...) {
			sum = (sum ^ uint32(c)) * 16777619
		}
	}
	fmt.Fprintf(&b, "%d_%08x", len(names), sum)
	return b.String()
}

// migrate applies the migrations not yet applied, each in its own
// transaction, under the advisory lock, on one connection.
func (db *DB) migrate(ctx context.Context) error { return db.migrateTo(ctx, 0) }

// migrateTo is migrate up to the migration numbered last (0: all), so that
// a test can make a database as an older diaryd left it.
func (db *DB) migrateTo(ctx context.Context, last int) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("cannot connect to the database: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, lockKey); err != nil {
		return fmt.Errorf("cannot take the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockKey)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at bigint NOT NULL
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
		if last > 0 && version > last {
			break
		}
		body, err := fs.ReadFile(migrationFS, name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
				return fmt.Errorf("cannot read schema_migrations: %w", err)
			}
			if n > 0 {
				return nil
			}
			// The simple protocol runs a file of several statements.
			if _, err := tx.Exec(ctx, string(body), pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("cannot apply migration %s: %w", base, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`, version, base, db.nowMillis()); err != nil {
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

// tx is a transaction of the store and the wake-ups its commit announces
// to the other processes.
type tx struct {
	pgx.Tx
	wake study.Wakeups
	all  bool // every stream must look again (a revocation)
}

// notify adds wake-ups for the other processes to send at commit.
func (t *tx) notify(w *study.Wakeups) { t.wake.Add(w) }

// notifyAll asks every process to wake every stream at commit.
func (t *tx) notifyAll() { t.all = true }

// writeTx runs fn in a transaction that holds the study's write lock
// (the sequence row) from its first statement, and commits it. Writers
// therefore run one at a time, each seeing everything committed before
// it, and numbers taken with nextSeqs commit in order. The wake-ups fn
// collected are sent with NOTIFY inside the transaction, so other
// processes hear of them exactly when the commit is visible.
func (db *DB) writeTx(ctx context.Context, fn func(t *tx) error) error {
	return db.inTx(ctx, true, fn)
}

// plainTx is writeTx without the write lock, for writes that other
// writers cannot invalidate (an audit line, a used code guarded by its
// own row lock).
func (db *DB) plainTx(ctx context.Context, fn func(t *tx) error) error {
	return db.inTx(ctx, false, fn)
}

func (db *DB) inTx(ctx context.Context, lock bool, fn func(t *tx) error) error {
	for attempt := 1; ; attempt++ {
		err := db.inTxOnce(ctx, lock, fn)
		if err == nil || attempt == 3 || !retryable(err) || ctx.Err() != nil {
			return storageFull(err)
		}
	}
}

// errStorageFull is what a call that found the database's storage full
// answers: its transaction was rolled back, so nothing of it is stored.
var errStorageFull = syncengine.Errorf(syncengine.ENOSPACE, "the server's storage is full: nothing was written; try again later (the server's administrator must free space)")

// storageFull turns PostgreSQL's errors that say its storage is full into
// errStorageFull (ENOSPACE), keeping the server's words beside it for the
// log, and returns any other error as it is. They are disk_full (53100:
// a table, index, WAL or temporary file could not grow) and
// configuration_limit_exceeded (53400) when it is temp_file_limit that
// was reached (the space a session may take for temporary files); 53400
// also reports limits that have nothing to do with space (too many
// background workers), which stay what they are.
func storageFull(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case pe.Code == "53100":
	case pe.Code == "53400" && strings.Contains(pe.Message, "temp_file_limit"):
	default:
		return err
	}
	return fmt.Errorf("%w (%s: %s)", errStorageFull, pe.Code, pe.Message)
}

func (db *DB) inTxOnce(ctx context.Context, lock bool, fn func(t *tx) error) error {
	ptx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return fmt.Errorf("cannot begin write: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))
	if lock {
		if _, err := ptx.Exec(ctx, `SELECT value FROM sequence WHERE id = 1 FOR UPDATE`); err != nil {
			return fmt.Errorf("cannot take the write lock: %w", err)
		}
	}
	t := &tx{Tx: ptx}
	if err := fn(t); err != nil {
		return err
	}
	if payload, ok := db.payload(t); ok {
		if _, err := ptx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
			return fmt.Errorf("cannot announce the commit: %w", err)
		}
	}
	if err := ptx.Commit(ctx); err != nil {
		return fmt.Errorf("cannot commit: %w", err)
	}
	return nil
}

// retryable reports whether err is a conflict PostgreSQL resolved by
// rolling the transaction back, so that running it again may succeed.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// readTx runs fn in a read-only REPEATABLE READ transaction: one
// snapshot of the database, however many statements fn runs.
func (db *DB) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	ptx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("cannot begin read: %w", err)
	}
	defer ptx.Rollback(context.WithoutCancel(ctx))
	if err := fn(ptx); err != nil {
		return storageFull(err)
	}
	return ptx.Commit(ctx)
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

// querier is what both a pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// queryIDs runs a query whose rows are one integer each and returns them.
func queryIDs(ctx context.Context, q querier, query string, args ...any) ([]int64, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// nextSeqs takes n sequence numbers in t, which holds the write lock, and
// returns the first; at (Unix milliseconds) is when, as an export's
// snapshot time.
func nextSeqs(ctx context.Context, t *tx, n int, at int64) (int64, error) {
	var last int64
	if err := t.QueryRow(ctx, `UPDATE sequence SET value = value + $1, changed_at = greatest(changed_at, $2) WHERE id = 1 RETURNING value`, n, at).Scan(&last); err != nil {
		return 0, fmt.Errorf("cannot take sequence numbers: %w", err)
	}
	return last - int64(n) + 1, nil
}

// queueNextSeqs queues taking n sequence numbers, as nextSeqs does, for
// a batch whose later statements read the last of them as lastSeq.
func queueNextSeqs(b *pgx.Batch, n int, at int64) {
	b.Queue(`UPDATE sequence SET value = value + $1, changed_at = greatest(changed_at, $2) WHERE id = 1`, n, at)
}

// isUniqueViolation reports whether err is PostgreSQL's unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}
