// Package storetest opens study stores for tests, on the engine the test
// run asks for, so that one suite of store tests runs against every
// engine:
//
//	go test ./server/...                                  # SQLite
//	DIARYSYNC_TEST_STORE=postgres \
//	DIARYSYNC_TEST_POSTGRES='postgres:///postgres?host=/tmp/pg&port=5432' \
//	go test ./server/...                                  # PostgreSQL
//
// With PostgreSQL every store is a database of its own, copied from a
// migrated template (CREATE DATABASE ... TEMPLATE), and dropped when the
// test ends. Raw gives tests a database/sql connection to a store's
// tables for checks no API shows, with "?" placeholders on both engines.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/server/postgres"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// Engines.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

// Engine returns the engine store tests run on: DIARYSYNC_TEST_STORE,
// "sqlite" (the default) or "postgres".
func Engine() string {
	if e := os.Getenv("DIARYSYNC_TEST_STORE"); e != "" {
		return e
	}
	return SQLite
}

// PostgresURL returns the PostgreSQL server tests may create databases
// on (DIARYSYNC_TEST_POSTGRES, a postgres:// URL), or skips tb when it is
// not set.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("DIARYSYNC_TEST_POSTGRES")
	if u == "" {
		tb.Skip("DIARYSYNC_TEST_POSTGRES is not set: this test needs a PostgreSQL server (.ci/run starts one)")
	}
	return u
}

// Options are the store options tests use, for either engine.
type Options struct {
	Now         func() time.Time
	Rand        io.Reader
	Synchronous string // SQLite only
	EnrollLimit study.AttemptLimit
	// MaxPageCount caps the SQLite file (SQLite only): a write past it
	// fails as on a full disk.
	MaxPageCount int
}

// Store is a store opened for a test, and how to reach its tables.
type Store struct {
	study.Store
	Engine string
	Path   string // the SQLite file
	URL    string // the PostgreSQL database
}

// Open opens a new, empty store on Engine() and closes it when tb ends.
func Open(tb testing.TB, opts Options) *Store {
	tb.Helper()
	return OpenOn(tb, Engine(), opts)
}

// OpenOn is Open on the given engine.
func OpenOn(tb testing.TB, engine string, opts Options) *Store {
	tb.Helper()
	ctx := context.Background()
	s := &Store{Engine: engine}
	switch engine {
	case SQLite:
		s.Path = filepath.Join(tb.TempDir(), "diary.db")
		db, err := sqlite.Open(ctx, s.Path, sqlite.Options{Now: opts.Now, Rand: opts.Rand, Synchronous: opts.Synchronous, EnrollLimit: opts.EnrollLimit, MaxPageCount: opts.MaxPageCount})
		if err != nil {
			tb.Fatal(err)
		}
		s.Store = db
	case Postgres:
		s.URL = NewDatabase(tb)
		db, err := postgres.Open(ctx, s.URL, postgres.Options{Now: opts.Now, Rand: opts.Rand, EnrollLimit: opts.EnrollLimit})
		if err != nil {
			tb.Fatal(err)
		}
		s.Store = db
	default:
		tb.Fatalf("DIARYSYNC_TEST_STORE=%q: use sqlite or postgres", engine)
	}
	tb.Cleanup(func() {
		s.Store.Close()
		raws.closeFor(s)
	})
	return s
}

// Reopen opens another store on the same file or database as s (a
// restart, or a second process sharing a PostgreSQL database) and closes
// it when tb ends.
func Reopen(tb testing.TB, s *Store, opts Options) *Store {
	tb.Helper()
	ctx := context.Background()
	o := &Store{Engine: s.Engine, Path: s.Path, URL: s.URL}
	var err error
	switch s.Engine {
	case SQLite:
		o.Store, err = sqlite.Open(ctx, s.Path, sqlite.Options{Now: opts.Now, Rand: opts.Rand, Synchronous: opts.Synchronous, EnrollLimit: opts.EnrollLimit, MaxPageCount: opts.MaxPageCount})
	default:
		o.Store, err = postgres.Open(ctx, s.URL, postgres.Options{Now: opts.Now, Rand: opts.Rand, EnrollLimit: opts.EnrollLimit})
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		o.Store.Close()
		raws.closeFor(o)
	})
	return o
}

// DB is a database/sql connection to a store's tables. Queries are
// written with "?" placeholders, which it turns into PostgreSQL's $n.
type DB struct {
	*sql.DB
	Engine string
}

// Rebind turns "?" placeholders (outside quotes) into $1, $2, ... on
// PostgreSQL.
func (d *DB) Rebind(query string) string {
	if d.Engine != Postgres {
		return query
	}
	var b strings.Builder
	n, quote := 0, byte(0)
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Query runs a query; see sql.DB.
func (d *DB) Query(query string, args ...any) (*sql.Rows, error) {
	return d.DB.Query(d.Rebind(query), args...)
}

// QueryRow runs a query of one row; see sql.DB.
func (d *DB) QueryRow(query string, args ...any) *sql.Row {
	return d.DB.QueryRow(d.Rebind(query), args...)
}

// Exec runs a statement; see sql.DB.
func (d *DB) Exec(query string, args ...any) (sql.Result, error) {
	return d.DB.Exec(d.Rebind(query), args...)
}

// QueryContext runs a query; see sql.DB.
func (d *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.DB.QueryContext(ctx, d.Rebind(query), args...)
}

// QueryRowContext runs a query of one row; see sql.DB.
func (d *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return d.DB.QueryRowContext(ctx, d.Rebind(query), args...)
}

// ExecContext runs a statement; see sql.DB.
func (d *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.DB.ExecContext(ctx, d.Rebind(query), args...)
}

type rawConns struct {
	mu sync.Mutex
	m  map[*Store]*DB
}

var raws rawConns

func (r *rawConns) closeFor(s *Store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.m[s]; d != nil {
		d.Close()
		delete(r.m, s)
	}
}

// Raw returns a connection of its own to s's tables, closed when the
// store is: for checks of what is stored that no API shows, and for
// damaging the store on purpose.
func Raw(s *Store) *DB {
	raws.mu.Lock()
	defer raws.mu.Unlock()
	if d := raws.m[s]; d != nil {
		return d
	}
	var d *DB
	var err error
	switch s.Engine {
	case Postgres:
		d = &DB{Engine: Postgres}
		d.DB, err = sql.Open("pgx", s.URL)
	default:
		d = &DB{Engine: SQLite}
		d.DB, err = sql.Open("sqlite", "file:"+s.Path+"?_pragma=busy_timeout(5000)")
	}
	if err != nil {
		panic(err) // sql.Open fails only for an unknown driver
	}
	if raws.m == nil {
		raws.m = map[*Store]*DB{}
	}
	raws.m[s] = d
	return d
}

var template struct {
	once sync.Once
	name string
	err  error
}

// NewDatabase creates an empty, migrated database on the server at
// PostgresURL (skipping tb without one), drops it when tb ends, and
// returns its URL.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	u, drop, err := CreateDatabase(context.Background(), PostgresURL(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := drop(); err != nil {
			tb.Error(err)
		}
	})
	return u
}

// CreateDatabase creates an empty, migrated database on the server at
// base, a copy of a template migrated once per schema, and returns its
// URL and the function that drops it.
func CreateDatabase(ctx context.Context, base string) (string, func() error, error) {
	template.once.Do(func() { template.name, template.err = makeTemplate(ctx, base) })
	if template.err != nil {
		return "", nil, fmt.Errorf("cannot make the template database: %w", template.err)
	}
	var id [6]byte
	rand.Read(id[:])
	name := "diarysync_test_" + hex.EncodeToString(id[:])
	u, err := WithDatabase(base, name)
	if err != nil {
		return "", nil, err
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", nil, fmt.Errorf("cannot connect to DIARYSYNC_TEST_POSTGRES: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+template.name); err != nil {
		return "", nil, fmt.Errorf("cannot create a test database: %w", err)
	}
	drop := func() error {
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return fmt.Errorf("cannot drop test database %s: %w", name, err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			return fmt.Errorf("cannot drop test database %s: %w", name, err)
		}
		return nil
	}
	return u, drop, nil
}

// WithDatabase returns the URL u with its database replaced by name.
func WithDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		return "", fmt.Errorf("DIARYSYNC_TEST_POSTGRES must be a postgres:// URL, such as postgres:///postgres?host=/tmp/pg&port=5432")
	}
	p.Path = "/" + name
	q := p.Query()
	q.Del("dbname")
	p.RawQuery = q.Encode()
	return p.String(), nil
}

// makeTemplate returns the name of a database migrated to the current
// schema, creating it if no earlier test run did. Test processes running
// at once agree through an advisory lock; a half-made template is never
// seen under its final name.
func makeTemplate(ctx context.Context, base string) (string, error) {
	name := "diarysync_template_" + postgres.SchemaVersion()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("cannot connect to DIARYSYNC_TEST_POSTGRES: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(7340032)`); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, `SELECT pg_advisory_unlock(7340032)`)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		return "", err
	}
	if n > 0 {
		return name, nil
	}
	building := name + "_building"
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return "", err
	}
	u, err := WithDatabase(base, building)
	if err != nil {
		return "", err
	}
	db, err := postgres.Open(ctx, u, postgres.Options{})
	if err != nil {
		return "", err
	}
	db.Close()
	// The store's connections end a moment after Close returns.
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name)
		if err == nil {
			return name, nil
		}
		if attempt == 50 {
			return "", err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
