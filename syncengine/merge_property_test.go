package syncengine

import (
	"bytes"
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// The generators draw from deliberately small domains: a few replicas, a
// few clock values, a few tags and values, so that equal clocks from
// different replicas, equal stamps and add/remove races are common.

var testEntryID = EntryID{0x01, 0x93, 0x00, 0x00, 0x00, 0x00, 0x70, 0x00, 0x80}

func genReplica() *rapid.Generator[ReplicaID] {
	return rapid.Custom(func(t *rapid.T) ReplicaID {
		return ReplicaID{15: byte(rapid.IntRange(1, 4).Draw(t, "replica"))}
	})
}

func genChange() *rapid.Generator[Change] {
	return rapid.Custom(func(t *rapid.T) Change {
		c := Change{
			Entry: testEntryID,
			Field: Field(rapid.IntRange(int(FieldTitle), int(FieldFeedbackDeleted)).Draw(t, "field")),
			Stamp: Stamp{
				Clock:   NewTimestamp(MinValidMillis+int64(rapid.IntRange(0, 3).Draw(t, "ms")), uint16(rapid.IntRange(0, 2).Draw(t, "logical"))),
				Replica: genReplica().Draw(t, "replica"),
			},
			Author: rapid.SampledFrom([]string{"PN-A", "PN-A", "PN-A", "PN-B"}).Draw(t, "author"),
		}
		switch c.Field.Kind() {
		case KindText:
			c.Text = rapid.SampledFrom([]string{"", "a", "b", "hostel visit", "ünïcödé 🙂"}).Draw(t, "text")
		case KindNumber:
			c.Number = int64(rapid.IntRange(0, MaxMood).Draw(t, "number"))
		case KindFlag:
			c.Flag = rapid.Bool().Draw(t, "flag")
		}
		if c.Field == FieldTag {
			c.Tag = rapid.SampledFrom([]string{"housing", "court", "relapse", "family"}).Draw(t, "tag")
		}
		if c.Field.IsFeedback() {
			c.Feedback = FeedbackID{0x01, 0x93, 6: 0x70, 8: 0x80, 15: byte(rapid.IntRange(1, 3).Draw(t, "feedback"))}
		}
		return c
	})
}

func applyAll(changes []Change) *Entry {
	e := &Entry{}
	for i := range changes {
		e.Apply(&changes[i])
	}
	return e
}

// shuffled returns a random permutation of changes, with random
// duplicates mixed in.
func shuffled(t *rapid.T, changes []Change, label string) []Change {
	out := append([]Change(nil), changes...)
	for i := len(out) - 1; i > 0; i-- {
		j := rapid.IntRange(0, i).Draw(t, label+"-swap")
		out[i], out[j] = out[j], out[i]
	}
	dups := rapid.IntRange(0, len(changes)).Draw(t, label+"-dups")
	for range dups {
		out = append(out, out[rapid.IntRange(0, len(out)-1).Draw(t, label+"-dup")])
	}
	return out
}

// TestApplyOrderIndependent is the convergence law for one replica: any
// order, any duplication and any batching of the same set of changes gives
// byte-identical entries.
func TestApplyOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		changes := rapid.SliceOfN(genChange(), 1, 40).Draw(t, "changes")
		want := EncodeEntry(applyAll(changes))

		// Another order, with duplicates, applied one by one.
		if got := EncodeEntry(applyAll(shuffled(t, changes, "order"))); !bytes.Equal(got, want) {
			t.Fatalf("reordered changes gave a different entry:\n got %x\nwant %x", got, want)
		}

		// Another order, cut into batches; each batch becomes an entry on
		// its own replica, and the replicas then merge in a random order.
		order := shuffled(t, changes, "batch")
		var parts []*Entry
		for len(order) > 0 {
			n := rapid.IntRange(1, len(order)).Draw(t, "batch-size")
			parts = append(parts, applyAll(order[:n]))
			order = order[n:]
		}
		merged := &Entry{}
		for _, i := range rapid.Permutation(indexes(len(parts))).Draw(t, "merge-order") {
			merged.Merge(parts[i])
		}
		if got := EncodeEntry(merged); !bytes.Equal(got, want) {
			t.Fatalf("batched and merged changes gave a different entry:\n got %x\nwant %x", got, want)
		}
	})
}

func indexes(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func genEntry() *rapid.Generator[*Entry] {
	return rapid.Custom(func(t *rapid.T) *Entry {
		return applyAll(rapid.SliceOfN(genChange(), 0, 20).Draw(t, "changes"))
	})
}

func merged(a, b *Entry) *Entry {
	m := a.Clone()
	m.Merge(b)
	return m
}

// TestMergeLaws checks that Merge is a join: commutative, associative and
// idempotent, byte for byte.
func TestMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genEntry().Draw(t, "a"), genEntry().Draw(t, "b"), genEntry().Draw(t, "c")
		eq := func(law string, x, y *Entry) {
			if bx, by := EncodeEntry(x), EncodeEntry(y); !bytes.Equal(bx, by) {
				t.Fatalf("%s does not hold:\n%x\n%x", law, bx, by)
			}
		}
		eq("commutativity", merged(a, b), merged(b, a))
		eq("associativity", merged(merged(a, b), c), merged(a, merged(b, c)))
		eq("idempotence", merged(a, a), a)
		eq("absorption", merged(merged(a, b), b), merged(a, b))
	})
}

// TestApplyReportsChange checks that Apply's "changed" answer is honest:
// it is false exactly when the encoding did not change.
func TestApplyReportsChange(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := genEntry().Draw(t, "entry")
		c := genChange().Draw(t, "change")
		before := EncodeEntry(e)
		changed := e.Apply(&c)
		if after := EncodeEntry(e); changed != !bytes.Equal(before, after) {
			t.Fatalf("Apply said changed=%v, encoding changed=%v", changed, !bytes.Equal(before, after))
		}
	})
}

// TestEncodingRoundTrip checks that decoding an encoding gives the entry
// back and that encoding is canonical.
func TestEncodingRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := genEntry().Draw(t, "entry")
		if rapid.Bool().Draw(t, "view") {
			e = e.View(Audience(rapid.IntRange(1, 3).Draw(t, "audience")))
		}
		b := EncodeEntry(e)
		d, err := DecodeEntry(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if b2 := EncodeEntry(d); !bytes.Equal(b, b2) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, b2)
		}
		if e.Hash() != d.Hash() {
			t.Fatal("hash differs after round trip")
		}
	})
}

// TestViewsConverge checks that a reader who pulls a view after each batch
// of changes ends with the same bytes as one who pulls once at the end:
// views depend only on the state, never on the path.
func TestViewsConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		changes := rapid.SliceOfN(genChange(), 1, 30).Draw(t, "changes")
		a := Audience(rapid.IntRange(1, 3).Draw(t, "audience"))
		want := EncodeEntry(applyAll(changes).View(a))
		got := EncodeEntry(applyAll(shuffled(t, changes, "order")).View(a))
		if !bytes.Equal(got, want) {
			t.Fatalf("view differs by order:\n got %x\nwant %x", got, want)
		}
	})
}

func ExampleEntry_Apply() {
	id := EntryID{0x01, 0x93, 6: 0x70, 8: 0x80}
	phone, tablet := ReplicaID{15: 1}, ReplicaID{15: 2}
	t0 := NewTimestamp(MinValidMillis, 0)
	edits := []Change{
		{Entry: id, Field: FieldTitle, Text: "Tuesday outreach", Stamp: Stamp{t0, phone}},
		{Entry: id, Field: FieldTitle, Text: "Tuesday outreach, hostel", Stamp: Stamp{t0, tablet}},
		{Entry: id, Field: FieldTag, Tag: "housing", Flag: true, Stamp: Stamp{t0 + 1, phone}},
	}
	a, b := &Entry{}, &Entry{}
	for i := range edits {
		a.Apply(&edits[i])
		b.Apply(&edits[len(edits)-1-i])
	}
	fmt.Println(a.Title.Value, a.TagNames(), a.Hash() == b.Hash())
	// Output: Tuesday outreach, hostel [housing] true
}
