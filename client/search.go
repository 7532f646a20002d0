package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/syncengine"
)

// Limits on a search, so that one query cannot make SQLite work without
// bound.
const (
	maxSearchBytes = 256
	maxSearchWords = 16
)

// SearchOptions is a full-text search over the entries this replica
// holds.
type SearchOptions struct {
	// Query holds the words to find, in any order, in an entry's title,
	// body or tags. Case and accents do not matter; the last word also
	// matches words that begin with it, as a person types.
	Query string
	// MarkStart and MarkEnd surround the words found in SearchHit.Snippet
	// (default "[" and "]").
	MarkStart, MarkEnd string
	// ListOptions filters and pages the results as it does List's:
	// newest date first.
	ListOptions
}

// SearchPage is one page of search results, newest date first.
type SearchPage struct {
	Hits []SearchHit
	Next string // token for the next page (in ListOptions.PageToken); empty on the last page
}

// SearchHit is one entry found, and the part of its text that matched.
type SearchHit struct {
	Entry   *Entry
	Snippet string // a few words around what matched, marked with MarkStart and MarkEnd
}

// Search returns a page of the entries whose title, body or tags hold
// every word of o.Query. The index is kept in step with the entries in
// the same transactions, so a search sees exactly what List sees.
func (c *Client) Search(ctx context.Context, o SearchOptions) (*SearchPage, error) {
	match, err := matchExpr(o.Query)
	if err != nil {
		return nil, err
	}
	if o.MarkStart == "" && o.MarkEnd == "" {
		o.MarkStart, o.MarkEnd = "[", "]"
	}
	if len(o.MarkStart) > 16 || len(o.MarkEnd) > 16 {
		return nil, syncengine.Errorf(syncengine.EINVALID, "search marks are at most 16 bytes")
	}
	limit := pageLimit(o.Limit)
	where, args, err := listFilter(o.ListOptions)
	if err != nil {
		return nil, err
	}
	where = append([]string{"entry_search MATCH ?"}, where...)
	args = append([]any{o.MarkStart, o.MarkEnd, match}, args...)
	q := `SELECT ` + qualified(entryColumns) + `, entries.date, entries.id, snippet(entry_search, -1, ?, ?, '…', 16)
		FROM entry_search
		JOIN search_rows ON search_rows.row = entry_search.rowid
		JOIN entries ON entries.id = search_rows.entry
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY entries.date DESC, entries.id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := c.db.Read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot search entries: %w", err)
	}
	defer rows.Close()
	page := &SearchPage{}
	var (
		lastDate, snippet string
		lastID            []byte
	)
	for rows.Next() {
		if len(page.Hits) == limit {
			page.Next = encodeListToken(lastDate, lastID)
			break
		}
		e, err := scanEntry(rows, &lastDate, &lastID, &snippet)
		if err != nil {
			return nil, fmt.Errorf("cannot search entries: %w", err)
		}
		page.Hits = append(page.Hits, SearchHit{Entry: e, Snippet: snippet})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot search entries: %w", err)
	}
	return page, nil
}

// qualified prefixes each of a list of entries columns with the table's
// name, for queries that join other tables.
func qualified(cols string) string {
	parts := strings.Split(cols, ",")
	for i, p := range parts {
		parts[i] = "entries." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

// matchExpr turns what a person typed into an FTS5 query: every word as
// a quoted string (so that no character of it is query syntax), all
// required, the last one also as a prefix unless the query ends in a
// space.
func matchExpr(query string) (string, error) {
	if len(query) > maxSearchBytes {
		return "", syncengine.Errorf(syncengine.ETOOLARGE, "a search is at most %d bytes", maxSearchBytes)
	}
	words := strings.FieldsFunc(query, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '\'' && r != '-' && r != '_'
	})
	var kept []string
	for _, w := range words {
		if strings.IndexFunc(w, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }) >= 0 {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		return "", syncengine.Errorf(syncengine.EINVALID, "type a word to search for")
	}
	if len(kept) > maxSearchWords {
		return "", syncengine.Errorf(syncengine.ETOOLARGE, "a search has at most %d words", maxSearchWords)
	}
	var b strings.Builder
	for i, w := range kept {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(`"` + strings.ReplaceAll(w, `"`, `""`) + `"`)
	}
	if last, _ := utf8.DecodeLastRuneInString(query); unicode.IsLetter(last) || unicode.IsNumber(last) {
		b.WriteByte('*')
	}
	return b.String(), nil
}

// searchWriter keeps an entry's row of the full-text index in step with
// the entry, inside the transaction that writes the entry. Rows leave the
// index through the trigger on entries.
type searchWriter struct {
	rowOf, insertRow, current, remove, insert *sql.Stmt
}

func newSearchWriter(ctx context.Context, tx *sql.Tx) (*searchWriter, error) {
	w := &searchWriter{}
	for _, s := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&w.rowOf, `SELECT row FROM search_rows WHERE entry = ?`},
		{&w.insertRow, `INSERT INTO search_rows (entry) VALUES (?) ON CONFLICT (entry) DO NOTHING`},
		{&w.current, `SELECT title, body, tags FROM entry_search WHERE rowid = ?`},
		{&w.remove, `DELETE FROM entry_search WHERE rowid = ?`},
		{&w.insert, `INSERT INTO entry_search (rowid, title, body, tags) VALUES (?, ?, ?, ?)`},
	} {
		var err error
		if *s.stmt, err = tx.PrepareContext(ctx, s.sql); err != nil {
			w.close()
			return nil, fmt.Errorf("cannot prepare search index write: %w", err)
		}
	}
	return w, nil
}

// index writes e's title, body and tags to the index. An entry whose text is what the index holds is left alone:
// most writes to an entry (sharing, mood, a pull of the same text) do
// not change it.
func (w *searchWriter) index(ctx context.Context, e *syncengine.Entry) error {
	title, body, tags := e.Title.Value, e.Body.Value, strings.Join(e.TagNames(), " ")
	// Most entries written by a pull are new: try to give the entry a
	// row first, and look its row up only when it has one.
	res, err := w.insertRow.ExecContext(ctx, e.ID[:])
	if err != nil {
		return fmt.Errorf("cannot update search index: %w", err)
	}
	var row int64
	if n, _ := res.RowsAffected(); n == 1 {
		if row, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("cannot update search index: %w", err)
		}
	} else {
		if err := w.rowOf.QueryRowContext(ctx, e.ID[:]).Scan(&row); err != nil {
			return fmt.Errorf("cannot read search index: %w", err)
		}
		var t, b, g string
		err := w.current.QueryRowContext(ctx, row).Scan(&t, &b, &g)
		if err == nil && t == title && b == body && g == tags {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("cannot read search index: %w", err)
		}
		if _, err := w.remove.ExecContext(ctx, row); err != nil {
			return fmt.Errorf("cannot update search index: %w", err)
		}
	}
	if _, err := w.insert.ExecContext(ctx, row, title, body, tags); err != nil {
		return fmt.Errorf("cannot update search index: %w", err)
	}
	return nil
}

func (w *searchWriter) close() {
	for _, s := range []*sql.Stmt{w.rowOf, w.insertRow, w.current, w.remove, w.insert} {
		if s != nil {
			s.Close()
		}
	}
}

// forgetDeleted merges the search index into one segment when the
// transaction deleted entries (the trigger on entries notes it), so that
// the words of entries that left the replica leave the index, and with
// secure_delete the file, in the same transaction. Deletions are rare
// (un-sharing, erasure, a reset); edits of an entry still in the replica
// leave its old words to FTS5's own merges.
func forgetDeleted(ctx context.Context, tx *sql.Tx) error {
	var pending bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM search_forget)`).Scan(&pending); err != nil {
		return fmt.Errorf("cannot read search index state: %w", err)
	}
	if !pending {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO entry_search (entry_search) VALUES ('optimize')`); err != nil {
		return fmt.Errorf("cannot update search index: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM search_forget`); err != nil {
		return fmt.Errorf("cannot update search index: %w", err)
	}
	return nil
}

// backfillBatch is how many entries one transaction of the backfill
// indexes.
const backfillBatch = 500

// backfillSearch indexes the entries a replica held before it had a
// search index, a batch per transaction, and then forgets that it has to.
func backfillSearch(ctx context.Context, db *litedb.DB) error {
	var todo bool
	if err := db.Read.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM search_backfill)`).Scan(&todo); err != nil {
		return fmt.Errorf("cannot read search index state: %w", err)
	}
	for todo {
		err := db.WriteTx(ctx, func(tx *sql.Tx) error {
			rows, err := tx.QueryContext(ctx, `SELECT state FROM entries WHERE id NOT IN (SELECT entry FROM search_rows) LIMIT ?`, backfillBatch)
			if err != nil {
				return fmt.Errorf("cannot index entries: %w", err)
			}
			var states [][]byte
			for rows.Next() {
				var b []byte
				if err := rows.Scan(&b); err != nil {
					rows.Close()
					return fmt.Errorf("cannot index entries: %w", err)
				}
				states = append(states, b)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("cannot index entries: %w", err)
			}
			if len(states) == 0 {
				todo = false
				_, err := tx.ExecContext(ctx, `DELETE FROM search_backfill`)
				return err
			}
			w, err := newSearchWriter(ctx, tx)
			if err != nil {
				return err
			}
			defer w.close()
			for _, b := range states {
				e, err := syncengine.DecodeEntry(b)
				if err != nil {
					return fmt.Errorf("cannot index entries: stored state: %w", err)
				}
				if err := w.index(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
