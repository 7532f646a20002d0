package syncengine

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"slices"
)

// The first byte of every canonical encoding names its layout. A later
// layout gets a new number; decoders keep reading the old ones.
const (
	// encodingVersion is the layout of an entry whose bodies are all
	// registers: every entry stored before merged text existed, and
	// every view that carries merged text as text only. Such entries keep
	// this layout, so their encodings and hashes are what they were.
	encodingVersion = 1
	// encodingVersionText is the layout of an entry with merged text in
	// its body or a feedback body.
	encodingVersionText = 2
)

// ErrCorrupt is returned (wrapped) by DecodeEntry for input that is not a
// canonical encoding.
var ErrCorrupt = errors.New("not a canonical entry encoding")

// AppendEntry appends the canonical encoding of e to b. Two entries have
// the same encoding if and only if they are equal, which is what lets
// replicas compare hashes instead of contents.
//
// Layout (integers big-endian, lengths and counts as minimal uvarints):
//
//	version(1) id(16) len author created(8)
//	title, body, date:   clock(8) replica(16) len text
//	mood:                clock(8) replica(16) zigzag-varint value
//	share_supervisor, share_research, deleted: clock(8) replica(16) 0|1
//	count tags,     each: len name 0|1 clock(8) replica(16)
//	count feedback, each: id(16) len author created(8) body-register deleted-register
//
// In layout 2, used exactly when some body is merged text, the body and
// each feedback body are instead
//
//	0 clock(8) replica(16) len text   a register, as above
//	1 len text-state                  merged text: AppendTextDoc's encoding
//
// and the register of a merged text is not written: it is derived from it.
func AppendEntry(b []byte, e *Entry) []byte {
	text := e.HasMergedText()
	if text {
		b = append(b, encodingVersionText)
	} else {
		b = append(b, encodingVersion)
	}
	b = append(b, e.ID[:]...)
	b = appendString(b, e.Author)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Created))
	b = appendText(b, &e.Title)
	b = appendBody(b, text, &e.Body, e.BodyText)
	b = appendText(b, &e.Date)
	b = appendStamp(b, e.Mood.Stamp)
	b = binary.AppendVarint(b, e.Mood.Value)
	b = appendFlag(b, &e.ShareSupervisor)
	b = appendFlag(b, &e.ShareResearch)
	b = appendFlag(b, &e.Deleted)
	b = binary.AppendUvarint(b, uint64(len(e.Tags)))
	for i := range e.Tags {
		t := &e.Tags[i]
		b = appendString(b, t.Name)
		b = appendBool(b, t.Present)
		b = appendStamp(b, t.Stamp)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Feedback)))
	for i := range e.Feedback {
		f := &e.Feedback[i]
		b = append(b, f.ID[:]...)
		b = appendString(b, f.Author)
		b = binary.BigEndian.AppendUint64(b, uint64(f.Created))
		b = appendBody(b, text, &f.Body, f.BodyText)
		b = appendFlag(b, &f.Deleted)
	}
	return b
}

func appendBody(b []byte, layout2 bool, r *Text, s *TextState) []byte {
	switch {
	case !layout2:
		return appendText(b, r)
	case s == nil:
		return appendText(append(b, 0), r)
	}
	enc := s.Encoding()
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(enc)))
	return append(b, enc...)
}

// EncodeEntry returns the canonical encoding of e.
func EncodeEntry(e *Entry) []byte {
	// The fixed part (id, created, seven registers with their stamps) is
	// about 210 bytes; reserving it all avoids growing the buffer.
	n := 256 + len(e.Author) + len(e.Title.Value) + len(e.Body.Value) + len(e.Date.Value) + 48*len(e.Tags) + 96*len(e.Feedback)
	if e.BodyText != nil {
		n += len(e.BodyText.Encoding()) - len(e.Body.Value)
	}
	for i := range e.Feedback {
		if s := e.Feedback[i].BodyText; s != nil {
			n += len(s.Encoding())
		}
	}
	return AppendEntry(make([]byte, 0, n), e)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStamp(b []byte, s Stamp) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(s.Clock))
	return append(b, s.Replica[:]...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendText(b []byte, r *Text) []byte {
	b = appendStamp(b, r.Stamp)
	return appendString(b, r.Value)
}

func appendFlag(b []byte, r *Flag) []byte {
	b = appendStamp(b, r.Stamp)
	return appendBool(b, r.Value)
}

// DecodeEntry decodes a canonical encoding. It accepts exactly the byte
// strings AppendEntry produces: anything else (a truncation, trailing
// bytes, an overlong varint, unsorted tags, a value in a register never
// written, merged text that DecodeTextDoc refuses) is an error wrapping
// ErrCorrupt, so that a decoded entry re-encodes to the same bytes. It
// reads both layouts (see AppendEntry): entries stored before merged text
// decode as they always did.
func DecodeEntry(b []byte) (*Entry, error) { return decodeEntry(b, true) }

// DecodeEntryLazy is DecodeEntry for encodings the caller stored itself
// (a store's or a replica's own states): of merged text it reads only the
// text, the newest change and the heads, and the document is rebuilt, and
// checked, the first time an edit or a merge needs it (see TextState). A
// merged text that then fails to decode is an error of that call, wrapping
// ErrCorruptText.
func DecodeEntryLazy(b []byte) (*Entry, error) { return decodeEntry(b, false) }

func decodeEntry(b []byte, strict bool) (*Entry, error) {
	d := decoder{b: b, strict: strict}
	e := &Entry{}
	switch v := d.byte(); {
	case d.err != nil:
	case v == encodingVersionText:
		d.layout2 = true
	case v != encodingVersion:
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorrupt, v)
	}
	d.read(e.ID[:])
	e.Author = d.string()
	e.Created = Timestamp(d.uint64())
	d.text(&e.Title)
	d.body(&e.Body, &e.BodyText, MaxBodyBytes)
	d.text(&e.Date)
	e.Mood.Stamp = d.stamp()
	e.Mood.Value = d.varint()
	if e.Mood.Stamp == (Stamp{}) && e.Mood.Value != 0 {
		d.fail("mood has a value but was never written")
	}
	d.flag(&e.ShareSupervisor)
	d.flag(&e.ShareResearch)
	d.flag(&e.Deleted)
	if n := d.count(26); n > 0 {
		e.Tags = make([]Tag, n)
		for i := range e.Tags {
			t := &e.Tags[i]
			t.Name = d.string()
			t.Present = d.bool()
			t.Stamp = d.stamp()
			if i > 0 && e.Tags[i-1].Name >= t.Name {
				d.fail("tags not in strictly increasing order")
			}
		}
	}
	minFeedback := 16 + 1 + 8 + 25 + 25
	if d.layout2 {
		minFeedback = 16 + 1 + 8 + 8 + 25
	}
	if n := d.count(minFeedback); n > 0 {
		e.Feedback = make([]Feedback, n)
		for i := range e.Feedback {
			f := &e.Feedback[i]
			d.read(f.ID[:])
			f.Author = d.string()
			f.Created = Timestamp(d.uint64())
			d.body(&f.Body, &f.BodyText, MaxFeedbackBodyBytes)
			d.flag(&f.Deleted)
			if i > 0 && e.Feedback[i-1].ID.Compare(f.ID) >= 0 {
				d.fail("feedback not in strictly increasing order")
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err == nil && d.layout2 && !e.HasMergedText() {
		d.fail("an entry without merged text is written in layout 1")
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}

type decoder struct {
	b       []byte
	err     error
	layout2 bool // bodies may be merged text
	strict  bool // rebuild merged text at once (DecodeEntry)
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, msg)
	}
	d.b = nil
}

func (d *decoder) read(p []byte) {
	if len(d.b) < len(p) {
		d.fail("truncated")
		return
	}
	copy(p, d.b)
	d.b = d.b[len(p):]
}

func (d *decoder) byte() byte {
	var p [1]byte
	d.read(p[:])
	return p[0]
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("boolean is neither 0 nor 1")
	return false
}

func (d *decoder) uint64() uint64 {
	var p [8]byte
	d.read(p[:])
	return binary.BigEndian.Uint64(p[:])
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.fail("bad or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(nil, v)) {
		d.fail("bad or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and refuses one that the remaining input
// could not hold at minSize bytes each, so a forged count cannot make the
// decoder allocate more than the input's size.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/minSize) {
		d.fail("count larger than the input")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) stamp() Stamp {
	var s Stamp
	s.Clock = Timestamp(d.uint64())
	d.read(s.Replica[:])
	return s
}

func (d *decoder) text(r *Text) {
	r.Stamp = d.stamp()
	r.Value = d.string()
	if r.Stamp == (Stamp{}) && r.Value != "" {
		d.fail("text has a value but was never written")
	}
}

// body reads a body register, or in layout 2 a register or merged text.
func (d *decoder) body(r *Text, s **TextState, limit int) {
	if !d.layout2 {
		d.text(r)
		return
	}
	switch d.byte() {
	case 0:
		d.text(r)
		return
	case 1:
	default:
		d.fail("a body is neither a register nor merged text")
		return
	}
	n := d.uvarint()
	if d.err != nil {
		return
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return
	}
	enc := slices.Clone(d.b[:n])
	d.b = d.b[n:]
	st, err := textStateOf(enc, limit, d.strict)
	if err != nil {
		d.fail("merged text: " + err.Error())
		return
	}
	if d.strict && st.doc != nil && len(st.doc.version) == 0 && len(st.doc.pending) == 0 {
		d.fail("merged text holds no change")
		return
	}
	*s, *r = st, st.Register()
}

func (d *decoder) flag(r *Flag) {
	r.Stamp = d.stamp()
	r.Value = d.bool()
	if r.Stamp == (Stamp{}) && r.Value {
		d.fail("flag is set but was never written")
	}
}

// Hash returns the SHA-256 of the canonical encoding of e.
func (e *Entry) Hash() [32]byte {
	return sha256.Sum256(EncodeEntry(e))
}

// StateHasher computes the state hash of a set of entries: a SHA-256 over
// the entries' own hashes in increasing id order. Two replicas holding the
// same entries get the same state hash; comparing it is how a device and
// the server check that they agree without sending the entries.
type StateHasher struct {
	h     hash.Hash
	last  EntryID
	count int
	buf   []byte
}

// NewStateHasher returns an empty StateHasher.
func NewStateHasher() *StateHasher {
	h := sha256.New()
	h.Write([]byte("diarysync state v1\n"))
	return &StateHasher{h: h}
}

// Add adds one entry. Entries must come in strictly increasing id order
// (as an ORDER BY on the id gives them); Add reports an error otherwise.
func (s *StateHasher) Add(e *Entry) error {
	if s.count > 0 && bytes.Compare(e.ID[:], s.last[:]) <= 0 {
		return fmt.Errorf("state hash: entry %s after %s: ids must increase", e.ID, s.last)
	}
	s.buf = AppendEntry(s.buf[:0], e)
	sum := sha256.Sum256(s.buf)
	s.h.Write(sum[:])
	s.last = e.ID
	s.count++
	return nil
}

// Count returns the number of entries added.
func (s *StateHasher) Count() int { return s.count }

// Sum returns the state hash of the entries added so far.
func (s *StateHasher) Sum() [32]byte {
	var out [32]byte
	h := s.h
	// Sum appends and does not change the running state, so more entries
	// may still be added.
	copy(out[:], h.Sum(nil))
	return out
}

// StateHash returns the state hash of entries, which it sorts by id.
func StateHash(entries []*Entry) [32]byte {
	sorted := make([]*Entry, len(entries))
	copy(sorted, entries)
	slicesSortByID(sorted)
	s := NewStateHasher()
	for _, e := range sorted {
		if err := s.Add(e); err != nil {
			// Two entries with one id: not a set. Hash them both anyway
			// so the sum differs from the deduplicated set.
			s.buf = AppendEntry(s.buf[:0], e)
			sum := sha256.Sum256(s.buf)
			s.h.Write(sum[:])
		}
	}
	return s.Sum()
}
