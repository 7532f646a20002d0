package server

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// textDevice is a device that merges text, as the client does: it holds
// the entries it pulled, edits their bodies as text changes and pulls
// with merged text.
type textDevice struct {
	TestDevice
	c       *clients
	clock   *syncengine.Clock
	entries map[syncengine.EntryID]*syncengine.Entry
	cursor  uint64
}

func newTextDevice(ts *testServer, dev TestDevice) *textDevice {
	return &textDevice{TestDevice: dev, c: ts.clients(bearer(dev.Token)), clock: syncengine.NewClock(nil), entries: map[syncengine.EntryID]*syncengine.Entry{}}
}

func (d *textDevice) entry(id syncengine.EntryID) *syncengine.Entry {
	e := d.entries[id]
	if e == nil {
		e = &syncengine.Entry{ID: id}
		d.entries[id] = e
	}
	return e
}

// setText edits the body (or, with fb, the feedback note) of entry id to
// text, locally, and returns the change to push.
func (d *textDevice) setText(t *testing.T, id syncengine.EntryID, fb syncengine.FeedbackID, text string) *diaryv1.Change {
	t.Helper()
	c := syncengine.Change{Entry: id, Field: syncengine.FieldBody, Stamp: syncengine.Stamp{Clock: d.clock.Now(), Replica: d.Replica}, Author: d.StudyCode}
	if !fb.IsZero() {
		c.Field, c.Feedback = syncengine.FieldFeedbackBody, fb
	}
	if err := d.entry(id).EditText(&c, func(doc *syncengine.TextDoc) (*syncengine.TextChange, error) { return doc.SetText(c.Stamp, text) }); err != nil {
		t.Fatal(err)
	}
	if c.TextEdit == nil {
		t.Fatalf("setting the text to %q made no edit", text)
	}
	return wire.ChangeToProto(&c)
}

// write makes a whole-value write of an entry field, locally, and returns
// it.
func (d *textDevice) write(id syncengine.EntryID, c syncengine.Change) *diaryv1.Change {
	c.Entry, c.Replica, c.Clock, c.Author = id, d.Replica, d.clock.Now(), d.StudyCode
	d.entry(id).Apply(&c)
	return wire.ChangeToProto(&c)
}

// pull pulls everything after the device's cursor, with merged text, and
// replaces what it holds with what it got.
func (d *textDevice) pull(t *testing.T) *diaryv1.PullResponse {
	t.Helper()
	var last *diaryv1.PullResponse
	for {
		resp, err := d.c.sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: d.cursor, MergedText: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetEntries() {
			e, err := wire.EntryFromProto(p)
			if err != nil {
				t.Fatal(err)
			}
			d.entries[e.ID] = e
		}
		for _, r := range resp.GetRemovals() {
			id, _ := syncengine.ParseEntryID(r.GetEntryId())
			delete(d.entries, id)
		}
		d.cursor, last = resp.GetNextCursor(), resp
		if !resp.GetMore() {
			return last
		}
	}
}

// hash returns the state hash of what the device holds.
func (d *textDevice) hash() [32]byte {
	var es []*syncengine.Entry
	for _, e := range d.entries {
		es = append(es, e)
	}
	return syncengine.StateHash(es)
}

func wantRefusal(t *testing.T, resp *diaryv1.PushResponse, i int, reason diaryv1.RefusalReason) {
	t.Helper()
	r := resp.GetResults()[i]
	if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_REFUSED || r.GetReason() != reason || r.GetMessage() == "" {
		t.Fatalf("change %d: %v, want refused with %v and a message", i, r, reason)
	}
}

func hasMergedText(caps []diaryv1.Capability) bool {
	return slices.Contains(caps, diaryv1.Capability_CAPABILITY_MERGED_TEXT)
}

// TestMergedText: two devices of one navigator edit a body offline, one
// appending a paragraph, the other changing a word of the first line;
// both edits survive on both devices, for the supervisor and in the
// research export, and only the owner's devices get the operations.
func TestMergedText(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	phone := newTextDevice(s.ts, s.navADev)
	tablet := newTextDevice(s.ts, MustEnrollDevice(t, s.ts.DB, study.RoleNavigator, "PN-A"))

	id := syncengine.NewEntryID()
	first := "Went to the hostel with J.\n"
	mustPush(t, phone.c,
		phone.write(id, syncengine.Change{Field: syncengine.FieldTitle, Text: "Tuesday"}),
		phone.write(id, syncengine.Change{Field: syncengine.FieldDate, Text: "2026-01-13"}),
		phone.setText(t, id, syncengine.FeedbackID{}, first),
		phone.write(id, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}),
		phone.write(id, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: true}))
	tablet.pull(t)
	if got := tablet.entry(id).Body.Value; got != first {
		t.Fatalf("the tablet pulled %q", got)
	}

	// Offline on both.
	appended := phone.setText(t, id, syncengine.FeedbackID{}, first+"\nShe found a room for Friday.\n")
	reworded := tablet.setText(t, id, syncengine.FeedbackID{}, "Went to the day centre with J.\n")
	mustPush(t, tablet.c, reworded)
	mustPush(t, phone.c, appended)
	phone.pull(t)
	tablet.pull(t)

	want := "Went to the day centre with J.\n\nShe found a room for Friday.\n"
	for _, d := range []*textDevice{phone, tablet} {
		e := d.entry(id)
		if e.Body.Value != want || e.BodyText == nil || !e.BodyText.Concurrent() {
			t.Fatalf("a device holds %q (merged text %v)", e.Body.Value, e.BodyText != nil)
		}
	}
	if phone.hash() != tablet.hash() {
		t.Fatal("the two devices differ")
	}
	for _, merged := range []bool{true, false} {
		resp, err := phone.c.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{MergedText: merged})
		if err != nil {
			t.Fatal(err)
		}
		wantHash := phone.hash()
		if !merged {
			// A device that predates merged text holds the text only.
			wantHash = syncengine.StateHash([]*syncengine.Entry{phone.entry(id).Flat()})
		}
		if !bytes.Equal(resp.GetStateHash(), wantHash[:]) {
			t.Fatalf("the server's state hash (merged text %v) differs from the device's", merged)
		}
	}

	// The supervisor sees the merged text, never the operations.
	sup, err := s.sup.sync.Pull(ctx, &diaryv1.PullRequest{MergedText: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(sup.GetEntries()) != 1 || sup.GetEntries()[0].GetBody().GetValue() != want || sup.GetEntries()[0].GetBodyText() != nil {
		t.Fatalf("the supervisor pulled %v", sup.GetEntries())
	}
	// So does research, pulling or exporting.
	res, err := s.res.sync.Pull(ctx, &diaryv1.PullRequest{MergedText: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetEntries()) != 1 || res.GetEntries()[0].GetBody().GetValue() != want || res.GetEntries()[0].GetBodyText() != nil {
		t.Fatalf("research pulled %v", res.GetEntries())
	}
	_, file := exportFile(t, s.res, 1, diaryv1.ExportFormat_EXPORT_FORMAT_JSONL)
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(file), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["body"] != strings.TrimRight(want, "\n") && rec["body"] != want {
		t.Fatalf("the export holds body %q, want %q", rec["body"], want)
	}
	for _, secret := range []string{phone.Replica.String(), tablet.Replica.String(), "hostel"} {
		if bytes.Contains(file, []byte(secret)) {
			t.Fatalf("the export holds %q: a device id or a deleted word", secret)
		}
	}

	// The history keeps each edit as its encoded change, not per
	// character and not the whole body.
	// SQLite keeps an edit's encoding in the untyped value column,
	// PostgreSQL in text_change.
	query := `SELECT sum(typeof(value) = 'blob'), sum(typeof(value) <> 'blob'), max(length(value)) FROM history WHERE field = 2`
	if onPostgres(s.ts.DB) {
		query = `SELECT count(text_change), count(*) - count(text_change), max(length(text_change)) FROM history WHERE field = 2`
	}
	var edits, whole, size int
	if err := rawDB(s.ts.DB).QueryRow(query).Scan(&edits, &whole, &size); err != nil {
		t.Fatal(err)
	}
	if edits == 0 || whole != 0 || size > len(first)+128 {
		t.Fatalf("history holds %d body edits of up to %d bytes and %d whole bodies, want only edits", edits, size, whole)
	}
}

func TestMergedTextCapability(t *testing.T) {
	ts := newTestServer(t, Config{})
	ctx := context.Background()
	if _, err := ts.DB.CreateUser(ctx, "PN-A", study.RoleNavigator, ""); err != nil {
		t.Fatal(err)
	}
	code, _, err := ts.DB.IssueEnrollmentCode(ctx, "PN-A", 0)
	if err != nil {
		t.Fatal(err)
	}
	enr, err := ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: code, DeviceName: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.clients(bearer(enr.GetToken()))
	push, err := c.sync.Push(ctx, &diaryv1.PushRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pull, err := c.sync.Pull(ctx, &diaryv1.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !hasMergedText(enr.GetCapabilities()) || !hasMergedText(push.GetCapabilities()) || !hasMergedText(pull.GetCapabilities()) {
		t.Fatalf("capabilities: enrol %v, push %v, pull %v", enr.GetCapabilities(), push.GetCapabilities(), pull.GetCapabilities())
	}
}

// TestMergedTextRefusesOutOfOrderEdits: an edit whose earlier edit the
// server does not hold is refused, and stays refused when it comes again.
func TestMergedTextRefusesOutOfOrderEdits(t *testing.T) {
	ts := newTestServer(t, Config{})
	phone := newTextDevice(ts, MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	id := syncengine.NewEntryID()
	first := phone.setText(t, id, syncengine.FeedbackID{}, "one")
	second := phone.setText(t, id, syncengine.FeedbackID{}, "one two")
	resp, err := phone.c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: []*diaryv1.Change{second}})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp, 0, diaryv1.RefusalReason_REFUSAL_REASON_TEXT_HISTORY)
	mustPush(t, phone.c, first)
	resp, err = phone.c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: []*diaryv1.Change{second}})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp, 0, diaryv1.RefusalReason_REFUSAL_REASON_TEXT_HISTORY)
	phone.entries = map[syncengine.EntryID]*syncengine.Entry{}
	phone.pull(t)
	if got := phone.entry(id).Body.Value; got != "one" {
		t.Fatalf("the server holds %q", got)
	}
	// A text change to a field that is not a body does not even decode.
	bad := phone.setText(t, id, syncengine.FeedbackID{}, "one two three")
	bad.Field = diaryv1.Field_FIELD_TITLE
	resp, err = phone.c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: []*diaryv1.Change{bad}})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp, 0, diaryv1.RefusalReason_REFUSAL_REASON_INVALID)
}

// TestMergedTextFeedback: a supervisor's two devices edit one note
// offline and both edits survive; only that supervisor's devices get the
// note's operations.
func TestMergedTextFeedback(t *testing.T) {
	s := newStudy(t)
	ctx := context.Background()
	MustEnrollDevice(t, s.ts.DB, study.RoleSupervisor, "SUP-2")
	MustAssign(t, s.ts.DB, "SUP-2", "PN-A")
	other := newTextDevice(s.ts, MustEnrollDevice(t, s.ts.DB, study.RoleSupervisor, "SUP-2"))
	id := s.entry(t, s.navA, s.navAc, "shared", "2026-01-05", "body", false)
	mustPush(t, s.navAc, s.navA.change(id, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))

	one := newTextDevice(s.ts, MustEnrollDevice(t, s.ts.DB, study.RoleSupervisor, "SUP-1"))
	two := newTextDevice(s.ts, MustEnrollDevice(t, s.ts.DB, study.RoleSupervisor, "SUP-1"))
	one.pull(t)
	fb := syncengine.NewFeedbackID()
	mustPush(t, one.c, one.setText(t, id, fb, "Thanks for writing this."))
	two.pull(t)
	a := one.setText(t, id, fb, "Thanks for writing this. Let's talk on Friday.")
	b := two.setText(t, id, fb, "Thank you for writing this.")
	mustPush(t, two.c, b)
	mustPush(t, one.c, a)
	one.pull(t)
	two.pull(t)
	want := "Thank you for writing this. Let's talk on Friday."
	for _, d := range []*textDevice{one, two} {
		f := d.entry(id).FindFeedback(fb)
		if f == nil || f.Body.Value != want || f.BodyText == nil {
			t.Fatalf("a device of the note's author holds %+v", f)
		}
	}
	if one.hash() != two.hash() {
		t.Fatal("the supervisor's devices differ")
	}
	resp, err := one.c.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{MergedText: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := one.hash(); !bytes.Equal(resp.GetStateHash(), h[:]) {
		t.Fatal("the server's state hash differs from the supervisor's device")
	}
	// Another supervisor and the navigator read the note's text only.
	other.pull(t)
	nav := newTextDevice(s.ts, s.navADev)
	nav.pull(t)
	for name, d := range map[string]*textDevice{"another supervisor": other, "the navigator": nav} {
		f := d.entry(id).FindFeedback(fb)
		if f == nil || f.Body.Value != want || f.BodyText != nil || !f.Body.Replica.IsZero() {
			t.Fatalf("%s holds the note as %+v", name, f)
		}
	}
}

// TestMergedTextLimits: a text edit that the body's merged text cannot
// take is refused as too large, with a message, and the entry stays.
func TestMergedTextLimits(t *testing.T) {
	ts := newTestServer(t, Config{})
	phone := newTextDevice(ts, MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	tablet := newTextDevice(ts, MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	id := syncengine.NewEntryID()
	mustPush(t, phone.c, phone.setText(t, id, syncengine.FeedbackID{}, "start"))
	tablet.pull(t)
	half := strings.Repeat("words ", syncengine.MaxBodyBytes/12+10)
	mustPush(t, phone.c, phone.setText(t, id, syncengine.FeedbackID{}, "start"+half))
	resp, err := tablet.c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: []*diaryv1.Change{tablet.setText(t, id, syncengine.FeedbackID{}, half+"start")}})
	if err != nil {
		t.Fatal(err)
	}
	wantRefusal(t, resp, 0, diaryv1.RefusalReason_REFUSAL_REASON_TOO_LARGE)
	if msg := resp.GetResults()[0].GetMessage(); !strings.Contains(msg, "limit") {
		t.Fatalf("the refusal says %q", msg)
	}
	// The push API's own limits hold for text changes too.
	huge := &diaryv1.Change{EntryId: id.String(), Field: diaryv1.Field_FIELD_BODY, Clock: uint64(phone.clock.Now()), ReplicaId: phone.Replica.String(),
		Value: &diaryv1.Change_TextChange{TextChange: bytes.Repeat([]byte{1}, 5<<20)}}
	_, err = phone.c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: []*diaryv1.Change{huge}})
	wantCode(t, err, connect.CodeResourceExhausted)
}
