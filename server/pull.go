package server

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/diarysync/diarysync/syncengine"
)

// Pull page limits.
const (
	DefaultPullPageSize = 500
	MaxPullPageSize     = 1000
	// maxPullPageBytes is roughly how much entry state one page carries;
	// a page stops early rather than grow past it (but always holds at
	// least one entry), so a page of large entries stays a few MiB.
	maxPullPageBytes = 4 << 20
)

// Removal tells a reader to drop an entry.
type Removal struct {
	Entry  syncengine.EntryID
	Reason int
}

// PullPage is one page of what changed for a reader after a cursor.
type PullPage struct {
	Entries   []*syncengine.Entry // views for the reader
	Removals  []Removal
	Next      int64 // the cursor to store with this page
	More      bool
	Remaining int64 // entries and removals waiting after Next
}

// reader says which rows a caller pulls and how they see them.
type reader struct {
	owner    bool  // a navigator reading their own entries
	id       int64 // the owner's user id, or the feed reader id
	audience syncengine.Audience
}

func readerFor(who *Identity) (reader, error) {
	switch who.Role {
	case RoleNavigator:
		return reader{owner: true, id: who.UserID, audience: syncengine.AudienceOwner}, nil
	case RoleSupervisor:
		return reader{id: who.UserID, audience: syncengine.AudienceSupervisor}, nil
	case RoleResearcher:
		return reader{id: 0, audience: syncengine.AudienceResearch}, nil
	}
	return reader{}, syncengine.Errorf(syncengine.EPERMISSION, "a %s has no diary entries to sync", who.Role)
}

func pullPageSize(n uint32) int {
	switch {
	case n == 0:
		return DefaultPullPageSize
	case n > MaxPullPageSize:
		return MaxPullPageSize
	}
	return int(n)
}

// Pull returns the page after cursor for the caller, read in one snapshot.
// Memory is bounded by the page, whatever the size of the database.
func (db *DB) Pull(ctx context.Context, who *Identity, cursor int64, pageSize uint32) (*PullPage, error) {
	rd, err := readerFor(who)
	if err != nil {
		return nil, err
	}
	if cursor < 0 {
		return nil, syncengine.Errorf(syncengine.EINVALID, "cursor must not be negative")
	}
	size := pullPageSize(pageSize)
	page := &PullPage{Next: cursor}
	err = db.readTx(ctx, func(tx *sql.Tx) error {
		head, err := currentSeq(ctx, tx)
		if err != nil {
			return err
		}
		if cursor > head {
			return syncengine.Errorf(syncengine.ECONFLICT, "cursor %d is ahead of this server's position %d: the server's data was replaced; sync again from the start", cursor, head)
		}
		var rows *sql.Rows
		if rd.owner {
			rows, err = tx.QueryContext(ctx, `SELECT seq, 1, 0, id, state FROM entries WHERE owner_id = ? AND seq > ? ORDER BY seq LIMIT ?`, rd.id, cursor, size+1)
		} else {
			rows, err = tx.QueryContext(ctx, `SELECT f.seq, f.visible, f.reason, e.id, e.state FROM feed f JOIN entries e ON e.rid = f.entry
				WHERE f.reader = ? AND f.seq > ? ORDER BY f.seq LIMIT ?`, rd.id, cursor, size+1)
		}
		if err != nil {
			return fmt.Errorf("cannot read changes: %w", err)
		}
		defer rows.Close()
		n, bytes := 0, 0
		for rows.Next() {
			if n == size || (n > 0 && bytes >= maxPullPageBytes) {
				page.More = true
				break
			}
			var (
				seq     int64
				visible bool
				reason  int
				id      []byte
				state   []byte
			)
			if err := rows.Scan(&seq, &visible, &reason, &id, &state); err != nil {
				return fmt.Errorf("cannot read changes: %w", err)
			}
			n++
			page.Next = seq
			if state == nil { // erased
				page.Removals = append(page.Removals, Removal{Entry: syncengine.EntryID(id), Reason: reasonErased})
				continue
			}
			if !visible {
				page.Removals = append(page.Removals, Removal{Entry: syncengine.EntryID(id), Reason: reason})
				continue
			}
			e, err := syncengine.DecodeEntry(state)
			if err != nil {
				return fmt.Errorf("entry %x: stored state: %w", id, err)
			}
			bytes += len(state)
			page.Entries = append(page.Entries, e.View(rd.audience))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read changes: %w", err)
		}
		rows.Close()
		if page.More {
			page.Remaining, err = countAfter(ctx, tx, rd, page.Next)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

func countAfter(ctx context.Context, tx *sql.Tx, rd reader, cursor int64) (int64, error) {
	var n int64
	var err error
	if rd.owner {
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE owner_id = ? AND seq > ?`, rd.id, cursor).Scan(&n)
	} else {
		err = tx.QueryRowContext(ctx, `SELECT count(*) FROM feed WHERE reader = ? AND seq > ?`, rd.id, cursor).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot count waiting changes: %w", err)
	}
	return n, nil
}

// Head returns the newest position the caller may see: the greatest
// sequence number among the rows they pull.
func (db *DB) Head(ctx context.Context, who *Identity) (int64, error) {
	rd, err := readerFor(who)
	if err != nil {
		return 0, err
	}
	return headFor(ctx, db.read, rd)
}

func headFor(ctx context.Context, q querier, rd reader) (int64, error) {
	var head sql.NullInt64
	var err error
	if rd.owner {
		err = q.QueryRowContext(ctx, `SELECT max(seq) FROM entries WHERE owner_id = ?`, rd.id).Scan(&head)
	} else {
		err = q.QueryRowContext(ctx, `SELECT max(seq) FROM feed WHERE reader = ?`, rd.id).Scan(&head)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read position: %w", err)
	}
	return head.Int64, nil
}

// StateHash is the state hash of what a reader may see, and the position
// it reflects.
type StateHash struct {
	Sum     [32]byte
	Entries int
	Cursor  int64
}

// StateHash computes, in one snapshot, the state hash of every entry the
// caller may see.
func (db *DB) StateHash(ctx context.Context, who *Identity) (*StateHash, error) {
	rd, err := readerFor(who)
	if err != nil {
		return nil, err
	}
	out := &StateHash{}
	err = db.readTx(ctx, func(tx *sql.Tx) error {
		if out.Cursor, err = headFor(ctx, tx, rd); err != nil {
			return err
		}
		var rows *sql.Rows
		if rd.owner {
			rows, err = tx.QueryContext(ctx, `SELECT state FROM entries WHERE owner_id = ? AND state IS NOT NULL ORDER BY id`, rd.id)
		} else {
			rows, err = tx.QueryContext(ctx, `SELECT e.state FROM feed f JOIN entries e ON e.rid = f.entry
				WHERE f.reader = ? AND f.visible = 1 AND e.state IS NOT NULL ORDER BY e.id`, rd.id)
		}
		if err != nil {
			return fmt.Errorf("cannot read entries: %w", err)
		}
		defer rows.Close()
		h := syncengine.NewStateHasher()
		for rows.Next() {
			var state []byte
			if err := rows.Scan(&state); err != nil {
				return err
			}
			e, err := syncengine.DecodeEntry(state)
			if err != nil {
				return fmt.Errorf("stored state: %w", err)
			}
			if err := h.Add(e.View(rd.audience)); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		out.Sum, out.Entries = h.Sum(), h.Count()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
