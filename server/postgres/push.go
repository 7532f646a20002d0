package postgres

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// loadedEntry is an entry read at the start of a push, and what the push
// did to it.
type loadedEntry struct {
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

// pushReads is what a push's decisions read. Its maps are filled in when
// the batch that carries its reads is answered.
type pushReads struct {
	order       []syncengine.EntryID // the entries the push touches, in order
	loaded      map[syncengine.EntryID]*loadedEntry
	known       map[int64]bool // clocks already accepted: retries
	remembered  map[int64]study.ChangeResult
	supervisors map[int64][]int64 // owner → supervisor ids, read once per push
	withdrawn   bool
	// shared: read in a batch with other pushes' reads, outside any
	// savepoint of this push's, so deciding it may read nothing more.
	shared bool
}

// queueReads queues, in b, everything the push's decisions read, and
// with savepoint first the opening of the push's savepoint (so that a
// failed push rolls back alone, in runGroup, without a round trip of its
// own). A group's pushes run one after another and each round trip is
// one its whole group waits for, so runGroup sends these in the batch
// that carries the writes of the pushes before (grouprun.go).
func queueReads(b *pgx.Batch, who *study.Identity, in []study.Incoming, candidates []int, savepoint bool) *pushReads {
	r := &pushReads{supervisors: map[int64][]int64{}, shared: !savepoint}
	var ids [][]byte
	seenID := map[syncengine.EntryID]bool{}
	clocks := make([]int64, 0, len(candidates))
	for _, i := range candidates {
		c := &in[i].Change
		if !seenID[c.Entry] {
			seenID[c.Entry] = true
			r.order = append(r.order, c.Entry)
			ids = append(ids, c.Entry[:])
		}
		clocks = append(clocks, int64(c.Clock))
	}
	if savepoint {
		b.Queue(`SAVEPOINT push`)
	}
	r.loaded = queueLoadEntries(b, ids)
	r.known = queueKnownClocks(b, who.DeviceID, clocks)
	r.remembered = queueRememberedRefusals(b, who.DeviceID, clocks)
	if who.Role == study.RoleNavigator {
		b.Queue(`SELECT withdrawn_at IS NOT NULL FROM users WHERE id = $1`, who.UserID).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&r.withdrawn); err != nil {
				return fmt.Errorf("cannot read user: %w", err)
			}
			return nil
		})
		// A navigator writes only their own entries: the feed rows of
		// what the push changes go to their supervisors.
		b.Queue(supervisorsQuery, who.UserID).Query(func(rows pgx.Rows) error {
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				return fmt.Errorf("cannot read assignments: %w", err)
			}
			r.supervisors[who.UserID] = ids
			return nil
		})
	}
	return r
}

// decide makes the push's decisions from what r read and queues, in w,
// everything the push writes. The statements depend on one another only
// through rows written earlier in the batch (the sequence, a new entry's
// rid), which the later ones read in SQL: nothing waits for an answer.
func (db *DB) decide(ctx context.Context, t *tx, j *pushJob, r *pushReads, w *pgx.Batch) error {
	who, in, results := j.who, j.in, j.results
	supervisorsFor := func(owner int64) ([]int64, error) {
		if s, ok := r.supervisors[owner]; ok {
			return s, nil
		}
		if r.shared {
			// A failed query here would abort the transaction with no
			// savepoint of this push's to roll back to.
			return nil, fmt.Errorf("the supervisors of user %d were not read with the push", owner)
		}
		s, err := supervisorsOf(ctx, t, owner)
		r.supervisors[owner] = s
		return s, err
	}
	var err error

	var remember []int // changes whose refusal depends on time or state

	var history []historyRow
	for _, i := range j.candidates {
		c := &in[i].Change
		l := r.loaded[c.Entry]
		if l == nil {
			l = &loadedEntry{owner: who.UserID, entry: &syncengine.Entry{ID: c.Entry}}
			r.loaded[c.Entry] = l
		}
		tg := study.Target{Exists: l.exists, Erased: l.erased, Owner: l.owner, Entry: l.entry, Known: r.known[int64(c.Clock)], Withdrawn: r.withdrawn, HeldBy: l.heldBy}
		if rr, ok := r.remembered[int64(c.Clock)]; ok {
			tg.Remembered = &rr
		}
		if who.Role == study.RoleSupervisor && !l.erased {
			if tg.Supervisors, err = supervisorsFor(l.owner); err != nil {
				return err
			}
		}
		d, record := study.ApplyDecision(study.Decide(who, c, &tg, j.now), l.entry, c)
		results[i] = d.Result
		if d.Remember {
			remember = append(remember, i)
		}
		if !d.Apply {
			continue
		}
		r.known[int64(c.Clock)] = true
		if d.Hold {
			l.heldBy = who.DeviceID
		}
		l.touched = true
		l.echoW.Note(&in[i], d, record)
		history = append(history, historyRow{id: c.Entry, change: record, clock: c.Clock, write: in[i].Write})
	}
	queueRefusals(w, who.DeviceID, in, results, remember)
	if len(history) > 0 {
		if err := queueWrites(w, r.loaded, r.order, history, who, j.wake, j.now, supervisorsFor); err != nil {
			return err
		}
	}
	return nil
}

// queueWrites queues the writes of the accepted changes: each entry whose
// encoding changed, at a new sequence number; the feed rows and removal
// notices for its readers; and the history.
func queueWrites(w *pgx.Batch, loaded map[syncengine.EntryID]*loadedEntry, order []syncengine.EntryID, history []historyRow, who *study.Identity, wake *study.Wakeups, now time.Time, supervisorsFor func(int64) ([]int64, error)) error {
	var changed []*loadedEntry
	for _, id := range order {
		if l := loaded[id]; l != nil && l.touched {
			if l.after = syncengine.EncodeEntry(l.entry); !l.exists || !bytes.Equal(l.after, l.before) {
				changed = append(changed, l)
			}
		}
	}
	if len(changed) > 0 {
		// The k-th changed entry takes the sequence number last-(n-1-k),
		// where last is the sequence's value once queueNextSeqs has run:
		// the statements below read it as (SELECT value FROM sequence).
		n := len(changed)
		queueNextSeqs(w, n, now.UnixMilli())
		queueUpsertEntries(w, changed, who)
		var feed []pushFeedRow
		var removals []feedRemoval
		owners := map[int64]bool{}
		readers := map[int64]bool{}
		for k, l := range changed {
			if l.heldBy != 0 {
				// Held back for a pending device: no reader sees it, the
				// owner's other devices included, until it is approved.
				continue
			}
			back := int64(n - 1 - k)
			owners[l.owner] = true
			old := (*syncengine.Entry)(nil)
			if l.exists {
				var err error
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
						feed = append(feed, pushFeedRow{reader: r, entry: l.entry.ID, back: back, visible: true})
					}
				} else {
					removals = append(removals, feedRemoval{entry: l.entry.ID, research: fc.Audience == syncengine.AudienceResearch, back: back, reason: fc.Reason})
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
		queueFeed(w, feed)
		for _, r := range removals {
			queueRemoval(w, r)
		}
	}
	queueHistory(w, history, who, now.UnixMilli())
	if who.Role == study.RoleNavigator { // the count a navigator's pulls compare (study/echo.go)
		w.Queue(`UPDATE devices SET applied_changes = applied_changes + $1 WHERE id = $2`, int64(len(history)), who.DeviceID)
	}
	return nil
}

// loadEntriesSQL reads the stored state of the entries a push changes.
const loadEntriesSQL = `SELECT id, owner_id, state, erased_at IS NOT NULL, coalesce(held_by, 0), seq, coalesce(echo_device, 0) FROM entries WHERE id = ANY($1)`

// queueLoadEntries queues the read of the stored state of the given
// entries; the map it returns is filled in when the batch runs.
func queueLoadEntries(b *pgx.Batch, ids [][]byte) map[syncengine.EntryID]*loadedEntry {
	out := make(map[syncengine.EntryID]*loadedEntry, len(ids))
	b.Queue(loadEntriesSQL, ids).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			l := &loadedEntry{exists: true}
			var id, state []byte
			if err := rows.Scan(&id, &l.owner, &state, &l.erased, &l.heldBy, &l.seq, &l.echo); err != nil {
				return fmt.Errorf("cannot read entries: %w", err)
			}
			if !l.erased {
				var err error
				if l.entry, err = syncengine.DecodeEntryLazy(state); err != nil {
					return fmt.Errorf("entry %x: stored state: %w", id, err)
				}
				l.before = state
			}
			out[syncengine.EntryID(id)] = l
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read entries: %w", err)
		}
		return nil
	})
	return out
}

// queueKnownClocks queues the query for which of the clocks the device
// has already had accepted (those changes are retries); the map it
// returns is filled in when the batch runs.
func queueKnownClocks(b *pgx.Batch, device int64, clocks []int64) map[int64]bool {
	known := make(map[int64]bool, len(clocks))
	b.Queue(`SELECT clock FROM history WHERE device_id = $1 AND clock = ANY($2)`, device, clocks).Query(func(rows pgx.Rows) error {
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return fmt.Errorf("cannot look for retried changes: %w", err)
		}
		for _, c := range got {
			known[c] = true
		}
		return nil
	})
	return known
}

// lastSeq is the sequence's value in SQL: once queueNextSeqs has run in
// the transaction, the last of the numbers it took.
const lastSeq = `(SELECT value FROM sequence WHERE id = 1)`

// queueUpsertEntries queues the write of the changed entries, the k-th
// (from 0) at sequence number last-(n-1-k). A new entry's rid is made
// here; the statements after it find it by id.
func queueUpsertEntries(w *pgx.Batch, changed []*loadedEntry, who *study.Identity) {
	n := len(changed)
	var (
		ids, states       = make([][]byte, n), make([][]byte, n)
		owners            = make([]int64, n)
		dates             = make([]string, n)
		sup, res, deleted = make([]bool, n), make([]bool, n), make([]bool, n)
		held, echo        = make([]*int64, n), make([]*int64, n)
	)
	for k, l := range changed {
		e := l.entry
		ids[k], owners[k], states[k], dates[k] = e.ID[:], l.owner, l.after, e.Date.Value
		visible := l.heldBy == 0 // a held entry reaches no reader
		sup[k], res[k], deleted[k] = visible && study.SupervisorVisible(e), visible && study.ResearchVisible(e), e.Deleted.Value
		if l.heldBy != 0 {
			held[k] = &l.heldBy
		}
		if d := l.echoW.Device(who, study.EchoBefore{Exists: l.exists, Owner: l.owner, Seq: l.seq, Echo: l.echo}); d != 0 {
			echo[k] = &d
		}
	}
	// held_by is set when a pending device creates the entry and left as
	// it is by later writes: only approval, denial or erasure clears it.
	// ord counts from 1, so the k-th entry's number is last-n+ord.
	w.Queue(`INSERT INTO entries (id, owner_id, seq, state, date, sup_visible, res_visible, deleted, held_by, echo_device)
		SELECT u.id, u.owner_id, `+lastSeq+` - $9 + u.ord, u.state, u.date, u.sup_visible, u.res_visible, u.deleted, u.held_by, u.echo_device
		FROM unnest($1::bytea[], $2::bigint[], $3::bytea[], $4::text[], $5::boolean[], $6::boolean[], $7::boolean[], $8::bigint[], $10::bigint[])
			WITH ORDINALITY AS u(id, owner_id, state, date, sup_visible, res_visible, deleted, held_by, echo_device, ord)
		ORDER BY u.ord
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state, date = excluded.date,
			sup_visible = excluded.sup_visible, res_visible = excluded.res_visible, deleted = excluded.deleted,
			echo_device = excluded.echo_device`,
		ids, owners, states, dates, sup, res, deleted, held, n, echo)
}

// pushFeedRow is a feed row of a push's batch: it names its entry by id
// and its sequence number from the last taken.
type pushFeedRow struct {
	reader  int64
	entry   syncengine.EntryID
	back    int64 // the entry's sequence number is last-back
	visible bool
	reason  study.RemovalReason
}

// queueFeed queues the write of feed rows, replacing any row for the same
// reader and entry.
func queueFeed(w *pgx.Batch, rows []pushFeedRow) {
	if len(rows) == 0 {
		return
	}
	n := len(rows)
	readers, backs, reasons := make([]int64, n), make([]int64, n), make([]int32, n)
	entries := make([][]byte, n)
	visible := make([]bool, n)
	for i := range rows {
		r := &rows[i]
		readers[i], entries[i], backs[i], visible[i], reasons[i] = r.reader, r.entry[:], r.back, r.visible, int32(r.reason)
	}
	w.Queue(`INSERT INTO feed (reader, entry, seq, visible, reason)
		SELECT u.reader, e.rid, `+lastSeq+` - u.back, u.visible, u.reason
		FROM unnest($1::bigint[], $2::bytea[], $3::bigint[], $4::boolean[], $5::integer[]) AS u(reader, id, back, visible, reason), entries e
		WHERE e.id = u.id
		ON CONFLICT (reader, entry) DO UPDATE SET seq = excluded.seq, visible = excluded.visible, reason = excluded.reason`,
		readers, entries, backs, visible, reasons)
}

type feedRow struct {
	reader, entry, seq int64
	visible            bool
	reason             study.RemovalReason
}

// upsertFeed writes feed rows, replacing any row for the same reader and
// entry.
func upsertFeed(ctx context.Context, t *tx, rows []feedRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	readers, entries, seqs, reasons := make([]int64, n), make([]int64, n), make([]int64, n), make([]int32, n)
	visible := make([]bool, n)
	for i, r := range rows {
		readers[i], entries[i], seqs[i], visible[i], reasons[i] = r.reader, r.entry, r.seq, r.visible, int32(r.reason)
	}
	if _, err := t.Exec(ctx, `INSERT INTO feed (reader, entry, seq, visible, reason)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::boolean[], $5::integer[])
		ON CONFLICT (reader, entry) DO UPDATE SET seq = excluded.seq, visible = excluded.visible, reason = excluded.reason`,
		readers, entries, seqs, visible, reasons); err != nil {
		return fmt.Errorf("cannot write feed: %w", err)
	}
	return nil
}

// feedRemoval turns the visible feed rows of one entry, for supervisors
// or for research, into removal notices.
type feedRemoval struct {
	entry    syncengine.EntryID
	research bool
	back     int64 // the entry's sequence number is last-back
	reason   study.RemovalReason
}

func queueRemoval(w *pgx.Batch, r feedRemoval) {
	cond := `reader > 0`
	if r.research {
		cond = `reader = 0`
	}
	w.Queue(`UPDATE feed SET visible = false, reason = $1, seq = `+lastSeq+` - $2
		WHERE entry = (SELECT rid FROM entries WHERE id = $3) AND visible AND `+cond, int32(r.reason), r.back, r.entry[:])
}

type historyRow struct {
	id     syncengine.EntryID
	change *syncengine.Change   // what study.ApplyChange said to record
	clock  syncengine.Timestamp // the pushed change's clock, which names it for the device
	write  uint64               // study.Incoming.Write
}

// queueHistory queues the append of the accepted changes, in the order
// they were accepted, each naming its entry by the rid written before it
// in the batch.
func queueHistory(w *pgx.Batch, rows []historyRow, who *study.Identity, received int64) {
	n := len(rows)
	var (
		ids, feedbacks, edits = make([][]byte, n), make([][]byte, n), make([][]byte, n)
		fields                = make([]int32, n)
		tags                  = make([]string, n)
		texts                 = make([]*string, n)
		numbers               = make([]*int64, n)
		clocks, writes        = make([]int64, n), make([]int64, n)
	)
	for i := range rows {
		r := &rows[i]
		c := r.change
		ids[i], fields[i], tags[i], clocks[i], writes[i] = r.id[:], int32(c.Field), c.Tag, int64(r.clock), int64(r.write)
		switch {
		case c.TextEdit != nil:
			// A text edit is kept as its canonical encoding: a few bytes
			// beside the text it inserts.
			edits[i] = syncengine.EncodeTextChange(c.TextEdit)
		case c.Field.Kind() == syncengine.KindText:
			texts[i] = &c.Text
		case c.Field.Kind() == syncengine.KindNumber:
			numbers[i] = &c.Number
		default:
			var v int64
			if c.Flag {
				v = 1
			}
			numbers[i] = &v
		}
		if c.Field.IsFeedback() {
			feedbacks[i] = c.Feedback[:]
		}
	}
	w.Queue(`INSERT INTO history (entry, field, tag, feedback, text_value, int_value, text_change, clock, device_id, user_id, received_at, write_clock)
		SELECT (SELECT rid FROM entries WHERE id = u.id), u.field, u.tag, u.feedback, u.text_value, u.int_value, u.text_change, u.clock, $10, $11, $12, u.write_clock
		FROM unnest($1::bytea[], $2::integer[], $3::text[], $4::bytea[], $5::text[], $6::bigint[], $7::bytea[], $8::bigint[], $9::bigint[])
			WITH ORDINALITY AS u(id, field, tag, feedback, text_value, int_value, text_change, clock, write_clock, ord)
		ORDER BY u.ord`,
		ids, fields, tags, feedbacks, texts, numbers, edits, clocks, writes, who.DeviceID, who.UserID, received)
}

// queueRememberedRefusals queues the read of the refusals kept for the
// device's changes with the given clocks; the map it returns is filled in
// when the batch runs.
func queueRememberedRefusals(b *pgx.Batch, device int64, clocks []int64) map[int64]study.ChangeResult {
	out := map[int64]study.ChangeResult{}
	b.Queue(`SELECT clock, reason, message FROM refusals WHERE device_id = $1 AND clock = ANY($2)`, device, clocks).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var clock int64
			var reason int32
			r := study.ChangeResult{Outcome: study.OutcomeRefused}
			if err := rows.Scan(&clock, &reason, &r.Message); err != nil {
				return fmt.Errorf("cannot read refusals: %w", err)
			}
			r.Reason = study.Refusal(reason)
			out[clock] = r
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read refusals: %w", err)
		}
		return nil
	})
	return out
}

// queueRefusals queues keeping the refusals of the changes at the given
// indexes.
func queueRefusals(w *pgx.Batch, device int64, in []study.Incoming, results []study.ChangeResult, idx []int) {
	if len(idx) == 0 {
		return
	}
	clocks, reasons, messages := make([]int64, len(idx)), make([]int32, len(idx)), make([]string, len(idx))
	for k, i := range idx {
		clocks[k], reasons[k], messages[k] = int64(in[i].Change.Clock), int32(results[i].Reason), results[i].Message
	}
	w.Queue(`INSERT INTO refusals (device_id, clock, reason, message)
		SELECT $1, * FROM unnest($2::bigint[], $3::integer[], $4::text[]) ON CONFLICT DO NOTHING`, device, clocks, reasons, messages)
}
