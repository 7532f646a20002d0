package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The API as devices from before merged text speak it is kept as a test
// fixture: testdata/api-before-merged-text.binpb holds the descriptors of
// proto/diary/v1 of that version, built with
//
//	buf build --exclude-source-info -o server/testdata/api-before-merged-text.binpb
//
// An oldDevice builds its requests and reads the answers with those
// descriptors only, over the Connect protocol, as the client of that
// version does: whole-body writes, no new fields.

func loadOldAPI(t *testing.T) *protoregistry.Files {
	t.Helper()
	b, err := os.ReadFile("testdata/api-before-merged-text.binpb")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type oldDevice struct {
	t       *testing.T
	api     *protoregistry.Files
	url     string
	hc      *http.Client
	token   string
	replica syncengine.ReplicaID
	code    string
	clock   *syncengine.Clock
	cursor  uint64
	held    map[syncengine.EntryID]*syncengine.Entry
}

// newOldDevice returns an old device whose wall clock is now plus skew.
func newOldDevice(t *testing.T, ts *testServer, dev TestDevice, now func() time.Time, skew time.Duration) *oldDevice {
	return &oldDevice{t: t, api: loadOldAPI(t), url: ts.URL, hc: ts.http.Client(), token: dev.Token, replica: dev.Replica, code: dev.StudyCode,
		clock: syncengine.NewClock(func() time.Time { return now().Add(skew) }), held: map[syncengine.EntryID]*syncengine.Entry{}}
}

func (d *oldDevice) message(name string) *dynamicpb.Message {
	d.t.Helper()
	desc, err := d.api.FindDescriptorByName(protoreflect.FullName("diary.v1." + name))
	if err != nil {
		d.t.Fatal(err)
	}
	return dynamicpb.NewMessage(desc.(protoreflect.MessageDescriptor))
}

func set(m *dynamicpb.Message, field string, v any) {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(field))
	if fd.Kind() == protoreflect.EnumKind {
		m.Set(fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(v.(int32))))
		return
	}
	m.Set(fd, protoreflect.ValueOf(v))
}

func get(m protoreflect.Message, field string) protoreflect.Value {
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(field)))
}

// call makes one unary Connect call with the old messages.
func (d *oldDevice) call(method string, req *dynamicpb.Message, resp string) *dynamicpb.Message {
	d.t.Helper()
	body, err := proto.Marshal(req)
	if err != nil {
		d.t.Fatal(err)
	}
	r, err := http.NewRequest(http.MethodPost, d.url+"/diary.v1.SyncService/"+method, bytes.NewReader(body))
	if err != nil {
		d.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/proto")
	r.Header.Set("Connect-Protocol-Version", "1")
	r.Header.Set("Authorization", "Bearer "+d.token)
	res, err := d.hc.Do(r)
	if err != nil {
		d.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		d.t.Fatalf("%s: %s: %s", method, res.Status, b)
	}
	out := d.message(resp)
	if err := proto.Unmarshal(b, out); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// write makes a whole-value write as the old client does: merged into
// what it holds at once, and pushed.
func (d *oldDevice) write(id syncengine.EntryID, f syncengine.Field, fb syncengine.FeedbackID, text string, flag bool) *dynamicpb.Message {
	c := syncengine.Change{Entry: id, Field: f, Feedback: fb, Text: text, Flag: flag, Stamp: syncengine.Stamp{Clock: d.clock.Now(), Replica: d.replica}, Author: d.code}
	e := d.held[id]
	if e == nil {
		e = &syncengine.Entry{ID: id}
		d.held[id] = e
	}
	e.Apply(&c)
	m := d.message("Change")
	set(m, "entry_id", id.String())
	set(m, "field", int32(f))
	if !fb.IsZero() {
		set(m, "feedback_id", fb.String())
	}
	if f.Kind() == syncengine.KindText {
		set(m, "text", text)
	} else {
		set(m, "flag", flag)
	}
	set(m, "clock", uint64(c.Clock))
	set(m, "replica_id", d.replica.String())
	return m
}

// push pushes changes and fails unless every one was applied.
func (d *oldDevice) push(changes ...*dynamicpb.Message) {
	d.t.Helper()
	req := d.message("PushRequest")
	list := req.Mutable(req.Descriptor().Fields().ByName("changes")).List()
	for _, c := range changes {
		list.Append(protoreflect.ValueOfMessage(c))
	}
	resp := d.call("Push", req, "PushResponse")
	results := get(resp, "results").List()
	for i := range results.Len() {
		r := results.Get(i).Message()
		if o := get(r, "outcome").Enum(); o != protoreflect.EnumNumber(diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED) {
			d.t.Fatalf("change %d: outcome %d: %s", i, o, get(r, "message").String())
		}
	}
	if len(resp.GetUnknown()) != 0 {
		// An old device keeps unknown fields (capabilities) aside and
		// never reads them; that is all they may be.
		var p diaryv1.PushResponse
		b, _ := proto.Marshal(resp)
		if err := proto.Unmarshal(b, &p); err != nil || len(p.GetCapabilities()) == 0 {
			d.t.Fatalf("the push answer carries fields an old device cannot read: %v", err)
		}
	}
}

// pull pulls as the old client does and replaces what it holds.
func (d *oldDevice) pull() {
	d.t.Helper()
	for {
		req := d.message("PullRequest")
		set(req, "cursor", d.cursor)
		resp := d.call("Pull", req, "PullResponse")
		entries := get(resp, "entries").List()
		for i := range entries.Len() {
			pe := entries.Get(i).Message()
			if hasUnknown(pe) {
				d.t.Fatal("the server sent an old device parts of an entry it cannot read")
			}
			b, err := proto.Marshal(pe.Interface())
			if err != nil {
				d.t.Fatal(err)
			}
			var cur diaryv1.Entry
			if err := proto.Unmarshal(b, &cur); err != nil {
				d.t.Fatal(err)
			}
			e, err := wire.EntryFromProto(&cur)
			if err != nil {
				d.t.Fatal(err)
			}
			d.held[e.ID] = e
			// The old client's clock observes what it pulls, so that
			// its next write is stamped after everything it saw.
			d.clock.Observe(max(e.Updated(), e.Created))
			for _, f := range e.Feedback {
				d.clock.Observe(max(f.Body.Clock, f.Deleted.Clock))
			}
		}
		d.cursor = get(resp, "next_cursor").Uint()
		if !get(resp, "more").Bool() {
			return
		}
	}
}

// hasUnknown reports whether m or any message in it holds unknown fields.
func hasUnknown(m protoreflect.Message) bool {
	if len(m.GetUnknown()) > 0 {
		return true
	}
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for i := range v.List().Len() {
				found = found || hasUnknown(v.List().Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			found = found || hasUnknown(v.Message())
		}
		return !found
	})
	return found
}

// checkHash compares the server's state hash, asked for as the old
// client asks, with the hash of what the device holds.
func (d *oldDevice) checkHash() {
	d.t.Helper()
	resp := d.call("GetStateHash", d.message("GetStateHashRequest"), "GetStateHashResponse")
	var es []*syncengine.Entry
	for _, e := range d.held {
		es = append(es, e)
	}
	want := syncengine.StateHash(es)
	if !bytes.Equal(get(resp, "state_hash").Bytes(), want[:]) {
		d.t.Fatal("the server's state hash for an old device differs from what it holds")
	}
}

// TestOldDevices: devices that predate merged text keep syncing. Their
// whole-body writes merge as the edit from the text they may have seen to
// the text they sent, they read the merged text as the body, and they
// converge with devices that merge text.
func TestOldDevices(t *testing.T) {
	clock := newTestClock()
	ts := newTestServer(t, Config{Store: MustOpenDBWith(t, storetest.Options{Now: clock.Now})})
	ctx := context.Background()
	// The old device's clock is three minutes slow, which the server
	// allows: until it pulls, its writes are stamped before the phone's
	// edits.
	old := newOldDevice(t, ts, MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"), clock.Now, -3*time.Minute)
	phone := newTextDevice(ts, MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	phone.clock = syncengine.NewClock(clock.Now)
	supDev := MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
	MustAssign(t, ts.DB, "SUP-1", "PN-A")
	oldSup := newOldDevice(t, ts, supDev, clock.Now, 0)
	sup := newTextDevice(ts, MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1"))
	sup.clock = syncengine.NewClock(clock.Now)

	id := syncengine.NewEntryID()
	old.push(
		old.write(id, syncengine.FieldTitle, syncengine.FeedbackID{}, "Tuesday", false),
		old.write(id, syncengine.FieldBody, syncengine.FeedbackID{}, "Met J. at the hostel. Talked about court.", false),
		old.write(id, syncengine.FieldShareSupervisor, syncengine.FeedbackID{}, "", true))
	phone.pull(t)
	old.pull()
	if e := phone.entry(id); e.BodyText == nil || e.Body.Value != "Met J. at the hostel. Talked about court." {
		t.Fatalf("the phone pulled %+v", e.Body)
	}

	// Offline on both: the phone adds a sentence; the old device, whose
	// write is stamped earlier, changes a word it saw.
	clock.Advance(time.Minute)
	added := phone.setText(t, id, syncengine.FeedbackID{}, "Met J. at the hostel. Talked about court. She has a room for Friday.")
	changed := old.write(id, syncengine.FieldBody, syncengine.FeedbackID{}, "Met J. at the day centre. Talked about court.", false)
	mustPush(t, phone.c, added)
	old.push(changed)
	phone.pull(t)
	old.pull()
	want := "Met J. at the day centre. Talked about court. She has a room for Friday."
	if got := phone.entry(id).Body.Value; got != want {
		t.Fatalf("the phone holds %q, want %q", got, want)
	}
	if got := old.held[id].Body.Value; got != want {
		t.Fatalf("the old device holds %q, want %q", got, want)
	}
	old.checkHash()
	if phone.entries[id].Flat().Hash() != old.held[id].Hash() {
		t.Fatal("the old device and the phone hold different entries")
	}

	// What an old device can still remove: what it saw (having pulled
	// the phone's sentence, its clock is past it). What the phone types
	// after that clock it cannot have seen, and it stays.
	removed := old.write(id, syncengine.FieldBody, syncengine.FeedbackID{}, "Met J. at the day centre.", false)
	clock.Advance(2 * time.Minute)
	later := phone.setText(t, id, syncengine.FeedbackID{}, want+" Bring the form.")
	old.push(removed)
	mustPush(t, phone.c, later)
	phone.pull(t)
	old.pull()
	if got := phone.entry(id).Body.Value; got != "Met J. at the day centre. Bring the form." {
		t.Fatalf("after the old device removed what it saw: %q", got)
	}
	old.checkHash()

	// And text typed elsewhere before its write's clock that it never
	// received: a device whose clock runs ahead of the one that typed
	// writes as if it had seen everything typed before its clock.
	fast := newOldDevice(t, ts, MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"), clock.Now, 50*time.Second)
	fast.pull()
	clock.Advance(time.Second)
	unseen := phone.setText(t, id, syncengine.FeedbackID{}, "Met J. at the day centre. Bring the form. Unseen.")
	mustPush(t, phone.c, unseen)
	fast.push(fast.write(id, syncengine.FieldBody, syncengine.FeedbackID{}, "Met J. at the day centre. Bring the form!", false))
	phone.pull(t)
	if got := phone.entry(id).Body.Value; got != "Met J. at the day centre. Bring the form!" {
		t.Fatalf("after a write from a device ahead of the one that typed: %q", got)
	}
	// The words are not lost to the study: the history keeps the edit.
	// SQLite keeps an edit's encoding in the untyped value column,
	// PostgreSQL in text_change.
	edits := `SELECT count(*) FROM history WHERE field = 2 AND typeof(value) = 'blob' AND instr(value, 'Unseen') > 0`
	if onPostgres(ts.DB) {
		edits = `SELECT count(*) FROM history WHERE field = 2 AND position('Unseen'::bytea IN text_change) > 0`
	}
	var n int
	if err := rawDB(ts.DB).QueryRow(edits).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the history holds %d edits with the unseen words (%v)", n, err)
	}

	// Feedback from an old supervisor's device is merged text for the
	// new one, and plain text for the old one.
	fb := syncengine.NewFeedbackID()
	oldSup.pull()
	oldSup.push(oldSup.write(id, syncengine.FieldFeedbackBody, fb, "Good work.", false))
	sup.pull(t)
	clock.Advance(2 * time.Minute)
	oldEdit := oldSup.write(id, syncengine.FieldFeedbackBody, fb, "Good work. Call me.", false)
	clock.Advance(2 * time.Minute)
	edit := sup.setText(t, id, fb, "Good work, thank you.")
	oldSup.push(oldEdit)
	mustPush(t, sup.c, edit)
	sup.pull(t)
	oldSup.pull()
	f, of := sup.entry(id).FindFeedback(fb), oldSup.held[id].FindFeedback(fb)
	if f == nil || of == nil || f.Body.Value != of.Body.Value || f.Body.Value != "Good work, thank you. Call me." {
		t.Fatalf("the supervisor's devices hold %+v and %+v", f, of)
	}
	oldSup.checkHash()
	resp, err := sup.c.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{MergedText: true})
	if err != nil {
		t.Fatal(err)
	}
	if h := sup.hash(); !bytes.Equal(resp.GetStateHash(), h[:]) {
		t.Fatal("the new supervisor device's hash differs from the server's")
	}
}
