package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// loadedEntry is an entry read at the start of a push, and what the push
// did to it.
type loadedEntry struct {
	rid     int64
	owner   int64
	exists  bool // a row exists
	erased  bool
	heldBy  int64 // the pending device that created it, or 0
	seq     int64 // its sequence number when loaded
	echo    int64 // its echo device when loaded, or 0 (study/echo.go)
	entry   *syncengine.Entry
	before  []byte // canonical encoding when loaded
	after   []byte // canonical encoding to store, once the push is done with it
	touched bool   // some change was accepted for it
	echoW   study.EchoWrite
}

// Push applies a batch of changes from the calling device, all or
// nothing, and returns one result per change. Pushes that arrive together
// share one transaction (see group.go). It returns an error only when the
// push could not be committed; then nothing of it was written.
func (db *DB) Push(ctx context.Context, who *study.Identity, in []study.Incoming) ([]study.ChangeResult, *study.Wakeups, error) {
	if err := study.CheckPushSize(len(in)); err != nil {
		return nil, nil, err
	}
	results := make([]study.ChangeResult, len(in))
	now := db.now()
	var candidates []int
	for i := range in {
		if r, ok := study.CheckIncoming(who, &in[i]); !ok {
			results[i] = r
			continue
		}
		candidates = append(candidates, i)
	}
	wake := &study.Wakeups{}
	if len(candidates) == 0 {
		return results, wake, nil
	}
	err := db.commitPush(&pushJob{ctx: ctx, who: who, in: in, candidates: candidates, results: results, wake: wake, now: now})
	if err != nil {
		return nil, nil, err
	}
	return results, wake, nil
}

func (db *DB) push(ctx context.Context, tx *sql.Tx, who *study.Identity, in []study.Incoming, candidates []int, results []study.ChangeResult, wake *study.Wakeups, now time.Time) error {
	var ids []syncengine.EntryID
	seenID := map[syncengine.EntryID]bool{}
	clocks := make([]int64, 0, len(candidates))
	for _, i := range candidates {
		c := &in[i].Change
		if !seenID[c.Entry] {
			seenID[c.Entry] = true
			ids = append(ids, c.Entry)
		}
		clocks = append(clocks, int64(c.Clock))
	}
	loaded, err := db.loadEntries(ctx, tx, ids)
	if err != nil {
		return err
	}
	known, err := db.knownClocks(ctx, tx, who.DeviceID, clocks)
	if err != nil {
		return err
	}
	q := db.wq.in(tx)
	supervisors := map[int64][]int64{} // owner → supervisor ids, read once per push
	supervisorsFor := func(owner int64) ([]int64, error) {
		if s, ok := supervisors[owner]; ok {
			return s, nil
		}
		s, err := supervisorsOf(ctx, q, owner)
		supervisors[owner] = s
		return s, err
	}

	withdrawn := false
	if who.Role == study.RoleNavigator {
		if err := q.QueryRowContext(ctx, qWithdrawn, who.UserID).Scan(&withdrawn); err != nil {
			return fmt.Errorf("cannot read user: %w", err)
		}
	}

	remembered, err := rememberedRefusals(ctx, q, who.DeviceID, clocks)
	if err != nil {
		return err
	}
	var remember []int // changes whose refusal depends on time or state

	var history []historyRow
	for _, i := range candidates {
		c := &in[i].Change
		l := loaded[c.Entry]
		if l == nil {
			l = &loadedEntry{owner: who.UserID, entry: &syncengine.Entry{ID: c.Entry}}
			loaded[c.Entry] = l
		}
		t := study.Target{Exists: l.exists, Erased: l.erased, Owner: l.owner, Entry: l.entry, Known: known[int64(c.Clock)], Withdrawn: withdrawn, HeldBy: l.heldBy}
		if r, ok := remembered[int64(c.Clock)]; ok {
			t.Remembered = &r
		}
		if who.Role == study.RoleSupervisor && !l.erased {
			if t.Supervisors, err = supervisorsFor(l.owner); err != nil {
				return err
			}
		}
		d, record := study.ApplyDecision(study.Decide(who, c, &t, now), l.entry, c)
		results[i] = d.Result
		if d.Remember {
			remember = append(remember, i)
		}
		if !d.Apply {
			continue
		}
		known[int64(c.Clock)] = true
		if d.Hold {
			l.heldBy = who.DeviceID
		}
		l.touched = true
		l.echoW.Note(&in[i], d, record)
		history = append(history, historyRow{id: c.Entry, change: record, clock: c.Clock, write: in[i].Write})
	}
	if err := rememberRefusals(ctx, tx, who.DeviceID, in, results, remember); err != nil {
		return err
	}
	if len(history) == 0 {
		return nil
	}

	// Write each entry whose encoding changed, at a new sequence number.
	var changed []*loadedEntry
	for _, id := range ids {
		if l := loaded[id]; l != nil && l.touched {
			if l.after = syncengine.EncodeEntry(l.entry); !l.exists || !bytes.Equal(l.after, l.before) {
				changed = append(changed, l)
			}
		}
	}
	var feed []feedRow
	var removals []feedRemoval
	if len(changed) > 0 {
		first, err := nextSeqs(ctx, q, len(changed), now.UnixMilli())
		if err != nil {
			return err
		}
		if err := db.upsertEntries(ctx, tx, changed, first, who); err != nil {
			return err
		}
		owners := map[int64]bool{}
		readers := map[int64]bool{}
		for k, l := range changed {
			if l.heldBy != 0 {
				// Held back for a pending device: no reader sees it, the
				// owner's other devices included, until it is approved.
				continue
			}
			seq := first + int64(k)
			owners[l.owner] = true
			old := (*syncengine.Entry)(nil)
			if l.exists {
				if old, err = syncengine.DecodeEntryLazy(l.before); err != nil {
					return fmt.Errorf("entry %s: stored state: %w", l.entry.ID, err)
				}
			}
			sups, err := supervisorsFor(l.owner)
			if err != nil {
				return err
			}
			for _, fc := range study.FeedChanges(old, l.entry) {
				readerIDs := sups
				if fc.Audience == syncengine.AudienceResearch {
					readerIDs = []int64{study.ResearchReader}
				}
				if fc.Visible {
					for _, r := range readerIDs {
						feed = append(feed, feedRow{reader: r, entry: l.rid, seq: seq, visible: true})
					}
				} else {
					removals = append(removals, feedRemoval{entry: l.rid, research: fc.Audience == syncengine.AudienceResearch, seq: seq, reason: fc.Reason})
				}
				for _, r := range readerIDs {
					readers[r] = true
				}
			}
		}
		for o := range owners {
			wake.Owners = append(wake.Owners, o)
		}
		for r := range readers {
			wake.Readers = append(wake.Readers, r)
		}
	}
	if err := db.upsertFeed(ctx, tx, feed); err != nil {
		return err
	}
	for _, r := range removals {
		if err := removeFromFeed(ctx, q, r); err != nil {
			return err
		}
	}
	for k := range history {
		history[k].rid = loaded[history[k].id].rid
	}
	if err := db.insertHistory(ctx, tx, history, who, now.UnixMilli()); err != nil {
		return err
	}
	if who.Role == study.RoleNavigator { // the count a navigator's pulls compare (study/echo.go)
		if _, err := q.ExecContext(ctx, qCountApplied, len(history), who.DeviceID); err != nil {
			return fmt.Errorf("cannot count the device's changes: %w", err)
		}
	}
	return nil
}

// loadEntries reads the stored state of the given entries.
func (db *DB) loadEntries(ctx context.Context, tx *sql.Tx, ids []syncengine.EntryID) (map[syncengine.EntryID]*loadedEntry, error) {
	out := make(map[syncengine.EntryID]*loadedEntry, len(ids))
	args := func(a []any, from, to int) []any {
		for _, id := range ids[from:to] {
			a = append(a, id[:])
		}
		return a
	}
	err := db.bulkExec(ctx, tx, loadEntriesQuery, len(ids), args, func(rows *sql.Rows) error {
		l := &loadedEntry{exists: true}
		var id, state []byte
		if err := rows.Scan(&l.rid, &id, &l.owner, &state, &l.erased, &l.heldBy, &l.seq, &l.echo); err != nil {
			return err
		}
		if !l.erased {
			var err error
			if l.entry, err = syncengine.DecodeEntryLazy(state); err != nil {
				return fmt.Errorf("entry %x: stored state: %w", id, err)
			}
			l.before = state
		}
		out[syncengine.EntryID(id)] = l
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// knownClocks returns which of the clocks the device has already had
// accepted: those changes are retries.
func (db *DB) knownClocks(ctx context.Context, tx *sql.Tx, device int64, clocks []int64) (map[int64]bool, error) {
	known := make(map[int64]bool, len(clocks))
	// A device's clock only grows, so a push of new changes has every
	// clock above the greatest the device had accepted: one seek to the
	// end of the device's part of the index says so, where looking for
	// each clock is one seek a change.
	var newest int64
	if err := db.wq.in(tx).QueryRowContext(ctx, qNewestClock, device).Scan(&newest); err != nil {
		return nil, fmt.Errorf("cannot look for retried changes: %w", err)
	}
	if slices.Min(clocks) > newest {
		return known, nil
	}
	args := func(a []any, from, to int) []any {
		a = append(a, device)
		for _, c := range clocks[from:to] {
			a = append(a, c)
		}
		return a
	}
	err := db.bulkExec(ctx, tx, knownClocksQuery, len(clocks), args, func(rows *sql.Rows) error {
		var c int64
		if err := rows.Scan(&c); err != nil {
			return err
		}
		known[c] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	return known, nil
}

// upsertEntries writes the changed entries, the k-th at sequence number
// first+k, and fills in the rid of new ones.
func (db *DB) upsertEntries(ctx context.Context, tx *sql.Tx, changed []*loadedEntry, first int64, who *study.Identity) error {
	byID := make(map[syncengine.EntryID]*loadedEntry, len(changed))
	args := func(a []any, from, to int) []any {
		for k, l := range changed[from:to] {
			e := l.entry
			byID[e.ID] = l
			var held any
			if l.heldBy != 0 {
				held = l.heldBy
			}
			visible := l.heldBy == 0 // a held entry reaches no reader
			var echo any
			if d := l.echoW.Device(who, study.EchoBefore{Exists: l.exists, Owner: l.owner, Seq: l.seq, Echo: l.echo}); d != 0 {
				echo = d
			}
			a = append(a, e.ID[:], l.owner, first+int64(from+k), l.after, e.Date.Value,
				visible && study.SupervisorVisible(e), visible && study.ResearchVisible(e), e.Deleted.Value, held, echo)
		}
		return a
	}
	return db.bulkExec(ctx, tx, upsertEntriesQuery, len(changed), args, func(rows *sql.Rows) error {
		var id []byte
		var rid int64
		if err := rows.Scan(&id, &rid); err != nil {
			return err
		}
		byID[syncengine.EntryID(id)].rid = rid
		return nil
	})
}

type feedRow struct {
	reader, entry, seq int64
	visible            bool
	reason             study.RemovalReason
}

// upsertFeed writes feed rows, replacing any row for the same reader and
// entry.
func (db *DB) upsertFeed(ctx context.Context, tx *sql.Tx, rows []feedRow) error {
	return db.bulkExec(ctx, tx, upsertFeedQuery, len(rows), func(a []any, from, to int) []any {
		for _, r := range rows[from:to] {
			a = append(a, r.reader, r.entry, r.seq, r.visible, r.reason)
		}
		return a
	}, nil)
}

// feedRemoval turns the visible feed rows of one entry, for supervisors
// or for research, into removal notices.
type feedRemoval struct {
	entry    int64
	research bool
	seq      int64
	reason   study.RemovalReason
}

var (
	qCountApplied      = writeQuery(`UPDATE devices SET applied_changes = applied_changes + ? WHERE id = ?`)
	qNewestClock       = writeQuery(`SELECT coalesce(max(clock), 0) FROM history WHERE device_id = ?`)
	qWithdrawn         = writeQuery(`SELECT withdrawn_at IS NOT NULL FROM users WHERE id = ?`)
	qAnyRefusal        = writeQuery(`SELECT EXISTS (SELECT 1 FROM refusals WHERE device_id = ?)`)
	qRemoveFromSupFeed = writeQuery(`UPDATE feed SET visible = 0, reason = ?, seq = ? WHERE entry = ? AND visible = 1 AND reader > 0`)
	qRemoveFromResFeed = writeQuery(`UPDATE feed SET visible = 0, reason = ?, seq = ? WHERE entry = ? AND visible = 1 AND reader = 0`)
	qSupervisorsOf     = writeQuery(readQuery(`SELECT supervisor_id FROM assignments WHERE navigator_id = ?`))
)

func removeFromFeed(ctx context.Context, tx querier, r feedRemoval) error {
	query := qRemoveFromSupFeed
	if r.research {
		query = qRemoveFromResFeed
	}
	if _, err := tx.ExecContext(ctx, query, r.reason, r.seq, r.entry); err != nil {
		return fmt.Errorf("cannot write removal notices: %w", err)
	}
	return nil
}

type historyRow struct {
	id     syncengine.EntryID
	rid    int64
	change *syncengine.Change   // what study.ApplyChange said to record
	clock  syncengine.Timestamp // the pushed change's clock, which names it for the device
	write  uint64               // study.Incoming.Write
}

func (db *DB) insertHistory(ctx context.Context, tx *sql.Tx, rows []historyRow, who *study.Identity, received int64) error {
	return db.bulkExec(ctx, tx, insertHistoryQuery, len(rows), func(a []any, from, to int) []any {
		for _, r := range rows[from:to] {
			c := r.change
			var value any
			switch {
			case c.TextEdit != nil:
				// A text edit is kept as its canonical encoding: a few
				// bytes beside the text it inserts.
				value = syncengine.EncodeTextChange(c.TextEdit)
			case c.Field.Kind() == syncengine.KindText:
				value = c.Text
			case c.Field.Kind() == syncengine.KindNumber:
				value = c.Number
			default:
				value = c.Flag
			}
			var feedback any
			if c.Field.IsFeedback() {
				feedback = c.Feedback[:]
			}
			a = append(a, r.rid, int(c.Field), c.Tag, feedback, value, int64(r.clock), who.DeviceID, who.UserID, received, int64(r.write))
		}
		return a
	}, nil)
}

// rememberedRefusals returns the refusals kept for the device's changes
// with the given clocks.
func rememberedRefusals(ctx context.Context, tx querier, device int64, clocks []int64) (map[int64]study.ChangeResult, error) {
	var some bool
	if err := tx.QueryRowContext(ctx, qAnyRefusal, device).Scan(&some); err != nil {
		return nil, fmt.Errorf("cannot read refusals: %w", err)
	}
	if !some { // the common case: a device whose clock and writes were fine
		return nil, nil
	}
	out := map[int64]study.ChangeResult{}
	const chunk = 500
	for start := 0; start < len(clocks); start += chunk {
		part := clocks[start:min(start+chunk, len(clocks))]
		args := make([]any, 0, len(part)+1)
		args = append(args, device)
		for _, c := range part {
			args = append(args, c)
		}
		rows, err := tx.QueryContext(ctx, `SELECT clock, reason, message FROM refusals WHERE device_id = ? AND clock IN (`+inList(len(part))+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("cannot read refusals: %w", err)
		}
		for rows.Next() {
			var clock int64
			r := study.ChangeResult{Outcome: study.OutcomeRefused}
			if err := rows.Scan(&clock, &r.Reason, &r.Message); err != nil {
				rows.Close()
				return nil, fmt.Errorf("cannot read refusals: %w", err)
			}
			out[clock] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("cannot read refusals: %w", err)
		}
	}
	return out, nil
}

// rememberRefusals keeps the refusals of the changes at the given
// indexes.
func rememberRefusals(ctx context.Context, tx *sql.Tx, device int64, in []study.Incoming, results []study.ChangeResult, idx []int) error {
	for _, i := range idx {
		r := results[i]
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO refusals (device_id, clock, reason, message) VALUES (?, ?, ?, ?)`,
			device, int64(in[i].Change.Clock), int(r.Reason), r.Message); err != nil {
			return fmt.Errorf("cannot keep refusal: %w", err)
		}
	}
	return nil
}
