package postgres

import (
	"context"
	"fmt"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// Pull returns the page after cursor for the caller, read in one snapshot
// (a REPEATABLE READ transaction). Memory is bounded by the page, whatever
// the size of the database. Every row it can see committed with a number
// below every row it cannot (writers hold the sequence row until they
// commit), so the cursor it returns never skips a later commit.
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
	var page *study.PullPage
	err = db.readTx(ctx, func(tx pgx.Tx) error {
		page = &study.PullPage{Next: cursor}
		// With the position, for a navigator, the device's count of its
		// changes: while the device knows the same, the page leaves out
		// its echoes.
		var head, applied int64
		if err := tx.QueryRow(ctx, `SELECT value, coalesce((SELECT applied_changes FROM devices WHERE id = $1), 0) FROM sequence WHERE id = 1`, who.DeviceID).Scan(&head, &applied); err != nil {
			return fmt.Errorf("cannot read sequence: %w", err)
		}
		if cursor > head {
			return study.ErrCursorAhead(cursor, head)
		}
		rdc, err := db.researchRedactor(ctx, tx, rd)
		if err != nil {
			return err
		}
		var rows pgx.Rows
		if rd.Owner {
			rows, err = tx.Query(ctx, `SELECT seq, true, 0, id, state, NULL::boolean, NULL::bigint, coalesce(echo_device, 0) FROM entries WHERE owner_id = $1 AND seq > $2 AND held_by IS NULL ORDER BY seq LIMIT $3`, rd.ID, cursor, size+1)
		} else {
			rows, err = tx.Query(ctx, `SELECT f.seq, f.visible, f.reason, e.id, e.state, rm.read, rm.clock, 0::bigint FROM feed f JOIN entries e ON e.rid = f.entry
				LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
				WHERE f.reader = $1 AND f.seq > $2 ORDER BY f.seq LIMIT $3`, rd.ID, cursor, size+1)
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
				reason  int32
				id      []byte
				state   []byte
				read    *bool
				clock   *int64
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
				page.Removals = append(page.Removals, study.Removal{Entry: syncengine.EntryID(id), Reason: study.RemovalReason(reason)})
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
			if clock != nil && read != nil {
				page.Reads = append(page.Reads, study.ReadState{Entry: syncengine.EntryID(id), Read: *read, Clock: syncengine.Timestamp(*clock)})
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read changes: %w", err)
		}
		page.RemainingExact = req.CountRemaining || !page.More
		if page.More {
			limit := int64(study.MaxRemainingCount)
			if req.CountRemaining {
				limit = 0 // no limit
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

// countAfter counts the reader's rows after cursor, at most limit of
// them (0: all). LIMIT NULL is no limit.
func countAfter(ctx context.Context, q querier, rd study.Reader, cursor, limit int64) (int64, error) {
	var n int64
	var err error
	lim := &limit
	if limit == 0 {
		lim = nil
	}
	if rd.Owner {
		err = q.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM entries WHERE owner_id = $1 AND seq > $2 AND held_by IS NULL LIMIT $3) AS w`, rd.ID, cursor, lim).Scan(&n)
	} else {
		err = q.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM feed WHERE reader = $1 AND seq > $2 LIMIT $3) AS w`, rd.ID, cursor, lim).Scan(&n)
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
	return headFor(ctx, db.pool, rd)
}

func headFor(ctx context.Context, q querier, rd study.Reader) (int64, error) {
	var head *int64
	var err error
	if rd.Owner {
		err = q.QueryRow(ctx, `SELECT max(seq) FROM entries WHERE owner_id = $1 AND held_by IS NULL`, rd.ID).Scan(&head)
	} else {
		err = q.QueryRow(ctx, `SELECT max(seq) FROM feed WHERE reader = $1`, rd.ID).Scan(&head)
	}
	if err != nil {
		return 0, fmt.Errorf("cannot read position: %w", err)
	}
	if head == nil {
		return 0, nil
	}
	return *head, nil
}

// StateHash computes, in one snapshot, the state hash of every entry the
// caller may see, as they hold it.
func (db *DB) StateHash(ctx context.Context, who *study.Identity, req study.StateHashRequest) (*study.StateHash, error) {
	rd, err := study.ReaderFor(who)
	if err != nil {
		return nil, err
	}
	var out *study.StateHash
	err = db.readTx(ctx, func(tx pgx.Tx) error {
		out = &study.StateHash{}
		if out.Cursor, err = headFor(ctx, tx, rd); err != nil {
			return err
		}
		rdc, err := db.researchRedactor(ctx, tx, rd)
		if err != nil {
			return err
		}
		var rows pgx.Rows
		if rd.Owner {
			rows, err = tx.Query(ctx, `SELECT state FROM entries WHERE owner_id = $1 AND state IS NOT NULL AND held_by IS NULL ORDER BY id`, rd.ID)
		} else {
			rows, err = tx.Query(ctx, `SELECT e.state FROM feed f JOIN entries e ON e.rid = f.entry
				WHERE f.reader = $1 AND f.visible AND e.state IS NOT NULL ORDER BY e.id`, rd.ID)
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
