package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// maxPushBytes keeps a push request well under the server's 4 MiB limit.
const maxPushBytes = 3 << 20

// Sync pushes every pending change, in pages, then pulls until caught up.
// It is safe to call at any time; a sync already running is waited for.
// An interrupted sync (cancelled, network lost, app killed) leaves the
// replica consistent and the next sync resumes where it stopped.
//
// A device waiting for approval pushes and receives nothing; that is not
// an error (Status.DeviceState says so). A device the server says was
// revoked wipes its replica and returns a *RevokedError.
func (c *Client) Sync(ctx context.Context) error {
	_, err := c.SyncReport(ctx)
	return err
}

// Report says what one sync did, each way.
type Report struct {
	Sent     int // changes pushed
	Accepted int // of them, applied or already held by the server
	Refused  int // of them, refused (see Refused)
	Received int // entries pulled
	Removed  int // removal notices pulled
	Pending  int // changes still waiting to be pushed afterwards
	// AwaitingApproval says this device waits for approval: it pushed,
	// and received nothing.
	AwaitingApproval bool
}

// syncReportChecked is SyncReport without the check for a damaged replica.
func (c *Client) syncReportChecked(ctx context.Context) (Report, error) {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	rpc, p, err := c.rpcs()
	if err != nil {
		return Report{}, err
	}
	c.status.set(func(pr *Progress) { *pr = Progress{Running: true, Phase: "push"} })
	c.conn.syncStarted()
	c.watchers.notify(EventStatus)
	// Text edits go only to a server whose answer in this sync said it
	// merges text (see push).
	c.confirmed.Store(false)
	err = c.push(ctx, rpc, p)
	waiting := false
	if err == nil {
		err = c.pushReads(ctx, rpc, p)
	}
	if err == nil {
		c.status.set(func(pr *Progress) { pr.Phase = "pull" })
		err = c.pull(ctx, rpc)
		if awaitingApproval(err) {
			waiting, err = true, c.setDeviceState(study.DevicePending)
		}
	}
	if err == nil {
		// Texts whose edits the server could not take are edits of the
		// text just pulled now; send them in this sync. An edit made
		// again can meet the same refusal once more; after two
		// rebuilds a text goes whole, which the server always merges,
		// so three rounds leave nothing held.
		for round := 0; round < 3 && err == nil; round++ {
			var released bool
			if released, err = c.rederive(ctx); err != nil || !released {
				break
			}
			c.status.set(func(pr *Progress) { pr.Phase = "push" })
			if err = c.push(ctx, rpc, p); err != nil {
				break
			}
			if waiting {
				// A device waiting for approval pulls nothing: its texts
				// are made again on what it holds, and go whole by the
				// last round (only it writes the entries it may write).
				continue
			}
			c.status.set(func(pr *Progress) { pr.Phase = "pull" })
			err = c.pull(ctx, rpc)
			if awaitingApproval(err) {
				waiting, err = true, c.setDeviceState(study.DevicePending)
			}
		}
	}
	// The sync ends, for anyone reading the status, only once its result
	// is recorded: a status that says not syncing says how the last sync
	// ended.
	ended := func() { c.status.set(func(pr *Progress) { pr.Running = false; pr.Phase = "" }) }
	c.noteReachable(err)
	if rerr := c.wipeIfRevoked(); rerr != nil {
		ended()
		c.watchers.notify(EventStatus)
		return Report{}, rerr
	}
	if rerr := c.recordResult(err); rerr != nil && err == nil {
		err = rerr
	}
	ended()
	c.conn.syncEnded(ctx, err)
	c.watchers.notify(EventStatus)
	pr := c.status.get()
	r := Report{Sent: pr.Pushed, Accepted: pr.Accepted, Refused: pr.Refused, Received: pr.PulledEntries, Removed: pr.PulledRemovals, AwaitingApproval: waiting}
	if qerr := c.db.Read.QueryRowContext(context.Background(), `SELECT count(*) FROM outbox`).Scan(&r.Pending); qerr != nil && err == nil {
		err = fmt.Errorf("cannot count changes: %w", qerr)
	}
	return r, err
}

// setDeviceState records what the server said of this device: waiting
// for approval, or active.
func (c *Client) setDeviceState(s study.DeviceState) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.db.Write.ExecContext(ctx, `UPDATE profile SET device_state = ? WHERE id = 1 AND device_state != ?`, s, study.DeviceRevoked); err != nil {
		return fmt.Errorf("cannot record the device's state: %w", err)
	}
	return nil
}

// recordResult stores the outcome of a sync for Status. It uses its own
// context: a cancelled sync still records why it stopped.
func (c *Client) recordResult(syncErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := c.opts.Now().UnixMilli()
	var err error
	if syncErr == nil {
		_, err = c.db.Write.ExecContext(ctx, `UPDATE profile SET last_sync_at = ?, last_error = '', last_error_at = NULL WHERE id = 1`, now)
	} else {
		_, err = c.db.Write.ExecContext(ctx, `UPDATE profile SET last_error = ?, last_error_at = ? WHERE id = 1`, syncErr.Error(), now)
	}
	if err != nil {
		return fmt.Errorf("cannot record sync result: %w", err)
	}
	return nil
}

type outboxRow struct {
	seq    int64
	entry  syncengine.EntryID
	change *diaryv1.Change
	text   bool // a text edit
}

// nextPushPage reads the oldest outbox rows that fit in one push, leaving
// out those held until the next pull.
func (c *Client) nextPushPage(ctx context.Context) ([]outboxRow, error) {
	rows, err := c.db.Read.QueryContext(ctx, `SELECT seq, entry, change, text FROM outbox WHERE hold = 0 ORDER BY seq LIMIT ?`, c.opts.PushChanges)
	if err != nil {
		return nil, fmt.Errorf("cannot read outbox: %w", err)
	}
	defer rows.Close()
	var page []outboxRow
	size := 0
	for rows.Next() {
		var r outboxRow
		var id, b []byte
		if err := rows.Scan(&r.seq, &id, &b, &r.text); err != nil {
			return nil, fmt.Errorf("cannot read outbox: %w", err)
		}
		if len(page) > 0 && size+len(b) > maxPushBytes {
			break
		}
		size += len(b) + 8
		r.entry = syncengine.EntryID(id)
		r.change = &diaryv1.Change{}
		if err := proto.Unmarshal(b, r.change); err != nil {
			return nil, fmt.Errorf("outbox row %d: %w", r.seq, err)
		}
		page = append(page, r)
	}
	return page, rows.Err()
}

// push sends the outbox a page at a time until it is empty.
func (c *Client) push(ctx context.Context, rpc *rpcClients, p *Profile) error {
	aheadInARow := 0
	for {
		page, err := c.nextPushPage(ctx)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		if !c.confirmed.Load() && slices.ContainsFunc(page, func(r outboxRow) bool { return r.text }) {
			// Only a server that still says it merges text may get text
			// edits: a server put back to an older version would read
			// one as an empty body. Its answer to a pull says so, and a
			// server that no longer merges text gets whole texts
			// instead (noteCapabilities).
			c.status.set(func(pr *Progress) { pr.Phase = "pull" })
			if err := c.pull(ctx, rpc); err != nil {
				if !awaitingApproval(err) {
					return err
				}
				// A device waiting for approval pulls nothing; a push of
				// no changes says what the server understands. Its text
				// edits must not go as whole texts: once it is approved
				// its entries reach the person's other devices, whose
				// edits may reach the server first, and a whole text is
				// merged as written after every character stamped
				// before it, which a device whose clock runs behind
				// stamps (TestPendingDeviceTextAfterApproval).
				resp, err := rpc.sync.Push(ctx, &diaryv1.PushRequest{})
				if err != nil {
					return rpcError("push changes", err)
				}
				if _, err := c.noteCapabilities(ctx, nil, resp.GetCapabilities()); err != nil {
					return err
				}
			}
			c.status.set(func(pr *Progress) { pr.Phase = "push" })
			continue
		}
		// Before sending, mark the page uncertain: if no answer comes
		// back, the server may hold these changes, and a clock
		// correction must not reuse their clocks.
		first, last := page[0].seq, page[len(page)-1].seq
		if _, err := c.db.Write.ExecContext(ctx, `UPDATE outbox SET uncertain = 1 WHERE seq BETWEEN ? AND ?`, first, last); err != nil {
			return fmt.Errorf("cannot mark outbox: %w", err)
		}
		// The cursor says which version of its entries this device had
		// when it sent them: an entry it alone changed since then needs
		// no echo in its next pull.
		var cursor int64
		if err := c.db.Read.QueryRowContext(ctx, `SELECT cursor FROM profile WHERE id = 1`).Scan(&cursor); err != nil {
			return fmt.Errorf("cannot read cursor: %w", err)
		}
		req := &diaryv1.PushRequest{Changes: make([]*diaryv1.Change, len(page)), Cursor: uint64(cursor)}
		for i, r := range page {
			req.Changes[i] = r.change
		}
		t0 := c.opts.Now()
		resp, err := rpc.sync.Push(ctx, req)
		if err != nil {
			return rpcError("push changes", err)
		}
		t1 := c.opts.Now()
		if len(resp.GetResults()) != len(page) {
			return fmt.Errorf("cannot push changes: the server answered %d results for %d changes", len(resp.GetResults()), len(page))
		}
		offset := clockOffset(t0, t1, resp.GetServerTime().AsTime())
		ahead, err := c.applyPushResults(ctx, p, page, resp, offset)
		if err != nil {
			return err
		}
		accepted, refused := 0, 0
		for _, r := range resp.GetResults() {
			switch r.GetOutcome() {
			case diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED, diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE:
				accepted++
			case diaryv1.ChangeOutcome_CHANGE_OUTCOME_REFUSED:
				if r.GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD {
					refused++ // a clock-ahead refusal is stamped again and sent again
				}
			}
		}
		c.status.set(func(pr *Progress) {
			pr.PagesPushed++
			pr.Pushed += accepted + refused
			pr.Accepted += accepted
			pr.Refused += refused
		})
		c.watchers.notify(EventStatus)
		c.watchers.notify(EventEntries)
		if ahead {
			// Stamped again with the corrected clock; a second refusal in
			// a row means the server's clock itself is moving about.
			aheadInARow++
			if aheadInARow >= 3 {
				return errors.New("cannot push changes: the server keeps refusing this device's clock as ahead of its own")
			}
		} else {
			aheadInARow = 0
		}
	}
}

// applyPushResults records the server's answer for one page in one
// transaction: accepted changes leave the outbox and join the entry's
// base; refused ones move to the refused list; changes refused for a
// clock ahead of the server's are stamped again. Text edits are never
// stamped again: a text whose edit was refused for a reason that can pass
// (the clock, or an edit refused before it) is queued whole, to be made
// an edit of the server's text after the next pull; one refused for good
// is listed with the whole text (see text.go).
func (c *Client) applyPushResults(ctx context.Context, p *Profile, page []outboxRow, resp *diaryv1.PushResponse, offset time.Duration) (ahead bool, err error) {
	results := resp.GetResults()
	now := c.opts.Now().UnixMilli()
	err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		touched := map[syncengine.EntryID]bool{}
		acked := map[syncengine.EntryID][]syncengine.Change{}
		// Texts whose edits were refused: for good (with the first such
		// refusal) or for now.
		type broken struct {
			change *diaryv1.Change
			result *diaryv1.ChangeResult
		}
		brokenFor := map[docKey]*broken{}
		var brokenOrder []docKey
		var known syncengine.Timestamp
		var acknowledged int64   // changes the server holds now
		var refusedAhead []int64 // outbox rows refused as ahead, whatever the floor
		for i, r := range results {
			row := page[i]
			touched[row.entry] = true
			switch r.GetOutcome() {
			case diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED, diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE:
				known = max(known, syncengine.Timestamp(row.change.GetClock()))
				acknowledged++
				if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, row.seq); err != nil {
					return fmt.Errorf("cannot update outbox: %w", err)
				}
				ch, err := wire.ChangeFromProto(row.change)
				if err != nil {
					return fmt.Errorf("outbox row %d: %w", row.seq, err)
				}
				ch.Author = p.StudyCode
				acked[row.entry] = append(acked[row.entry], ch)
			case diaryv1.ChangeOutcome_CHANGE_OUTCOME_REFUSED:
				reason := r.GetReason()
				if reason == diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD {
					ahead = true
					refusedAhead = append(refusedAhead, row.seq)
				}
				if row.text {
					ch, err := wire.ChangeFromProto(row.change)
					if err != nil {
						return fmt.Errorf("outbox row %d: %w", row.seq, err)
					}
					k := keyOf(&ch)
					b := brokenFor[k]
					if b == nil {
						b = &broken{}
						brokenFor[k] = b
						brokenOrder = append(brokenOrder, k)
					}
					if b.result == nil && reason != diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD && reason != diaryv1.RefusalReason_REFUSAL_REASON_TEXT_HISTORY {
						b.change, b.result = row.change, r
					}
					c.log.Warn("text edit refused", "entry", row.entry.String(), "reason", reason.String(), "message", r.GetMessage())
					continue
				}
				if reason == diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD {
					continue
				}
				b, err := proto.Marshal(row.change)
				if err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO refused (entry, change, reason, message, refused_at) VALUES (?, ?, ?, ?, ?)`,
					row.entry[:], b, int(r.GetReason()), r.GetMessage(), now); err != nil {
					return fmt.Errorf("cannot record refused change: %w", err)
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, row.seq); err != nil {
					return fmt.Errorf("cannot update outbox: %w", err)
				}
				c.log.Warn("change refused", "entry", row.entry.String(), "reason", r.GetReason().String())
			default:
				return fmt.Errorf("cannot push changes: the server answered outcome %v", r.GetOutcome())
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET uncertain = 0 WHERE seq BETWEEN ? AND ?`, page[0].seq, page[len(page)-1].seq); err != nil {
			return fmt.Errorf("cannot update outbox: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE clock SET known = max(known, ?) WHERE id = 1`, int64(known)); err != nil {
			return fmt.Errorf("cannot save clock: %w", err)
		}
		// Counted on from the server's count (NULL, not known, stays so):
		// each change leaves the outbox once, with the answer that
		// says the server holds it, applied or duplicate.
		if _, err := tx.ExecContext(ctx, `UPDATE profile SET own_changes = own_changes + ? WHERE id = 1`, acknowledged); err != nil {
			return fmt.Errorf("cannot count acknowledged changes: %w", err)
		}
		if err := c.saveOffset(ctx, tx, offset); err != nil {
			return err
		}
		// The refused texts first: for good, or queued whole until the
		// next pull. A clock correction below stamps those whole texts
		// again if they need it, and queues whole the texts of the other
		// edits stamped by the clock it corrects.
		for _, k := range brokenOrder {
			if b := brokenFor[k]; b.result != nil {
				if err := c.refuseText(ctx, tx, k, b.change, b.result, now); err != nil {
					return err
				}
				continue
			}
			ok, err := c.replaceText(ctx, tx, k, p.Replica, true)
			if err != nil {
				return err
			}
			if !ok {
				if err := c.refuseText(ctx, tx, k, nil, &diaryv1.ChangeResult{Reason: diaryv1.RefusalReason_REFUSAL_REASON_TEXT_HISTORY,
					Message: "the server could not take this edit, and this device no longer holds the entry to make it again"}, now); err != nil {
					return err
				}
			}
		}
		if ahead {
			var floor int64
			if err := tx.QueryRowContext(ctx, `SELECT max((SELECT known FROM clock WHERE id = 1), coalesce((SELECT max(clock) FROM outbox WHERE uncertain = 1), 0))`).Scan(&floor); err != nil {
				return fmt.Errorf("cannot read clock floor: %w", err)
			}
			c.clock.SetOffset(offset)
			c.clock.Rewind(syncengine.Timestamp(floor))
			c.log.Warn("device clock ahead of the server's; changes stamped again", "offset_ms", offset.Milliseconds())
			restamped, err := c.restampOutbox(ctx, tx, p.Replica, syncengine.Timestamp(floor), refusedAhead...)
			if err != nil {
				return err
			}
			for id := range restamped {
				touched[id] = true
			}
		}
		if _, err := c.noteCapabilities(ctx, tx, resp.GetCapabilities()); err != nil {
			return err
		}
		w, err := newEntryWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer w.close()
		for id := range touched {
			if err := c.rebuild(ctx, tx, w, id, acked[id]); err != nil {
				return err
			}
		}
		return nil
	})
	return ahead, err
}

// pushReads sends the queued read marks, a page at a time, until none is
// left. A mark the server took, or already had a newer one than, leaves
// the queue; one it refused because the entry is no longer shared leaves
// it too (there is nothing left to mark); one refused for a clock ahead
// of the server's is stamped again with the corrected clock.
func (c *Client) pushReads(ctx context.Context, rpc *rpcClients, p *Profile) error {
	if p.Role != study.RoleSupervisor {
		return nil
	}
	for aheadInARow := 0; ; {
		type queued struct {
			entry []byte
			read  bool
			clock int64
		}
		var page []queued
		rows, err := c.db.Read.QueryContext(ctx, `SELECT entry, read, clock FROM read_outbox ORDER BY clock LIMIT ?`, study.MaxReadMarks)
		if err != nil {
			return fmt.Errorf("cannot read queued read marks: %w", err)
		}
		for rows.Next() {
			var q queued
			if err := rows.Scan(&q.entry, &q.read, &q.clock); err != nil {
				rows.Close()
				return fmt.Errorf("cannot read queued read marks: %w", err)
			}
			page = append(page, q)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read queued read marks: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		req := &diaryv1.MarkReadRequest{Marks: make([]*diaryv1.ReadMark, len(page))}
		for i, q := range page {
			req.Marks[i] = &diaryv1.ReadMark{EntryId: syncengine.EntryID(q.entry).String(), Read: q.read, Clock: uint64(q.clock)}
		}
		t0 := c.opts.Now()
		resp, err := rpc.sync.MarkRead(ctx, req)
		if err != nil {
			return rpcError("send read marks", err)
		}
		t1 := c.opts.Now()
		if len(resp.GetResults()) != len(page) {
			return fmt.Errorf("cannot send read marks: the server answered %d results for %d marks", len(resp.GetResults()), len(page))
		}
		offset := clockOffset(t0, t1, resp.GetServerTime().AsTime())
		ahead := false
		err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
			var restamp []queued
			for i, r := range resp.GetResults() {
				q := page[i]
				if r.GetOutcome() == diaryv1.ChangeOutcome_CHANGE_OUTCOME_REFUSED {
					if r.GetReason() == diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD {
						ahead = true
						restamp = append(restamp, q)
						continue
					}
					c.log.Info("read mark refused", "entry", syncengine.EntryID(q.entry).String(), "reason", r.GetReason().String())
				} else if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED && r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE {
					return fmt.Errorf("cannot send read marks: the server answered outcome %v", r.GetOutcome())
				}
				// A mark made since this one was read stays queued.
				if _, err := tx.ExecContext(ctx, `DELETE FROM read_outbox WHERE entry = ? AND clock = ?`, q.entry, q.clock); err != nil {
					return fmt.Errorf("cannot update queued read marks: %w", err)
				}
			}
			if err := c.saveOffset(ctx, tx, offset); err != nil {
				return err
			}
			if !ahead {
				return nil
			}
			var floor int64
			if err := tx.QueryRowContext(ctx, `SELECT max((SELECT known FROM clock WHERE id = 1), coalesce((SELECT max(clock) FROM outbox WHERE uncertain = 1), 0))`).Scan(&floor); err != nil {
				return fmt.Errorf("cannot read clock floor: %w", err)
			}
			c.clock.SetOffset(offset)
			c.clock.Rewind(syncengine.Timestamp(floor))
			for _, q := range restamp {
				clock := int64(c.stamp())
				if _, err := tx.ExecContext(ctx, `UPDATE read_outbox SET clock = ? WHERE entry = ? AND clock = ?`, clock, q.entry, q.clock); err != nil {
					return fmt.Errorf("cannot update queued read marks: %w", err)
				}
				if _, err := tx.ExecContext(ctx, `UPDATE entries SET read_clock = ? WHERE id = ? AND read_clock = ?`, clock, q.entry, q.clock); err != nil {
					return fmt.Errorf("cannot update read mark: %w", err)
				}
			}
			return saveClock(ctx, tx, c.clock.Last())
		})
		if err != nil {
			return err
		}
		if !ahead {
			aheadInARow = 0
			continue
		}
		if aheadInARow++; aheadInARow >= 3 {
			return errors.New("cannot send read marks: the server keeps refusing this device's clock as ahead of its own")
		}
	}
}

// saveOffset keeps the clock correction learnt from the server. Changes
// smaller than a second are noise from the round trip and are ignored.
func (c *Client) saveOffset(ctx context.Context, tx *sql.Tx, offset time.Duration) error {
	cur := c.clock.Offset()
	if d := offset - cur; d < time.Second && d > -time.Second {
		return nil
	}
	c.clock.SetOffset(offset)
	if _, err := tx.ExecContext(ctx, `UPDATE profile SET clock_offset = ? WHERE id = 1`, offset.Milliseconds()); err != nil {
		return fmt.Errorf("cannot save clock offset: %w", err)
	}
	return nil
}

// restampOutbox gives every outbox change with a clock above floor, and
// the changes refused with the outbox sequence numbers given (a clock the
// server refused as ahead is dead, even below the floor that another
// unanswered change set), a new clock from the (corrected) clock and the
// given replica id, in outbox order, so the device's own order of edits
// is kept. It returns the entries whose changes it stamped again; the
// caller rebuilds them.
func (c *Client) restampOutbox(ctx context.Context, tx *sql.Tx, replica syncengine.ReplicaID, floor syncengine.Timestamp, refused ...int64) (map[syncengine.EntryID]bool, error) {
	query, args := `SELECT seq, entry, change, text FROM outbox WHERE clock > ?`, []any{int64(floor)}
	if len(refused) > 0 {
		query += ` OR seq IN (` + strings.TrimSuffix(strings.Repeat("?,", len(refused)), ",") + `)`
		for _, seq := range refused {
			args = append(args, seq)
		}
	}
	rows, err := tx.QueryContext(ctx, query+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot read outbox: %w", err)
	}
	type restamp struct {
		seq   int64
		entry []byte
		ch    *diaryv1.Change
		text  bool
	}
	var todo []restamp
	for rows.Next() {
		var r restamp
		var b []byte
		if err := rows.Scan(&r.seq, &r.entry, &b, &r.text); err != nil {
			rows.Close()
			return nil, fmt.Errorf("cannot read outbox: %w", err)
		}
		r.ch = &diaryv1.Change{}
		if err := proto.Unmarshal(b, r.ch); err != nil {
			rows.Close()
			return nil, fmt.Errorf("outbox row %d: %w", r.seq, err)
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	touched := map[syncengine.EntryID]bool{}
	var texts []docKey
	for _, r := range todo {
		if r.text {
			// A text edit's ids carry its clock: the text is queued
			// whole instead, and made an edit again after the next pull.
			ch, err := wire.ChangeFromProto(r.ch)
			if err != nil {
				return nil, fmt.Errorf("outbox row %d: %w", r.seq, err)
			}
			if k := keyOf(&ch); !slices.Contains(texts, k) {
				texts = append(texts, k)
			}
			continue
		}
		// The server keeps its refusal of the old clock: never use it
		// again, or a new change would inherit that refusal.
		if err := c.retire(ctx, tx, syncengine.Timestamp(r.ch.Clock)); err != nil {
			return nil, err
		}
		r.ch.Clock = uint64(c.stamp())
		r.ch.ReplicaId = replica.String()
		b, err := proto.Marshal(r.ch)
		if err != nil {
			return nil, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET clock = ?, change = ?, uncertain = 0 WHERE seq = ?`, int64(r.ch.Clock), b, r.seq); err != nil {
			return nil, fmt.Errorf("cannot update outbox: %w", err)
		}
		touched[syncengine.EntryID(r.entry)] = true
	}
	for _, k := range texts {
		ok, err := c.replaceText(ctx, tx, k, replica, true)
		if err != nil {
			return nil, err
		}
		if !ok {
			if err := c.refuseText(ctx, tx, k, nil, &diaryv1.ChangeResult{Reason: diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD,
				Message: "this edit was stamped with a clock the server refuses, and this device no longer holds the entry to make it again"}, c.opts.Now().UnixMilli()); err != nil {
				return nil, err
			}
		}
		touched[k.entry] = true
	}
	if _, err := tx.ExecContext(ctx, `UPDATE clock SET last = ? WHERE id = 1`, int64(c.clock.Last())); err != nil {
		return nil, fmt.Errorf("cannot save clock: %w", err)
	}
	return touched, nil
}

// pendingChanges returns the outbox changes of one entry.
func (c *Client) pendingChanges(ctx context.Context, tx *sql.Tx, id syncengine.EntryID, author string) ([]syncengine.Change, error) {
	rows, err := tx.QueryContext(ctx, `SELECT change FROM outbox WHERE entry = ? ORDER BY seq`, id[:])
	if err != nil {
		return nil, fmt.Errorf("cannot read outbox: %w", err)
	}
	defer rows.Close()
	var out []syncengine.Change
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		var p diaryv1.Change
		if err := proto.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		ch, err := wire.ChangeFromProto(&p)
		if err != nil {
			return nil, fmt.Errorf("outbox: %w", err)
		}
		ch.Author = author
		out = append(out, ch)
	}
	return out, rows.Err()
}

// rebuild recomputes what the app sees of one entry: its base, with the
// changes the server has just acknowledged merged in, merged with its
// outbox changes. An entry the server never sent and that has nothing
// pending, or that the server erased, is dropped.
//
// Acknowledged changes join the base because the server holds them now:
// they belong to the confirmed state even before the next pull brings
// that state back.
func (c *Client) rebuild(ctx context.Context, tx *sql.Tx, w *entryWriter, id syncengine.EntryID, acked []syncengine.Change) error {
	le, err := loadLocal(ctx, tx, id)
	if err != nil {
		return err
	}
	if le == nil {
		// Removed meanwhile (erased, unshared): it stays removed, unless
		// it is a navigator's own entry with changes still pending.
		return c.materialize(ctx, tx, w, id, nil, false)
	}
	base := le.base
	if len(acked) > 0 {
		if base == nil {
			base = &syncengine.Entry{ID: id}
		}
		for i := range acked {
			base.Apply(&acked[i])
		}
		if _, p, err := c.rpcs(); err == nil && p.Role == study.RoleSupervisor {
			// A supervisor's base is the server's view of the entry,
			// which hides replica ids and deleted feedback. Keep it that
			// view: a change that leaves the view as it was (feedback
			// written and deleted before a sync) brings no new view in
			// the next pull to replace a raw merge.
			base = base.ViewFor(syncengine.AudienceSupervisor, p.StudyCode, true)
		}
	}
	return c.materialize(ctx, tx, w, id, base, true)
}

// rebuildAll rebuilds the given entries (see rebuild), with nothing newly
// acknowledged.
func (c *Client) rebuildAll(ctx context.Context, tx *sql.Tx, ids map[syncengine.EntryID]bool) error {
	w, err := newEntryWriter(ctx, tx)
	if err != nil {
		return err
	}
	defer w.close()
	for id := range ids {
		if err := c.rebuild(ctx, tx, w, id, nil); err != nil {
			return err
		}
	}
	return nil
}

// materialize writes the entry whose confirmed state is base (nil if the
// server has not sent it): base merged with the outbox changes of the
// entry.
func (c *Client) materialize(ctx context.Context, tx *sql.Tx, w *entryWriter, id syncengine.EntryID, base *syncengine.Entry, exists bool) error {
	_, p, err := c.rpcs()
	if err != nil {
		return err
	}
	var erased int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM erased WHERE id = ?`, id[:]).Scan(&erased); err != nil {
		return fmt.Errorf("cannot read erased entries: %w", err)
	}
	pending, err := c.pendingChanges(ctx, tx, id, p.StudyCode)
	if err != nil {
		return err
	}
	// Only a navigator's own new entries exist before the server sends
	// them; anything else needs a base (a supervisor's feedback on an
	// entry they no longer see waits in the outbox for its refusal).
	if erased > 0 || (base == nil && (len(pending) == 0 || p.Role != study.RoleNavigator)) {
		if exists {
			return deleteLocal(ctx, tx, id)
		}
		return nil
	}
	state := &syncengine.Entry{ID: id}
	if base != nil {
		state = base.Clone()
	}
	var broken []docKey
	for i := range pending {
		ch := &pending[i]
		if ch.TextEdit == nil {
			state.Apply(ch)
			continue
		}
		if st, err := state.ApplyText(ch); (err != nil || st == syncengine.TextHeld) && !slices.Contains(broken, keyOf(ch)) {
			broken = append(broken, keyOf(ch))
		}
	}
	if len(broken) > 0 && exists {
		// The text the server sent is not the one these edits were made
		// on (it came from another seed, or the server's data was
		// replaced): the text this replica showed is queued whole, to be
		// made an edit of the server's text after the pull (see
		// text.go), and shown meanwhile.
		old, err := loadLocal(ctx, tx, id)
		if err != nil {
			return err
		}
		for _, k := range broken {
			c.log.Warn("text edits do not fit the server's text; queued whole", "entry", id.String())
			if err := c.replaceTextOf(ctx, tx, k, old, p.Replica, true); err != nil {
				return err
			}
		}
		return c.materialize(ctx, tx, w, id, base, exists)
	}
	return w.store(ctx, &localEntry{base: base, state: state, pending: len(pending)}, c.opts.Now(), !exists)
}

// pullResult is the answer to one Pull.
type pullResult struct {
	resp *diaryv1.PullResponse
	err  error
}

// pull applies pages from the server until caught up. While it applies
// one page it already asks for the next (whose cursor the page's answer
// gives), so the server's work and the network overlap with the local
// writes. The prefetched page is used only after the one before it has
// been applied with its cursor; pull never returns with a request still
// running.
func (c *Client) pull(ctx context.Context, rpc *rpcClients) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var inflight chan pullResult
	defer func() {
		if inflight != nil {
			cancel()
			<-inflight
		}
	}()
	// The first page of a sync asks for an exact count of what waits;
	// the progress counts down from it, and later pages, whose counts
	// the server caps, only correct it.
	counted := false
	// The count of this device's changes the server holds, as this
	// replica knows it: with it, the pages leave out what this replica
	// holds as the server does. It does not change during a pull; a
	// cursor set back forgets it.
	var own *uint64
	fetch := func(cursor uint64) chan pullResult {
		ch := make(chan pullResult, 1)
		count := !counted
		counted = true
		var known *uint64
		if own != nil {
			known = proto.Uint64(*own)
		}
		go func() {
			// Asking for merged text costs nothing with a server that
			// does not merge text: it ignores the field.
			resp, err := rpc.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: c.opts.PullPageSize, CountRemaining: count, MergedText: true, OwnChanges: known})
			ch <- pullResult{resp, err}
		}()
		return ch
	}
	resetOnce := false
	var cursor int64
	var ownKnown sql.NullInt64
	if err := c.db.Read.QueryRowContext(ctx, `SELECT cursor, own_changes FROM profile WHERE id = 1`).Scan(&cursor, &ownKnown); err != nil {
		return fmt.Errorf("cannot read cursor: %w", err)
	}
	if ownKnown.Valid && ownKnown.Int64 >= 0 {
		own = proto.Uint64(uint64(ownKnown.Int64))
	}
	inflight = fetch(uint64(cursor))
	for {
		res := <-inflight
		inflight = nil
		resp, err := res.resp, res.err
		if err != nil {
			if awaitingApproval(err) {
				return err
			}
			if cursorAhead(err) && !resetOnce && cursor > 0 {
				// The server no longer knows our position: its data was
				// replaced. Start over, keeping what is still pending.
				resetOnce = true
				c.log.Warn("server position reset; pulling everything again")
				if err := c.resetReplica(ctx); err != nil {
					return err
				}
				cursor, own = 0, nil
				counted = false
				inflight = fetch(0)
				continue
			}
			return rpcError("pull changes", err)
		}
		if resp.GetNextCursor() < uint64(cursor) {
			return fmt.Errorf("cannot pull changes: the server moved the cursor back from %d to %d", cursor, resp.GetNextCursor())
		}
		if resp.GetMore() {
			inflight = fetch(resp.GetNextCursor())
		}
		upgraded, err := c.noteCapabilities(ctx, nil, resp.GetCapabilities())
		if err != nil {
			return err
		}
		if upgraded {
			// The page came as text only; start again from 0 (where the
			// stored cursor is now), with merged text.
			if inflight != nil {
				<-inflight // a page of text only; not applied
				inflight = nil
			}
			cursor, own = 0, nil
			counted = false
			inflight = fetch(0)
			continue
		}
		if err := c.applyPullPage(ctx, resp); err != nil {
			return err
		}
		cursor = int64(resp.GetNextCursor())
		n := len(resp.GetEntries()) + len(resp.GetRemovals())
		c.status.set(func(pr *Progress) {
			pr.PagesPulled++
			pr.Pulled += n
			pr.PulledEntries += len(resp.GetEntries())
			pr.PulledRemovals += len(resp.GetRemovals())
			pr.Remaining = remainingAfter(pr.Remaining, uint64(n), resp)
		})
		c.watchers.notify(EventStatus)
		if n > 0 {
			c.watchers.notify(EventEntries)
		}
		if !resp.GetMore() {
			return nil
		}
	}
}

// applyPullPage applies one page and its cursor in one transaction.
func (c *Client) applyPullPage(ctx context.Context, resp *diaryv1.PullResponse) error {
	_, p, err := c.rpcs()
	if err != nil {
		return err
	}
	entries := make([]*syncengine.Entry, len(resp.GetEntries()))
	var seen syncengine.Timestamp
	for i, pe := range resp.GetEntries() {
		e, err := wire.EntryFromProto(pe)
		if err != nil {
			return fmt.Errorf("cannot pull changes: the server sent %w", err)
		}
		if p.Role == study.RoleNavigator && e.Author != p.StudyCode {
			return fmt.Errorf("cannot pull changes: the server sent entry %s of %s to %s", e.ID, e.Author, p.StudyCode)
		}
		entries[i] = e
		seen = max(seen, maxClock(e))
	}
	err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		w, err := newEntryWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer w.close()
		lookup, err := tx.PrepareContext(ctx, `SELECT pending FROM entries WHERE id = ?`)
		if err != nil {
			return fmt.Errorf("cannot prepare entry lookup: %w", err)
		}
		defer lookup.Close()
		now := c.opts.Now()
		var queued int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&queued); err != nil {
			return fmt.Errorf("cannot read outbox: %w", err)
		}
		var held bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM entries)`).Scan(&held); err != nil {
			return fmt.Errorf("cannot read entries: %w", err)
		}
		for _, e := range entries {
			if queued == 0 {
				// Nothing local to merge: the pulled state is the state.
				// Ids are unique within a page, so on a replica that held
				// no entries when the page began, every entry is new.
				if err := w.store(ctx, &localEntry{base: e, state: e}, now, !held); err != nil {
					return err
				}
				continue
			}
			pending := 0
			err := lookup.QueryRowContext(ctx, e.ID[:]).Scan(&pending)
			switch {
			case errors.Is(err, sql.ErrNoRows) && queued == 0:
				// The common case on a first sync: nothing local to merge.
				if err := w.store(ctx, &localEntry{base: e, state: e}, now, true); err != nil {
					return err
				}
				continue
			case errors.Is(err, sql.ErrNoRows):
				// Outbox changes may wait for an entry this replica does
				// not hold (a supervisor's feedback on an entry shared
				// again): merge them in.
				if err := c.materialize(ctx, tx, w, e.ID, e, false); err != nil {
					return err
				}
				continue
			case err != nil:
				return fmt.Errorf("cannot read entry: %w", err)
			case pending == 0:
				if err := w.store(ctx, &localEntry{base: e, state: e}, now, false); err != nil {
					return err
				}
				continue
			}
			if err := c.materialize(ctx, tx, w, e.ID, e, true); err != nil {
				return err
			}
		}
		if err := c.applyReads(ctx, tx, resp.GetReads(), &seen); err != nil {
			return err
		}
		for _, r := range resp.GetRemovals() {
			id, err := syncengine.ParseEntryID(r.GetEntryId())
			if err != nil {
				return fmt.Errorf("cannot pull changes: the server sent a removal for %w", err)
			}
			if r.GetReason() == diaryv1.RemovalReason_REMOVAL_REASON_ERASED {
				if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO erased (id) VALUES (?)`, id[:]); err != nil {
					return fmt.Errorf("cannot record erased entry: %w", err)
				}
			}
			if err := deleteLocal(ctx, tx, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE profile SET cursor = ?, device_state = ? WHERE id = 1`, int64(resp.GetNextCursor()), study.DeviceActive); err != nil {
			return fmt.Errorf("cannot store cursor: %w", err)
		}
		if !resp.GetMore() {
			if err := storeAwaiting(ctx, tx, resp); err != nil {
				return err
			}
			// Every page up to here applied: this replica holds every
			// change of this device that the server counts.
			if resp.OwnChanges != nil && resp.GetOwnChanges() < 1<<62 {
				if _, err := tx.ExecContext(ctx, `UPDATE profile SET own_changes = ? WHERE id = 1`, int64(resp.GetOwnChanges())); err != nil {
					return fmt.Errorf("cannot store the count of this device's changes: %w", err)
				}
			}
		}
		c.clock.Observe(seen)
		if _, err := tx.ExecContext(ctx, `UPDATE clock SET known = max(known, ?), last = max(last, ?) WHERE id = 1`, int64(seen), int64(c.clock.Last())); err != nil {
			return fmt.Errorf("cannot save clock: %w", err)
		}
		return nil
	})
	return err
}

// applyReads applies the read state the server holds for entries of a
// pulled page, unless a newer mark made here is still queued. The later
// mark wins, as study.ReadMark.Newer decides everywhere.
func (c *Client) applyReads(ctx context.Context, tx *sql.Tx, reads []*diaryv1.ReadState, seen *syncengine.Timestamp) error {
	for _, r := range reads {
		id, err := syncengine.ParseEntryID(r.GetEntryId())
		if err != nil {
			return fmt.Errorf("cannot pull changes: the server sent a read state for %w", err)
		}
		clock := syncengine.Timestamp(r.GetClock())
		*seen = max(*seen, clock)
		var queued int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM read_outbox WHERE entry = ? AND clock > ?`, id[:], int64(clock)).Scan(&queued); err != nil {
			return fmt.Errorf("cannot read queued read marks: %w", err)
		}
		if queued > 0 {
			continue
		}
		var local int64
		var localRead bool
		err = tx.QueryRowContext(ctx, `SELECT read_clock, read_at IS NOT NULL FROM entries WHERE id = ?`, id[:]).Scan(&local, &localRead)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cannot read entry: %w", err)
		}
		incoming := study.ReadMark{Read: r.GetRead(), Clock: clock}
		if !incoming.Newer(study.ReadMark{Read: localRead, Clock: syncengine.Timestamp(local)}) {
			continue
		}
		var at any
		if incoming.Read {
			at = clock.Millis()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE entries SET read_at = ?, read_clock = ? WHERE id = ?`, at, int64(clock), id[:]); err != nil {
			return fmt.Errorf("cannot store read state: %w", err)
		}
	}
	return nil
}

// maxClock returns the newest clock anywhere in e.
func maxClock(e *syncengine.Entry) syncengine.Timestamp {
	m := max(e.Updated(), e.Created)
	for _, f := range e.Feedback {
		m = max(m, f.Body.Clock, f.Deleted.Clock)
	}
	return m
}

// resetReplica forgets everything the server sent (keeping local changes
// not yet accepted) and moves the cursor back to the start.
func (c *Client) resetReplica(ctx context.Context) error {
	return c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM entries WHERE pending = 0`); err != nil {
			return fmt.Errorf("cannot reset replica: %w", err)
		}
		ids, err := queryEntryIDs(ctx, tx, `SELECT id FROM entries`)
		if err != nil {
			return fmt.Errorf("cannot reset replica: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE entries SET base = NULL`); err != nil {
			return fmt.Errorf("cannot reset replica: %w", err)
		}
		touched := map[syncengine.EntryID]bool{}
		for _, id := range ids {
			touched[id] = true
		}
		if err := c.rebuildAll(ctx, tx, touched); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE profile SET cursor = 0, own_changes = NULL WHERE id = 1`)
		return err
	})
}

// storeAwaiting keeps the devices of this account that wait for approval,
// as the last page of a pull lists them.
func storeAwaiting(ctx context.Context, tx *sql.Tx, resp *diaryv1.PullResponse) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM awaiting_approval`); err != nil {
		return fmt.Errorf("cannot store devices waiting for approval: %w", err)
	}
	for _, d := range resp.GetDevicesAwaitingApproval() {
		if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO awaiting_approval (device_id, name, enrolled_at, issued_by) VALUES (?, ?, ?, ?)`,
			d.GetDeviceId(), d.GetName(), d.GetEnrolledAt().AsTime().UnixMilli(), d.GetIssuedBy()); err != nil {
			return fmt.Errorf("cannot store devices waiting for approval: %w", err)
		}
	}
	n := max(int(resp.GetDevicesAwaitingApprovalCount()), len(resp.GetDevicesAwaitingApproval()))
	if _, err := tx.ExecContext(ctx, `UPDATE profile SET awaiting_count = ? WHERE id = 1`, n); err != nil {
		return fmt.Errorf("cannot store devices waiting for approval: %w", err)
	}
	return nil
}

// SyncReport is Sync, returning what the sync did.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) SyncReport(ctx context.Context) (Report, error) {
	if err := c.checkDamaged(); err != nil {
		return Report{}, err
	}
	r0, err := c.syncReportChecked(ctx)
	return r0, c.damage(err)
}

// noteReachable records whether err (from a sync or a stream) says the
// server cannot be reached, for Status.Offline: a network failure sets
// it, anything the server answered clears it.
func (c *Client) noteReachable(err error) {
	var ne *NetworkError
	if errors.As(err, &ne) {
		msg := ne.Error()
		c.offline.Store(&msg)
		return
	}
	c.offline.Store(nil)
}

// remainingAfter is what waits after a page, for progress: the server's
// count when it is exact, else the count from before the page less what
// the page held, but never less than the server's lower bound.
func remainingAfter(before, page uint64, resp *diaryv1.PullResponse) uint64 {
	if resp.GetRemainingExact() || !resp.GetMore() {
		return resp.GetRemaining()
	}
	est := uint64(0)
	if before > page {
		est = before - page
	}
	return max(est, resp.GetRemaining())
}

// cursorAhead says whether a pull failed because its cursor is beyond the
// server's position (the server's data was replaced): the one error after
// which the replica forgets what it pulled and pulls everything again.
// Any other conflict leaves the replica alone.
func cursorAhead(err error) bool {
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeFailedPrecondition {
		return false
	}
	if ce.Meta().Get(wire.ErrorCodeHeader) != "" {
		// A server that sends the application's codes names this reason.
		return ce.Meta().Get(wire.ErrorReasonHeader) == wire.ReasonCursorAhead
	}
	// A server from before error codes: a pull's only FailedPrecondition
	// was this one.
	return true
}
