package syncengine

import (
	"bytes"
	"errors"
	"testing"
)

// sampleTextDocs returns small documents that between them use every part
// of the encoding: several replicas and sequences, deleted runs, mixed
// runs, origins of every kind, clock marks and held changes.
func sampleTextDocs() (docs []*TextDoc, changes []*TextChange) {
	a, b := NewTextDoc(0), NewTextDoc(0)
	add := func(c *TextChange, err error) *TextChange {
		if err != nil {
			panic(err)
		}
		changes = append(changes, c)
		return c
	}
	c1 := add(a.Splice(at(phone, 1), 0, 0, "Met J. at the hostel."))
	b.Apply(c1)
	add(a.Splice(at(phone, 2), 14, 6, "shelter"))
	add(b.Splice(at(tablet, 3), 21, 0, " She asked about housing 🙂."))
	add(b.Splice(at(tablet, 3+2*60_000<<16), 0, 3, "Saw"))
	add(b.Splice(at(tablet, 4+2*60_000<<16), 5, 1, ""))
	docs = append(docs, NewTextDoc(0), a.Clone(), b.Clone())
	for _, c := range changes[1:] {
		a.Apply(c)
		b.Apply(c)
	}
	docs = append(docs, a)
	held := NewTextDoc(0)
	held.Apply(changes[2])
	docs = append(docs, held)
	old, _ := a.LegacyWrite(at(laptop, 99), "Saw J. at the shelter. She asked about rent.")
	changes = append(changes, old)
	docs = append(docs, a)
	return docs, changes
}

func FuzzDecodeTextDoc(f *testing.F) {
	docs, _ := sampleTextDocs()
	for _, d := range docs {
		f.Add(EncodeTextDoc(d))
	}
	f.Add([]byte{textDocVersion})
	for _, text := range []string{"Met J. at the hostel 🙂", "a"} {
		d := NewTextDoc(0)
		if _, err := d.SetText(Stamp{Clock: NewTimestamp(MinValidMillis, 0), Replica: ReplicaID{15: 1}}, text); err != nil {
			f.Fatal(err)
		}
		for i := range 3 { // typed on over minutes: clock marks
			if _, err := d.Splice(Stamp{Clock: NewTimestamp(MinValidMillis+int64(i+1)*90_000, 0), Replica: ReplicaID{15: 1}}, d.Len(), 0, "x"); err != nil {
				f.Fatal(err)
			}
		}
		f.Add(EncodeTextDoc(d))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeTextDoc(b, 0)
		simple, newest, ok := simpleText(b)
		if err != nil {
			if ok {
				t.Fatalf("simpleText accepts what DecodeTextDoc refuses (%v)", err)
			}
			if !errors.Is(err, ErrCorruptText) {
				t.Fatalf("error %v does not wrap ErrCorruptText", err)
			}
			return
		}
		if ok {
			st := NewTextState(d)
			if simple != d.Text() || newest != st.Newest() || st.Concurrent() {
				t.Fatalf("simpleText reads %q %v from a text of %q %v", simple, newest, d.Text(), st.Newest())
			}
		}
		// Canonical: whatever decodes re-encodes to exactly the input,
		// and behaves: it merges with itself and with an empty document.
		if again := EncodeTextDoc(d); !bytes.Equal(again, b) {
			t.Fatalf("decoded input re-encodes differently:\n in %x\nout %x", b, again)
		}
		if text, err := TextOfEncoding(b); err != nil || text != d.Text() {
			t.Fatalf("TextOfEncoding: %q %v", text, err)
		}
		e := NewTextDoc(0)
		if err := e.Merge(d); err != nil {
			t.Fatal(err)
		}
		if err := e.Merge(d.Clone()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(EncodeTextDoc(e), b) {
			t.Fatal("merging a decoded state into an empty one changes it")
		}
	})
}

func FuzzDecodeTextChange(f *testing.F) {
	_, changes := sampleTextDocs()
	for _, c := range changes {
		f.Add(EncodeTextChange(c))
	}
	f.Add([]byte{textChangeVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeTextChange(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptText) {
				t.Fatalf("error %v does not wrap ErrCorruptText", err)
			}
			return
		}
		if again := EncodeTextChange(c); !bytes.Equal(again, b) {
			t.Fatalf("decoded input re-encodes differently:\n in %x\nout %x", b, again)
		}
		// Applying any valid change to any document either works or
		// fails cleanly, leaving the document as it was.
		docs, _ := sampleTextDocs()
		for _, d := range docs {
			before := EncodeTextDoc(d)
			st, err := d.Apply(c)
			if err != nil && !bytes.Equal(EncodeTextDoc(d), before) {
				t.Fatalf("refused change %s left a trace: %v", c, err)
			}
			if err == nil && st == TextDuplicate && !bytes.Equal(EncodeTextDoc(d), before) {
				t.Fatal("a duplicate changed the document")
			}
			if err == nil {
				if _, err := DecodeTextDoc(EncodeTextDoc(d), 0); err != nil {
					t.Fatalf("state after applying %s does not decode: %v", c, err)
				}
			}
		}
	})
}

// FuzzTextEdits runs a random sequence of edits on two replicas that sync
// at random points and checks that they converge and their states decode.
func FuzzTextEdits(f *testing.F) {
	f.Add([]byte("\x00\x05\x02hello\x01\x03\x01X\x02\x00\x00\x00"))
	f.Add([]byte("\x10\x00\x00ab\x11\x00\x00cd\x02\x12\x01\x00\x01"))
	f.Fuzz(func(t *testing.T, prog []byte) {
		docs := []*TextDoc{NewTextDoc(0), NewTextDoc(0)}
		reps := []ReplicaID{phone, tablet}
		var changes []*TextChange
		clock := textT0
		next := func() byte {
			if len(prog) == 0 {
				return 0
			}
			b := prog[0]
			prog = prog[1:]
			return b
		}
		for len(prog) > 0 && len(changes) < 200 {
			op := next()
			r := int(op>>4) & 1
			d := docs[r]
			switch op & 3 {
			case 0, 1: // splice
				n := d.Len()
				pos := int(next()) % (n + 1)
				del := int(next()) % (n - pos + 1)
				ins := string(textAlphabet[int(next())%len(textAlphabet)])
				if op&1 == 1 {
					ins = ""
				}
				clock++
				c, err := d.Splice(Stamp{clock, reps[r]}, pos, del, ins)
				if err != nil {
					t.Fatal(err)
				}
				if c != nil {
					changes = append(changes, c)
				}
			case 2: // receive a change
				if len(changes) > 0 {
					if _, err := d.Apply(changes[int(next())%len(changes)]); err != nil {
						t.Fatal(err)
					}
				}
			case 3: // merge the other replica's state
				if err := d.Merge(docs[1-r]); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, d := range docs {
			for _, c := range changes {
				if _, err := d.Apply(c); err != nil {
					t.Fatal(err)
				}
			}
		}
		a, b := EncodeTextDoc(docs[0]), EncodeTextDoc(docs[1])
		if !bytes.Equal(a, b) {
			t.Fatalf("replicas diverge: %q vs %q", docs[0].Text(), docs[1].Text())
		}
		if _, err := DecodeTextDoc(a, 0); err != nil {
			t.Fatal(err)
		}
	})
}
