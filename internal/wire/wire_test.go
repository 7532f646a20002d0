package wire

import (
	"strings"
	"testing"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// checkRefusal fails unless err is what the server can report as a
// refusal: a validation error with a code and a sentence, never a raw Go
// error.
func checkRefusal(t *testing.T, what string, err error) {
	t.Helper()
	switch code := syncengine.ErrorCode(err); code {
	case syncengine.EINVALID, syncengine.ETOOLARGE:
	default:
		t.Fatalf("%s: error %q has code %q, want invalid or too large", what, err, code)
	}
	if msg := syncengine.ErrorMessage(err); strings.TrimSpace(msg) == "" || msg == "internal error" {
		t.Fatalf("%s: error %v has no message a person can read", what, err)
	}
}

// FuzzChangeFromProto feeds arbitrary bytes, as a pushed change, through
// what the server does with one: decode the protobuf, convert it, and
// validate it. Nothing may panic; every refusal must carry a reason; and
// a change that passes must survive the trip back to the wire and again
// unchanged, so that what the server stores is what the device sent.
func FuzzChangeFromProto(f *testing.F) {
	// Seeds beyond these live in testdata/fuzz/FuzzChangeFromProto.
	valid := &syncengine.Change{Field: syncengine.FieldTitle, Text: "Tuesday"}
	valid.Entry, _ = syncengine.ParseEntryID("01936f2e-8b1a-7c3d-9e4f-a1b2c3d4e5f6")
	valid.Replica, _ = syncengine.ParseReplicaID("0b8f5c2e-1111-4a3b-8c9d-0e1f2a3b4c5d")
	valid.Clock = syncengine.NewTimestamp(1795788185123, 0)
	b, err := proto.Marshal(ChangeToProto(valid))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, c := range textSeeds(f) {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var p diaryv1.Change
		if err := proto.Unmarshal(b, &p); err != nil {
			return // the RPC layer refuses the whole request
		}
		c, err := ChangeFromProto(&p)
		if err != nil {
			checkRefusal(t, "ChangeFromProto", err)
			return
		}
		if err := syncengine.ValidateChange(&c); err != nil {
			checkRefusal(t, "ValidateChange", err)
			return
		}
		again := ChangeToProto(&c)
		c2, err := ChangeFromProto(again)
		if err != nil {
			t.Fatalf("a valid change does not convert back from its wire form %v: %v", again, err)
		}
		if !sameChange(&c2, &c) {
			t.Fatalf("a valid change changed on the round trip:\n got %+v\nwant %+v", c2, c)
		}
		if err := syncengine.ValidateChange(&c2); err != nil {
			t.Fatalf("a valid change is invalid after the round trip: %v", err)
		}
		// The wire form itself is stable: bytes from it decode to it.
		wb, err := proto.MarshalOptions{Deterministic: true}.Marshal(again)
		if err != nil {
			t.Fatalf("the wire form of a valid change does not marshal: %v", err)
		}
		var p3 diaryv1.Change
		if err := proto.Unmarshal(wb, &p3); err != nil || !proto.Equal(&p3, again) {
			t.Fatalf("the wire form of a valid change does not read back: %v", err)
		}
	})
}

// FuzzEntryFromProto feeds arbitrary bytes, as a pulled entry, through
// what a device does with one. Nothing may panic; an entry that converts
// is in canonical form (its encoding decodes to the same entry) and
// survives the trip back to the wire and again unchanged, so that every
// replica hashes it alike.
func FuzzEntryFromProto(f *testing.F) {
	f.Add([]byte{})
	b, err := proto.Marshal(EntryToProto(textEntry(f)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p diaryv1.Entry
		if err := proto.Unmarshal(b, &p); err != nil {
			return
		}
		e, err := EntryFromProto(&p)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an entry was refused without a reason")
			}
			return
		}
		enc := syncengine.EncodeEntry(e)
		d, err := syncengine.DecodeEntry(enc)
		if err != nil {
			t.Fatalf("a converted entry does not decode from its canonical encoding: %v", err)
		}
		if d.Hash() != e.Hash() {
			t.Fatal("a converted entry's canonical encoding decodes to another entry")
		}
		e2, err := EntryFromProto(EntryToProto(e))
		if err != nil {
			t.Fatalf("a converted entry does not convert back from its wire form: %v", err)
		}
		if e2.Hash() != e.Hash() {
			t.Fatalf("an entry changed on the round trip:\n got %+v\nwant %+v", e2, e)
		}
	})
}

// sameChange reports whether two changes are the same, text edits
// compared by their encodings.
func sameChange(a, b *syncengine.Change) bool {
	x, y := *a, *b
	x.TextEdit, y.TextEdit = nil, nil
	if x != y || (a.TextEdit == nil) != (b.TextEdit == nil) {
		return false
	}
	return a.TextEdit == nil || string(syncengine.EncodeTextChange(a.TextEdit)) == string(syncengine.EncodeTextChange(b.TextEdit))
}

var (
	textEntryID, _  = syncengine.ParseEntryID("01936f2e-8b1a-7c3d-9e4f-a1b2c3d4e5f6")
	textReplica, _  = syncengine.ParseReplicaID("0b8f5c2e-1111-4a3b-8c9d-0e1f2a3b4c5d")
	textFeedback, _ = syncengine.ParseFeedbackID("01936f2e-9000-7c3d-9e4f-a1b2c3d4e5f6")
	textClock       = syncengine.NewTimestamp(1795788185123, 0)
)

// textEntry returns an entry whose body and a feedback body are merged
// text.
func textEntry(tb testing.TB) *syncengine.Entry {
	tb.Helper()
	e := &syncengine.Entry{}
	for i, c := range []syncengine.Change{
		{Entry: textEntryID, Field: syncengine.FieldBody, Author: "PN-A"},
		{Entry: textEntryID, Field: syncengine.FieldFeedbackBody, Feedback: textFeedback, Author: "SUP-1"},
	} {
		c.Stamp = syncengine.Stamp{Clock: textClock + syncengine.Timestamp(i), Replica: textReplica}
		if err := e.EditText(&c, func(d *syncengine.TextDoc) (*syncengine.TextChange, error) {
			return d.SetText(c.Stamp, "Met J. at the hostel 🙂")
		}); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

// textSeeds returns wire changes around text changes: valid ones for a
// body and a feedback body, one on a field that takes no text change,
// one whose encoding is cut short, and one whose stamp is not its
// change's.
func textSeeds(tb testing.TB) []*diaryv1.Change {
	tb.Helper()
	var out []*diaryv1.Change
	for _, f := range []syncengine.Field{syncengine.FieldBody, syncengine.FieldFeedbackBody} {
		c := syncengine.Change{Entry: textEntryID, Field: f, Stamp: syncengine.Stamp{Clock: textClock, Replica: textReplica}}
		if f == syncengine.FieldFeedbackBody {
			c.Feedback = textFeedback
		}
		e := &syncengine.Entry{}
		if err := e.EditText(&c, func(d *syncengine.TextDoc) (*syncengine.TextChange, error) {
			return d.SetText(c.Stamp, "Tuesday, at the hostel")
		}); err != nil {
			tb.Fatal(err)
		}
		out = append(out, ChangeToProto(&c))
	}
	onTitle := proto.Clone(out[0]).(*diaryv1.Change)
	onTitle.Field = diaryv1.Field_FIELD_TITLE
	cut := proto.Clone(out[0]).(*diaryv1.Change)
	cut.Value = &diaryv1.Change_TextChange{TextChange: out[0].GetTextChange()[:10]}
	restamped := proto.Clone(out[0]).(*diaryv1.Change)
	restamped.Clock++
	return append(out, onTitle, cut, restamped)
}

func TestTextChangesOnTheWire(t *testing.T) {
	seeds := textSeeds(t)
	for i, p := range seeds[:2] {
		c, err := ChangeFromProto(p)
		if err != nil || c.TextEdit == nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		if err := syncengine.ValidateChange(&c); err != nil {
			t.Fatalf("seed %d does not validate: %v", i, err)
		}
		if !proto.Equal(ChangeToProto(&c), p) {
			t.Fatalf("seed %d changed on the round trip", i)
		}
	}
	for _, p := range seeds[2:4] {
		_, err := ChangeFromProto(p)
		checkRefusal(t, "ChangeFromProto", err)
	}
	c, err := ChangeFromProto(seeds[4])
	if err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, "ValidateChange", syncengine.ValidateChange(&c))
}

func TestMergedTextOnTheWire(t *testing.T) {
	e := textEntry(t)
	p := EntryToProto(e)
	if len(p.GetBodyText()) == 0 || len(p.GetFeedback()[0].GetBodyText()) == 0 || p.GetBody().GetValue() != "" || p.GetBody().GetClock() == 0 {
		t.Fatalf("the wire entry lacks the merged text: %v", p)
	}
	back, err := EntryFromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != e.Hash() {
		t.Fatal("an entry with merged text changed on the round trip")
	}
	// What an old device gets is today's shape, and it reads the text.
	flat := EntryToProto(e.Flat())
	if flat.GetBodyText() != nil || flat.GetFeedback()[0].GetBodyText() != nil || flat.GetBody().GetValue() != "Met J. at the hostel 🙂" {
		t.Fatalf("the flat entry carries merged text: %v", flat)
	}
	// A body that disagrees with its merged text is refused.
	bad := proto.Clone(p).(*diaryv1.Entry)
	bad.Body.Value = "something else"
	if _, err := EntryFromProto(bad); err == nil {
		t.Fatal("an entry whose body holds a value beside its merged text was accepted")
	}
	bad = proto.Clone(p).(*diaryv1.Entry)
	bad.Body.Clock++
	if _, err := EntryFromProto(bad); err == nil {
		t.Fatal("an entry whose body disagrees with its merged text was accepted")
	}
	bad = proto.Clone(p).(*diaryv1.Entry)
	bad.BodyText = bad.BodyText[:len(bad.BodyText)-1]
	if _, err := EntryFromProto(bad); err == nil {
		t.Fatal("an entry with cut merged text was accepted")
	}
}

// TestRefusalNames: every refusal reason of the API has the domain's
// number and a name, the API's own in lowercase, so that a client can
// show and compare reasons without the API's types.
func TestRefusalNames(t *testing.T) {
	for n, name := range diaryv1.RefusalReason_name {
		if n == 0 {
			continue
		}
		want := strings.ToLower(strings.TrimPrefix(name, "REFUSAL_REASON_"))
		if got := study.Refusal(n).String(); got != want {
			t.Errorf("study.Refusal(%d) is %q, want %q (the API's %s)", n, got, want, name)
		}
	}
}
