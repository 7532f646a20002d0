package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// MarkRead keeps a supervisor's read marks and moves the feed row of each
// entry whose mark changed to a new sequence number. It holds the write
// lock from the start, so the marks it compares with are the latest on
// any process.
func (db *DB) MarkRead(ctx context.Context, who *study.Identity, marks []study.ReadMark) ([]study.ChangeResult, *study.Wakeups, error) {
	if err := study.CheckReadMarksSize(len(marks)); err != nil {
		return nil, nil, err
	}
	results := make([]study.ChangeResult, len(marks))
	wake := &study.Wakeups{}
	now := db.now()
	err := db.writeTx(ctx, func(t *tx) error {
		*wake = study.Wakeups{}
		type target struct {
			rid     int64
			visible bool
			stored  *study.ReadMark
			changed bool
		}
		targets := map[syncengine.EntryID]*target{}
		var order []*target
		for i, m := range marks {
			tg := targets[m.Entry]
			if tg == nil {
				tg = &target{}
				var read *bool
				var clock *int64
				err := t.QueryRow(ctx, `SELECT f.entry, f.visible AND e.state IS NOT NULL, rm.read, rm.clock
					FROM entries e JOIN feed f ON f.entry = e.rid AND f.reader = $1
					LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
					WHERE e.id = $2`, who.UserID, m.Entry[:]).Scan(&tg.rid, &tg.visible, &read, &clock)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					return fmt.Errorf("cannot look up entry: %w", err)
				}
				if clock != nil && read != nil {
					tg.stored = &study.ReadMark{Entry: m.Entry, Read: *read, Clock: syncengine.Timestamp(*clock)}
				}
				targets[m.Entry] = tg
			}
			r, keep := study.DecideReadMark(who, m, study.ReadTarget{Visible: tg.visible, Stored: tg.stored}, now)
			results[i] = r
			if !keep {
				continue
			}
			kept := m
			tg.stored = &kept
			if !tg.changed {
				tg.changed = true
				order = append(order, tg)
			}
		}
		if len(order) == 0 {
			return nil
		}
		first, err := nextSeqs(ctx, t, len(order), now.UnixMilli())
		if err != nil {
			return err
		}
		for k, tg := range order {
			if _, err := t.Exec(ctx, `INSERT INTO read_marks (reader, entry, read, clock) VALUES ($1, $2, $3, $4)
				ON CONFLICT (reader, entry) DO UPDATE SET read = excluded.read, clock = excluded.clock`,
				who.UserID, tg.rid, tg.stored.Read, int64(tg.stored.Clock)); err != nil {
				return fmt.Errorf("cannot keep read mark: %w", err)
			}
			if _, err := t.Exec(ctx, `UPDATE feed SET seq = $1 WHERE reader = $2 AND entry = $3`, first+int64(k), who.UserID, tg.rid); err != nil {
				return fmt.Errorf("cannot move feed row: %w", err)
			}
		}
		wake.Readers = append(wake.Readers, who.UserID)
		t.notify(wake)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return results, wake, nil
}

func checkSupervisor(who *study.Identity) error {
	if who.Role != study.RoleSupervisor {
		return syncengine.Errorf(syncengine.EPERMISSION, "only supervisors have an inbox")
	}
	return nil
}

// inboxItem builds an item from a feed row's state and read mark.
func inboxItem(state []byte, read *bool, clock *int64) (*study.InboxItem, error) {
	e, err := syncengine.DecodeEntry(state)
	if err != nil {
		return nil, fmt.Errorf("stored state: %w", err)
	}
	it := &study.InboxItem{Entry: e.View(syncengine.AudienceSupervisor)}
	if read != nil && *read && clock != nil {
		it.Read = true
		it.ReadAt = syncengine.Timestamp(*clock).Time()
	}
	return it, nil
}

// Inbox returns a page of the entries the supervisor may see now, newest
// date first, read in one snapshot.
func (db *DB) Inbox(ctx context.Context, who *study.Identity, q study.InboxQuery) (*study.InboxPage, error) {
	if err := checkSupervisor(who); err != nil {
		return nil, err
	}
	if err := study.CheckInboxQuery(&q); err != nil {
		return nil, err
	}
	args := []any{who.UserID}
	// arg adds a value and returns its placeholder.
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	where := []string{`f.reader = $1`, `f.visible`, `e.state IS NOT NULL`}
	if q.PageToken != "" {
		date, id, err := study.DecodeInboxToken(q.PageToken)
		if err != nil {
			return nil, err
		}
		where = append(where, `(e.date, e.id) < (`+arg(date)+`::text COLLATE "C", `+arg(id[:])+`::bytea)`)
	}
	if q.Navigator != "" {
		where = append(where, `e.owner_id = (SELECT id FROM users WHERE lower(study_code) = lower(`+arg(q.Navigator)+`))`)
	}
	if q.From != "" {
		where = append(where, `e.date >= `+arg(q.From))
	}
	if q.To != "" {
		where = append(where, `e.date <= `+arg(q.To))
	}
	if q.Unread {
		where = append(where, `NOT coalesce(rm.read, false)`)
	}
	var pager *study.InboxPager
	query := `SELECT e.id, e.date, e.state, rm.read, rm.clock
		FROM feed f JOIN entries e ON e.rid = f.entry
		LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
		WHERE ` + strings.Join(where, " AND ") + `
		ORDER BY e.date DESC, e.id DESC LIMIT ` + arg(study.InboxScanLimit)
	err := db.readTx(ctx, func(tx pgx.Tx) error {
		pager = study.NewInboxPager(&q) // afresh if the transaction is run again
		rows, err := tx.Query(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("cannot read the inbox: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, state []byte
				date      string
				read      *bool
				clock     *int64
			)
			if err := rows.Scan(&id, &date, &state, &read, &clock); err != nil {
				return fmt.Errorf("cannot read the inbox: %w", err)
			}
			it, err := inboxItem(state, read, clock)
			if err != nil {
				return fmt.Errorf("entry %x: %w", id, err)
			}
			if !pager.Add(it, date, syncengine.EntryID(id)) {
				return nil
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read the inbox: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pager.Page(), nil
}

// InboxEntry returns one entry as the supervisor may see it now.
func (db *DB) InboxEntry(ctx context.Context, who *study.Identity, id syncengine.EntryID) (*study.InboxItem, error) {
	if err := checkSupervisor(who); err != nil {
		return nil, err
	}
	var (
		state []byte
		read  *bool
		clock *int64
	)
	err := db.pool.QueryRow(ctx, `SELECT e.state, rm.read, rm.clock
		FROM entries e JOIN feed f ON f.entry = e.rid AND f.reader = $1 AND f.visible
		LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
		WHERE e.id = $2 AND e.state IS NOT NULL`, who.UserID, id[:]).Scan(&state, &read, &clock)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, syncengine.Errorf(syncengine.ENOTFOUND, "no entry %s is shared with you", id)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read entry: %w", err)
	}
	it, err := inboxItem(state, read, clock)
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", id, err)
	}
	if !study.SupervisorVisible(it.Entry) {
		return nil, syncengine.Errorf(syncengine.ENOTFOUND, "no entry %s is shared with you", id)
	}
	return it, nil
}
