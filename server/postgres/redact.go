package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// redactorCache keeps the compiled Redactor of the setting's latest
// version: research pulls need it on every page, and compiling a long
// term list each time would cost more than the pull. The version is read
// from the database on every use, so a change made through another
// process is seen at once.
type redactorCache struct {
	mu      sync.Mutex
	version int64
	rd      *study.Redactor
}

// redactor returns the Redactor of the setting as q sees it.
func (db *DB) redactor(ctx context.Context, q querier) (*study.Redactor, error) {
	var version int64
	if err := q.QueryRow(ctx, `SELECT version FROM redaction WHERE id = 1`).Scan(&version); err != nil {
		return nil, fmt.Errorf("cannot read the redaction setting: %w", err)
	}
	c := &db.redactors
	c.mu.Lock()
	if c.rd != nil && c.version == version {
		rd := c.rd
		c.mu.Unlock()
		return rd, nil
	}
	c.mu.Unlock()
	r, err := readRedaction(ctx, q)
	if err != nil {
		return nil, err
	}
	terms, err := allRedactTerms(ctx, q)
	if err != nil {
		return nil, err
	}
	rd, err := study.NewRedactor(*r, terms)
	if err != nil {
		return nil, fmt.Errorf("stored redaction setting: %w", err)
	}
	c.mu.Lock()
	// A reader of an older snapshot must not replace a newer redactor.
	if version >= c.version {
		c.version, c.rd = version, rd
	}
	c.mu.Unlock()
	return rd, nil
}

// readRedaction reads the setting and the number of terms.
func readRedaction(ctx context.Context, q querier) (*study.Redaction, error) {
	var (
		r        study.Redaction
		patterns *string
	)
	err := q.QueryRow(ctx, `SELECT enabled, patterns, version, (SELECT count(*) FROM redaction_terms) FROM redaction WHERE id = 1`).
		Scan(&r.Enabled, &patterns, &r.Version, &r.Terms)
	if err != nil {
		return nil, fmt.Errorf("cannot read the redaction setting: %w", err)
	}
	if patterns == nil {
		r.Patterns = study.DefaultRedactPatterns()
	} else if err := json.Unmarshal([]byte(*patterns), &r.Patterns); err != nil {
		return nil, fmt.Errorf("stored redaction patterns: %w", err)
	}
	return &r, nil
}

func allRedactTerms(ctx context.Context, q querier) ([]study.RedactTerm, error) {
	rows, err := q.Query(ctx, `SELECT term, marker FROM redaction_terms ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("cannot read the redaction terms: %w", err)
	}
	defer rows.Close()
	var out []study.RedactTerm
	for rows.Next() {
		var t study.RedactTerm
		if err := rows.Scan(&t.Term, &t.Marker); err != nil {
			return nil, fmt.Errorf("cannot read the redaction terms: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Redaction returns the de-identification setting.
func (db *DB) Redaction(ctx context.Context) (*study.Redaction, error) {
	return readRedaction(ctx, db.pool)
}

// SetRedaction replaces the setting and gives every entry the research
// team can see a new feed row.
func (db *DB) SetRedaction(ctx context.Context, r study.Redaction) (*study.Redaction, *study.Wakeups, error) {
	var stored *string // NULL: the defaults
	if len(r.Patterns) > 0 {
		if err := study.ValidateRedaction(&r); err != nil {
			return nil, nil, err
		}
		b, err := json.Marshal(r.Patterns)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot encode redaction patterns: %w", err)
		}
		s := string(b)
		stored = &s
	}
	wake := &study.Wakeups{}
	var out *study.Redaction
	err := db.writeTx(ctx, func(t *tx) error {
		*wake = study.Wakeups{}
		if _, err := t.Exec(ctx, `UPDATE redaction SET enabled = $1, patterns = $2, version = version + 1 WHERE id = 1`, r.Enabled, stored); err != nil {
			return fmt.Errorf("cannot change the redaction setting: %w", err)
		}
		var err error
		if out, err = readRedaction(ctx, t); err != nil {
			return err
		}
		names := make([]string, len(out.Patterns))
		for i, p := range out.Patterns {
			names[i] = p.Name
		}
		if err := db.audit(ctx, t, "redaction.update", "", map[string]string{
			"enabled":  strconv.FormatBool(out.Enabled),
			"patterns": strings.Join(names, ","),
			"default":  strconv.FormatBool(stored == nil),
		}); err != nil {
			return err
		}
		if err := db.refreshResearchFeed(ctx, t, wake); err != nil {
			return err
		}
		t.notify(wake)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return out, wake, nil
}

// AddRedactTerm adds a term to the list.
func (db *DB) AddRedactTerm(ctx context.Context, rt study.RedactTerm) (*study.Wakeups, error) {
	if err := study.ValidateRedactTerm(&rt); err != nil {
		return nil, err
	}
	wake := &study.Wakeups{}
	err := db.writeTx(ctx, func(t *tx) error {
		*wake = study.Wakeups{}
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM redaction_terms`).Scan(&n); err != nil {
			return fmt.Errorf("cannot read the redaction terms: %w", err)
		}
		if n >= study.MaxRedactTerms {
			return syncengine.Errorf(syncengine.ETOOLARGE, "the list holds %d terms, the most it can", study.MaxRedactTerms)
		}
		tag, err := t.Exec(ctx, `INSERT INTO redaction_terms (key, term, marker, added_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING`,
			study.RedactTermKey(rt.Term), rt.Term, rt.Marker, db.nowMillis())
		if err != nil {
			return fmt.Errorf("cannot add the redaction term: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return syncengine.Errorf(syncengine.EEXISTS, "the term is on the list already")
		}
		return db.termsChanged(ctx, t, "redaction.term.add", rt.Marker, n+1, wake)
	})
	if err != nil {
		return nil, err
	}
	return wake, nil
}

// RemoveRedactTerm removes a term from the list.
func (db *DB) RemoveRedactTerm(ctx context.Context, term string) (bool, *study.Wakeups, error) {
	wake := &study.Wakeups{}
	removed := false
	err := db.writeTx(ctx, func(t *tx) error {
		*wake, removed = study.Wakeups{}, false
		var marker string
		err := t.QueryRow(ctx, `DELETE FROM redaction_terms WHERE key = $1 RETURNING marker`, study.RedactTermKey(term)).Scan(&marker)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot remove the redaction term: %w", err)
		}
		removed = true
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM redaction_terms`).Scan(&n); err != nil {
			return fmt.Errorf("cannot read the redaction terms: %w", err)
		}
		return db.termsChanged(ctx, t, "redaction.term.remove", marker, n, wake)
	})
	if err != nil {
		return false, nil, err
	}
	return removed, wake, nil
}

// termsChanged records a change to the term list: a new setting version,
// an audit event (without the term: it is a name of a person or place),
// and new research feed rows.
func (db *DB) termsChanged(ctx context.Context, t *tx, action, marker string, terms int, wake *study.Wakeups) error {
	if _, err := t.Exec(ctx, `UPDATE redaction SET version = version + 1 WHERE id = 1`); err != nil {
		return fmt.Errorf("cannot change the redaction setting: %w", err)
	}
	if err := db.audit(ctx, t, action, "", map[string]string{"marker": marker, "terms": strconv.Itoa(terms)}); err != nil {
		return err
	}
	if err := db.refreshResearchFeed(ctx, t, wake); err != nil {
		return err
	}
	t.notify(wake)
	return nil
}

// ListRedactTerms returns a page of the term list in key order.
func (db *DB) ListRedactTerms(ctx context.Context, size uint32, token string) ([]*study.RedactTerm, string, error) {
	after, err := study.DecodePageToken(token)
	if err != nil {
		return nil, "", err
	}
	n := study.ListPageSize(size)
	rows, err := db.pool.Query(ctx, `SELECT key, term, marker FROM redaction_terms WHERE key > $1 ORDER BY key LIMIT $2`, after, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot read the redaction terms: %w", err)
	}
	defer rows.Close()
	var (
		out  []*study.RedactTerm
		keys []string
	)
	for rows.Next() {
		var (
			t study.RedactTerm
			k string
		)
		if err := rows.Scan(&k, &t.Term, &t.Marker); err != nil {
			return nil, "", fmt.Errorf("cannot read the redaction terms: %w", err)
		}
		out, keys = append(out, &t), append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot read the redaction terms: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		next = study.EncodePageToken(keys[n-1])
	}
	return out, next, nil
}

// refreshResearchFeed moves every visible row of the research feed to a
// new sequence number, in entry order: the research view of every entry
// changes with the redaction setting, and a visibility change is a
// change, so research replicas must pull each entry again. Removal
// notices stay where they are; nothing about a removed entry changed.
func (db *DB) refreshResearchFeed(ctx context.Context, t *tx, wake *study.Wakeups) error {
	var n int
	if err := t.QueryRow(ctx, `SELECT count(*) FROM feed WHERE reader = $1 AND visible`, study.ResearchReader).Scan(&n); err != nil {
		return fmt.Errorf("cannot count the research feed: %w", err)
	}
	if n == 0 {
		return nil
	}
	first, err := nextSeqs(ctx, t, n, db.nowMillis())
	if err != nil {
		return err
	}
	if _, err := t.Exec(ctx, `UPDATE feed SET seq = r.seq FROM (
			SELECT entry, $1::bigint - 1 + row_number() OVER (ORDER BY entry) AS seq FROM feed WHERE reader = $2 AND visible
		) AS r WHERE feed.reader = $2 AND feed.entry = r.entry`, first, study.ResearchReader); err != nil {
		return fmt.Errorf("cannot move the research feed: %w", err)
	}
	wake.Readers = append(wake.Readers, study.ResearchReader)
	return nil
}
