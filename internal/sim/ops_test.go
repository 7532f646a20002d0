package sim

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// op is one kind of step. Weights are relative: syncs and edits are
// common, restarts and erasures rare.
type op struct {
	name   string
	weight int
	run    func(ctx context.Context, w *world) error
}

var ops = []op{
	{"create", 10, opCreate},
	{"edit", 12, opEdit},
	{"edit_two_devices", 4, opEditTwoDevices},
	{"edit_body", 10, opEditBody},
	{"tag", 6, opTag},
	{"share", 6, opShare},
	{"delete_restore", 3, opDeleteRestore},
	{"feedback", 5, opFeedback},
	{"edit_feedback", 2, opEditFeedback},
	{"sync", 22, opSync},
	{"sync_all", 2, opSyncAll},
	{"offline", 3, opOffline},
	{"replay", 2, opReplay},
	{"advance_clock", 8, opAdvance},
	{"device_clock_jump", 1, opClockJump},
	{"restart_server", 1, opRestartServer},
	{"restart_device", 1, opRestartDevice},
	{"erase_entry", 1, opEraseEntry},
	{"assign_unassign", 2, opAssign},
	{"new_device", 1, opNewDevice},
	{"approve_device", 2, opApproveDevice},
}

// maxNewDevices bounds the devices a run enrols on top of the cast.
const maxNewDevices = 3

// opNewDevice enrols another device for a navigator, as a person with a
// new phone would (or someone else with a code for them): it waits for
// approval, may write new entries meanwhile, and receives nothing.
func opNewDevice(ctx context.Context, w *world) error {
	if len(w.devices) >= len(castDevices())+maxNewDevices {
		return nil
	}
	u := pick(w, w.usersWith(study.RoleNavigator))
	d, err := w.enrolDevice(ctx, u)
	if err != nil {
		return err
	}
	if !d.pending {
		return fmt.Errorf("a new device of %s, who has devices, does not wait for approval", u.code)
	}
	w.count("new_device")
	return nil
}

// opApproveDevice has one of a navigator's approved devices approve a
// device waiting for approval.
func opApproveDevice(ctx context.Context, w *world) error {
	var waiting []*device
	for _, d := range w.devices {
		if d.pending {
			waiting = append(waiting, d)
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	return w.approve(ctx, pick(w, waiting))
}

var totalWeight = func() int {
	n := 0
	for _, o := range ops {
		n += o.weight
	}
	return n
}()

func (w *world) pickOp() op {
	r := w.rng.IntN(totalWeight)
	for _, o := range ops {
		if r < o.weight {
			return o
		}
		r -= o.weight
	}
	panic("unreachable")
}

// entriesOn lists every entry a device holds, deleted ones too, in id
// order.
func entriesOn(ctx context.Context, d *device) ([]*client.Entry, error) {
	var out []*client.Entry
	token := ""
	for {
		page, err := d.c.List(ctx, client.ListOptions{Deleted: client.WithDeleted, Limit: 1000, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("cannot list entries on %s: %w", d.name, err)
		}
		out = append(out, page.Entries...)
		if page.Next == "" {
			break
		}
		token = page.Next
	}
	slices.SortFunc(out, func(a, b *client.Entry) int { return a.ID.Compare(b.ID) })
	return out, nil
}

func pending(ctx context.Context, d *device) (int, error) {
	st, err := d.c.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("cannot read status of %s: %w", d.name, err)
	}
	return st.Pending, nil
}

// write runs one local write on d and records the changes it queued, as
// do reports them. A local write never needs the network and must not
// fail; the outbox must grow by exactly the changes reported, which
// checks that the simulation's bookkeeping (changeKey) matches what the
// client queues.
func (w *world) write(ctx context.Context, d *device, what string, do func() ([]syncengine.Change, error)) error {
	before, err := pending(ctx, d)
	if err != nil {
		return err
	}
	changes, err := do()
	if err != nil {
		return fmt.Errorf("%s on %s: local write failed: %w", what, d.name, err)
	}
	after, err := pending(ctx, d)
	if err != nil {
		return err
	}
	if after-before != len(changes) {
		return fmt.Errorf("%s on %s queued %d changes; the simulation expected %d: %+v", what, d.name, after-before, len(changes), changes)
	}
	for i := range changes {
		if !isText(changes[i].Field) {
			d.writes = append(d.writes, changeKey(&changes[i]))
		}
	}
	w.count("write." + what)
	w.stats["changes_written"] += len(changes)
	w.tracef("%s %s: %d changes", d.name, what, len(changes))
	return nil
}

// update runs Update on d. A body set to the text the entry has queues
// no change (the body merges text).
func (w *world) update(ctx context.Context, d *device, what string, id syncengine.EntryID, e client.Edit) error {
	before, err := d.c.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", what, d.name, err)
	}
	changes := e.Changes(id)
	if e.Body != nil && *e.Body == before.Body {
		changes = slices.DeleteFunc(changes, func(c syncengine.Change) bool { return c.Field == syncengine.FieldBody })
	}
	err = w.write(ctx, d, what, func() ([]syncengine.Change, error) { return changes, d.c.Update(ctx, id, e) })
	if err != nil || e.Body == nil {
		return err
	}
	return w.noteBody(ctx, d, id, before.Body)
}

// noteBody records what one edit on d did to the words of an entry's
// body, for the no-lost-words check: the words it added, and the words
// it removed, which d saw.
func (w *world) noteBody(ctx context.Context, d *device, id syncengine.EntryID, before string) error {
	after, err := d.c.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("cannot read entry %s on %s: %w", id, d.name, err)
	}
	b, a := words(before), words(after.Body)
	ed := bodyEdit{device: d.idx}
	for t := range a {
		if !b[t] {
			ed.added = append(ed.added, t)
		}
	}
	for t := range b {
		if !a[t] {
			ed.removed = append(ed.removed, t)
		}
	}
	w.bodyEdits[id] = append(w.bodyEdits[id], ed)
	return nil
}

// words returns the words of a text that body edits typed (see token).
func words(s string) map[string]bool {
	out := map[string]bool{}
	for _, t := range wordPattern.FindAllString(s, -1) {
		out[t] = true
	}
	return out
}

// wordPattern matches the words token makes. A number is never a prefix
// of another followed by q, so one word never matches inside another.
var wordPattern = regexp.MustCompile(`w[0-9]+q`)

// token returns a word no edit typed before; some are followed by an
// emoji, which takes two UTF-16 code units, so that positions in code
// points and in UTF-16 differ.
func (w *world) token() string {
	w.counter++
	if w.rng.IntN(3) == 0 {
		return fmt.Sprintf("w%dq🙂", w.counter)
	}
	return fmt.Sprintf("w%dq", w.counter)
}

// opEditBody edits the body of an entry on one device of a navigator, or
// on both before either syncs: a splice typing a word or deleting one (in
// code points or UTF-16 code units), or a whole new text from a text
// field, with a word changed or a paragraph added.
func opEditBody(ctx context.Context, w *world) error {
	u := pick(w, w.usersWith(study.RoleNavigator))
	devices := []*device{pick(w, u.devices)}
	if w.rng.IntN(2) == 0 {
		devices = u.devices
	}
	var ids []syncengine.EntryID
	es, err := entriesOn(ctx, devices[0])
	if err != nil {
		return err
	}
	for _, e := range es {
		ok := true
		for _, d := range devices[1:] {
			if _, err := d.c.Get(ctx, e.ID); err != nil {
				ok = false
			}
		}
		if ok {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	id := pick(w, ids)
	w.now = w.now.Add(time.Millisecond)
	for _, d := range devices {
		e, err := d.c.Get(ctx, id)
		if err != nil {
			return err
		}
		if err := w.editBody(ctx, d, id, e.Body); err != nil {
			return err
		}
	}
	return nil
}

func (w *world) editBody(ctx context.Context, d *device, id syncengine.EntryID, text string) error {
	// Word starts, in code points, and the text's words.
	r := []rune(text)
	var starts []int
	for i := range r {
		if r[i] != ' ' && r[i] != '\n' && (i == 0 || r[i-1] == ' ' || r[i-1] == '\n') {
			starts = append(starts, i)
		}
	}
	one := []syncengine.Change{{Entry: id, Field: syncengine.FieldBody}}
	var err error
	switch kind := w.rng.IntN(5); {
	case kind == 0 || kind == 1 || len(starts) == 0 && kind < 4:
		// Type a word at the start of a word, or at the end.
		pos := len(r)
		if len(starts) > 0 && w.rng.IntN(4) > 0 {
			pos = pick(w, starts)
		}
		ins := w.token() + " "
		if pos == len(r) {
			ins = " " + strings.TrimSpace(ins)
		}
		if kind == 1 {
			pos16 := len(utf16.Encode(r[:pos]))
			err = w.write(ctx, d, "body_splice_utf16", func() ([]syncengine.Change, error) { return one, d.c.SpliceBodyUTF16(ctx, id, pos16, 0, ins) })
		} else {
			err = w.write(ctx, d, "body_splice", func() ([]syncengine.Change, error) { return one, d.c.SpliceBody(ctx, id, pos, 0, ins) })
		}
	case kind == 2:
		// Delete a word and the space after it.
		i := w.rng.IntN(len(starts))
		end := len(r)
		if i+1 < len(starts) {
			end = starts[i+1]
		}
		pos := starts[i]
		err = w.write(ctx, d, "body_delete_word", func() ([]syncengine.Change, error) { return one, d.c.SpliceBody(ctx, id, pos, end-pos, "") })
	case kind == 3:
		// A text field's whole text, with one word changed.
		start := pick(w, starts)
		end := start
		for end < len(r) && r[end] != ' ' && r[end] != '\n' {
			end++
		}
		next := string(r[:start]) + w.token() + string(r[end:])
		return w.update(ctx, d, "body_word", id, client.Edit{Body: &next})
	default:
		// A text field's whole text, with a paragraph added.
		next := text + "\n\n" + w.token() + " " + w.token() + "."
		return w.update(ctx, d, "body_paragraph", id, client.Edit{Body: &next})
	}
	if err != nil {
		return err
	}
	return w.noteBody(ctx, d, id, text)
}

func opCreate(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleNavigator))
	dr := client.Draft{Title: w.text("title"), Body: w.text("body"), Date: w.date(), Mood: w.rng.IntN(11),
		ShareSupervisor: w.rng.IntN(2) == 0, ShareResearch: w.rng.IntN(3) == 0}
	for _, t := range tagPool {
		if w.rng.IntN(4) == 0 {
			dr.Tags = append(dr.Tags, t)
		}
	}
	return w.write(ctx, d, "create", func() ([]syncengine.Change, error) {
		id, err := d.c.Create(ctx, dr)
		return dr.Changes(id), err
	})
}

// someEntry picks an entry d holds, or nil if it holds none.
func (w *world) someEntry(ctx context.Context, d *device) (*client.Entry, error) {
	es, err := entriesOn(ctx, d)
	if err != nil || len(es) == 0 {
		return nil, err
	}
	return pick(w, es), nil
}

// randomEdit edits one to three of the plain fields.
func (w *world) randomEdit() client.Edit {
	var e client.Edit
	for _, f := range w.rng.Perm(4)[:1+w.rng.IntN(3)] {
		switch f {
		case 0:
			e.Title = ptr(w.text("title"))
		case 1:
			e.Body = ptr(w.text("body"))
		case 2:
			e.Date = ptr(w.date())
		case 3:
			e.Mood = ptr(w.rng.IntN(11))
		}
	}
	return e
}

func ptr[T any](v T) *T { return &v }

func opEdit(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleNavigator))
	e, err := w.someEntry(ctx, d)
	if err != nil || e == nil {
		return err
	}
	return w.update(ctx, d, "edit", e.ID, w.randomEdit())
}

// opEditTwoDevices edits one entry on both devices of a navigator before
// either syncs: the same field with the same value (which, at an equal
// clock, only the replica id orders), the same field with different
// values, or different fields.
func opEditTwoDevices(ctx context.Context, w *world) error {
	u := pick(w, w.usersWith(study.RoleNavigator))
	a, b := u.devices[0], u.devices[1]
	ea, err := entriesOn(ctx, a)
	if err != nil {
		return err
	}
	eb, err := entriesOn(ctx, b)
	if err != nil {
		return err
	}
	var both []syncengine.EntryID
	for _, x := range ea {
		if slices.ContainsFunc(eb, func(y *client.Entry) bool { return y.ID == x.ID }) {
			both = append(both, x.ID)
		}
	}
	if len(both) == 0 {
		return nil
	}
	id := pick(w, both)
	// A new millisecond, so that both devices' clocks stamp from the
	// wall clock and, when right, stamp alike.
	w.now = w.now.Add(time.Millisecond)
	var ka, kb client.Edit
	switch mode := w.rng.IntN(3); mode {
	case 0:
		v := pick(w, []client.Edit{
			{Title: ptr("same")}, {Mood: ptr(5)}, {ShareSupervisor: ptr(true)}, {ShareResearch: ptr(false)},
			{AddTags: []string{"court"}}, {RemoveTags: []string{"housing"}}, {Deleted: ptr(false)},
		})
		ka, kb = v, v
	case 1:
		ka, kb = client.Edit{Body: ptr(w.text("body"))}, client.Edit{Body: ptr(w.text("body"))}
	default:
		ka, kb = client.Edit{Title: ptr(w.text("title"))}, client.Edit{Mood: ptr(1 + w.rng.IntN(10)), AddTags: []string{pick(w, tagPool)}}
	}
	if err := w.update(ctx, a, "edit_two_devices", id, ka); err != nil {
		return err
	}
	return w.update(ctx, b, "edit_two_devices", id, kb)
}

func opTag(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleNavigator))
	e, err := w.someEntry(ctx, d)
	if err != nil || e == nil {
		return err
	}
	t := pick(w, tagPool)
	if w.rng.IntN(2) == 0 {
		return w.update(ctx, d, "tag_add", e.ID, client.Edit{AddTags: []string{t}})
	}
	return w.update(ctx, d, "tag_remove", e.ID, client.Edit{RemoveTags: []string{t}})
}

func opShare(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleNavigator))
	e, err := w.someEntry(ctx, d)
	if err != nil || e == nil {
		return err
	}
	switch w.rng.IntN(3) {
	case 0:
		return w.update(ctx, d, "share_supervisor", e.ID, client.Edit{ShareSupervisor: ptr(!e.ShareSupervisor)})
	case 1:
		return w.update(ctx, d, "share_research", e.ID, client.Edit{ShareResearch: ptr(!e.ShareResearch)})
	}
	sup, res := w.rng.IntN(2) == 0, w.rng.IntN(2) == 0
	return w.write(ctx, d, "share_both", func() ([]syncengine.Change, error) {
		return client.Edit{ShareSupervisor: &sup, ShareResearch: &res}.Changes(e.ID), d.c.SetSharing(ctx, e.ID, sup, res)
	})
}

func opDeleteRestore(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleNavigator))
	e, err := w.someEntry(ctx, d)
	if err != nil || e == nil {
		return err
	}
	if e.Deleted {
		return w.update(ctx, d, "restore", e.ID, client.Edit{Deleted: ptr(false)})
	}
	return w.write(ctx, d, "delete", func() ([]syncengine.Change, error) {
		return client.Edit{Deleted: ptr(true)}.Changes(e.ID), d.c.Delete(ctx, e.ID)
	})
}

func opFeedback(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleSupervisor))
	e, err := w.someEntry(ctx, d)
	if err != nil || e == nil {
		return err
	}
	body := w.text("feedback")
	return w.write(ctx, d, "feedback", func() ([]syncengine.Change, error) {
		id, err := d.c.WriteFeedback(ctx, e.ID, body)
		return []syncengine.Change{{Entry: e.ID, Field: syncengine.FieldFeedbackBody, Feedback: id, Text: body}}, err
	})
}

// opEditFeedback edits or deletes a feedback note the supervisor wrote,
// possibly from their other device.
func opEditFeedback(ctx context.Context, w *world) error {
	d := pick(w, w.devicesWith(study.RoleSupervisor))
	es, err := entriesOn(ctx, d)
	if err != nil {
		return err
	}
	type note struct {
		entry syncengine.EntryID
		id    syncengine.FeedbackID
	}
	var mine []note
	for _, e := range es {
		for _, f := range e.Feedback {
			if f.Author == d.user.code {
				mine = append(mine, note{e.ID, f.ID})
			}
		}
	}
	if len(mine) == 0 {
		return nil
	}
	n := pick(w, mine)
	if w.rng.IntN(4) == 0 {
		return w.write(ctx, d, "delete_feedback", func() ([]syncengine.Change, error) {
			return []syncengine.Change{{Entry: n.entry, Field: syncengine.FieldFeedbackDeleted, Feedback: n.id, Flag: true}}, d.c.DeleteFeedback(ctx, n.entry, n.id)
		})
	}
	body := w.text("feedback")
	changes := []syncengine.Change{{Entry: n.entry, Field: syncengine.FieldFeedbackBody, Feedback: n.id, Text: body}}
	if e, err := d.c.Get(ctx, n.entry); err == nil {
		for _, f := range e.Feedback {
			if f.ID == n.id && f.Body == body {
				changes = nil // the note has that text: nothing to merge
			}
		}
	}
	return w.write(ctx, d, "edit_feedback", func() ([]syncengine.Change, error) {
		return changes, d.c.EditFeedback(ctx, n.entry, n.id, body)
	})
}

// sync runs one Sync of d. While faults are on, the sync may be cut at
// one of its first requests. A sync must fail only when the network
// failed it; a sync that met no failure must leave the device holding
// exactly the server's view for its user, with nothing pending.
func (w *world) sync(ctx context.Context, d *device) error {
	d.sent, d.cutAt, d.failed = 0, 0, false
	if w.faults && w.rng.IntN(5) == 0 {
		d.cutAt = 1 + w.rng.IntN(4)
	}
	err := d.c.Sync(ctx)
	if w.err != nil {
		return w.err
	}
	w.count("sync")
	switch {
	case err != nil && d.failed:
		w.count("sync.failed_by_fault")
		w.tracef("%s sync: failed: %v", d.name, err)
		return nil
	case err != nil:
		return fmt.Errorf("sync of %s failed with no fault injected: %w", d.name, err)
	case d.failed:
		// A failed request the client did not report: it treated a
		// transport error as success.
		return fmt.Errorf("sync of %s succeeded although the network failed one of its requests", d.name)
	}
	w.count("sync.ok")
	w.tracef("%s sync: ok (%d requests)", d.name, d.sent)
	return w.checkDevice(ctx, d, nil, false)
}

func opSync(ctx context.Context, w *world) error {
	return w.sync(ctx, pick(w, w.devices))
}

func opSyncAll(ctx context.Context, w *world) error {
	for _, i := range w.rng.Perm(len(w.devices)) {
		if err := w.sync(ctx, w.devices[i]); err != nil {
			return err
		}
	}
	return nil
}

func opOffline(ctx context.Context, w *world) error {
	d := pick(w, w.devices)
	d.offlineUntil = w.step + 1 + w.rng.IntN(60)
	w.count("fault.offline_period")
	w.tracef("%s offline until step %d", d.name, d.offlineUntil)
	return nil
}

// opReplay delivers an old push of some device again, as a network that
// delays or repeats requests would; nobody reads the answer. Pushes with
// refused changes are replayed too: the server keeps refusals that
// depended on time or state, so a late copy of a change the device has
// since stamped again is refused again, not accepted twice.
func opReplay(ctx context.Context, w *world) error {
	var with []*device
	for _, d := range w.devices {
		if len(d.pool) > 0 {
			with = append(with, d)
		}
	}
	if len(with) == 0 {
		return nil
	}
	d := pick(w, with)
	r := pick(w, d.pool)
	rec := w.serve(r.url, r.header, r.body)
	w.count("fault.replayed_request")
	w.tracef("%s: old push replayed (status %d)", d.name, rec.Code)
	return nil
}

// opAdvance moves simulated time on: mostly not at all or a little, now
// and then by hours.
func opAdvance(ctx context.Context, w *world) error {
	var d time.Duration
	switch w.rng.IntN(10) {
	case 0, 1:
	case 2, 3, 4:
		d = time.Duration(1+w.rng.IntN(999)) * time.Millisecond
	case 5, 6, 7:
		d = time.Duration(1+w.rng.IntN(59)) * time.Second
	case 8:
		d = time.Duration(1+w.rng.IntN(30)) * time.Minute
	default:
		d = time.Duration(1+w.rng.IntN(6)) * time.Hour
	}
	w.now = w.now.Add(d)
	w.count("clock_advance")
	return nil
}

// opClockJump changes a device's wall clock: set by hand, or a time zone
// mistaken for UTC. Its learnt offset is stale until the server corrects
// it.
func opClockJump(ctx context.Context, w *world) error {
	d := pick(w, w.devices)
	d.skew = skews[w.rng.IntN(len(skews))]
	w.count("fault.clock_jump")
	w.tracef("%s clock now %v off", d.name, d.skew)
	return nil
}

func opRestartServer(ctx context.Context, w *world) error {
	w.count("fault.server_restart")
	w.tracef("server restart")
	return w.restartServer(ctx)
}

// opRestartDevice closes a replica and opens it again, as when the app
// is killed between two operations: everything written locally must
// still be there.
func opRestartDevice(ctx context.Context, w *world) error {
	d := pick(w, w.devices)
	before, n, err := d.c.StateHash(ctx)
	if err != nil {
		return fmt.Errorf("cannot hash %s: %w", d.name, err)
	}
	pb, err := pending(ctx, d)
	if err != nil {
		return err
	}
	if err := d.c.Close(); err != nil {
		return fmt.Errorf("cannot close %s: %w", d.name, err)
	}
	d.c = nil
	if err := w.openDevice(ctx, d); err != nil {
		return err
	}
	after, m, err := d.c.StateHash(ctx)
	if err != nil {
		return fmt.Errorf("cannot hash %s: %w", d.name, err)
	}
	pa, err := pending(ctx, d)
	if err != nil {
		return err
	}
	if before != after || n != m || pa != pb {
		return fmt.Errorf("%s changed across a restart: %d entries (%x) and %d pending before, %d entries (%x) and %d pending after", d.name, n, before[:6], pb, m, after[:6], pa)
	}
	if p, ok := d.c.Profile(); !ok || p.Replica != d.replica {
		return fmt.Errorf("%s lost its enrolment across a restart", d.name)
	}
	w.count("fault.device_restart")
	w.tracef("%s restarted", d.name)
	return nil
}

func opEraseEntry(ctx context.Context, w *world) error {
	var ids [][]byte
	rows, err := w.ro.QueryContext(ctx, `SELECT id FROM entries WHERE erased_at IS NULL ORDER BY rid`)
	if err != nil {
		return fmt.Errorf("cannot list entries: %w", err)
	}
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	id := syncengine.EntryID(pick(w, ids))
	if _, _, err := w.db.EraseEntry(ctx, id); err != nil {
		return fmt.Errorf("cannot erase %s: %w", id, err)
	}
	w.count("admin.erase_entry")
	w.tracef("erase entry %s", id)
	return nil
}

func (w *world) withdrawNavigator(ctx context.Context) error {
	var live []*user
	for _, u := range w.usersWith(study.RoleNavigator) {
		if !u.withdrawn {
			live = append(live, u)
		}
	}
	u := pick(w, live)
	n, _, err := w.db.EraseNavigator(ctx, u.code)
	if err != nil {
		return fmt.Errorf("cannot erase navigator %s: %w", u.code, err)
	}
	u.withdrawn = true
	w.count("admin.erase_navigator")
	w.tracef("navigator %s withdraws: %d entries erased", u.code, n)
	return nil
}

func opAssign(ctx context.Context, w *world) error {
	sup := pick(w, w.usersWith(study.RoleSupervisor))
	nav := pick(w, w.usersWith(study.RoleNavigator))
	var n int
	if err := w.ro.QueryRowContext(ctx, `SELECT count(*) FROM assignments WHERE supervisor_id = ? AND navigator_id = ?`, sup.id, nav.id).Scan(&n); err != nil {
		return fmt.Errorf("cannot read assignments: %w", err)
	}
	if n > 0 {
		if _, _, err := w.db.Unassign(ctx, sup.code, nav.code); err != nil {
			return fmt.Errorf("cannot unassign %s from %s: %w", nav.code, sup.code, err)
		}
		w.count("admin.unassign")
		w.tracef("unassign %s from %s", nav.code, sup.code)
		return nil
	}
	if _, _, err := w.db.Assign(ctx, sup.code, nav.code); err != nil {
		return fmt.Errorf("cannot assign %s to %s: %w", nav.code, sup.code, err)
	}
	w.count("admin.assign")
	w.tracef("assign %s to %s", nav.code, sup.code)
	return nil
}
