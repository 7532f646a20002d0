package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
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
		return `SELECT rid, id, owner_id, state, erased_at IS NOT NULL, coalesce(held_by, 0), seq, coalesce(echo_device, 0) FROM entries WHERE id IN (` + inList(n) + `)`
	}}
	knownClocksQuery = &bulkQuery{"look for retried changes", func(n int) string {
		return `SELECT clock FROM history WHERE device_id = ? AND clock IN (` + inList(n) + `)`
	}}
	upsertEntriesQuery = &bulkQuery{"write entries", func(n int) string {
		return `INSERT INTO entries (id, owner_id, seq, state, date, sup_visible, res_visible, deleted, held_by, echo_device) VALUES ` + placeholders(n, 10) + `
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state, date = excluded.date,
				sup_visible = excluded.sup_visible, res_visible = excluded.res_visible, deleted = excluded.deleted,
				echo_device = excluded.echo_device
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

// bulkStmts are the bulk statements, prepared on the writer connection
// when the store opens. A push needs no preparation, so pushes queue for
// a group commit (group.go) and never for the writer connection.
type bulkStmts struct {
	m map[bulkKey]*sql.Stmt
}

// prepareBulk prepares, on the writer connection, every bulk statement at
// every chunk size.
func (db *DB) prepareBulk(ctx context.Context) error {
	db.bulk.m = map[bulkKey]*sql.Stmt{}
	for size := 1; size <= maxChunkRows; size *= 2 {
		for _, q := range bulkQueries {
			s, err := db.write.PrepareContext(ctx, q.text(size))
			if err != nil {
				return fmt.Errorf("cannot prepare statement to %s: %w", q.name, err)
			}
			db.bulk.m[bulkKey{q, size}] = s
		}
	}
	return nil
}

// closeBulk closes the prepared bulk statements.
func (db *DB) closeBulk() {
	for _, s := range db.bulk.m {
		s.Close()
	}
	db.bulk.m = nil
}

// bulkExec runs q in tx over n rows, a chunk at a time. args appends the
// arguments of rows [from, to) to a; each returned row of the result, if
// any, goes to scan.
func (db *DB) bulkExec(ctx context.Context, tx *sql.Tx, q *bulkQuery, n int, args func(a []any, from, to int) []any, scan func(*sql.Rows) error) error {
	var a []any
	for from := 0; from < n; {
		size := chunkSize(n - from)
		s := tx.StmtContext(ctx, db.bulk.m[bulkKey{q, size}])
		a = args(a[:0], from, from+size)
		var err error
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
