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

// textEntryFeedback is the feedback item whose body the text property
// tests edit as merged text.
var textEntryFeedback = FeedbackID{0x01, 0x93, 6: 0x70, 8: 0x80, 15: 9}

// genTextEntryChanges returns the changes of a random history of one
// entry on 2 to 4 replicas: whole-value writes of the plain fields, and
// text edits of the body and of one feedback body that each replica makes
// on the entry as it holds it (splices and whole-text writes), with
// replicas now and then receiving each other's changes, in random order.
func genTextEntryChanges(t *rapid.T) []Change {
	n := rapid.IntRange(2, 4).Draw(t, "replicas")
	replicas := make([]*Entry, n)
	ids := make([]ReplicaID, n)
	got := make([]map[int]bool, n) // indexes of changes each replica applied
	for i := range replicas {
		replicas[i] = &Entry{ID: testEntryID}
		ids[i] = ReplicaID{0: byte(0x10 * (n - i)), 15: byte(i + 1)}
		got[i] = map[int]bool{}
	}
	clock := NewTimestamp(MinValidMillis, 0)
	var all []Change
	steps := rapid.IntRange(1, 24).Draw(t, "steps")
	for range steps {
		r := rapid.IntRange(0, n-1).Draw(t, "who")
		e := replicas[r]
		clock++
		s := Stamp{Clock: clock, Replica: ids[r]}
		switch rapid.IntRange(0, 3).Draw(t, "step") {
		case 0: // a plain field
			c := genChange().Draw(t, "plain")
			if c.Field == FieldBody || c.Field == FieldFeedbackBody {
				c.Field, c.Text = FieldTitle, "title"
			}
			c.Stamp = s
			all = append(all, c)
			got[r][len(all)-1] = true
			e.Apply(&all[len(all)-1])
		case 1, 2: // an edit of the body or the feedback body
			c := Change{Entry: testEntryID, Field: FieldBody, Stamp: s, Author: "PN-A"}
			if rapid.IntRange(0, 3).Draw(t, "feedback") == 0 {
				c.Field, c.Feedback, c.Author = FieldFeedbackBody, textEntryFeedback, "SUP-1"
			}
			err := e.EditText(&c, func(d *TextDoc) (*TextChange, error) {
				if rapid.Bool().Draw(t, "whole") {
					return d.SetText(s, mutate(t, d.Text()))
				}
				pos := rapid.IntRange(0, d.Len()).Draw(t, "pos")
				del := rapid.IntRange(0, d.Len()-pos).Draw(t, "del")
				return d.Splice(s, pos, del, genText(4).Draw(t, "ins"))
			})
			if err != nil {
				t.Fatalf("local edit: %v", err)
			}
			if c.TextEdit == nil {
				continue
			}
			all = append(all, c)
			got[r][len(all)-1] = true
		case 3: // receive what another replica has, in random order
			from := rapid.IntRange(0, n-1).Draw(t, "from")
			var missing []int
			for i := range all {
				if got[from][i] && !got[r][i] {
					missing = append(missing, i)
				}
			}
			for _, i := range rapid.Permutation(missing).Draw(t, "delivery") {
				e.Apply(&all[i])
				got[r][i] = true
			}
		}
	}
	return all
}

// TestApplyOrderIndependentWithText is TestApplyOrderIndependent for
// entries whose body and feedback body are merged text: any order, any
// duplication and any batching of the same text edits and writes give
// byte-identical entries, with each replica's edits held until what they
// were made on arrives.
func TestApplyOrderIndependentWithText(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		changes := genTextEntryChanges(t)
		want := EncodeEntry(applyAll(changes))
		if got := EncodeEntry(applyAll(shuffled(t, changes, "order"))); !bytes.Equal(got, want) {
			t.Fatalf("reordered changes gave a different entry:\n got %x\nwant %x", got, want)
		}
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
		// The encoding is canonical, read strictly or lazily.
		e := applyAll(changes)
		for _, decode := range []func([]byte) (*Entry, error){DecodeEntry, DecodeEntryLazy} {
			d, err := decode(want)
			if err != nil {
				t.Fatalf("the merged entry does not decode: %v", err)
			}
			if !bytes.Equal(EncodeEntry(d), want) || d.Body != e.Body {
				t.Fatal("the merged entry does not round-trip")
			}
		}
		// Every view's body is the merged text, and only the owner's
		// carries the operations.
		for _, a := range []Audience{AudienceOwner, AudienceSupervisor, AudienceResearch} {
			v := e.View(a)
			if v.Body.Value != e.Body.Value {
				t.Fatalf("%v view holds body %q, not the merged %q", a, v.Body.Value, e.Body.Value)
			}
			if (v.BodyText != nil) != (a == AudienceOwner && e.BodyText != nil) {
				t.Fatalf("%v view carries merged text: %v", a, v.BodyText != nil)
			}
			for _, f := range v.Feedback {
				if f.BodyText != nil {
					t.Fatalf("%v view carries a feedback note's operations", a)
				}
			}
			if v.Flat().HasMergedText() {
				t.Fatalf("flat %v view still carries merged text", a)
			}
		}
	})
}
