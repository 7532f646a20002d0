package syncengine

import (
	"bytes"
	"errors"
	"testing"
)

func sampleEntry() *Entry {
	id, _ := ParseEntryID("01936f2e-8b1a-7c3d-9e4f-a1b2c3d4e5f6")
	r1, _ := ParseReplicaID("0b8f5c2e-1111-4a3b-8c9d-0e1f2a3b4c5d")
	t0 := NewTimestamp(1795788185123, 0)
	fb, _ := ParseFeedbackID("01936f2e-9000-7c3d-9e4f-a1b2c3d4e5f6")
	e := &Entry{}
	for _, c := range []Change{
		{Entry: id, Field: FieldTitle, Text: "Tuesday", Stamp: Stamp{t0, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldBody, Text: "Met J. at the hostel.\nShe asked about housing, \"again\".", Stamp: Stamp{t0 + 1, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldDate, Text: "2026-11-24", Stamp: Stamp{t0 + 2, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldMood, Number: 6, Stamp: Stamp{t0 + 3, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldShareSupervisor, Flag: true, Stamp: Stamp{t0 + 4, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldTag, Tag: "housing", Flag: true, Stamp: Stamp{t0 + 5, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldTag, Tag: "court", Flag: false, Stamp: Stamp{t0 + 6, r1}, Author: "PN-A"},
		{Entry: id, Field: FieldFeedbackBody, Feedback: fb, Text: "Thank you for writing this up.", Stamp: Stamp{t0 + 7, r1}, Author: "SUP-1"},
	} {
		e.Apply(&c)
	}
	return e
}

func TestDecodeEntryRejects(t *testing.T) {
	good := EncodeEntry(sampleEntry())
	if _, err := DecodeEntry(good); err != nil {
		t.Fatalf("sample does not decode: %v", err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"Empty", nil},
		{"Version", append([]byte{2}, good[1:]...)},
		{"Truncated", good[:len(good)-1]},
		{"Trailing", append(append([]byte(nil), good...), 0)},
		{"OverlongVarint", overlongAuthorLength(good)},
		{"HugeCount", append(append([]byte(nil), good[:len(good)-1]...), 0xff, 0xff, 0xff, 0xff, 0x0f)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeEntry(tc.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeEntry = %v, want ErrCorrupt", err)
			}
		})
	}
	t.Run("UnsortedTags", func(t *testing.T) {
		e := sampleEntry()
		e.Tags[0], e.Tags[1] = e.Tags[1], e.Tags[0]
		if _, err := DecodeEntry(EncodeEntry(e)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeEntry = %v, want ErrCorrupt", err)
		}
	})
	t.Run("ValueWithoutStamp", func(t *testing.T) {
		e := sampleEntry()
		e.Title.Stamp = Stamp{}
		if _, err := DecodeEntry(EncodeEntry(e)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeEntry = %v, want ErrCorrupt", err)
		}
	})
}

// overlongAuthorLength re-encodes the author length (byte 17) as a
// two-byte varint of the same value.
func overlongAuthorLength(good []byte) []byte {
	b := append([]byte(nil), good[:17]...)
	b = append(b, good[17]|0x80, 0x00)
	return append(b, good[18:]...)
}

func TestStateHash(t *testing.T) {
	a := sampleEntry()
	b := sampleEntry()
	b.ID[15]++
	h1 := StateHash([]*Entry{a, b})
	h2 := StateHash([]*Entry{b, a})
	if h1 != h2 {
		t.Fatal("state hash depends on the order entries are given in")
	}
	c := b.Clone()
	c.Title.Value = "Wednesday"
	if StateHash([]*Entry{a, c}) == h1 {
		t.Fatal("state hash did not change with a title")
	}
	if StateHash([]*Entry{a}) == h1 || StateHash(nil) == h1 {
		t.Fatal("state hash did not change with the set")
	}
	s := NewStateHasher()
	if err := s.Add(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(a); err == nil {
		t.Fatal("StateHasher accepted a decreasing id")
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(EncodeEntry(sampleEntry()))
	f.Add(EncodeEntry(sampleEntry().View(AudienceSupervisor)))
	f.Add(EncodeEntry(&Entry{}))
	f.Add([]byte{1})
	text := sampleEntry()
	c := Change{Entry: text.ID, Field: FieldBody, Stamp: Stamp{Clock: text.Body.Clock + 100, Replica: ReplicaID{15: 7}}, Author: "PN-A"}
	if err := text.EditText(&c, func(d *TextDoc) (*TextChange, error) { return d.Splice(c.Stamp, 3, 2, "ét 🙂") }); err != nil {
		f.Fatal(err)
	}
	f.Add(EncodeEntry(text))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// Canonical: whatever decodes re-encodes to exactly the input.
		if again := EncodeEntry(e); !bytes.Equal(again, b) {
			t.Fatalf("decoded input re-encodes differently:\n in %x\nout %x", b, again)
		}
	})
}

func FuzzApply(f *testing.F) {
	f.Add(uint8(FieldTitle), "Tuesday", "", int64(0), false, uint64(NewTimestamp(MinValidMillis, 0)), byte(1), uint8(FieldBody), "x", int64(0), false, uint64(NewTimestamp(MinValidMillis, 1)), byte(2))
	f.Add(uint8(FieldTag), "", "housing", int64(0), true, uint64(NewTimestamp(MinValidMillis, 0)), byte(1), uint8(FieldTag), "", int64(0), false, uint64(NewTimestamp(MinValidMillis, 0)), byte(2))
	f.Fuzz(func(t *testing.T, f1 uint8, text1, tag string, n1 int64, flag1 bool, clock1 uint64, r1 byte, f2 uint8, text2 string, n2 int64, flag2 bool, clock2 uint64, r2 byte) {
		mk := func(f uint8, text string, n int64, flag bool, clock uint64, r byte) Change {
			c := Change{Entry: testEntryID, Field: Field(f), Text: text, Number: n, Flag: flag, Stamp: Stamp{Timestamp(clock), ReplicaID{15: r}}}
			if c.Field == FieldTag {
				c.Tag, c.Text = tag, ""
			}
			if c.Field.IsFeedback() {
				c.Feedback = FeedbackID{0x01, 6: 0x70, 8: 0x80, 15: r}
			}
			return c
		}
		a, b := mk(f1, text1, n1, flag1, clock1, r1), mk(f2, text2, n2, flag2, clock2, r2)
		for _, c := range []*Change{&a, &b} {
			if ValidateChange(c) != nil {
				return
			}
		}
		x, y := &Entry{}, &Entry{}
		x.Apply(&a)
		x.Apply(&b)
		y.Apply(&b)
		y.Apply(&a)
		y.Apply(&b)
		if !bytes.Equal(EncodeEntry(x), EncodeEntry(y)) {
			t.Fatal("two valid changes applied in two orders differ")
		}
		if d, err := DecodeEntry(EncodeEntry(x)); err != nil || d.Hash() != x.Hash() {
			t.Fatalf("merged entry does not round-trip: %v", err)
		}
	})
}
