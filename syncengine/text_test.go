package syncengine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var (
	phone  = ReplicaID{0: 0xa0, 15: 1}
	tablet = ReplicaID{0: 0xb0, 15: 2}
	laptop = ReplicaID{0: 0xc0, 15: 3}
	textT0 = NewTimestamp(1795788185123, 0)
)

func at(r ReplicaID, n int) Stamp { return Stamp{Clock: textT0 + Timestamp(n), Replica: r} }

func mustSplice(t *testing.T, d *TextDoc, s Stamp, pos, del int, ins string) *TextChange {
	t.Helper()
	c, err := d.Splice(s, pos, del, ins)
	if err != nil {
		t.Fatalf("splice %d,%d,%q: %v", pos, del, ins, err)
	}
	return c
}

func mustApply(t *testing.T, d *TextDoc, c *TextChange, want TextStatus) {
	t.Helper()
	st, err := d.Apply(c)
	if err != nil || st != want {
		t.Fatalf("apply %s: got %v %v, want %v", c, st, err, want)
	}
}

func TestTextHoldsChangesUntilTheirVersionArrives(t *testing.T) {
	a := NewTextDoc(0)
	c1 := mustSplice(t, a, at(phone, 1), 0, 0, "Met J. at the hostel.")
	c2 := mustSplice(t, a, at(phone, 2), 21, 0, " She asked about housing.")
	b := NewTextDoc(0)
	mustSplice(t, b, at(tablet, 3), 0, 0, "x") // unrelated, so b has a version

	t.Run("OK", func(t *testing.T) {
		d := b.Clone()
		mustApply(t, d, c2, TextHeld)
		if d.Text() != "x" || len(d.Pending()) != 1 || d.Has(c2.Stamp) {
			t.Fatalf("held change is visible: %q, %d pending", d.Text(), len(d.Pending()))
		}
		mustApply(t, d, c2, TextDuplicate) // held twice is still one
		// The held change is part of the state: it survives encoding.
		enc := EncodeTextDoc(d)
		back, err := DecodeTextDoc(enc, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(back.Pending()) != 1 || !bytes.Equal(EncodeTextDoc(back), enc) {
			t.Fatal("held change lost in encoding")
		}
		for _, x := range []*TextDoc{d, back} {
			mustApply(t, x, c1, TextApplied)
			if got := x.Text(); got != "Met J. at the hostel. She asked about housing.x" {
				t.Fatalf("after the missing change arrived: %q", got)
			}
			if len(x.Pending()) != 0 || !x.Has(c2.Stamp) {
				t.Fatal("held change not applied")
			}
			mustApply(t, x, c1, TextDuplicate)
			mustApply(t, x, c2, TextDuplicate)
		}
		if !bytes.Equal(EncodeTextDoc(d), EncodeTextDoc(back)) {
			t.Fatal("held-then-applied states differ")
		}
	})

	t.Run("OtherReplica", func(t *testing.T) {
		// The tablet edits on top of the phone's text; a laptop that gets
		// the tablet's change first holds it.
		tab := NewTextDoc(0)
		mustApply(t, tab, c1, TextApplied)
		c4 := mustSplice(t, tab, at(tablet, 4), 0, 3, "Saw")
		lap := NewTextDoc(0)
		mustApply(t, lap, c4, TextHeld)
		mustApply(t, lap, c1, TextApplied)
		if lap.Text() != "Saw J. at the hostel." {
			t.Fatalf("got %q", lap.Text())
		}
	})

	t.Run("ErrFork", func(t *testing.T) {
		// A change of the phone that did not see the phone's own c1
		// cannot be placed after it: the phone's history forked.
		forged := NewTextDoc(0)
		f := mustSplice(t, forged, at(phone, 5), 0, 0, "other")
		d := NewTextDoc(0)
		mustApply(t, d, c1, TextApplied)
		before := EncodeTextDoc(d)
		if _, err := d.Apply(f); !errors.Is(err, ErrTextHistory) || ErrorCode(err) != EINVALID {
			t.Fatalf("forked change: got %v", err)
		}
		if !bytes.Equal(EncodeTextDoc(d), before) {
			t.Fatal("refused change left a trace")
		}
	})
}

func TestTextRefusesChangesThatDoNotFit(t *testing.T) {
	a := NewTextDoc(0)
	c1 := mustSplice(t, a, at(phone, 1), 0, 0, "hello")
	good := mustSplice(t, a, at(phone, 2), 5, 0, " world")
	d := NewTextDoc(0)
	mustApply(t, d, c1, TextApplied)
	tweak := func(f func(c *TextChange)) *TextChange {
		c := cloneChange(good)
		f(c)
		return c
	}
	cases := []struct {
		name string
		c    *TextChange
		want error
	}{
		{"ReusesIDs", tweak(func(c *TextChange) { c.Inserts[0].ID.Offset = 2 }), ErrTextHistory},
		{"SkipsIDs", tweak(func(c *TextChange) { c.Inserts[0].ID.Offset = 9 }), ErrTextHistory},
		{"UnknownSequence", tweak(func(c *TextChange) { c.Inserts[0].ID.Anchor = textT0 + 2; c.Inserts[0].ID.Offset = 3 }), ErrTextHistory},
		{"UnknownOrigin", tweak(func(c *TextChange) { c.Inserts[0].Left.Offset = 77 }), ErrTextHistory},
		{"DeletesUnknown", tweak(func(c *TextChange) { c.Deletes = []TextRange{{ID: c.Inserts[0].Left, Len: 50}} }), ErrTextHistory},
		{"OthersIDs", tweak(func(c *TextChange) { c.Inserts[0].ID.Replica = tablet }), ErrInvalidID},
		{"OriginFromStranger", tweak(func(c *TextChange) { c.Inserts[0].Right = TextID{Replica: laptop, Anchor: textT0, Offset: 0} }), ErrTextHistory},
		{"ControlCharacter", tweak(func(c *TextChange) { c.Inserts[0].Text = "a\x00b" }), ErrInvalidText},
		{"BadUTF8", tweak(func(c *TextChange) { c.Inserts[0].Text = "a\xffb" }), ErrInvalidUTF8},
		{"Empty", tweak(func(c *TextChange) { c.Inserts = nil }), ErrInvalidValue},
		{"EmptyInsert", tweak(func(c *TextChange) { c.Inserts[0].Text = "" }), ErrInvalidValue},
		{"UnsortedDeps", tweak(func(c *TextChange) { c.Deps = []Stamp{at(tablet, 1), at(phone, 1)} }), ErrInvalidValue},
		{"ClockBeforePrevious", tweak(func(c *TextChange) { c.Clock = textT0 + 1 }), ErrInvalidClock},
		{"NoReplica", tweak(func(c *TextChange) { c.Replica = ReplicaID{} }), ErrInvalidID},
		// Origins out of order: no replica can type between a character
		// and one before it.
		{"OriginsReversed", tweak(func(c *TextChange) { c.Inserts[0].Right = c.Inserts[0].Left; c.Inserts[0].Right.Offset = 1 }), ErrTextHistory},
		{"OriginsEqual", tweak(func(c *TextChange) { c.Inserts[0].Right = c.Inserts[0].Left }), ErrTextHistory},
		{"OriginsReversedInOwnInsert", tweak(func(c *TextChange) {
			in := c.Inserts[0]
			w := func(off uint32) TextID { id := in.ID; id.Offset += off; return id }
			c.Inserts = append(c.Inserts, TextInsert{ID: w(6), Left: w(4), Right: w(1), Text: "!"})
		}), ErrTextHistory},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := d.Clone()
			before := EncodeTextDoc(x)
			_, err := x.Apply(tc.c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Detail == "" {
				t.Fatalf("error %v is not a ValidationError with a message", err)
			}
			if !bytes.Equal(EncodeTextDoc(x), before) {
				t.Fatal("refused change left a trace")
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		mustApply(t, d.Clone(), good, TextApplied)
	})
}

func TestTextSpliceErrors(t *testing.T) {
	d := NewTextDoc(16)
	mustSplice(t, d, at(phone, 1), 0, 0, "a🙂b")
	before := EncodeTextDoc(d)
	cases := []struct {
		name string
		edit func() (*TextChange, error)
		want error
	}{
		{"PosPastEnd", func() (*TextChange, error) { return d.Splice(at(phone, 2), 4, 0, "x") }, ErrInvalidPosition},
		{"NegativePos", func() (*TextChange, error) { return d.Splice(at(phone, 2), -1, 0, "x") }, ErrInvalidPosition},
		{"DeletePastEnd", func() (*TextChange, error) { return d.Splice(at(phone, 2), 1, 3, "") }, ErrInvalidPosition},
		{"NegativeDelete", func() (*TextChange, error) { return d.Splice(at(phone, 2), 1, -1, "") }, ErrInvalidPosition},
		{"UTF16InsidePair", func() (*TextChange, error) { return d.SpliceUTF16(at(phone, 2), 2, 0, "x") }, ErrInvalidPosition},
		{"UTF16DeleteHalfPair", func() (*TextChange, error) { return d.SpliceUTF16(at(phone, 2), 1, 1, "") }, ErrInvalidPosition},
		{"UTF16PastEnd", func() (*TextChange, error) { return d.SpliceUTF16(at(phone, 2), 5, 0, "x") }, ErrInvalidPosition},
		{"Overlapping", func() (*TextChange, error) {
			return d.Edit(at(phone, 2), Splice{Pos: 1, Del: 2}, Splice{Pos: 2, Del: 0, Text: "x"})
		}, ErrInvalidPosition},
		{"OverLimit", func() (*TextChange, error) { return d.Splice(at(phone, 2), 0, 0, "0123456789a") }, ErrTooLarge},
		{"BadUTF8", func() (*TextChange, error) { return d.Splice(at(phone, 2), 0, 0, "\xc3") }, ErrInvalidUTF8},
		{"Control", func() (*TextChange, error) { return d.Splice(at(phone, 2), 0, 0, "\x07") }, ErrInvalidText},
		{"StaleClock", func() (*TextChange, error) { return d.Splice(at(phone, 1), 0, 0, "x") }, ErrInvalidClock},
		{"SetTextBadUTF8", func() (*TextChange, error) { return d.SetText(at(phone, 2), "a\xff") }, ErrInvalidUTF8},
		{"SetTextControl", func() (*TextChange, error) { return d.SetText(at(phone, 2), "a\x01🙂b") }, ErrInvalidText},
		{"SetTextOverLimit", func() (*TextChange, error) { return d.SetText(at(phone, 2), "a🙂b0123456789x") }, ErrTooLarge},
		{"ClockNeverSet", func() (*TextChange, error) { return d.Splice(Stamp{Clock: 5, Replica: phone}, 0, 0, "x") }, ErrInvalidClock},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.edit()
			if c != nil || !errors.Is(err, tc.want) {
				t.Fatalf("got %v %v, want %v", c, err, tc.want)
			}
			if code := ErrorCode(err); code != EINVALID && code != ETOOLARGE {
				t.Fatalf("code %q", code)
			}
			if msg := ErrorMessage(err); msg == "" || msg == "internal error" {
				t.Fatalf("message %q", msg)
			}
			if !bytes.Equal(EncodeTextDoc(d), before) {
				t.Fatal("refused edit left a trace")
			}
		})
	}
	t.Run("Nothing", func(t *testing.T) {
		if c, err := d.Splice(at(phone, 2), 1, 0, ""); c != nil || err != nil {
			t.Fatalf("an empty splice gave %v %v", c, err)
		}
	})
	t.Run("ShrinkingOverLimit", func(t *testing.T) {
		// A text already over the limit (merged from two devices) may
		// still be edited down.
		x := NewTextDoc(8)
		o := NewTextDoc(0)
		c := mustSplice(t, o, at(tablet, 1), 0, 0, "0123456789abc")
		mustApply(t, x, c, TextApplied)
		if _, err := x.Splice(at(phone, 2), 0, 0, "x"); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("growing: %v", err)
		}
		mustSplice(t, x, at(phone, 3), 0, 6, "x")
		if x.Text() != "x6789abc" {
			t.Fatalf("got %q", x.Text())
		}
	})
}

func TestTextUTF16(t *testing.T) {
	// "e" + combining acute, a flag (two code points outside the BMP),
	// a BMP letter, an emoji.
	text := "e\u0301🇫🇷ж🙂"
	d := NewTextDoc(0)
	mustSplice(t, d, at(phone, 1), 0, 0, text)
	if d.Len() != 6 || d.LenUTF16() != 9 {
		t.Fatalf("lengths %d code points, %d UTF-16 units", d.Len(), d.LenUTF16())
	}
	for _, tc := range []struct{ pos16, pos int }{{0, 0}, {1, 1}, {2, 2}, {4, 3}, {6, 4}, {7, 5}, {9, 6}} {
		got, err := d.CodePointPos(tc.pos16)
		if err != nil || got != tc.pos {
			t.Fatalf("CodePointPos(%d) = %d, %v; want %d", tc.pos16, got, err, tc.pos)
		}
		back, err := d.UTF16Pos(tc.pos)
		if err != nil || back != tc.pos16 {
			t.Fatalf("UTF16Pos(%d) = %d, %v; want %d", tc.pos, back, err, tc.pos16)
		}
	}
	for _, bad := range []int{3, 5, 8, -1, 10} {
		if _, err := d.CodePointPos(bad); !errors.Is(err, ErrInvalidPosition) {
			t.Fatalf("CodePointPos(%d): %v", bad, err)
		}
	}
	if _, err := d.UTF16Pos(7); !errors.Is(err, ErrInvalidPosition) {
		t.Fatalf("UTF16Pos past the end: %v", err)
	}
	// Replace the French flag's second half? Not allowed; the whole flag
	// (four units) is.
	mustSpliceUTF16 := func(pos16, del16 int, ins string) {
		t.Helper()
		if _, err := d.SpliceUTF16(Stamp{Clock: d.Updated() + 1, Replica: phone}, pos16, del16, ins); err != nil {
			t.Fatalf("SpliceUTF16(%d, %d, %q): %v", pos16, del16, ins, err)
		}
	}
	mustSpliceUTF16(2, 4, "🇩🇪")
	if d.Text() != "e\u0301🇩🇪ж🙂" {
		t.Fatalf("got %q", d.Text())
	}
	mustSpliceUTF16(7, 2, "!")
	mustSpliceUTF16(0, 1, "a")
	if d.Text() != "a\u0301🇩🇪ж!" {
		t.Fatalf("got %q", d.Text())
	}
}

func TestTextMultipleSplicesAndSetText(t *testing.T) {
	d := NewTextDoc(0)
	mustSplice(t, d, at(phone, 1), 0, 0, "Tuesday outreach at the hostel")
	c, err := d.Edit(at(phone, 2), Splice{Pos: 0, Del: 7, Text: "Wednesday"}, Splice{Pos: 24, Del: 6, Text: "shelter"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Text() != "Wednesday outreach at the shelter" {
		t.Fatalf("got %q", d.Text())
	}
	o := NewTextDoc(0)
	for _, ch := range []*TextChange{c} {
		mustApply(t, o, ch, TextHeld)
	}
	if c, err := d.SetText(at(phone, 3), d.Text()); c != nil || err != nil {
		t.Fatalf("SetText to the same text: %v %v", c, err)
	}
	c, err = d.SetText(at(phone, 4), "Wednesday: outreach at the night shelter, with J.")
	if err != nil || d.Text() != "Wednesday: outreach at the night shelter, with J." {
		t.Fatalf("SetText: %q %v", d.Text(), err)
	}
	if len(c.Inserts) != 3 || len(c.Deletes) != 0 {
		t.Fatalf("SetText made %d inserts and %d deletes, want 3 and 0: %s", len(c.Inserts), len(c.Deletes), c)
	}
}

// TestTextConcurrentEditsAreVisible pins down what Concurrent reports.
func TestTextConcurrentEditsAreVisible(t *testing.T) {
	p := NewTextDoc(0)
	c1 := mustSplice(t, p, at(phone, 1), 0, 0, "Met J. at the hostel.")
	c2 := mustSplice(t, p, at(phone, 2), 21, 0, " She asked about housing.")
	if p.Concurrent() || len(p.Heads()) != 1 {
		t.Fatal("one device's edits are concurrent")
	}
	tab := NewTextDoc(0)
	mustApply(t, tab, c1, TextApplied)
	c3 := mustSplice(t, tab, at(tablet, 3), 0, 3, "Saw") // did not see c2
	if tab.Concurrent() {
		t.Fatal("an edit on top of everything it holds is concurrent")
	}
	mustApply(t, p, c3, TextApplied)
	mustApply(t, tab, c2, TextApplied)
	for _, d := range []*TextDoc{p, tab} {
		if d.Text() != "Saw J. at the hostel. She asked about housing." {
			t.Fatalf("got %q", d.Text())
		}
		if !d.Concurrent() {
			t.Fatal("edits from two devices that did not see each other are not reported")
		}
		if h := d.Heads(); len(h) != 2 || h[0] != c2.Stamp || h[1] != c3.Stamp {
			t.Fatalf("heads %v", h)
		}
	}
	// Editing the merged text (having seen both) settles it.
	c4 := mustSplice(t, tab, at(tablet, 4), 46, 0, " Again.")
	if tab.Concurrent() {
		t.Fatal("an edit made on the merged text leaves it concurrent")
	}
	mustApply(t, p, c4, TextApplied)
	if p.Concurrent() || !bytes.Equal(EncodeTextDoc(p), EncodeTextDoc(tab)) {
		t.Fatal("replicas disagree on concurrency")
	}
	// A merge of states sees it too.
	x, y := NewTextDoc(0), NewTextDoc(0)
	mustApply(t, x, c1, TextApplied)
	mustApply(t, y, c1, TextApplied)
	mustApply(t, x, c2, TextApplied)
	mustApply(t, y, c3, TextApplied)
	if err := x.Merge(y); err != nil {
		t.Fatal(err)
	}
	if !x.Concurrent() {
		t.Fatal("merged states of concurrent edits are not concurrent")
	}
}

func TestTextLegacyWrite(t *testing.T) {
	old := ReplicaID{0: 0xd0, 15: 9}
	server := NewTextDoc(0)
	c1 := mustSplice(t, server, at(phone, 1), 0, 0, "Met J. at the hostel.")

	t.Run("OK", func(t *testing.T) {
		d := server.Clone()
		c, err := d.LegacyWrite(at(old, 5), "Met J. at the hostel. She asked about housing.")
		if err != nil || c == nil {
			t.Fatal(c, err)
		}
		if c.Replica != LegacyReplica(old) || c.Clock != textT0+5 || len(c.Deletes) != 0 || c.Inserts[0].ID != (TextID{LegacyReplica(old), textT0 + 5, 0}) {
			t.Fatalf("change %s", c)
		}
		if d.Text() != "Met J. at the hostel. She asked about housing." {
			t.Fatalf("got %q", d.Text())
		}
		// A retry, or an older write arriving late, changes nothing.
		for _, n := range []int{5, 4} {
			if again, err := d.LegacyWrite(at(old, n), "something else"); again != nil || err != nil {
				t.Fatalf("retry at %d: %v %v", n, again, err)
			}
		}
		// The device's next write gets ids derived from its own stamp.
		next, err := d.Clone().LegacyWrite(at(old, 6), "Met J. at the hostel. She asked about rent and housing.")
		if err != nil || next.Inserts[0].ID.Anchor != textT0+6 || next.Inserts[0].ID.Offset != 0 {
			t.Fatalf("next write %s, %v", next, err)
		}
		// Every replica that merges the write in the same state makes
		// the same change, and receivers converge.
		e := server.Clone()
		c2, _ := e.LegacyWrite(at(old, 5), "Met J. at the hostel. She asked about housing.")
		if !bytes.Equal(EncodeTextChange(c), EncodeTextChange(c2)) {
			t.Fatal("legacy write is not deterministic")
		}
		f := NewTextDoc(0)
		mustApply(t, f, c, TextHeld)
		mustApply(t, f, c1, TextApplied)
		if !bytes.Equal(EncodeTextDoc(f), EncodeTextDoc(d)) {
			t.Fatal("receiver differs")
		}
	})

	t.Run("KeepsWhatTheOldDeviceCannotHaveSeen", func(t *testing.T) {
		d := server.Clone()
		// The tablet adds a sentence at minute 10; the old device, whose
		// write is stamped at minute 5, cannot have seen it.
		tab := d.Clone()
		ct := mustSplice(t, tab, Stamp{Clock: textT0 + NewTimestamp(10*60_000, 0), Replica: tablet}, 21, 0, " Rain.")
		mustApply(t, d, ct, TextApplied)
		c, err := d.LegacyWrite(Stamp{Clock: textT0 + NewTimestamp(5*60_000, 0), Replica: old}, "Met J. at the shelter.")
		if err != nil || c == nil {
			t.Fatal(err)
		}
		if d.Text() != "Met J. at the shelter. Rain." {
			t.Fatalf("got %q", d.Text())
		}
	})

	t.Run("RemovesWhatItMayHaveSeen", func(t *testing.T) {
		d := server.Clone()
		c, err := d.LegacyWrite(Stamp{Clock: textT0 + NewTimestamp(5*60_000, 0), Replica: old}, "Met J.")
		if err != nil || c == nil || d.Text() != "Met J." {
			t.Fatalf("got %q, %v", d.Text(), err)
		}
	})

	if LegacyReplica(old) == old || LegacyReplica(old) != LegacyReplica(old) || LegacyReplica(old) == LegacyReplica(phone) {
		t.Fatal("LegacyReplica is not a distinct fixed function")
	}
}

func TestTextDecodeRefusesImpossibleOrders(t *testing.T) {
	// Two devices type at the same place concurrently: the merge rule
	// puts one sentence first. A state with the other order is not one
	// any replica can reach, and merging from it would diverge.
	base := NewTextDoc(0)
	a, b := base.Clone(), base.Clone()
	ca := mustSplice(t, a, at(phone, 1), 0, 0, "ab")
	cb := mustSplice(t, b, at(tablet, 2), 0, 0, "cd")
	mustApply(t, a, cb, TextApplied)
	good := EncodeTextDoc(a)
	if _, err := DecodeTextDoc(good, 0); err != nil {
		t.Fatal(err)
	}
	// Build the wrong order by hand.
	bad := NewTextDoc(0)
	mustApply(t, bad, ca, TextApplied)
	mustApply(t, bad, cb, TextApplied)
	first := bad.firstItem()
	second := nextItem(first)
	bad.head.items[0], bad.head.items[1] = second, first
	bad.touched()
	enc := EncodeTextDoc(bad)
	if bytes.Equal(enc, good) {
		t.Fatal("swapping runs did not change the encoding")
	}
	if _, err := DecodeTextDoc(enc, 0); !errors.Is(err, ErrCorruptText) {
		t.Fatalf("decoding runs in an impossible order: %v", err)
	}
	for _, cut := range []int{0, 1, len(good) / 2, len(good) - 1} {
		if _, err := DecodeTextDoc(good[:cut], 0); !errors.Is(err, ErrCorruptText) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	if _, err := DecodeTextDoc(append(bytes.Clone(good), 0), 0); !errors.Is(err, ErrCorruptText) {
		t.Fatalf("trailing byte: %v", err)
	}
	if text, err := TextOfEncoding(good); err != nil || text != a.Text() {
		t.Fatalf("TextOfEncoding: %q %v", text, err)
	}
}

func TestTextMergeCarriesHeldChanges(t *testing.T) {
	a := NewTextDoc(0)
	c1 := mustSplice(t, a, at(phone, 1), 0, 0, "one")
	c2 := mustSplice(t, a, at(phone, 2), 3, 0, " two")
	c3 := mustSplice(t, a, at(phone, 3), 7, 0, " three")
	x, y := NewTextDoc(0), NewTextDoc(0)
	mustApply(t, x, c3, TextHeld)
	mustApply(t, y, c2, TextHeld)
	if err := x.Merge(y); err != nil {
		t.Fatal(err)
	}
	if len(x.Pending()) != 2 || x.Text() != "" {
		t.Fatalf("merge of held changes: %d held, %q", len(x.Pending()), x.Text())
	}
	z := NewTextDoc(0)
	mustApply(t, z, c1, TextApplied)
	if err := x.Merge(z); err != nil {
		t.Fatal(err)
	}
	if x.Text() != "one two three" || len(x.Pending()) != 0 {
		t.Fatalf("got %q with %d held", x.Text(), len(x.Pending()))
	}
	if !bytes.Equal(EncodeTextDoc(x), EncodeTextDoc(a)) {
		t.Fatal("merged state differs from the author's")
	}
}

func TestTextLongHistoryStaysSmall(t *testing.T) {
	// A navigator rewrites a paragraph many times: deleted text is
	// dropped at once, only ids and lengths remain.
	d := NewTextDoc(0)
	para := strings.Repeat("Met J. at the hostel; she asked about housing again. ", 10)
	mustSplice(t, d, at(phone, 1), 0, 0, para)
	for i := range 50 {
		next := fmt.Sprintf("Draft %d: ", i) + para
		if _, err := d.SetText(at(phone, 2+2*i), next); err != nil {
			t.Fatal(err)
		}
		if _, err := d.SetText(at(phone, 3+2*i), para); err != nil {
			t.Fatal(err)
		}
	}
	enc := EncodeTextDoc(d)
	if d.Text() != para {
		t.Fatal("text wrong")
	}
	for l := d.head; l != nil; l = l.next {
		for _, it := range l.items {
			if it.deleted && it.text != nil {
				t.Fatal("a deleted item keeps its text")
			}
		}
	}
	t.Logf("%d bytes of text, %d bytes encoded after 100 rewrites", len(para), len(enc))
}

func ExampleTextDoc() {
	phone, tablet := ReplicaID{15: 1}, ReplicaID{15: 2}
	t0 := NewTimestamp(1795788185123, 0)

	// The phone writes; the tablet syncs.
	p := NewTextDoc(MaxBodyBytes)
	first, _ := p.SetText(Stamp{t0, phone}, "Met J. at the hostel.")
	tab := NewTextDoc(MaxBodyBytes)
	tab.Apply(first)

	// Both edit offline: the phone adds a sentence, the tablet fixes a word.
	add, _ := p.SetText(Stamp{t0 + 1, phone}, "Met J. at the hostel. She asked about housing.")
	fix, _ := tab.SetText(Stamp{t0 + 2, tablet}, "Met J. at the shelter.")

	// They sync, in either order: both edits survive, on both devices.
	p.Apply(fix)
	tab.Apply(add)
	fmt.Println(p.Text())
	fmt.Println(tab.Text() == p.Text(), p.Concurrent())
	// Output:
	// Met J. at the shelter. She asked about housing.
	// true true
}

// TestTextRunsCountsItems: Runs follows the items of the tree through
// inserts, splits, deletions that fold items together, merges, clones and
// decoding.
func TestTextRunsCountsItems(t *testing.T) {
	count := func(d *TextDoc) int {
		n := 0
		for l := d.head; l != nil; l = l.next {
			n += len(l.items)
		}
		return n
	}
	a, b := NewTextDoc(0), NewTextDoc(0)
	mustSplice(t, a, at(phone, 1), 0, 0, "hello world, again and again")
	mustApply(t, b, mustSplice(t, a, at(phone, 2), 5, 1, "_"), TextHeld)
	for i := 3; i < 40; i++ {
		pos := (i * 7) % (a.Len() + 1)
		del := min(i%3, a.Len()-pos)
		mustSplice(t, a, at(phone, i), pos, del, string(rune('a'+i%26)))
		mustSplice(t, b, at(tablet, i), 0, min(1, b.Len()), "x")
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string]*TextDoc{"edited": a, "clone": a.Clone(), "decoded": func() *TextDoc {
		d, err := DecodeTextDoc(EncodeTextDoc(a), 0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}()} {
		if d.Runs() != count(d) {
			t.Fatalf("%s: Runs = %d, the tree holds %d items", name, d.Runs(), count(d))
		}
	}
	if n := len(EncodeTextDoc(a)); n > a.Bytes()+20*a.Runs()+64*len(a.Version())+64 {
		t.Fatalf("the encoding is %d bytes, more than the bound of %d runs", n, a.Runs())
	}
}
