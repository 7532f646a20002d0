package client

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// Merged text on the client.
//
// A body, or a feedback body, that an app sets is queued as a text edit:
// the difference between the text the replica holds and the new text
// (syncengine.TextDoc.SetText), or the splice the app made. The server
// merges concurrent edits from every device character by character. The
// client sends text edits only to a server that announced it merges
// text in its latest answer, and asks again at the start of a sync before
// it sends one; to other servers it sends the whole text, as before.
//
// A text edit carries its clock in the ids of what it inserts, so it
// cannot be stamped again. When the server refuses one for a reason that
// can pass (a clock ahead of its own, or an edit made on one it refused),
// every edit of that text waiting in the outbox is replaced by the whole
// text the replica held, which waits (hold) until the next pull and is
// then made an edit of the server's text, with a new clock: the edit is
// made again on what the server holds, and no word is lost. When the
// refusal cannot pass (not permitted, too large), the text is listed with
// the refusal. A text whose outbox holds a whole-text write is written
// whole until that write is sent, so that the two kinds never depend on
// each other on this replica.

// docKey names one merged text: an entry's body, or a feedback note's.
type docKey struct {
	entry    syncengine.EntryID
	field    syncengine.Field
	feedback syncengine.FeedbackID
}

func keyOf(c *syncengine.Change) docKey {
	k := docKey{entry: c.Entry, field: c.Field}
	if c.Field.IsFeedback() {
		k.feedback = c.Feedback
	}
	return k
}

// isText reports whether f is merged text: a body or a feedback body.
func isText(f syncengine.Field) bool {
	return f == syncengine.FieldBody || f == syncengine.FieldFeedbackBody
}

// queued is an outbox row.
type queued struct {
	seq       int64
	clock     int64
	text      bool // a text edit
	hold      bool
	base      string // for a held row: the text its edit was made on
	rebuilds  int
	uncertain bool
	change    *diaryv1.Change
	ch        syncengine.Change
}

// entryOutbox returns the outbox rows of one entry, oldest first.
func entryOutbox(ctx context.Context, tx *sql.Tx, id syncengine.EntryID) ([]queued, error) {
	rows, err := tx.QueryContext(ctx, `SELECT seq, clock, text, hold, coalesce(base, ''), rebuilds, uncertain, change FROM outbox WHERE entry = ? ORDER BY seq`, id[:])
	if err != nil {
		return nil, fmt.Errorf("cannot read outbox: %w", err)
	}
	defer rows.Close()
	var out []queued
	for rows.Next() {
		var q queued
		var b []byte
		if err := rows.Scan(&q.seq, &q.clock, &q.text, &q.hold, &q.base, &q.rebuilds, &q.uncertain, &b); err != nil {
			return nil, fmt.Errorf("cannot read outbox: %w", err)
		}
		q.change = &diaryv1.Change{}
		if err := proto.Unmarshal(b, q.change); err != nil {
			return nil, fmt.Errorf("outbox row %d: %w", q.seq, err)
		}
		if q.ch, err = wire.ChangeFromProto(q.change); err != nil {
			return nil, fmt.Errorf("outbox row %d: %w", q.seq, err)
		}
		out = append(out, q)
	}
	return out, rows.Err()
}

// wholePending returns the texts of an entry for which the outbox holds a
// whole-text write: their next edits are whole-text writes too.
func wholePending(rows []queued) map[docKey]bool {
	out := map[docKey]bool{}
	for i := range rows {
		if c := &rows[i].ch; isText(c.Field) && c.TextEdit == nil {
			out[keyOf(c)] = true
		}
	}
	return out
}

// textOf returns the text of the merged text k names in e.
func textOf(e *syncengine.Entry, k docKey) string {
	if e == nil {
		return ""
	}
	if k.field == syncengine.FieldFeedbackBody {
		if f := e.FindFeedback(k.feedback); f != nil {
			return f.Body.Value
		}
		return ""
	}
	return e.Body.Value
}

// mergedText reports whether the server merges text, as its latest answer
// said.
func (c *Client) mergedText() bool { return c.merged.Load() }

// noteCapabilities records what the server announced in an answer, in tx
// (nil: a transaction of its own), and reports whether the server has
// just begun to merge text. A server that no longer merges text gets the
// whole texts of the edits waiting for it instead. A server that has
// begun to is pulled from the start again (the cursor goes back to 0 in
// the same transaction): what this replica holds came as text only, and
// edits are made on the server's merged text.
func (c *Client) noteCapabilities(ctx context.Context, tx *sql.Tx, caps []diaryv1.Capability) (bool, error) {
	on := slices.Contains(caps, diaryv1.Capability_CAPABILITY_MERGED_TEXT)
	c.confirmed.Store(true)
	if on == c.merged.Load() {
		return false, nil
	}
	do := func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE profile SET merged_text = ? WHERE id = 1`, on); err != nil {
			return fmt.Errorf("cannot record the server's capabilities: %w", err)
		}
		if on {
			c.log.Info("the server merges text now; pulling everything again")
			if _, err := tx.ExecContext(ctx, `UPDATE profile SET cursor = 0, own_changes = NULL WHERE id = 1`); err != nil {
				return fmt.Errorf("cannot reset cursor: %w", err)
			}
			return nil
		}
		c.log.Warn("the server does not merge text; body edits are sent as whole texts")
		return c.flattenOutbox(ctx, tx)
	}
	var err error
	if tx != nil {
		err = do(tx)
	} else {
		err = c.db.WriteTx(ctx, do)
	}
	if err != nil {
		return false, err
	}
	c.merged.Store(on)
	return on, nil
}

// flattenOutbox replaces every text edit in the outbox by the whole text
// the replica holds, for a server that does not merge text.
func (c *Client) flattenOutbox(ctx context.Context, tx *sql.Tx) error {
	keys, err := outboxTextKeys(ctx, tx, `text = 1`)
	if err != nil {
		return err
	}
	_, p, err := c.rpcs()
	if err != nil {
		return err
	}
	touched := map[syncengine.EntryID]bool{}
	for _, k := range keys {
		ok, err := c.replaceText(ctx, tx, k, p.Replica, false)
		if err != nil {
			return err
		}
		if !ok {
			// Edits of an entry this replica no longer holds (feedback
			// on an entry no longer shared): listed as refused with
			// their words, which the server would refuse anyway.
			if err := c.refuseText(ctx, tx, k, nil, &diaryv1.ChangeResult{Reason: diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED,
				Message: "the server does not merge text, and this device no longer holds the entry to send its whole text"}, c.opts.Now().UnixMilli()); err != nil {
				return err
			}
		}
		touched[k.entry] = true
	}
	return c.rebuildAll(ctx, tx, touched)
}

// outboxTextKeys returns the texts that outbox rows matching cond edit.
func outboxTextKeys(ctx context.Context, tx *sql.Tx, cond string) ([]docKey, error) {
	rows, err := tx.QueryContext(ctx, `SELECT change FROM outbox WHERE `+cond+` ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("cannot read outbox: %w", err)
	}
	defer rows.Close()
	seen := map[docKey]bool{}
	var out []docKey
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
		if k := keyOf(&ch); !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out, rows.Err()
}

// replaceText removes the text edits of k from the outbox (retiring
// their clocks: the server may hold a refusal of them) and queues instead
// a whole-text write, stamped for replica, of the text the replica holds:
// with hold, it waits until the next pull, to be made an edit of the
// server's text then. It reports false, and changes nothing, when the
// replica does not hold the entry. The caller rebuilds the entry.
func (c *Client) replaceText(ctx context.Context, tx *sql.Tx, k docKey, replica syncengine.ReplicaID, hold bool) (bool, error) {
	le, err := loadLocal(ctx, tx, k.entry)
	if err != nil || le == nil {
		return false, err
	}
	return true, c.replaceTextOf(ctx, tx, k, le, replica, hold)
}

// replaceTextOf is replaceText with the text, and the text its edits were
// made on, taken from le.
func (c *Client) replaceTextOf(ctx context.Context, tx *sql.Tx, k docKey, le *localEntry, replica syncengine.ReplicaID, hold bool) error {
	rows, err := entryOutbox(ctx, tx, k.entry)
	if err != nil {
		return err
	}
	rebuilds := 0
	for _, q := range rows {
		if q.text && keyOf(&q.ch) == k {
			rebuilds = max(rebuilds, q.rebuilds)
		}
	}
	if err := c.dropText(ctx, tx, rows, k); err != nil {
		return err
	}
	ch := syncengine.Change{Entry: k.entry, Field: k.field, Feedback: k.feedback, Text: textOf(le.state, k), Stamp: syncengine.Stamp{Clock: c.stamp(), Replica: replica}}
	b, err := proto.Marshal(wire.ChangeToProto(&ch))
	if err != nil {
		return fmt.Errorf("cannot encode change: %w", err)
	}
	var base any
	if hold {
		base = textOf(le.base, k)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (entry, clock, change, hold, base, rebuilds) VALUES (?, ?, ?, ?, ?, ?)`, k.entry[:], int64(ch.Clock), b, hold, base, rebuilds); err != nil {
		return fmt.Errorf("cannot queue change: %w", err)
	}
	return saveClock(ctx, tx, c.clock.Last())
}

// dropText removes the text edits of k among rows from the outbox and
// retires their clocks.
func (c *Client) dropText(ctx context.Context, tx *sql.Tx, rows []queued, k docKey) error {
	for _, q := range rows {
		if !q.text || keyOf(&q.ch) != k {
			continue
		}
		if err := c.retire(ctx, tx, syncengine.Timestamp(q.clock)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, q.seq); err != nil {
			return fmt.Errorf("cannot update outbox: %w", err)
		}
	}
	return nil
}

// refuseText records that the server refused a text edit of k for good:
// the edit goes to the refused list with the whole text the replica held
// (or, when it no longer holds the entry, the words the waiting edits
// inserted), and every edit of k waiting in the outbox, each made on the
// refused one, leaves it. The caller rebuilds the entry.
func (c *Client) refuseText(ctx context.Context, tx *sql.Tx, k docKey, refused *diaryv1.Change, r *diaryv1.ChangeResult, now int64) error {
	rows, err := entryOutbox(ctx, tx, k.entry)
	if err != nil {
		return err
	}
	le, err := loadLocal(ctx, tx, k.entry)
	if err != nil {
		return err
	}
	var text string
	if le != nil {
		text = textOf(le.state, k)
	} else {
		for _, q := range rows {
			if q.text && keyOf(&q.ch) == k {
				for _, in := range q.ch.TextEdit.Inserts {
					text += in.Text
				}
			}
		}
	}
	for _, q := range rows {
		if refused == nil && q.text && keyOf(&q.ch) == k {
			refused = q.change
		}
	}
	if refused == nil {
		return nil
	}
	b, err := proto.Marshal(refused)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO refused (entry, change, reason, message, refused_at, text) VALUES (?, ?, ?, ?, ?, ?)`,
		k.entry[:], b, int(r.GetReason()), r.GetMessage(), now, text); err != nil {
		return fmt.Errorf("cannot record refused change: %w", err)
	}
	c.log.Warn("text edit refused", "entry", k.entry.String(), "reason", r.GetReason().String())
	return c.dropText(ctx, tx, rows, k)
}

// rederive makes every held whole-text write the edit from the text its
// edit was made on to it, made on the text the replica now holds from
// the server (syncengine.Rebase), stamped afresh, and releases it: run
// after a pull. A text rebuilt twice already, or one with whole-text
// writes queued after it, is sent as a whole text: the server then merges
// it as it merges old devices' writes. It reports whether it released
// anything.
func (c *Client) rederive(ctx context.Context) (bool, error) {
	released := false
	err := c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		ids, err := queryEntryIDs(ctx, tx, `SELECT DISTINCT entry FROM outbox WHERE hold = 1`)
		if err != nil {
			return fmt.Errorf("cannot read outbox: %w", err)
		}
		w, err := newEntryWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer w.close()
		_, p, err := c.rpcs()
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := c.rederiveEntry(ctx, tx, p, id); err != nil {
				return err
			}
			released = true
			if err := c.rebuild(ctx, tx, w, id, nil); err != nil {
				return err
			}
		}
		return nil
	})
	return released, err
}

func (c *Client) rederiveEntry(ctx context.Context, tx *sql.Tx, p *Profile, id syncengine.EntryID) error {
	rows, err := entryOutbox(ctx, tx, id)
	if err != nil {
		return err
	}
	le, err := loadLocal(ctx, tx, id)
	if err != nil {
		return err
	}
	for i, q := range rows {
		if !q.hold {
			continue
		}
		k := keyOf(&q.ch)
		later := false
		for _, r := range rows[i+1:] {
			later = later || keyOf(&r.ch) == k
		}
		if le == nil || !c.mergedText() || q.rebuilds >= 2 || later {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET hold = 0 WHERE seq = ?`, q.seq); err != nil {
				return fmt.Errorf("cannot update outbox: %w", err)
			}
			continue
		}
		// The edit, made on the text as the server has it now with this
		// replica's other pending changes.
		state := &syncengine.Entry{ID: id}
		if le.base != nil {
			state = le.base.Clone()
		}
		for _, r := range rows {
			if r.seq != q.seq {
				state.Apply(&r.ch)
			}
		}
		text := syncengine.Rebase(q.base, q.ch.Text, textOf(state, k))
		ch := syncengine.Change{Entry: id, Field: q.ch.Field, Feedback: q.ch.Feedback, Stamp: syncengine.Stamp{Clock: c.stamp(), Replica: p.Replica}, Author: p.StudyCode}
		if err := state.EditText(&ch, func(d *syncengine.TextDoc) (*syncengine.TextChange, error) { return d.SetText(ch.Stamp, text) }); err != nil {
			// The text no longer fits (the server's grew meanwhile): send
			// it whole, and let the server say so.
			c.log.Warn("cannot make a held text an edit; sending it whole", "entry", id.String(), "error", syncengine.ErrorMessage(err))
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET hold = 0 WHERE seq = ?`, q.seq); err != nil {
				return fmt.Errorf("cannot update outbox: %w", err)
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE seq = ?`, q.seq); err != nil {
			return fmt.Errorf("cannot update outbox: %w", err)
		}
		if ch.TextEdit == nil {
			continue // the server's text is already the text
		}
		b, err := proto.Marshal(wire.ChangeToProto(&ch))
		if err != nil {
			return fmt.Errorf("cannot encode change: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (entry, clock, change, text, rebuilds) VALUES (?, ?, ?, 1, ?)`, id[:], int64(ch.Clock), b, q.rebuilds+1); err != nil {
			return fmt.Errorf("cannot queue change: %w", err)
		}
	}
	return saveClock(ctx, tx, c.clock.Last())
}

// spliceString applies a splice to a plain text, positions in code points
// or, with units16, in UTF-16 code units: the whole-text fallback of
// SpliceBody for a server that does not merge text.
func spliceString(s string, pos, del int, ins string, units16 bool) (string, error) {
	if units16 {
		u := utf16.Encode([]rune(s))
		if pos < 0 || del < 0 || pos > len(u)-del {
			return "", syncengine.Errorf(syncengine.EINVALID, "cannot replace %d UTF-16 code units at %d in a text of %d", del, pos, len(u))
		}
		for _, at := range []int{pos, pos + del} {
			if at > 0 && at < len(u) && utf16.IsSurrogate(rune(u[at])) && u[at] >= 0xdc00 {
				return "", syncengine.Errorf(syncengine.EINVALID, "position %d falls inside a character that takes two UTF-16 code units", at)
			}
		}
		return string(utf16.Decode(u[:pos])) + ins + string(utf16.Decode(u[pos+del:])), nil
	}
	r := []rune(s)
	if pos < 0 || del < 0 || pos > len(r)-del {
		return "", syncengine.Errorf(syncengine.EINVALID, "cannot replace %d characters at %d in a text of %d", del, pos, len(r))
	}
	if !utf8.ValidString(ins) {
		return "", syncengine.Errorf(syncengine.EINVALID, "text is not valid UTF-8")
	}
	return string(r[:pos]) + ins + string(r[pos+del:]), nil
}
