package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// MarkRead keeps a supervisor's read marks and moves the feed row of each
// entry whose mark changed to a new sequence number.
func (db *DB) MarkRead(ctx context.Context, who *study.Identity, marks []study.ReadMark) ([]study.ChangeResult, *study.Wakeups, error) {
	if err := study.CheckReadMarksSize(len(marks)); err != nil {
		return nil, nil, err
	}
	results := make([]study.ChangeResult, len(marks))
	wake := &study.Wakeups{}
	now := db.now()
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
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
			t := targets[m.Entry]
			if t == nil {
				t = &target{}
				var read sql.NullBool
				var clock sql.NullInt64
				err := tx.QueryRowContext(ctx, `SELECT f.entry, f.visible AND e.state IS NOT NULL, rm.read, rm.clock
					FROM entries e JOIN feed f ON f.entry = e.rid AND f.reader = ?
					LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
					WHERE e.id = ?`, who.UserID, m.Entry[:]).Scan(&t.rid, &t.visible, &read, &clock)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return fmt.Errorf("cannot look up entry: %w", err)
				}
				if clock.Valid {
					t.stored = &study.ReadMark{Entry: m.Entry, Read: read.Bool, Clock: syncengine.Timestamp(clock.Int64)}
				}
				targets[m.Entry] = t
			}
			r, keep := study.DecideReadMark(who, m, study.ReadTarget{Visible: t.visible, Stored: t.stored}, now)
			results[i] = r
			if !keep {
				continue
			}
			kept := m
			t.stored = &kept
			if !t.changed {
				t.changed = true
				order = append(order, t)
			}
		}
		if len(order) == 0 {
			return nil
		}
		first, err := nextSeqs(ctx, tx, len(order), now.UnixMilli())
		if err != nil {
			return err
		}
		for k, t := range order {
			if _, err := tx.ExecContext(ctx, `INSERT INTO read_marks (reader, entry, read, clock) VALUES (?, ?, ?, ?)
				ON CONFLICT (reader, entry) DO UPDATE SET read = excluded.read, clock = excluded.clock`,
				who.UserID, t.rid, t.stored.Read, int64(t.stored.Clock)); err != nil {
				return fmt.Errorf("cannot keep read mark: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE feed SET seq = ? WHERE reader = ? AND entry = ?`, first+int64(k), who.UserID, t.rid); err != nil {
				return fmt.Errorf("cannot move feed row: %w", err)
			}
		}
		wake.Readers = append(wake.Readers, who.UserID)
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
func inboxItem(state []byte, read sql.NullBool, clock sql.NullInt64) (*study.InboxItem, error) {
	e, err := syncengine.DecodeEntry(state)
	if err != nil {
		return nil, fmt.Errorf("stored state: %w", err)
	}
	it := &study.InboxItem{Entry: e.View(syncengine.AudienceSupervisor)}
	if read.Valid && read.Bool {
		it.Read = true
		it.ReadAt = syncengine.Timestamp(clock.Int64).Time()
	}
	return it, nil
}

// Inbox returns a page of the entries the supervisor may see now, newest
// date first.
func (db *DB) Inbox(ctx context.Context, who *study.Identity, q study.InboxQuery) (*study.InboxPage, error) {
	if err := checkSupervisor(who); err != nil {
		return nil, err
	}
	if err := study.CheckInboxQuery(&q); err != nil {
		return nil, err
	}
	where := []string{`f.reader = ?`, `f.visible = 1`, `e.state IS NOT NULL`}
	args := []any{who.UserID}
	if q.PageToken != "" {
		date, id, err := study.DecodeInboxToken(q.PageToken)
		if err != nil {
			return nil, err
		}
		where, args = append(where, `(e.date, e.id) < (?, ?)`), append(args, date, id[:])
	}
	if q.Navigator != "" {
		where, args = append(where, `e.owner_id = (SELECT id FROM users WHERE study_code = ?)`), append(args, q.Navigator)
	}
	if q.From != "" {
		where, args = append(where, `e.date >= ?`), append(args, q.From)
	}
	if q.To != "" {
		where, args = append(where, `e.date <= ?`), append(args, q.To)
	}
	if q.Unread {
		where = append(where, `coalesce(rm.read, 0) = 0`)
	}
	pager := study.NewInboxPager(&q)
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT e.id, e.date, e.state, rm.read, rm.clock
			FROM feed f JOIN entries e ON e.rid = f.entry
			LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
			WHERE `+strings.Join(where, " AND ")+`
			ORDER BY e.date DESC, e.id DESC LIMIT ?`, append(args, study.InboxScanLimit)...)
		if err != nil {
			return fmt.Errorf("cannot read the inbox: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, state []byte
				date      string
				read      sql.NullBool
				clock     sql.NullInt64
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
		read  sql.NullBool
		clock sql.NullInt64
	)
	err := db.read.QueryRowContext(ctx, `SELECT e.state, rm.read, rm.clock
		FROM entries e JOIN feed f ON f.entry = e.rid AND f.reader = ? AND f.visible = 1
		LEFT JOIN read_marks rm ON rm.reader = f.reader AND rm.entry = f.entry
		WHERE e.id = ? AND e.state IS NOT NULL`, who.UserID, id[:]).Scan(&state, &read, &clock)
	if errors.Is(err, sql.ErrNoRows) {
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
