package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// Statements prepared once. SQLite parses a query's text at every call
// that is not a prepared statement's, and for the small queries of a
// push, a pull and every request's authentication the parser is a large
// part of the cost (about an eighth of the server's CPU with 200 devices
// syncing, much of it in the single writer). The hot paths' fixed
// queries are declared with readQuery and writeQuery and prepared when
// the store opens; database/sql then keeps each prepared on every
// connection that ran it, and a transaction borrows it with
// Tx.StmtContext, which prepares on the transaction's own connection
// when needed. Nothing is prepared from inside a transaction on the pool
// itself: with one writer connection, that would wait for the connection
// the transaction holds.

var readQueries, writeQueries []string

// readQuery declares q a hot query of read transactions (and of the
// read pool itself) and returns it.
func readQuery(q string) string {
	readQueries = append(readQueries, q)
	return q
}

// writeQuery declares q a hot query of write transactions and returns
// it.
func writeQuery(q string) string {
	writeQueries = append(writeQueries, q)
	return q
}

// stmtSet holds the statements prepared on one pool, by query text.
type stmtSet struct {
	pool *sql.DB
	m    map[string]*sql.Stmt
}

// prepareStmts prepares queries on pool.
func prepareStmts(ctx context.Context, pool *sql.DB, queries []string) (*stmtSet, error) {
	s := &stmtSet{pool: pool, m: make(map[string]*sql.Stmt, len(queries))}
	for _, q := range queries {
		if _, ok := s.m[q]; ok {
			continue
		}
		st, err := pool.PrepareContext(ctx, q)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("cannot prepare %q: %w", q, err)
		}
		s.m[q] = st
	}
	return s, nil
}

// close closes every statement.
func (s *stmtSet) close() {
	if s == nil {
		return
	}
	for _, st := range s.m {
		st.Close()
	}
	s.m = nil
}

// QueryRowContext runs query on the pool.
func (s *stmtSet) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := s.m[query]; st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.pool.QueryRowContext(ctx, query, args...)
}

// QueryContext runs query on the pool.
func (s *stmtSet) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := s.m[query]; st != nil {
		return st.QueryContext(ctx, args...)
	}
	return s.pool.QueryContext(ctx, query, args...)
}

// ExecContext runs query on the pool.
func (s *stmtSet) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := s.m[query]; st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.pool.ExecContext(ctx, query, args...)
}

// in returns a querier that runs queries in tx, a transaction on the
// set's pool, with the set's statements; a query not in the set runs as
// text.
func (s *stmtSet) in(tx *sql.Tx) querier { return preparedTx{tx: tx, s: s} }

type preparedTx struct {
	tx *sql.Tx
	s  *stmtSet
}

func (q preparedTx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := q.s.m[query]; st != nil {
		return q.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return q.tx.QueryRowContext(ctx, query, args...)
}

func (q preparedTx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := q.s.m[query]; st != nil {
		return q.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return q.tx.QueryContext(ctx, query, args...)
}

func (q preparedTx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := q.s.m[query]; st != nil {
		return q.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return q.tx.ExecContext(ctx, query, args...)
}
