package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// EraseEntry erases one entry: its state and history are deleted, the id
// is kept (state NULL, erased_at set) so that later pushes for it are
// refused, and every reader's feed gets a removal notice. After the
// commit it vacuums the tables that held the entry's text (see scrub).
func (db *DB) EraseEntry(ctx context.Context, id syncengine.EntryID) (bool, *study.Wakeups, error) {
	wake := &study.Wakeups{}
	erased := false
	err := db.writeTx(ctx, func(t *tx) error {
		*wake, erased = study.Wakeups{}, false
		var rid, owner int64
		var already bool
		err := t.QueryRow(ctx, `SELECT rid, owner_id, erased_at IS NOT NULL FROM entries WHERE id = $1`, id[:]).Scan(&rid, &owner, &already)
		if errors.Is(err, pgx.ErrNoRows) {
			return study.ErrUnknownEntry(id)
		}
		if err != nil {
			return fmt.Errorf("cannot look up entry: %w", err)
		}
		if already {
			return nil
		}
		erased = true
		if err := db.eraseRows(ctx, t, []int64{rid}, wake); err != nil {
			return err
		}
		wake.Owners = append(wake.Owners, owner)
		t.notify(wake)
		return db.audit(ctx, t, "entry.erase", id.String(), nil, owner)
	})
	if err != nil {
		return false, nil, err
	}
	if erased {
		db.scrub(ctx)
	}
	return erased, wake, nil
}

// EraseNavigator erases every entry of a navigator and marks them
// withdrawn, so that entries their devices still hold offline are refused
// when pushed. It returns how many entries it erased now.
func (db *DB) EraseNavigator(ctx context.Context, code string) (int, *study.Wakeups, error) {
	wake := &study.Wakeups{}
	n := 0
	err := db.writeTx(ctx, func(t *tx) error {
		*wake = study.Wakeups{}
		u, err := userByCode(ctx, t, code)
		if err != nil {
			return err
		}
		if err := study.CheckErasable(u); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `UPDATE users SET withdrawn_at = coalesce(withdrawn_at, $1) WHERE id = $2`, db.nowMillis(), u.ID); err != nil {
			return fmt.Errorf("cannot mark navigator withdrawn: %w", err)
		}
		rids, err := queryIDs(ctx, t, `SELECT rid FROM entries WHERE owner_id = $1 AND erased_at IS NULL ORDER BY rid`, u.ID)
		if err != nil {
			return fmt.Errorf("cannot find entries: %w", err)
		}
		n = len(rids)
		if err := db.eraseRows(ctx, t, rids, wake); err != nil {
			return err
		}
		wake.Owners = append(wake.Owners, u.ID)
		t.notify(wake)
		return db.audit(ctx, t, "navigator.erase", u.StudyCode, map[string]string{"entries": fmt.Sprint(n)}, u.ID)
	})
	if err != nil {
		return 0, nil, err
	}
	db.scrub(ctx)
	return n, wake, nil
}

// eraseRows erases the entries with the given rids, each at a new
// sequence number, and collects the feed readers to wake.
func (db *DB) eraseRows(ctx context.Context, t *tx, rids []int64, wake *study.Wakeups) error {
	if len(rids) == 0 {
		return nil
	}
	first, err := nextSeqs(ctx, t, len(rids), db.nowMillis())
	if err != nil {
		return err
	}
	seqs := make([]int64, len(rids))
	for i := range rids {
		seqs[i] = first + int64(i)
	}
	// An erased entry is held back from nobody: once its device is
	// approved, the owner's devices all learn of the erasure.
	if _, err := t.Exec(ctx, `UPDATE entries e SET state = NULL, date = '', sup_visible = false, res_visible = false, deleted = false,
			erased_at = $3, seq = s.seq, held_by = NULL, echo_device = NULL
		FROM unnest($1::bigint[], $2::bigint[]) AS s(rid, seq) WHERE e.rid = s.rid`, rids, seqs, db.nowMillis()); err != nil {
		return fmt.Errorf("cannot erase entries: %w", err)
	}
	readers, err := queryIDs(ctx, t, `UPDATE feed f SET visible = false, reason = $1, seq = s.seq
		FROM unnest($2::bigint[], $3::bigint[]) AS s(rid, seq) WHERE f.entry = s.rid AND f.visible RETURNING f.reader`,
		int32(study.ReasonErased), rids, seqs)
	if err != nil {
		return fmt.Errorf("cannot write removal notices: %w", err)
	}
	if _, err := t.Exec(ctx, `DELETE FROM history WHERE entry = ANY($1)`, rids); err != nil {
		return fmt.Errorf("cannot erase history: %w", err)
	}
	if _, err := t.Exec(ctx, `DELETE FROM read_marks WHERE entry = ANY($1)`, rids); err != nil {
		return fmt.Errorf("cannot erase read marks: %w", err)
	}
	// Earlier exports keep the id, so that a later one can say the entry
	// was erased, but not the hash of its text.
	if _, err := t.Exec(ctx, `UPDATE export_entries SET text_sha256 = NULL
		WHERE entry_id IN (SELECT id FROM entries WHERE rid = ANY($1)) AND text_sha256 IS NOT NULL`, rids); err != nil {
		return fmt.Errorf("cannot erase export hashes: %w", err)
	}
	seen := map[int64]bool{}
	for _, r := range readers {
		if !seen[r] {
			seen[r] = true
			wake.Readers = append(wake.Readers, r)
		}
	}
	return nil
}

// scrub removes what an erasure left in the table files. PostgreSQL does
// not overwrite a row in place: the erased state and the deleted history
// stay in dead row versions (and their TOAST chunks) until VACUUM prunes
// them, and the pruned pages reach the files at the next checkpoint. So
// after the commit (VACUUM cannot run inside a transaction) it vacuums
// the two tables that held the text, and export_entries, whose cleared
// hashes of the text could confirm a guess of it; then it asks for a
// checkpoint, which needs the pg_checkpoint role or a superuser: without
// it the pages reach the files within checkpoint_timeout. A transaction
// that began before the erasure and is still open (a long export) keeps
// the dead versions alive; the next (auto)vacuum after it ends removes
// them. Failures are logged: the erasure itself has committed.
func (db *DB) scrub(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	if _, err := db.pool.Exec(ctx, `VACUUM entries, history, export_entries`, pgx.QueryExecModeSimpleProtocol); err != nil {
		db.log.Error("cannot vacuum after an erasure: erased text stays in dead rows until the next vacuum", "err", err)
		return
	}
	if _, err := db.pool.Exec(ctx, `CHECKPOINT`, pgx.QueryExecModeSimpleProtocol); err != nil {
		db.log.Info("cannot checkpoint after an erasure (needs the pg_checkpoint role); the vacuumed pages reach the files at the next checkpoint", "err", err)
	}
}
