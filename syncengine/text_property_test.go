package syncengine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// The generators keep documents small and the alphabet mixed: ASCII, a
// two-byte letter, an emoji outside the BMP (two UTF-16 code units) and a
// combining mark, so that positions in code points and in UTF-16 differ.

var textAlphabet = []string{"a", "b", "c", " ", "\n", "é", "🙂", "\u0301"}

func genText(maxLen int) *rapid.Generator[string] {
	return rapid.Custom(func(t *rapid.T) string {
		n := rapid.IntRange(0, maxLen).Draw(t, "len")
		var b strings.Builder
		for range n {
			b.WriteString(rapid.SampledFrom(textAlphabet).Draw(t, "char"))
		}
		return b.String()
	})
}

// textWorld is a set of replicas editing one text, and every change any
// of them made.
type textWorld struct {
	docs     []*TextDoc
	replicas []ReplicaID
	changes  []*TextChange
	clock    Timestamp

	inserted map[TextID]rune // every character ever inserted
	deleted  map[TextID]bool // every character some change deleted
}

func newTextWorld(n int) *textWorld {
	w := &textWorld{clock: NewTimestamp(MinValidMillis, 0), inserted: map[TextID]rune{}, deleted: map[TextID]bool{}}
	for i := range n {
		w.docs = append(w.docs, NewTextDoc(0))
		w.replicas = append(w.replicas, ReplicaID{0: byte(0x10 * (n - i)), 15: byte(i + 1)})
	}
	return w
}

// stamp returns a fresh stamp for replica r; one clock for the world keeps
// every change's clock after everything its author had seen, as hybrid
// logical clocks do.
func (w *textWorld) stamp(r int) Stamp {
	w.clock++
	return Stamp{Clock: w.clock, Replica: w.replicas[r]}
}

// note records a change's inserted and deleted ids.
func (w *textWorld) note(t *rapid.T, c *TextChange) {
	if c == nil {
		return
	}
	w.changes = append(w.changes, c)
	for _, in := range c.Inserts {
		off := in.ID.Offset
		for _, r := range in.Text {
			id := TextID{in.ID.Replica, in.ID.Anchor, off}
			if _, dup := w.inserted[id]; dup {
				t.Fatalf("id %s inserted twice", id)
			}
			w.inserted[id] = r
			off++
		}
	}
	for _, d := range c.Deletes {
		for k := range d.Len {
			w.deleted[TextID{d.ID.Replica, d.ID.Anchor, d.ID.Offset + k}] = true
		}
	}
}

// edit makes one random local edit on replica r and checks that the text
// becomes what the edit asked for.
func (w *textWorld) edit(t *rapid.T, r int) {
	d := w.docs[r]
	before := []rune(d.Text())
	s := w.stamp(r)
	var c *TextChange
	var err error
	var want string
	switch rapid.IntRange(0, 3).Draw(t, "edit-kind") {
	case 0, 1: // a splice in code points
		pos := rapid.IntRange(0, len(before)).Draw(t, "pos")
		del := rapid.IntRange(0, min(3, len(before)-pos)).Draw(t, "del")
		ins := genText(4).Draw(t, "ins")
		c, err = d.Splice(s, pos, del, ins)
		want = string(before[:pos]) + ins + string(before[pos+del:])
	case 2: // a splice in UTF-16 code units, at character boundaries
		pos := rapid.IntRange(0, len(before)).Draw(t, "pos")
		del := rapid.IntRange(0, min(3, len(before)-pos)).Draw(t, "del")
		ins := genText(4).Draw(t, "ins")
		p16, _ := d.UTF16Pos(pos)
		e16, _ := d.UTF16Pos(pos + del)
		c, err = d.SpliceUTF16(s, p16, e16-p16, ins)
		want = string(before[:pos]) + ins + string(before[pos+del:])
	case 3: // the whole new text, as a text field hands it over
		want = mutate(t, string(before))
		c, err = d.SetText(s, want)
	}
	if err != nil {
		t.Fatalf("edit on replica %d: %v", r, err)
	}
	if got := d.Text(); got != want {
		t.Fatalf("edit on replica %d gave %q, want %q", r, got, want)
	}
	w.note(t, c)
}

// mutate returns text with a few random splices applied.
func mutate(t *rapid.T, text string) string {
	rs := []rune(text)
	for range rapid.IntRange(0, 3).Draw(t, "mutations") {
		pos := rapid.IntRange(0, len(rs)).Draw(t, "mpos")
		del := rapid.IntRange(0, min(4, len(rs)-pos)).Draw(t, "mdel")
		ins := []rune(genText(4).Draw(t, "mins"))
		rs = slices.Concat(rs[:pos:pos], ins, rs[pos+del:])
	}
	return string(rs)
}

// deliver gives replica r a random batch of the known changes, in a random
// order, with duplicates, or another replica's whole state.
func (w *textWorld) deliver(t *rapid.T, r int) {
	d := w.docs[r]
	if rapid.IntRange(0, 3).Draw(t, "merge-state") == 0 {
		o := rapid.IntRange(0, len(w.docs)-1).Draw(t, "from")
		if err := d.Merge(w.docs[o]); err != nil {
			t.Fatal(err)
		}
		return
	}
	if len(w.changes) == 0 {
		return
	}
	for range rapid.IntRange(1, 8).Draw(t, "batch") {
		c := w.changes[rapid.IntRange(0, len(w.changes)-1).Draw(t, "change")]
		if _, err := d.Apply(c); err != nil {
			t.Fatalf("replica %d applying %s: %v", r, c, err)
		}
	}
}

// finish delivers every change to every replica, each in its own random
// order, and checks that they all hold the same bytes.
func (w *textWorld) finish(t *rapid.T) []byte {
	for r, d := range w.docs {
		order := rapid.Permutation(w.changes).Draw(t, fmt.Sprintf("final-order-%d", r))
		for _, c := range order {
			if _, err := d.Apply(c); err != nil {
				t.Fatalf("replica %d applying %s: %v", r, c, err)
			}
		}
	}
	want := EncodeTextDoc(w.docs[0])
	for r, d := range w.docs {
		if got := EncodeTextDoc(d); !bytes.Equal(got, want) {
			t.Fatalf("replica %d holds %q, replica 0 holds %q", r, d.Text(), w.docs[0].Text())
		}
		if n := len(d.Pending()); n != 0 {
			t.Fatalf("replica %d still holds %d changes", r, n)
		}
	}
	return want
}

// visibleIDs returns the ids and characters of d's text in order.
func visibleIDs(d *TextDoc) ([]TextID, []rune) {
	var ids []TextID
	var runes []rune
	for l := d.head; l != nil; l = l.next {
		for _, it := range l.items {
			if it.deleted {
				continue
			}
			k := 0
			for _, r := range string(it.text) {
				ids = append(ids, d.textID(cid{it.id.key, it.id.off + uint32(k)}))
				runes = append(runes, r)
				k++
			}
		}
	}
	return ids, runes
}

// TestTextConverges is the convergence law: random concurrent edits on 2
// to 5 replicas, delivered in random orders, with duplicates, in random
// batches and by state merges, leave every replica with the same bytes;
// and the no-lost-words law, checked directly: the text holds exactly the
// characters inserted and not deleted by any change, each as typed.
func TestTextConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := newTextWorld(rapid.IntRange(2, 5).Draw(t, "replicas"))
		for range rapid.IntRange(10, 80).Draw(t, "steps") {
			r := rapid.IntRange(0, len(w.docs)-1).Draw(t, "replica")
			if rapid.Bool().Draw(t, "edit") {
				w.edit(t, r)
			} else {
				w.deliver(t, r)
			}
		}
		want := w.finish(t)

		// The order the changes were made in gives the same bytes.
		ref := NewTextDoc(0)
		for _, c := range w.changes {
			if st, err := ref.Apply(c); err != nil || st != TextApplied {
				t.Fatalf("in order: %s: %v %v", c, st, err)
			}
		}
		if got := EncodeTextDoc(ref); !bytes.Equal(got, want) {
			t.Fatalf("changes in the order made give %q, the replicas hold %q", ref.Text(), w.docs[0].Text())
		}

		ids, runes := visibleIDs(w.docs[0])
		seen := map[TextID]bool{}
		for i, id := range ids {
			r, ok := w.inserted[id]
			switch {
			case !ok:
				t.Fatalf("character %s was never inserted", id)
			case w.deleted[id]:
				t.Fatalf("character %s was deleted but is in the text", id)
			case r != runes[i]:
				t.Fatalf("character %s is %q, was typed as %q", id, runes[i], r)
			case seen[id]:
				t.Fatalf("character %s appears twice", id)
			}
			seen[id] = true
		}
		for id := range w.inserted {
			if !w.deleted[id] && !seen[id] {
				t.Fatalf("character %s (%q) was typed, never deleted, and is lost", id, w.inserted[id])
			}
		}

		back, err := DecodeTextDoc(want, 0)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !bytes.Equal(EncodeTextDoc(back), want) {
			t.Fatal("decoded state re-encodes differently")
		}
	})
}

// TestTextNoInterleaving checks that replicas typing a sentence each at
// the same place, concurrently, forwards (each character after the last)
// or backwards (each before the last), get the sentences one after the
// other, each intact.
func TestTextNoInterleaving(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 5).Draw(t, "replicas")
		w := newTextWorld(n)
		base := genText(6).Draw(t, "base")
		c, err := w.docs[0].Splice(w.stamp(0), 0, 0, base)
		if err != nil {
			t.Fatal(err)
		}
		w.note(t, c)
		for _, d := range w.docs[1:] {
			if c != nil {
				if _, err := d.Apply(c); err != nil {
					t.Fatal(err)
				}
			}
		}
		at := rapid.IntRange(0, utf8.RuneCountInString(base)).Draw(t, "at")
		sentences := make([]string, n)
		for r := range n {
			s := []rune(rapid.StringOfN(rapid.RuneFrom([]rune("abcdefghij 🙂é")), 1, 12, -1).Draw(t, "sentence"))
			sentences[r] = string(s)
			backwards := rapid.Bool().Draw(t, "backwards")
			for i := range s {
				var ch *TextChange
				var err error
				if backwards {
					ch, err = w.docs[r].Splice(w.stamp(r), at, 0, string(s[len(s)-1-i]))
				} else {
					ch, err = w.docs[r].Splice(w.stamp(r), at+i, 0, string(s[i]))
				}
				if err != nil {
					t.Fatal(err)
				}
				w.note(t, ch)
			}
		}
		w.finish(t)
		got := w.docs[0].Text()
		br := []rune(base)
		prefix, suffix := string(br[:at]), string(br[at:])
		if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, suffix) || len(got) < len(prefix)+len(suffix) {
			t.Fatalf("text %q lost the base %q around position %d", got, base, at)
		}
		middle := got[len(prefix) : len(got)-len(suffix)]
		if !isConcatenation(middle, sentences) {
			t.Fatalf("sentences %q interleave: got %q", sentences, middle)
		}
	})
}

// isConcatenation reports whether s is the parts joined in some order.
func isConcatenation(s string, parts []string) bool {
	if len(parts) == 0 {
		return s == ""
	}
	for i, p := range parts {
		if strings.HasPrefix(s, p) {
			rest := slices.Delete(slices.Clone(parts), i, i+1)
			if isConcatenation(s[len(p):], rest) {
				return true
			}
		}
	}
	return false
}

// genTextDocs returns three documents that each received a random subset
// of the changes of one random history, in random orders (so some hold
// changes waiting for others).
func genTextDocs(t *rapid.T) (*textWorld, []*TextDoc) {
	w := newTextWorld(rapid.IntRange(2, 4).Draw(t, "replicas"))
	for range rapid.IntRange(8, 50).Draw(t, "steps") {
		r := rapid.IntRange(0, len(w.docs)-1).Draw(t, "replica")
		if rapid.Bool().Draw(t, "edit") {
			w.edit(t, r)
		} else {
			w.deliver(t, r)
		}
	}
	var docs []*TextDoc
	for i := range 3 {
		d := NewTextDoc(0)
		for _, c := range w.changes {
			if rapid.Bool().Draw(t, fmt.Sprintf("doc-%d-takes", i)) {
				if _, err := d.Apply(c); err != nil {
					t.Fatal(err)
				}
			}
		}
		docs = append(docs, d)
	}
	return w, docs
}

func mergedText(t *rapid.T, a, b *TextDoc) *TextDoc {
	m := a.Clone()
	if err := m.Merge(b); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestTextMergeLaws checks that Merge is a join, byte for byte:
// commutative, associative, idempotent, and equal to applying the union of
// the changes.
func TestTextMergeLaws(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w, docs := genTextDocs(t)
		a, b, c := docs[0], docs[1], docs[2]
		eq := func(law string, x, y *TextDoc) {
			if bx, by := EncodeTextDoc(x), EncodeTextDoc(y); !bytes.Equal(bx, by) {
				t.Fatalf("%s does not hold: %q vs %q", law, x.Text(), y.Text())
			}
		}
		eq("commutativity", mergedText(t, a, b), mergedText(t, b, a))
		eq("associativity", mergedText(t, mergedText(t, a, b), c), mergedText(t, a, mergedText(t, b, c)))
		eq("idempotence", mergedText(t, a, a), a)
		eq("absorption", mergedText(t, mergedText(t, a, b), b), mergedText(t, a, b))

		union := NewTextDoc(0)
		for _, d := range []*TextDoc{a, b} {
			for _, ch := range w.changes {
				if d.Has(ch.Stamp) || d.pending[ch.Stamp] != nil {
					if _, err := union.Apply(ch); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		eq("merge equals applying the union", mergedText(t, a, b), union)

		for _, d := range docs {
			enc := EncodeTextDoc(d)
			back, err := DecodeTextDoc(enc, 0)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			eq("decode round trip", back, d)
			if clone := d.Clone(); !bytes.Equal(EncodeTextDoc(clone), enc) {
				t.Fatal("clone differs")
			}
		}
	})
}

// TestTextChangeEncoding checks that every change the replicas make
// round-trips through its canonical encoding.
func TestTextChangeEncoding(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w, _ := genTextDocs(t)
		for _, c := range w.changes {
			enc := EncodeTextChange(c)
			back, err := DecodeTextChange(enc)
			if err != nil {
				t.Fatalf("decode %s: %v", c, err)
			}
			if !bytes.Equal(EncodeTextChange(back), enc) || back.String() != c.String() {
				t.Fatalf("round trip changed %s into %s", c, back)
			}
		}
	})
}
