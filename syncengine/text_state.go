package syncengine

import (
	"crypto/sha256"
	"fmt"
	"slices"
)

// TextState is a body, or a feedback body, held as merged text inside an
// Entry: a TextDoc, or its canonical encoding. Built from an encoding, it
// reads only the text, the newest change and the heads at first, and
// rebuilds the document the first time an edit or a merge needs it, so
// that readers who only show or export the text (supervisors' pulls,
// research exports, lists on a phone) never rebuild it.
//
// A TextState belongs to the Entry that holds it: it changes only through
// the Entry's methods, and views and clones of the Entry share it until
// one of them changes it. It is not safe for concurrent use.
type TextState struct {
	limit  int
	doc    *TextDoc // nil until needed
	shared bool     // doc is shared with another TextState: copy it before changing it
	enc    []byte   // canonical encoding; nil when doc changed since
	text   string
	newest Stamp // the newest change applied, zero for none
	heads  int
}

// NewTextState returns a TextState holding d, which it owns from then on.
func NewTextState(d *TextDoc) *TextState {
	s := &TextState{limit: d.Limit(), doc: d}
	s.refresh()
	return s
}

// textStateOf returns the TextState of an encoding. With strict, the
// document is rebuilt at once, which checks that the encoding is
// canonical; otherwise only its summary is read.
func textStateOf(b []byte, limit int, strict bool) (*TextState, error) {
	s := &TextState{limit: limit, enc: b}
	if strict {
		if text, newest, ok := simpleText(b); ok {
			// Canonical for certain: the document is rebuilt only if
			// an edit needs it.
			s.text, s.newest, s.heads = text, newest, 1
			return s, nil
		}
		d, err := DecodeTextDoc(b, limit)
		if err != nil {
			return nil, err
		}
		s.doc = d
		s.refresh()
		s.enc = b
		return s, nil
	}
	var err error
	if s.text, s.newest, s.heads, err = textSummary(b); err != nil {
		return nil, err
	}
	return s, nil
}

// refresh reads what the state caches from its document, after a change.
func (s *TextState) refresh() {
	d := s.doc
	s.enc = nil
	s.text = d.Text()
	s.newest = Stamp{}
	for _, v := range d.version {
		if s.newest.Replica.IsZero() || v.Compare(s.newest) > 0 {
			s.newest = v
		}
	}
	s.heads = len(d.Heads())
}

// Text returns the merged text.
func (s *TextState) Text() string { return s.text }

// Newest returns the stamp of the newest change the text holds (the
// greatest clock, the replica breaking ties), or the zero Stamp for a text
// that only holds changes waiting for earlier ones.
func (s *TextState) Newest() Stamp { return s.newest }

// Concurrent reports whether the text holds edits made on two or more
// devices without seeing each other's, and none made on top of them all
// since (see TextDoc.Concurrent): what an app shows as "edited on two
// devices".
func (s *TextState) Concurrent() bool { return s.heads > 1 }

// Encoding returns the canonical encoding of the document (see
// AppendTextDoc). The caller must not change it.
func (s *TextState) Encoding() []byte {
	if s.enc == nil {
		s.enc = EncodeTextDoc(s.doc)
	}
	return s.enc
}

// Doc returns the document, rebuilding it from its encoding if needed. The
// caller must not change it: edits go through Entry.EditText. A state
// built from an encoding that turns out not to decode gives an error
// wrapping ErrCorruptText.
func (s *TextState) Doc() (*TextDoc, error) {
	if s.doc == nil {
		d, err := DecodeTextDoc(s.enc, s.limit)
		if err != nil {
			return nil, err
		}
		s.doc = d
	}
	return s.doc, nil
}

// writable returns the document for a change, copying it first if another
// TextState shares it.
func (s *TextState) writable() (*TextDoc, error) {
	d, err := s.Doc()
	if err != nil {
		return nil, err
	}
	if s.shared {
		s.doc, s.shared = d.Clone(), false
	}
	return s.doc, nil
}

// clone returns a TextState that shares s's document until either
// changes it.
func (s *TextState) clone() *TextState {
	if s == nil {
		return nil
	}
	c := *s
	if c.doc != nil {
		s.shared, c.shared = true, true
	}
	return &c
}

// Register returns the register an old device, or a reader who gets only
// the text, holds for this text: its text, stamped with its newest change.
func (s *TextState) Register() Text { return Text{Value: s.text, Stamp: s.newest} }

// DecodeTextState decodes the merged text of a body (f is FieldBody) or a
// feedback body (FieldFeedbackBody) from its canonical encoding, checking
// all of it (see DecodeTextDoc). It refuses a text holding no change,
// which no entry holds. Errors wrap ErrCorruptText.
func DecodeTextState(b []byte, f Field) (*TextState, error) {
	if f != FieldBody && f != FieldFeedbackBody {
		return nil, errNotText(f)
	}
	s, err := textStateOf(slices.Clone(b), textLimit(f), true)
	if err != nil {
		return nil, err
	}
	if s.doc != nil && len(s.doc.version) == 0 && len(s.doc.pending) == 0 {
		return nil, fmt.Errorf("%w: merged text holds no change", ErrCorruptText)
	}
	return s, nil
}

// equal reports whether two states hold the same changes.
func (s *TextState) equal(o *TextState) bool {
	if s == nil || o == nil {
		return s == o
	}
	return slices.Equal(s.Encoding(), o.Encoding())
}

// seedDevice is the device in whose name a body written before merged
// text is turned into merged text (see seedDoc). It is no enrolled
// device: its replica id is a hash, as LegacyReplica's are.
var seedDevice = func() ReplicaID {
	sum := sha256.Sum256([]byte("diarysync seed text"))
	var r ReplicaID
	copy(r[:], sum[:])
	return r
}()

// SeedReplica is the replica id that holds the text of a body written as
// a register before it became merged text (see Entry.Apply).
var SeedReplica = LegacyReplica(seedDevice)

// seedDoc returns a document holding the text of r, a body written before
// merged text: one insert stamped with r's clock and SeedReplica, which
// depends only on r's clock and text, so that the server and every device
// that hold the same register make the same document from it.
func seedDoc(r Text, limit int) *TextDoc {
	d := NewTextDoc(limit)
	if r.Clock == 0 || r.Value == "" {
		return d
	}
	if _, err := d.LegacyWrite(Stamp{Clock: r.Clock, Replica: seedDevice}, r.Value); err != nil {
		// A register holds only values that passed validation; one that
		// did not becomes an empty text on every replica alike.
		return NewTextDoc(limit)
	}
	return d
}

// textLimit returns the most bytes the field's text may hold.
func textLimit(f Field) int {
	if f == FieldFeedbackBody {
		return MaxFeedbackBodyBytes
	}
	return MaxBodyBytes
}

// errNotText is returned for a text operation on a field that is not a
// body or feedback body.
func errNotText(f Field) error {
	return invalid(f.String(), ErrInvalidField, fmt.Sprintf("%s is not merged text: only the body and feedback bodies are", f))
}
