package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// Pull returns the page after cursor for the caller, read in one snapshot.
// Memory is bounded by the page, whatever the size of the database.
func (db *DB) Pull(ctx context.Context, who *study.Identity, req study.PullRequest) (*study.PullPage, error) {
	rd, err := study.ReaderFor(who)
	if err != nil {
		return nil, err
	}
	cursor := req.Cursor
	if err := study.CheckCursor(cursor); err != nil {
		return nil, err
	}
	size := study.PullPageSize(req.PageSize)
	page := &study.PullPage{Next: cursor}
	err = db.readTx(ctx, func(rtx *sql.Tx) error {
		tx := db.rq.in(rtx)
		head, err := currentSeq(ctx, tx)
		if err != nil {
			return err
		}
		if cursor > head {
			return study.ErrCursorAhead(cursor, head)
		}
		rdc, err := db.researchRedactor(ctx, rtx, rd)
		if err != nil {
			return err
		}
		// The device's count of its changes, for a navigator: while the
		// device knows the same, the page leaves out its echoes.
		var applied int64
		if rd.Owner {
			if err := tx.QueryRowContext(ctx, qAppliedChanges, who.DeviceID).Scan(&applied); err != nil {
				return fmt.Errorf("cannot read device: %w", err)
			}
		}
		var rows *sql.Rows
		if rd.Owner {
			rows, err = tx.QueryContext(ctx, qPullOwner, rd.ID, cursor, size+1)
		} else {
			rows, err = tx.QueryContext(ctx, qPullFeed, rd.ID, cursor, size+1)
		}
		if err != nil {
			return fmt.Errorf("cannot read changes: %w", err)
		}
		defer rows.Close()
		n, bytes := 0, 0
		for rows.Next() {
			if n == size || (n > 0 && bytes >= study.MaxPullPageBytes) {
				page.More = true
				break
			}
			var (
				seq     int64
				visible bool
				reason  study.RemovalReason
				id      []byte
				state   []byte
				read    sql.NullBool
				clock   sql.NullInt64
				echo    int64
			)
			if err := rows.Scan(&seq, &visible, &reason, &id, &state, &read, &clock, &echo); err != nil {
				return fmt.Errorf("cannot read changes: %w", err)
			}
			n++
			page.Next = seq
			if state == nil { // erased
				page.Removals = append(page.Removals, study.Removal{Entry: syncengine.EntryID(id), Reason: study.ReasonErased})
				continue
			}
			if !visible {
				page.Removals = append(page.Removals, study.Removal{Entry: syncengine.EntryID(id), Reason: reason})
				continue
			}
			if rd.Owner && study.LeavesOut(who, &req, applied, echo) {
				continue
			}
			e, err := syncengine.DecodeEntryLazy(state)
			if err != nil {
				return fmt.Errorf("entry %x: stored state: %w", id, err)
			}
			bytes += len(state)
			v, _ := rdc.RedactEntry(rd.View(e, req.MergedText))
			page.Entries = append(page.Entries, v)
			if clock.Valid {
				page.Reads = append(page.Reads, study.ReadState{Entry: syncengine.EntryID(id), Read: read.Bool, Clock: syncengine.Timestamp(clock.Int64)})
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read changes: %w", err)
		}
		rows.Close()
		page.RemainingExact = req.CountRemaining || !page.More
		if page.More {
			limit := int64(-1) // SQLite: no limit
			if !req.CountRemaining {
				limit = study.MaxRemainingCount
			}
			page.Remaining, err = countAfter(ctx, tx, rd, page.Next, limit)
			page.RemainingExact = page.RemainingExact || page.Remaining < study.MaxRemainingCount
		} else {
			if rd.Owner {
				page.OwnChanges, page.OwnChangesSet = applied, true
			}
			if req.AwaitingApproval {
				page.Awaiting, page.AwaitingCount, err = db.awaitingApproval(ctx, tx, who.UserID, study.MaxAwaitingApproval)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

var (
	qPullOwner = readQuery(`SELECT seq, 1, 0, id, state, NULL, NULL, coalesce(echo_device, 0) FROM entries WHERE owner_id = ? AND seq > ? AND held_by IS NULL ORDER BY seq LIMIT ?`)
	qPullFeed  = readQuery(`SELECT f.seq, f.visible, f.reason, e.id, e.state, rm.read, rm.clock, 0 FROM feed f JOIN entries e ON e.rid = f.entry
				LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
				WHERE f.reader = ? AND f.seq > ? ORDER BY f.seq LIMIT ?`)
	qAppliedChanges = readQuery(`SELECT applied_changes FROM devices WHERE id = ?`)
	qCountOwner     = readQuery(`SELECT count(*) FROM (SELECT 1 FROM entries WHERE owner_id = ? AND seq > ? AND held_by IS NULL LIMIT ?)`)
	qCountFeed      = readQuery(`SELECT count(*) FROM (SELECT 1 FROM feed WHERE reader = ? AND seq > ? LIMIT ?)`)
	qHeadOwner      = readQuery(`SELECT max(seq) FROM entries WHERE owner_id = ? AND held_by IS NULL`)
	qHeadFeed       = readQuery(`SELECT max(seq) FROM feed WHERE reader = ?`)
)

// countAfter counts the reader's rows after cursor, at most limit of
// them (-1: all).
func countAfter(ctx context.Context, tx querier, rd study.Reader, cursor, limit int64) (int64, error) {
	var n int64
	var err error
	if rd.Owner {
		err = tx.QueryRowContext(ctx, qCountOwner, rd.ID, cursor, limit).Scan(&n)
	} else {
		err = tx.QueryRowContext(ctx, qCountFeed, rd.ID, cursor, limit).Scan(&n)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot count waiting changes: %w", err)
	}
	return n, nil
}

// Head returns the newest position the caller may see: the greatest
// sequence number among the rows they pull.
func (db *DB) Head(ctx context.Context, who *study.Identity) (int64, error) {
	rd, err := study.ReaderFor(who)
	if err != nil {
		return 0, err
	}
	return headFor(ctx, db.rq, rd)
}

func headFor(ctx context.Context, q querier, rd study.Reader) (int64, error) {
	var head sql.NullInt64
	var err error
	if rd.Owner {
		err = q.QueryRowContext(ctx, qHeadOwner, rd.ID).Scan(&head)
	} else {
		err = q.QueryRowContext(ctx, qHeadFeed, rd.ID).Scan(&head)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read position: %w", err)
	}
	return head.Int64, nil
}

// StateHash computes, in one snapshot, the state hash of every entry the
// caller may see, as they hold it.
func (db *DB) StateHash(ctx context.Context, who *study.Identity, req study.StateHashRequest) (*study.StateHash, error) {
	rd, err := study.ReaderFor(who)
	if err != nil {
		return nil, err
	}
	out := &study.StateHash{}
	err = db.readTx(ctx, func(tx *sql.Tx) error {
		if out.Cursor, err = headFor(ctx, tx, rd); err != nil {
			return err
		}
		rdc, err := db.researchRedactor(ctx, tx, rd)
		if err != nil {
			return err
		}
		var rows *sql.Rows
		if rd.Owner {
			rows, err = tx.QueryContext(ctx, `SELECT state FROM entries WHERE owner_id = ? AND state IS NOT NULL AND held_by IS NULL ORDER BY id`, rd.ID)
		} else {
			rows, err = tx.QueryContext(ctx, `SELECT e.state FROM feed f JOIN entries e ON e.rid = f.entry
				WHERE f.reader = ? AND f.visible = 1 AND e.state IS NOT NULL ORDER BY e.id`, rd.ID)
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
			e, err := syncengine.DecodeEntryLazy(state)
			if err != nil {
				return fmt.Errorf("stored state: %w", err)
			}
			v, _ := rdc.RedactEntry(rd.View(e, req.MergedText))
			if err := h.Add(v); err != nil {
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

// researchRedactor returns the Redactor for the research team's views, or
// nil (which changes nothing) for every other reader: redaction never
// changes what navigators and supervisors see.
func (db *DB) researchRedactor(ctx context.Context, q querier, rd study.Reader) (*study.Redactor, error) {
	if rd.Owner || rd.Audience != syncengine.AudienceResearch {
		return nil, nil
	}
	return db.redactor(ctx, q)
}
