package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// EraseEntry erases one entry: its state and history are deleted, the id
// is kept (state NULL, erased_at set) so that later pushes for it are
// refused, and every reader's feed gets a removal notice. It reports false
// if the entry was already erased.
func (db *DB) EraseEntry(ctx context.Context, id syncengine.EntryID) (bool, *study.Wakeups, error) {
	wake := &study.Wakeups{}
	erased := false
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		*wake = study.Wakeups{}
		var rid, owner int64
		var already bool
		err := tx.QueryRowContext(ctx, `SELECT rid, owner_id, erased_at IS NOT NULL FROM entries WHERE id = ?`, id[:]).Scan(&rid, &owner, &already)
		if errors.Is(err, sql.ErrNoRows) {
			return study.ErrUnknownEntry(id)
		}
		if err != nil {
			return fmt.Errorf("cannot look up entry: %w", err)
		}
		if already {
			return nil
		}
		erased = true
		if err := eraseRows(ctx, tx, []int64{rid}, wake, db.nowMillis()); err != nil {
			return err
		}
		wake.Owners = append(wake.Owners, owner)
		return db.audit(ctx, tx, "entry.erase", id.String(), nil, owner)
	})
	if err != nil {
		return false, nil, err
	}
	db.scrubWAL(ctx)
	return erased, wake, nil
}

// EraseNavigator erases every entry of a navigator and marks them
// withdrawn, so that entries their devices still hold offline are refused
// when pushed. It returns how many entries it erased now.
func (db *DB) EraseNavigator(ctx context.Context, code string) (int, *study.Wakeups, error) {
	wake := &study.Wakeups{}
	n := 0
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		*wake = study.Wakeups{}
		u, err := userByCode(ctx, tx, code)
		if err != nil {
			return err
		}
		if err := study.CheckErasable(u); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET withdrawn_at = coalesce(withdrawn_at, ?) WHERE id = ?`, db.nowMillis(), u.ID); err != nil {
			return fmt.Errorf("cannot mark navigator withdrawn: %w", err)
		}
		rids, err := queryIDs(ctx, tx, `SELECT rid FROM entries WHERE owner_id = ? AND erased_at IS NULL`, u.ID)
		if err != nil {
			return fmt.Errorf("cannot find entries: %w", err)
		}
		n = len(rids)
		if err := eraseRows(ctx, tx, rids, wake, db.nowMillis()); err != nil {
			return err
		}
		wake.Owners = append(wake.Owners, u.ID)
		return db.audit(ctx, tx, "navigator.erase", u.StudyCode, map[string]string{"entries": fmt.Sprint(n)}, u.ID)
	})
	if err != nil {
		return 0, nil, err
	}
	db.scrubWAL(ctx)
	return n, wake, nil
}

// eraseRows erases the entries with the given rids, each at a new
// sequence number, and collects the feed readers to wake.
func eraseRows(ctx context.Context, tx *sql.Tx, rids []int64, wake *study.Wakeups, at int64) error {
	if len(rids) == 0 {
		return nil
	}
	first, err := nextSeqs(ctx, tx, len(rids), at)
	if err != nil {
		return err
	}
	readers := map[int64]bool{}
	for i, rid := range rids {
		seq := first + int64(i)
		// An erased entry is held back from nobody: once its device is
		// approved, the owner's devices all learn of the erasure.
		if _, err := tx.ExecContext(ctx, `UPDATE entries SET state = NULL, date = '', sup_visible = 0, res_visible = 0, deleted = 0,
			erased_at = ?, seq = ?, held_by = NULL, echo_device = NULL WHERE rid = ?`, seq, seq, rid); err != nil {
			return fmt.Errorf("cannot erase entry: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `UPDATE feed SET visible = 0, reason = ?, seq = ? WHERE entry = ? AND visible = 1 RETURNING reader`, study.ReasonErased, seq, rid)
		if err != nil {
			return fmt.Errorf("cannot write removal notices: %w", err)
		}
		for rows.Next() {
			var r int64
			if err := rows.Scan(&r); err != nil {
				rows.Close()
				return err
			}
			readers[r] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM history WHERE entry = ?`, rid); err != nil {
			return fmt.Errorf("cannot erase history: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM read_marks WHERE entry = ?`, rid); err != nil {
			return fmt.Errorf("cannot erase read marks: %w", err)
		}
		// Earlier exports keep the id, so that a later one can say the
		// entry was erased, but not the hash of its text.
		if _, err := tx.ExecContext(ctx, `UPDATE export_entries SET text_sha256 = NULL WHERE entry_id = (SELECT id FROM entries WHERE rid = ?)`, rid); err != nil {
			return fmt.Errorf("cannot erase export hashes: %w", err)
		}
	}
	for r := range readers {
		wake.Readers = append(wake.Readers, r)
	}
	return nil
}

// scrubWAL checkpoints and truncates the write-ahead log after an
// erasure, so the erased content's old pages do not linger in it. With
// secure_delete on, the database file itself holds no freed content. If
// a reader still holds an old snapshot the log cannot be truncated now;
// the next checkpoint overwrites it.
func (db *DB) scrubWAL(ctx context.Context) {
	db.lite.TruncateLog(ctx)
}
