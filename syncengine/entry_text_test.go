package syncengine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"
)

var (
	textPhone  = ReplicaID{0: 0xa0, 15: 1}
	textTablet = ReplicaID{0: 0xb0, 15: 2}
	textOld    = ReplicaID{0: 0xc0, 15: 3}
)

// edit makes a whole-text edit of the body on e as replica r at clock n
// and returns the change to send.
func editBody(t *testing.T, e *Entry, r ReplicaID, n int, text string) Change {
	t.Helper()
	id := e.ID
	if id.IsZero() {
		id = testEntryID
	}
	c := Change{Entry: id, Field: FieldBody, Stamp: at(r, n), Author: "PN-A"}
	if err := e.EditText(&c, func(d *TextDoc) (*TextChange, error) { return d.SetText(c.Stamp, text) }); err != nil {
		t.Fatal(err)
	}
	if c.TextEdit == nil {
		t.Fatalf("editing the body to %q made no change", text)
	}
	if err := ValidateChange(&c); err != nil {
		t.Fatalf("a local edit does not validate: %v", err)
	}
	return c
}

func mustApplyText(t *testing.T, e *Entry, c Change, want TextStatus) {
	t.Helper()
	st, err := e.ApplyText(&c)
	if err != nil || st != want {
		t.Fatalf("ApplyText = %v, %v; want %v", st, err, want)
	}
}

func TestEntryBodiesMergeConcurrentEdits(t *testing.T) {
	first := "I went to the hostel today.\n"
	phone, tablet, server := &Entry{}, &Entry{}, &Entry{}
	c1 := editBody(t, phone, textPhone, 1, first)
	mustApplyText(t, server, c1, TextApplied)
	mustApplyText(t, tablet, c1, TextApplied)

	// Offline on both: the phone appends a paragraph, the tablet changes
	// a word in the first line.
	c2 := editBody(t, phone, textPhone, 2, first+"\nJ. was there, and asked about a flat.\n")
	c3 := editBody(t, tablet, textTablet, 3, "I went to the day centre today.\n")
	mustApplyText(t, server, c3, TextApplied)
	mustApplyText(t, server, c2, TextApplied)
	mustApplyText(t, phone, c3, TextApplied)
	mustApplyText(t, tablet, c2, TextApplied)
	mustApplyText(t, tablet, c2, TextDuplicate)

	want := "I went to the day centre today.\n\nJ. was there, and asked about a flat.\n"
	for name, e := range map[string]*Entry{"server": server, "phone": phone, "tablet": tablet} {
		if e.Body.Value != want {
			t.Fatalf("%s holds %q, want %q", name, e.Body.Value, want)
		}
		if !e.BodyText.Concurrent() {
			t.Fatalf("%s does not say the body holds edits from two devices", name)
		}
		if !bytes.Equal(EncodeEntry(e), EncodeEntry(server)) {
			t.Fatalf("%s differs from the server", name)
		}
	}
	if got := server.Body.Stamp; got != c3.Stamp {
		t.Fatalf("the body register is stamped %v, want the newest edit %v", got, c3.Stamp)
	}

	// An edit on top of both ends the concurrency.
	c4 := editBody(t, phone, textPhone, 4, want+"Tired.")
	mustApplyText(t, server, c4, TextApplied)
	if server.BodyText.Concurrent() {
		t.Fatal("an edit made on both edits still shows as concurrent")
	}
}

// TestEntryOutOfOrderEditsAreHeld: an edit that arrives before the edit
// it was made on waits in the state, and the entry converges once the
// earlier one arrives.
func TestEntryOutOfOrderEditsAreHeld(t *testing.T) {
	phone, server := &Entry{}, &Entry{}
	c1 := editBody(t, phone, textPhone, 1, "one")
	c2 := editBody(t, phone, textPhone, 2, "one two")
	if st, err := server.TextReady(&c2); err != nil || st != TextHeld {
		t.Fatalf("TextReady = %v, %v; want held", st, err)
	}
	if st, err := server.TextReady(&c1); err != nil || st != TextApplied {
		t.Fatalf("TextReady = %v, %v; want applied", st, err)
	}
	mustApplyText(t, server, c2, TextHeld)
	if server.Body.Value != "" {
		t.Fatalf("a held edit shows: %q", server.Body.Value)
	}
	mustApplyText(t, server, c1, TextApplied)
	if server.Body.Value != "one two" || !bytes.Equal(EncodeEntry(server), EncodeEntry(phone)) {
		t.Fatalf("after the earlier edit arrived: %q", server.Body.Value)
	}
}

// TestEntryRegisterBodiesBecomeMergedText: a body written before merged
// text is seeded from its register identically on every replica, so an
// edit made on a device's copy of the register applies on the server's.
func TestEntryRegisterBodiesBecomeMergedText(t *testing.T) {
	old := Change{Entry: testEntryID, Field: FieldBody, Text: "Met J. at the hostel.", Stamp: at(textOld, 1), Author: "PN-A"}
	server := &Entry{}
	server.Apply(&old)
	if server.BodyText != nil {
		t.Fatal("a whole-value write made merged text outside the server's legacy path")
	}
	phone := server.View(AudienceOwner) // as the phone pulled it
	c := editBody(t, phone, textPhone, 2, "Met J. and K. at the hostel.")
	mustApplyText(t, server, c, TextApplied)
	if server.Body.Value != "Met J. and K. at the hostel." || !bytes.Equal(EncodeEntry(server), EncodeEntry(phone)) {
		t.Fatalf("the seeded bodies differ: server %q, phone %q", server.Body.Value, phone.Body.Value)
	}
	if v := server.BodyText.doc.Version(); len(v) != 2 || v[0].Replica != SeedReplica && v[1].Replica != SeedReplica {
		t.Fatalf("version %v does not hold the seed", v)
	}
}

// TestEntryLegacyEdit: an old device's whole-body write becomes the edit
// from what it may have seen to what it sent. It removes what it saw and
// left out, keeps what was typed after its clock, and a retry changes
// nothing.
func TestEntryLegacyEdit(t *testing.T) {
	server, phone := &Entry{}, &Entry{}
	c1 := editBody(t, phone, textPhone, 1, "Hostel. Court date.")
	mustApplyText(t, server, c1, TextApplied)

	// The old device saw "Hostel. Court date." (it pulled it as text)
	// and writes at clock 5; the phone types two minutes after that.
	// (Within a minute of the write, where a sequence's clock marks
	// cannot tell, the old device is taken to have seen the text.)
	c2 := editBody(t, phone, textPhone, 2*60_000<<16, "Hostel. Court date. Flat viewing.")
	mustApplyText(t, server, c2, TextApplied)
	w := Change{Entry: testEntryID, Field: FieldBody, Text: "Hostel, with J.", Stamp: at(textOld, 5), Author: "PN-A"}
	edit, err := server.LegacyEdit(&w)
	if err != nil || edit == nil {
		t.Fatalf("LegacyEdit = %v, %v", edit, err)
	}
	if edit.Replica != LegacyReplica(textOld) || edit.Clock != w.Clock || ValidateChange(edit) != nil {
		t.Fatalf("the legacy edit is stamped %v: %v", edit.Stamp, ValidateChange(edit))
	}
	if want := "Hostel, with J. Flat viewing."; server.Body.Value != want {
		t.Fatalf("after the old device's write: %q, want %q", server.Body.Value, want)
	}
	// Every other replica merges the edit the server made.
	mustApplyText(t, phone, *edit, TextApplied)
	if !bytes.Equal(EncodeEntry(phone), EncodeEntry(server)) {
		t.Fatal("the phone differs from the server after the legacy edit")
	}
	// A retry of the same write is nothing new.
	if again, err := server.LegacyEdit(&w); err != nil || again != nil {
		t.Fatalf("a retried write made %v, %v", again, err)
	}

	// On a body that is still a register, the write seeds it first.
	reg := &Entry{}
	reg.Apply(&Change{Entry: testEntryID, Field: FieldBody, Text: "First.", Stamp: at(textPhone, 1), Author: "PN-A"})
	edit, err = reg.LegacyEdit(&Change{Entry: testEntryID, Field: FieldBody, Text: "First. Second.", Stamp: at(textOld, 2), Author: "PN-A"})
	if err != nil || edit == nil || reg.BodyText == nil || reg.Body.Value != "First. Second." {
		t.Fatalf("LegacyEdit of a register: %v, %v, %q", edit, err, reg.Body.Value)
	}
	// An empty write to an empty body stays a register.
	empty := &Entry{}
	if edit, err := empty.LegacyEdit(&Change{Entry: testEntryID, Field: FieldBody, Stamp: at(textOld, 1), Author: "PN-A"}); err != nil || edit != nil || empty.BodyText != nil || empty.Body.Clock == 0 {
		t.Fatalf("an empty write to an empty body: %v, %v, %+v", edit, err, empty.Body)
	}
}

func TestEntryTextViews(t *testing.T) {
	e := &Entry{}
	editBody(t, e, textPhone, 1, "Body text.")
	mine := Change{Entry: testEntryID, Field: FieldFeedbackBody, Feedback: textEntryFeedback, Stamp: at(textTablet, 2), Author: "SUP-1"}
	if err := e.EditText(&mine, func(d *TextDoc) (*TextChange, error) { return d.SetText(mine.Stamp, "Thanks.") }); err != nil {
		t.Fatal(err)
	}
	other := FeedbackID{0x01, 0x93, 6: 0x70, 8: 0x80, 15: 10}
	theirs := Change{Entry: testEntryID, Field: FieldFeedbackBody, Feedback: other, Stamp: at(textOld, 3), Author: "SUP-2"}
	if err := e.EditText(&theirs, func(d *TextDoc) (*TextChange, error) { return d.SetText(theirs.Stamp, "Good.") }); err != nil {
		t.Fatal(err)
	}

	owner := e.View(AudienceOwner)
	if owner.BodyText == nil || owner.Feedback[0].BodyText != nil || owner.Feedback[1].BodyText != nil {
		t.Fatal("the owner's view must carry the body's merged text and no feedback operations")
	}
	sup := e.ViewFor(AudienceSupervisor, "SUP-1", true)
	if sup.BodyText != nil || sup.Body.Value != "Body text." || !sup.Body.Replica.IsZero() {
		t.Fatalf("a supervisor's view carries the body as %+v (merged text: %v)", sup.Body, sup.BodyText != nil)
	}
	if sup.Feedback[0].BodyText == nil || sup.Feedback[1].BodyText != nil || !sup.Feedback[1].Body.Replica.IsZero() {
		t.Fatal("a supervisor's view must carry the merged text of their own feedback only")
	}
	if flat := e.ViewFor(AudienceSupervisor, "SUP-1", false); flat.HasMergedText() || flat.Feedback[0].Body.Value != "Thanks." {
		t.Fatal("the view for an old device carries merged text")
	}
	res := e.View(AudienceResearch)
	if res.HasMergedText() || res.Body.Value != "Body text." || len(res.Feedback) != 0 {
		t.Fatal("research's view must carry the text alone")
	}
	// Views are independent of the entry: editing it leaves them as
	// they were.
	editBody(t, e, textPhone, 4, "Body text, edited.")
	if owner.Body.Value != "Body text." || owner.BodyText.Text() != "Body text." {
		t.Fatalf("a view changed with its entry: %q", owner.Body.Value)
	}
}

func TestValidateTextEdits(t *testing.T) {
	e := &Entry{}
	good := editBody(t, e, textPhone, 1, "text")
	for _, tc := range []struct {
		name   string
		change func(c *Change)
	}{
		{"OnTitle", func(c *Change) { c.Field = FieldTitle }},
		{"WithValue", func(c *Change) { c.Text = "text" }},
		{"OtherStamp", func(c *Change) { c.Clock++ }},
		{"TooLarge", func(c *Change) {
			c.TextEdit = &TextChange{Stamp: c.Stamp, Inserts: []TextInsert{{ID: TextID{Replica: c.Replica, Anchor: c.Clock}, Text: strings.Repeat("x", MaxBodyBytes+1)}}}
		}},
		{"FeedbackTooLarge", func(c *Change) {
			c.Field, c.Feedback = FieldFeedbackBody, textEntryFeedback
			c.TextEdit = &TextChange{Stamp: c.Stamp, Inserts: []TextInsert{{ID: TextID{Replica: c.Replica, Anchor: c.Clock}, Text: strings.Repeat("x", MaxFeedbackBodyBytes+1)}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.change(&c)
			if err := ValidateChange(&c); err == nil {
				t.Fatal("ValidateChange accepted it")
			}
		})
	}
}

func TestDecodeEntryRejectsBadMergedText(t *testing.T) {
	e := &Entry{}
	editBody(t, e, textPhone, 1, "text")
	good := EncodeEntry(e)
	if good[0] != encodingVersionText {
		t.Fatalf("an entry with merged text is written in layout %d", good[0])
	}
	legacy := EncodeEntry(sampleEntry())
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"Layout2WithoutMergedText", append([]byte{encodingVersionText}, legacy[1:]...)},
		{"Truncated", good[:len(good)-1]},
		{"BadTextState", func() []byte {
			b := bytes.Clone(good)
			i := bytes.Index(b, []byte("text"))
			b[i] = 0xff // no longer valid UTF-8
			return b
		}()},
		{"Layout3", append([]byte{3}, good[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEntry(tc.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeEntry = %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestLegacyEncodingsStillDecode: entries stored before merged text
// (testdata/entry-v1.hex was written by the encoder of that time) decode,
// re-encode to the same bytes and keep their hash, and a text edit
// applies to them.
func TestLegacyEncodingsStillDecode(t *testing.T) {
	raw, err := os.ReadFile("testdata/entry-v1.hex")
	if err != nil {
		t.Fatal(err)
	}
	old, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for _, decode := range []func([]byte) (*Entry, error){DecodeEntry, DecodeEntryLazy} {
		e, err := decode(old)
		if err != nil {
			t.Fatalf("a stored entry from before merged text does not decode: %v", err)
		}
		if !bytes.Equal(EncodeEntry(e), old) {
			t.Fatal("a stored entry from before merged text re-encodes differently")
		}
		if !bytes.Equal(EncodeEntry(e), EncodeEntry(sampleEntry())) {
			t.Fatal("the stored entry is not the sample entry")
		}
		phone := e.View(AudienceOwner)
		c := editBody(t, phone, textPhone, 100, e.Body.Value+"\nAdded later.")
		mustApplyText(t, e, c, TextApplied)
		if !bytes.Equal(EncodeEntry(e.View(AudienceOwner)), EncodeEntry(phone)) || !strings.HasSuffix(e.Body.Value, "Added later.") {
			t.Fatal("a text edit of a stored register body does not converge")
		}
	}
}

// TestSimpleTextSkipsTheRebuild: a text typed once by one replica, the
// commonest body, decodes without rebuilding its document; anything else
// is rebuilt (and so checked in full).
func TestSimpleTextSkipsTheRebuild(t *testing.T) {
	e := &Entry{}
	editBody(t, e, textPhone, 1, "Met J. at the hostel.")
	st, err := DecodeTextState(e.BodyText.Encoding(), FieldBody)
	if err != nil || st.doc != nil || st.Text() != "Met J. at the hostel." || st.Newest() != e.Body.Stamp {
		t.Fatalf("a simple text: %v, rebuilt %v", err, st != nil && st.doc != nil)
	}
	editBody(t, e, textPhone, 2, "Met J. at the day centre.")
	if st, err := DecodeTextState(e.BodyText.Encoding(), FieldBody); err != nil || st.doc == nil {
		t.Fatalf("a text with a deletion was not rebuilt: %v", err)
	}
}
