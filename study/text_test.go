package study

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

var (
	phoneReplica  = syncengine.ReplicaID{0: 0xa0, 15: 1}
	tabletReplica = syncengine.ReplicaID{0: 0xb0, 15: 2}
)

// device is one replica editing an entry, as a client does: it holds the
// entry as it last got it and stamps edits with a clock of its own.
type device struct {
	replica syncengine.ReplicaID
	author  string
	entry   *syncengine.Entry
	clock   syncengine.Timestamp
}

func newDevice(r syncengine.ReplicaID, author string) *device {
	return &device{replica: r, author: author, entry: &syncengine.Entry{ID: entryID}, clock: syncengine.TimestampAt(now.Add(-time.Hour))}
}

// edit sets the text of field (the body, or the feedback note) to text and
// returns the change.
func (d *device) edit(t *testing.T, f syncengine.Field, text string) syncengine.Change {
	t.Helper()
	d.clock += 1 << 16 // a millisecond on
	c := syncengine.Change{Entry: entryID, Field: f, Stamp: syncengine.Stamp{Clock: d.clock, Replica: d.replica}, Author: d.author}
	if f == syncengine.FieldFeedbackBody {
		c.Feedback = feedbackID
	}
	if err := d.entry.EditText(&c, func(doc *syncengine.TextDoc) (*syncengine.TextChange, error) { return doc.SetText(c.Stamp, text) }); err != nil {
		t.Fatal(err)
	}
	if c.TextEdit == nil {
		t.Fatalf("setting the text to %q made no edit", text)
	}
	return c
}

// pull replaces what the device holds with the server's entry.
func (d *device) pull(server *syncengine.Entry) { d.entry = server.Clone() }

func mustApplyChange(t *testing.T, e *syncengine.Entry, c syncengine.Change) *syncengine.Change {
	t.Helper()
	d, rec := ApplyChange(e, &c)
	if !d.Apply || d.Result.Outcome != OutcomeApplied || rec == nil {
		t.Fatalf("ApplyChange = %+v, %v; want applied", d, rec)
	}
	return rec
}

func wantRefused(t *testing.T, e *syncengine.Entry, c syncengine.Change, reason Refusal) {
	t.Helper()
	before := syncengine.EncodeEntry(e)
	d, rec := ApplyChange(e, &c)
	if d.Apply || d.Result.Outcome != OutcomeRefused || d.Result.Reason != reason || !d.Remember || d.Result.Message == "" || rec != nil {
		t.Fatalf("ApplyChange = %+v, %v; want refused with reason %d, remembered, with a message", d, rec, reason)
	}
	if !bytes.Equal(syncengine.EncodeEntry(e), before) {
		t.Fatal("a refused change changed the entry")
	}
}

func TestApplyChangeMergesTextEdits(t *testing.T) {
	server := &syncengine.Entry{ID: entryID}
	phone, tablet := newDevice(phoneReplica, "PN-A"), newDevice(tabletReplica, "PN-A")
	c := phone.edit(t, syncengine.FieldBody, "Went to the hostel.")
	if rec := mustApplyChange(t, server, c); rec.TextEdit != c.TextEdit {
		t.Fatal("a text edit is recorded as something else")
	}
	phone.pull(server)
	tablet.pull(server)
	a := phone.edit(t, syncengine.FieldBody, "Went to the hostel.\nJ. was there.")
	b := tablet.edit(t, syncengine.FieldBody, "Went to the day centre.")
	mustApplyChange(t, server, b)
	mustApplyChange(t, server, a)
	if want := "Went to the day centre.\nJ. was there."; server.Body.Value != want {
		t.Fatalf("server holds %q, want %q", server.Body.Value, want)
	}
	// Title and other fields merge as registers.
	title := change(navigator, syncengine.FieldTitle, now)
	if rec := mustApplyChange(t, server, title); rec.Text != "text" || server.Title.Value != "text" {
		t.Fatal("a title change did not apply")
	}
}

// TestApplyChangeRefusesEditsOnAHistoryItLacks: an edit made on an edit
// the server refused can never apply; it is refused, not held, and the
// device's edit made again on the server's text applies, so no word is
// lost.
func TestApplyChangeRefusesEditsOnAHistoryItLacks(t *testing.T) {
	server := &syncengine.Entry{ID: entryID}
	phone := newDevice(phoneReplica, "PN-A")
	first := phone.edit(t, syncengine.FieldBody, "one")
	second := phone.edit(t, syncengine.FieldBody, "one two")
	wantRefused(t, server, second, RefusedTextHistory)
	if d, ok := TextEditReady(server, &second); ok || d.Result.Reason != RefusedTextHistory {
		t.Fatalf("TextEditReady = %+v, %v", d, ok)
	}
	// Once the first is in, a late copy of the second is still out of
	// order from the device's point of view only if it was refused: the
	// store keeps that refusal (Remember), and the device makes the edit
	// again.
	mustApplyChange(t, server, first)
	again := newDevice(phoneReplica, "PN-A")
	again.clock = phone.clock
	again.pull(server)
	redo := again.edit(t, syncengine.FieldBody, phone.entry.Body.Value)
	mustApplyChange(t, server, redo)
	if server.Body.Value != "one two" {
		t.Fatalf("after the edit was made again: %q", server.Body.Value)
	}
	// An edit older than the device's newest one the server holds came
	// out of order too.
	wantRefused(t, server, second, RefusedTextHistory)
}

// TestApplyChangeMergesOldDevicesWrites: a whole text from a device that
// predates merged text becomes an edit the history records, stamped for
// that device's legacy replica, and a device that merges text applies it.
func TestApplyChangeMergesOldDevicesWrites(t *testing.T) {
	server := &syncengine.Entry{ID: entryID}
	phone := newDevice(phoneReplica, "PN-A")
	mustApplyChange(t, server, phone.edit(t, syncengine.FieldBody, "Hostel. Court."))
	old := change(navigator, syncengine.FieldBody, now)
	old.Text, old.Author = "Hostel, with J. Court.", "PN-A"
	rec := mustApplyChange(t, server, old)
	if rec.TextEdit == nil || rec.Replica != syncengine.LegacyReplica(old.Replica) || rec.Clock != old.Clock {
		t.Fatalf("the old device's write is recorded as %+v", rec)
	}
	if server.Body.Value != "Hostel, with J. Court." {
		t.Fatalf("server holds %q", server.Body.Value)
	}
	phone.entry.Apply(rec)
	if !bytes.Equal(syncengine.EncodeEntry(phone.entry), syncengine.EncodeEntry(server)) {
		t.Fatal("the phone differs from the server after merging the old device's write")
	}
	// A whole value that changes nothing is recorded as it came.
	same := old
	same.Clock += 1 << 16
	if rec := mustApplyChange(t, server, same); rec.TextEdit != nil || rec.Text != same.Text {
		t.Fatalf("an unchanged write is recorded as %+v", rec)
	}
}

func TestApplyChangeLimits(t *testing.T) {
	t.Run("ErrMergedTextTooLarge", func(t *testing.T) {
		server := &syncengine.Entry{ID: entryID}
		phone, tablet := newDevice(phoneReplica, "PN-A"), newDevice(tabletReplica, "PN-A")
		half := strings.Repeat("x", syncengine.MaxBodyBytes/2+10)
		mustApplyChange(t, server, phone.edit(t, syncengine.FieldBody, "a"))
		phone.pull(server)
		tablet.pull(server)
		mustApplyChange(t, server, phone.edit(t, syncengine.FieldBody, "a"+half))
		// Each device stays within the limit; merged, the two would not.
		wantRefused(t, server, tablet.edit(t, syncengine.FieldBody, half+"a"), RefusedTooLarge)
		// Nor would an old device's write, merged with the text it did
		// not see.
		old := change(navigator, syncengine.FieldBody, now.Add(-2*time.Hour))
		old.Text, old.Author = half+"b", "PN-A"
		wantRefused(t, server, old, RefusedTooLarge)
	})
	t.Run("ErrHistoryTooLarge", func(t *testing.T) {
		// Feedback has the smaller cap. Typing a note backwards, one
		// character a save, makes a run of every character.
		server := sharedEntry("")
		sup := newDevice(supReplica, "SUP-1")
		sup.pull(server)
		text := ""
		for i := 0; ; i++ {
			if i > 2*MaxFeedbackRuns {
				t.Fatal("the feedback's history never reached its limit")
			}
			text = string(rune('a'+i%26)) + text
			c := sup.edit(t, syncengine.FieldFeedbackBody, text)
			d, _ := ApplyChange(server, &c)
			if d.Result.Outcome == OutcomeRefused {
				if d.Result.Reason != RefusedTooLarge || !strings.Contains(d.Result.Message, "edit history") {
					t.Fatalf("refused with %+v", d.Result)
				}
				doc, err := server.Feedback[0].BodyText.Doc()
				if err != nil {
					t.Fatal(err)
				}
				if n := doc.Runs(); n > MaxFeedbackRuns || n < MaxFeedbackRuns-5 {
					t.Fatalf("the stored history holds %d runs; the limit is %d", n, MaxFeedbackRuns)
				}
				return
			}
		}
	})
	t.Run("ErrTooManyWriters", func(t *testing.T) {
		server := &syncengine.Entry{ID: entryID}
		for i := range MaxTextWriters {
			d := newDevice(syncengine.ReplicaID{0: 0xd0, 14: byte(i >> 8), 15: byte(i)}, "PN-A")
			d.pull(server)
			mustApplyChange(t, server, d.edit(t, syncengine.FieldBody, fmt.Sprintf("%s %d", server.Body.Value, i)))
		}
		d := newDevice(syncengine.ReplicaID{0: 0xe0, 15: 1}, "PN-A")
		d.pull(server)
		wantRefused(t, server, d.edit(t, syncengine.FieldBody, "one more"), RefusedTooLarge)
		// A device that wrote before goes on writing.
		w := newDevice(syncengine.ReplicaID{0: 0xd0, 15: 3}, "PN-A")
		w.clock = syncengine.TimestampAt(now)
		w.pull(server)
		mustApplyChange(t, server, w.edit(t, syncengine.FieldBody, "still mine"))
	})
}

// TestFeedChangesSeesFeedbackHistory: a supervisor's edit that changes
// their note's merged text but not its text (a word both their devices
// deleted) still reaches their feed, as their devices hold the merged
// text.
func TestFeedChangesSeesFeedbackHistory(t *testing.T) {
	server := sharedEntry("")
	one, two := newDevice(supReplica, "SUP-1"), newDevice(syncengine.ReplicaID{0: 0x22, 15: 2}, "SUP-1")
	one.pull(server)
	mustApplyChange(t, server, one.edit(t, syncengine.FieldFeedbackBody, "Thanks for this."))
	one.pull(server)
	two.pull(server)
	two.clock = one.clock + 10<<16
	later := two.edit(t, syncengine.FieldFeedbackBody, "Thanks.")
	earlier := one.edit(t, syncengine.FieldFeedbackBody, "Thanks.")
	mustApplyChange(t, server, later)
	before := server.Clone()
	mustApplyChange(t, server, earlier)
	if server.Feedback[0].Body != before.Feedback[0].Body {
		t.Fatal("the test needs an edit that leaves the note's text and newest stamp as they were")
	}
	var sup bool
	for _, fc := range FeedChanges(before, server) {
		sup = sup || fc.Audience == syncengine.AudienceSupervisor && fc.Visible
	}
	if !sup {
		t.Fatal("the supervisors' feed did not get the note's new merged text")
	}
}

// TestApplyDecision: what Decide did not apply stays as Decide left it;
// what it applied is merged, and a change a pending device makes keeps
// its Hold when it applies (title or body edit alike) and loses it when
// merging refuses it.
func TestApplyDecision(t *testing.T) {
	held := Decision{Apply: true, Hold: true, Result: ChangeResult{Outcome: OutcomeApplied}}
	t.Run("NotApplied", func(t *testing.T) {
		server := &syncengine.Entry{ID: entryID}
		phone := newDevice(phoneReplica, "PN-A")
		c := phone.edit(t, syncengine.FieldBody, "one")
		refused := Decision{Remember: true, Result: refusal(RefusedClockAhead, "ahead")}
		d, rec := ApplyDecision(refused, server, &c)
		if d != refused || rec != nil || server.Body.Value != "" {
			t.Fatalf("ApplyDecision = %+v, %v, body %q; want the refusal unchanged and nothing merged", d, rec, server.Body.Value)
		}
	})
	t.Run("HoldKept", func(t *testing.T) {
		server := &syncengine.Entry{ID: entryID}
		phone := newDevice(phoneReplica, "PN-A")
		body := phone.edit(t, syncengine.FieldBody, "written while pending")
		title := syncengine.Change{Entry: entryID, Field: syncengine.FieldTitle, Text: "pending", Stamp: syncengine.Stamp{Clock: phone.clock + 1, Replica: phoneReplica}}
		for _, c := range []*syncengine.Change{&body, &title} {
			d, rec := ApplyDecision(held, server, c)
			if !d.Apply || !d.Hold || d.Result.Outcome != OutcomeApplied || rec == nil {
				t.Fatalf("%s: ApplyDecision = %+v, %v; want applied and held", c.Field, d, rec)
			}
		}
		if server.Body.Value != "written while pending" || server.Title.Value != "pending" {
			t.Fatalf("merged: body %q, title %q", server.Body.Value, server.Title.Value)
		}
	})
	t.Run("HoldDroppedWhenRefused", func(t *testing.T) {
		server := &syncengine.Entry{ID: entryID}
		phone := newDevice(phoneReplica, "PN-A")
		phone.edit(t, syncengine.FieldBody, "one")
		second := phone.edit(t, syncengine.FieldBody, "one two") // made on an edit the server never got
		d, rec := ApplyDecision(held, server, &second)
		if d.Apply || d.Hold || d.Result.Reason != RefusedTextHistory || rec != nil {
			t.Fatalf("ApplyDecision = %+v, %v; want refused, not held", d, rec)
		}
	})
}
