package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// A push reads and writes up to a thousand rows in each of a few tables.
// One statement per row costs a round through database/sql and the driver
// per row; one statement per push, built for its exact number of rows,
// costs SQLite a parse of a statement thousands of parameters long on
// every push, which profiles showed to be a fifth of the push's time.
// Instead each bulk statement exists for a few fixed numbers of rows
// (powers of two up to maxChunkRows), is prepared once on the writer
// connection, and any number of rows is sent as a sum of those sizes:
// 500 rows are six statements, none of them parsed again.

// maxChunkRows is the most rows one bulk statement carries. 512 rows of
// the widest statement (history, 10 columns) bind 5120 parameters, far
// below SQLite's limit.
const maxChunkRows = 512

// bulkQuery is a statement over a varying number of rows: rows of a
// VALUES list or items of an IN list.
type bulkQuery struct {
	name string
	text func(rows int) string
}

func inList(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// placeholders returns "(?,?,?),(?,?,?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	one := "(" + inList(cols) + ")"
	return strings.TrimSuffix(strings.Repeat(one+",", rows), ",")
}

var (
	loadEntriesQuery = &bulkQuery{"read entries", func(n int) string {
		return `SELECT rid, id, owner_id, state, erased_at IS NOT NULL FROM entries WHERE id IN (` + inList(n) + `)`
	}}
	knownClocksQuery = &bulkQuery{"look for retried changes", func(n int) string {
		return `SELECT clock FROM history WHERE device_id = ? AND clock IN (` + inList(n) + `)`
	}}
	upsertEntriesQuery = &bulkQuery{"write entries", func(n int) string {
		return `INSERT INTO entries (id, owner_id, seq, state, date, sup_visible, res_visible, deleted) VALUES ` + placeholders(n, 8) + `
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state, date = excluded.date,
				sup_visible = excluded.sup_visible, res_visible = excluded.res_visible, deleted = excluded.deleted
			RETURNING id, rid`
	}}
	upsertFeedQuery = &bulkQuery{"write feed", func(n int) string {
		return `INSERT INTO feed (reader, entry, seq, visible, reason) VALUES ` + placeholders(n, 5) + `
			ON CONFLICT (reader, entry) DO UPDATE SET seq = excluded.seq, visible = excluded.visible, reason = excluded.reason`
	}}
	insertHistoryQuery = &bulkQuery{"write history", func(n int) string {
		return `INSERT INTO history (entry, field, tag, feedback, value, clock, device_id, user_id, received_at, write_clock) VALUES ` + placeholders(n, 10)
	}}
	bulkQueries = []*bulkQuery{loadEntriesQuery, knownClocksQuery, upsertEntriesQuery, upsertFeedQuery, insertHistoryQuery}
)

// chunkSize returns the size of the next chunk of n rows: the greatest
// power of two no greater than n or maxChunkRows.
func chunkSize(n int) int {
	size := 1
	for size*2 <= n && size*2 <= maxChunkRows {
		size *= 2
	}
	return size
}

type bulkKey struct {
	q    *bulkQuery
	rows int
}

// bulkStmts are the bulk statements prepared on the writer connection.
type bulkStmts struct {
	mu sync.Mutex
	m  map[bulkKey]*sql.Stmt
}

// prepareBulk prepares, on the writer connection, every bulk statement of
// up to rows rows that is not prepared yet, so that a write transaction
// about to handle that many rows finds them. It must not be called inside
// a write transaction: preparing needs the one writer connection.
// Statements are prepared without holding the lock, so a transaction
// looking one up never waits for a preparation that waits for it.
func (db *DB) prepareBulk(ctx context.Context, rows int) error {
	var missing []bulkKey
	db.bulk.mu.Lock()
	for size := 1; size <= min(rows, maxChunkRows); size *= 2 {
		for _, q := range bulkQueries {
			if db.bulk.m[bulkKey{q, size}] == nil {
				missing = append(missing, bulkKey{q, size})
			}
		}
	}
	db.bulk.mu.Unlock()
	for _, k := range missing {
		s, err := db.write.PrepareContext(ctx, k.q.text(k.rows))
		if err != nil {
			return fmt.Errorf("cannot prepare statement to %s: %w", k.q.name, err)
		}
		db.bulk.mu.Lock()
		if db.bulk.m == nil {
			db.bulk.m = map[bulkKey]*sql.Stmt{}
		}
		if db.bulk.m[k] == nil {
			db.bulk.m[k] = s
			s = nil
		}
		db.bulk.mu.Unlock()
		if s != nil {
			s.Close() // another push prepared it meanwhile
		}
	}
	return nil
}

// closeBulk closes the prepared bulk statements.
func (db *DB) closeBulk() {
	db.bulk.mu.Lock()
	defer db.bulk.mu.Unlock()
	for _, s := range db.bulk.m {
		s.Close()
	}
	db.bulk.m = nil
}

// bulkStmt returns q over rows rows for use in tx: the prepared statement
// if there is one, or else one prepared for this transaction only. The
// caller closes it.
func (db *DB) bulkStmt(ctx context.Context, tx *sql.Tx, q *bulkQuery, rows int) (*sql.Stmt, error) {
	db.bulk.mu.Lock()
	s := db.bulk.m[bulkKey{q, rows}]
	db.bulk.mu.Unlock()
	if s != nil {
		return tx.StmtContext(ctx, s), nil
	}
	s, err := tx.PrepareContext(ctx, q.text(rows))
	if err != nil {
		return nil, fmt.Errorf("cannot prepare statement to %s: %w", q.name, err)
	}
	return s, nil
}

// bulkExec runs q in tx over n rows, a chunk at a time. args appends the
// arguments of rows [from, to) to a; each returned row of the result, if
// any, goes to scan.
func (db *DB) bulkExec(ctx context.Context, tx *sql.Tx, q *bulkQuery, n int, args func(a []any, from, to int) []any, scan func(*sql.Rows) error) error {
	var a []any
	for from := 0; from < n; {
		size := chunkSize(n - from)
		s, err := db.bulkStmt(ctx, tx, q, size)
		if err != nil {
			return err
		}
		a = args(a[:0], from, from+size)
		if scan == nil {
			_, err = s.ExecContext(ctx, a...)
		} else {
			err = queryEach(ctx, s, a, scan)
		}
		s.Close()
		if err != nil {
			return fmt.Errorf("cannot %s: %w", q.name, err)
		}
		from += size
	}
	return nil
}

func queryEach(ctx context.Context, s *sql.Stmt, args []any, scan func(*sql.Rows) error) error {
	rows, err := s.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
