package syncengine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"unicode/utf8"
)

// First bytes of the canonical encodings of a TextDoc and a TextChange. A
// later layout gets a new number; decoders keep reading the old ones.
const (
	textDocVersion    = 1
	textChangeVersion = 1
)

// Bits of a run's flags byte in a TextDoc encoding.
const (
	runNewKey    = 1 << 0 // a key index follows; otherwise the previous run's key
	runLeftShift = 1      // 2 bits: leftNone, leftPrevRun, leftPrevID, leftExplicit
	runRightShft = 3      // 2 bits: rightNone, rightRun, rightExplicit
	runDelShift  = 5      // 2 bits: delNone, delAll, delMixedVisible, delMixedDeleted
)

const (
	leftNone     = 0 // the start of the text
	leftPrevRun  = 1 // the last character of the run before
	leftPrevID   = 2 // the character before in the same sequence
	leftExplicit = 3 // key index and offset follow

	rightNone     = 0 // the end of the text
	rightRun      = 1 // the first character of the run so many runs later
	rightExplicit = 2 // key index and offset follow

	delNone         = 0 // every character visible
	delAll          = 1 // every character deleted
	delMixedVisible = 2 // segment lengths follow, the first visible
	delMixedDeleted = 3 // segment lengths follow, the first deleted
)

// encRun is a maximal run of a state: consecutive ids of one sequence in
// text order, each typed right after the one before, with one right
// origin. Deletion does not cut runs; segs holds the lengths of its
// alternately visible and deleted stretches, the first visible unless
// firstDeleted.
type encRun struct {
	id           cid
	n            int
	left, right  cid
	segs         []int
	firstDeleted bool
}

// runs returns the maximal runs of d in text order.
func (d *TextDoc) runs() []encRun {
	var out []encRun
	for l := d.head; l != nil; l = l.next {
		for _, it := range l.items {
			if k := len(out) - 1; k >= 0 {
				r := &out[k]
				if r.id.key == it.id.key && r.id.off+uint32(r.n) == it.id.off && it.left == (cid{r.id.key, it.id.off - 1}) && it.right == r.right {
					r.n += it.n
					lastDeleted := r.firstDeleted != (len(r.segs)%2 == 0)
					if lastDeleted == it.deleted {
						r.segs[len(r.segs)-1] += it.n
					} else {
						r.segs = append(r.segs, it.n)
					}
					continue
				}
			}
			out = append(out, encRun{id: it.id, n: it.n, left: it.left, right: it.right, segs: []int{it.n}, firstDeleted: it.deleted})
		}
	}
	return out
}

// AppendTextDoc appends the canonical encoding of d to b. Two documents
// have the same encoding if and only if they hold the same changes (applied
// and held).
//
// Layout (integers as minimal uvarints unless a width is given; clocks as
// 8 bytes big-endian):
//
//	version(1) len text                      the current text, first, so
//	                                         TextOfEncoding reads it alone
//	count replicas, sorted by id, each:
//	    id(16) newest-clock(8) count deps, each: replica-index clock(8)
//	count sequences, sorted by (replica, anchor), each:
//	    replica-index anchor(8) end count-marks-after-the-first,
//	    each: offset-delta clock-delta   (the first mark is (0, anchor))
//	count runs, in text order, each:
//	    flags(1) [key-index] zigzag offset-delta length
//	    [left: key-index offset] [right: runs-ahead | key-index offset]
//	    [segments: count lengths-but-the-last]
//	count held changes, sorted by stamp, each: len change-encoding
//
// A run's offset is given as the difference from the end of the previous
// run of the same sequence in text order. Visible characters' text is not
// repeated in the runs: it is the text at the start, in order.
func AppendTextDoc(b []byte, d *TextDoc) []byte {
	b = append(b, textDocVersion)
	b = appendString(b, d.Text())

	repIndex := make(map[ReplicaID]int, len(d.version))
	for i, v := range d.version {
		repIndex[v.Replica] = i
	}
	b = binary.AppendUvarint(b, uint64(len(d.version)))
	for _, v := range d.version {
		rs := d.replicas[v.Replica]
		b = append(b, v.Replica[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(rs.latest))
		b = binary.AppendUvarint(b, uint64(len(rs.deps)))
		for _, s := range rs.deps {
			b = binary.AppendUvarint(b, uint64(repIndex[s.Replica]))
			b = binary.BigEndian.AppendUint64(b, uint64(s.Clock))
		}
	}

	order := make([]int32, len(d.keys))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(x, y int32) int { return d.keys[x].compare(d.keys[y].keyName) })
	rank := make([]int, len(d.keys))
	for i, k := range order {
		rank[k] = i
	}
	b = binary.AppendUvarint(b, uint64(len(order)))
	for _, k := range order {
		key := d.keys[k]
		b = binary.AppendUvarint(b, uint64(repIndex[key.replica]))
		b = binary.BigEndian.AppendUint64(b, uint64(key.anchor))
		b = binary.AppendUvarint(b, uint64(key.end))
		b = binary.AppendUvarint(b, uint64(len(key.marks)-1))
		for i := 1; i < len(key.marks); i++ {
			b = binary.AppendUvarint(b, uint64(key.marks[i].off-key.marks[i-1].off))
			b = binary.AppendUvarint(b, uint64(key.marks[i].clock-key.marks[i-1].clock))
		}
	}

	runs := d.runs()
	starts := make(map[cid]int, len(runs))
	for i := range runs {
		starts[runs[i].id] = i
	}
	cursor := make([]uint32, len(d.keys))
	b = binary.AppendUvarint(b, uint64(len(runs)))
	for i := range runs {
		r := &runs[i]
		var flags byte
		if i == 0 || runs[i-1].id.key != r.id.key {
			flags |= runNewKey
		}
		lk := leftExplicit
		switch {
		case r.left.none():
			lk = leftNone
		case i > 0 && r.left == runs[i-1].last():
			lk = leftPrevRun
		case r.left.key == r.id.key && r.id.off > 0 && r.left.off == r.id.off-1:
			lk = leftPrevID
		}
		rk, ahead := rightExplicit, 0
		if r.right.none() {
			rk = rightNone
		} else if j, ok := starts[r.right]; ok && j > i {
			rk, ahead = rightRun, j-i
		}
		dk := delNone
		switch {
		case len(r.segs) > 1 && r.firstDeleted:
			dk = delMixedDeleted
		case len(r.segs) > 1:
			dk = delMixedVisible
		case r.firstDeleted:
			dk = delAll
		}
		flags |= byte(lk)<<runLeftShift | byte(rk)<<runRightShft | byte(dk)<<runDelShift
		b = append(b, flags)
		if flags&runNewKey != 0 {
			b = binary.AppendUvarint(b, uint64(rank[r.id.key]))
		}
		b = binary.AppendVarint(b, int64(r.id.off)-int64(cursor[r.id.key]))
		cursor[r.id.key] = r.id.off + uint32(r.n)
		b = binary.AppendUvarint(b, uint64(r.n))
		if lk == leftExplicit {
			b = binary.AppendUvarint(b, uint64(rank[r.left.key]))
			b = binary.AppendUvarint(b, uint64(r.left.off))
		}
		switch rk {
		case rightRun:
			b = binary.AppendUvarint(b, uint64(ahead))
		case rightExplicit:
			b = binary.AppendUvarint(b, uint64(rank[r.right.key]))
			b = binary.AppendUvarint(b, uint64(r.right.off))
		}
		if len(r.segs) > 1 {
			b = binary.AppendUvarint(b, uint64(len(r.segs)))
			for _, s := range r.segs[:len(r.segs)-1] {
				b = binary.AppendUvarint(b, uint64(s))
			}
		}
	}

	b = binary.AppendUvarint(b, uint64(len(d.pending)))
	for _, c := range d.sortedPending() {
		enc := AppendTextChange(nil, c)
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

func (r *encRun) last() cid { return cid{r.id.key, r.id.off + uint32(r.n) - 1} }

// EncodeTextDoc returns the canonical encoding of d.
func EncodeTextDoc(d *TextDoc) []byte {
	return AppendTextDoc(make([]byte, 0, d.bytes+64+16*len(d.keys)), d)
}

// TextOfEncoding returns the text of an encoded TextDoc without decoding
// the rest, for readers that only show it.
func TextOfEncoding(b []byte) (string, error) {
	d := textDecoder{b: b}
	if v := d.byte(); d.err == nil && v != textDocVersion {
		return "", fmt.Errorf("%w: unknown version %d", ErrCorruptText, v)
	}
	s := d.string()
	if d.err != nil {
		return "", d.err
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: text is not valid UTF-8", ErrCorruptText)
	}
	return s, nil
}

// DecodeTextDoc decodes a canonical encoding of a TextDoc; limit is as for
// NewTextDoc. It accepts exactly the byte strings AppendTextDoc produces
// from documents reachable by applying changes: it rebuilds the document
// by integrating the runs (so runs in an order the merge rule would not
// give are refused) and refuses any input that does not re-encode to
// itself. Errors wrap ErrCorruptText.
func DecodeTextDoc(b []byte, limit int) (*TextDoc, error) {
	doc, err := decodeTextDoc(b, limit)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(AppendTextDoc(make([]byte, 0, len(b)), doc), b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrCorruptText)
	}
	return doc, nil
}

func decodeTextDoc(b []byte, limit int) (*TextDoc, error) {
	d := textDecoder{b: b}
	if v := d.byte(); d.err == nil && v != textDocVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorruptText, v)
	}
	text := d.string()
	if d.err == nil {
		if err := ValidateText("text", text, len(text), true); err != nil {
			d.fail("the text is not valid: " + err.Error())
		}
	}
	doc := NewTextDoc(limit)

	// Replicas, then their dependencies, which name replicas by index.
	nrep := d.count(16+8+1, MaxTextReplicas)
	reps := make([]ReplicaID, nrep)
	depIdx := make([][]int, nrep)
	for i := 0; i < nrep && d.err == nil; i++ {
		d.read(reps[i][:])
		latest := Timestamp(d.uint64())
		if d.err != nil {
			break
		}
		if reps[i].IsZero() || ValidateClock(latest) != nil || i > 0 && reps[i-1].Compare(reps[i]) >= 0 {
			d.fail("replicas are not valid and sorted")
			break
		}
		rs := doc.replica(reps[i])
		rs.latest = latest
		doc.version = append(doc.version, Stamp{Clock: latest, Replica: reps[i]})
		ndeps := d.count(1+8, nrep)
		for range ndeps {
			j := d.uvarint()
			clock := Timestamp(d.uint64())
			if d.err != nil {
				break
			}
			if j >= uint64(nrep) || int(j) == i || len(depIdx[i]) > 0 && int(j) <= depIdx[i][len(depIdx[i])-1] || ValidateClock(clock) != nil {
				d.fail("a replica's dependencies are not valid and sorted")
				break
			}
			depIdx[i] = append(depIdx[i], int(j))
			rs.deps = append(rs.deps, Stamp{Clock: clock})
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	for i, r := range reps {
		rs := doc.replicas[r]
		for j, k := range depIdx[i] {
			rs.deps[j].Replica = reps[k]
			// A state holds everything its changes were made on.
			if rs.deps[j].Clock > doc.replicas[reps[k]].latest {
				return nil, fmt.Errorf("%w: a replica depends on a change the state does not hold", ErrCorruptText)
			}
		}
	}

	// Sequences. Their ends are checked once the runs are integrated,
	// which grows each sequence from zero.
	nkeys := d.count(1+8+1+1, MaxTextChars)
	ends := make([]uint32, 0, nkeys)
	var total uint64
	for i := 0; i < nkeys && d.err == nil; i++ {
		ri := d.uvarint()
		anchor := Timestamp(d.uint64())
		end := d.uvarint()
		nmarks := d.count(2, MaxTextChars)
		if d.err != nil {
			break
		}
		if ri >= uint64(nrep) || ValidateClock(anchor) != nil || end == 0 || end > maxOffset {
			d.fail("a sequence is not valid")
			break
		}
		name := keyName{reps[ri], anchor}
		if i > 0 && doc.keys[i-1].compare(name) >= 0 {
			d.fail("sequences are not sorted")
			break
		}
		rs := doc.replicas[reps[ri]]
		if anchor > rs.latest {
			d.fail("a sequence is opened after its replica's newest change")
			break
		}
		k := doc.addKey(name)
		key := doc.keys[k]
		key.marks = append(key.marks, clockMark{off: 0, clock: anchor})
		for range nmarks {
			doff, dclock := d.uvarint(), d.uvarint()
			if d.err != nil {
				break
			}
			last := key.marks[len(key.marks)-1]
			off, clock := uint64(last.off)+doff, uint64(last.clock)+dclock
			if doff == 0 || off >= end || clock > uint64(rs.latest) || Timestamp(clock).Millis()-last.clock.Millis() < markInterval {
				d.fail("a sequence's clock marks are not valid")
				break
			}
			key.marks = append(key.marks, clockMark{off: uint32(off), clock: Timestamp(clock)})
		}
		doc.noteKey(rs, k)
		ends = append(ends, uint32(end))
		if total += end; total > MaxTextChars {
			d.fail("the text holds more characters than the limit")
		}
	}
	if d.err != nil {
		return nil, d.err
	}

	// Runs, cut into pieces of one deletion state each.
	nruns := d.count(3, int(total))
	type runRef struct {
		first, last cid
		ahead       int // rightRun: runs ahead; resolved once all are read
		piece0      int // index of the run's first piece
		pieces      int
	}
	runs := make([]runRef, 0, nruns)
	var ps []piece
	cursor := make([]uint32, len(doc.keys))
	key := int32(-1)
	rest := text
	for i := 0; i < nruns && d.err == nil; i++ {
		flags := d.byte()
		if flags&runNewKey != 0 {
			k := d.uvarint()
			if d.err == nil && (k >= uint64(len(doc.keys)) || int32(k) == key) {
				d.fail("a run names a sequence that does not exist or is the previous run's")
			}
			key = int32(k)
		} else if i == 0 {
			d.fail("the first run names no sequence")
		}
		delta := d.varint()
		n := d.uvarint()
		if d.err != nil {
			break
		}
		off := int64(cursor[key]) + delta
		if n == 0 || off < 0 || uint64(off)+n > uint64(ends[key]) {
			d.fail("a run lies outside its sequence")
			break
		}
		id := cid{key, uint32(off)}
		cursor[key] = uint32(off) + uint32(n)
		r := runRef{first: id, last: cid{key, uint32(off) + uint32(n) - 1}, piece0: len(ps)}
		var left, right cid
		switch flags >> runLeftShift & 3 {
		case leftNone:
			left = noID
		case leftPrevRun:
			if i == 0 {
				d.fail("the first run follows no run")
			} else {
				left = runs[i-1].last
			}
		case leftPrevID:
			if off == 0 {
				d.fail("a run at offset 0 has no character before it")
			}
			left = cid{key, uint32(off) - 1}
		case leftExplicit:
			k, o := d.uvarint(), d.uvarint()
			if d.err == nil && (k >= uint64(len(doc.keys)) || o >= uint64(ends[k])) {
				d.fail("a left origin lies outside its sequence")
			}
			left = cid{int32(k), uint32(o)}
		}
		switch flags >> runRightShft & 3 {
		case rightNone:
			right = noID
		case rightRun:
			a := d.uvarint()
			if d.err == nil && (a == 0 || a >= uint64(nruns-i)) {
				d.fail("a right origin points past the last run")
			}
			r.ahead = int(a)
		case rightExplicit:
			k, o := d.uvarint(), d.uvarint()
			if d.err == nil && (k >= uint64(len(doc.keys)) || o >= uint64(ends[k])) {
				d.fail("a right origin lies outside its sequence")
			}
			right = cid{int32(k), uint32(o)}
		default:
			d.fail("unknown right origin kind")
		}
		if flags>>7 != 0 {
			d.fail("unknown run flags")
		}
		dk := flags >> runDelShift & 3
		segs := []uint64{n}
		if dk == delMixedVisible || dk == delMixedDeleted {
			ns := d.count(1, int(n))
			if d.err == nil && ns < 2 {
				d.fail("a mixed run has fewer than two segments")
			}
			segs = segs[:0]
			var sum uint64
			for range max(ns-1, 0) {
				s := d.uvarint()
				if s == 0 {
					d.fail("a segment is empty")
				}
				sum += s
				segs = append(segs, s)
			}
			if d.err == nil && sum >= n {
				d.fail("segments are longer than their run")
			}
			segs = append(segs, n-sum)
		}
		if d.err != nil {
			break
		}
		deleted := dk == delAll || dk == delMixedDeleted
		at := uint32(off)
		for j, s := range segs {
			p := piece{id: cid{key, at}, n: int(s), right: right, deleted: deleted}
			if j == 0 {
				p.left = left
			} else {
				p.left = cid{key, at - 1}
			}
			if !deleted {
				cut := 0
				for c := uint64(0); c < s; c++ {
					if cut >= len(rest) {
						d.fail("the text is shorter than its runs")
						break
					}
					_, size := utf8.DecodeRuneInString(rest[cut:])
					cut += size
				}
				p.text, rest = rest[:cut], rest[cut:]
				p.n16 = utf16Len(p.text, p.n)
			}
			ps = append(ps, p)
			at += uint32(s)
			deleted = !deleted
		}
		r.pieces = len(ps) - r.piece0
		runs = append(runs, r)
	}
	if d.err == nil && rest != "" {
		d.fail("the text is longer than its runs")
	}
	if d.err != nil {
		return nil, d.err
	}
	for i := range runs {
		if a := runs[i].ahead; a > 0 {
			for j := runs[i].piece0; j < runs[i].piece0+runs[i].pieces; j++ {
				ps[j].right = runs[i+a].first
			}
		}
	}

	npend := d.count(2, MaxTextPending)
	var held []*TextChange
	for i := 0; i < npend && d.err == nil; i++ {
		enc := d.bytesField()
		if d.err != nil {
			break
		}
		c, err := DecodeTextChange(enc)
		if err != nil {
			d.fail("a held change is not valid: " + err.Error())
			break
		}
		if i > 0 && held[i-1].Stamp.Compare(c.Stamp) >= 0 {
			d.fail("held changes are not sorted")
			break
		}
		held = append(held, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}

	if err := doc.integratePieces(ps); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptText, err)
	}
	for k, end := range ends {
		if doc.keys[k].end != end {
			return nil, fmt.Errorf("%w: a sequence's runs do not reach its end", ErrCorruptText)
		}
	}
	for _, c := range held {
		doc.pending[c.Stamp] = c
		if err := ValidateTextChange(c, MaxTextChars); err != nil {
			return nil, fmt.Errorf("%w: a held change is not valid: %v", ErrCorruptText, err)
		}
		ready, dup, wait, err := doc.readiness(c)
		if ready || dup || err != nil {
			return nil, fmt.Errorf("%w: a held change should have been applied or dropped", ErrCorruptText)
		}
		doc.wait(wait, c)
	}
	doc.touched()
	return doc, nil
}

// AppendTextChange appends the canonical encoding of c to b.
//
// Layout (integers as minimal uvarints unless a width is given; clocks as
// 8 bytes big-endian):
//
//	version(1) replica(16) clock(8)
//	count deps, each: replica(16) clock(8)
//	count inserts, each: flags(1) [clock-minus-anchor] offset
//	    [left: ref anchor(8) offset] [right: ref anchor(8) offset] len text
//	count deletes, each: ref anchor(8) offset length
//
// A ref names a replica: 0 for the change's own, i for Deps[i-1]. An
// insert's flags say whether it continues the previous insert's sequence
// (so the anchor is left out) and how each origin is given: none, the
// character before in the insert's own sequence, or explicitly.
func AppendTextChange(b []byte, c *TextChange) []byte {
	b = append(b, textChangeVersion)
	b = append(b, c.Replica[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Clock))
	b = binary.AppendUvarint(b, uint64(len(c.Deps)))
	for _, s := range c.Deps {
		b = append(b, s.Replica[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(s.Clock))
	}
	ref := func(r ReplicaID) uint64 {
		if r == c.Replica {
			return 0
		}
		i, _ := slices.BinarySearchFunc(c.Deps, r, stampByReplica)
		return uint64(i + 1)
	}
	appendID := func(b []byte, id TextID) []byte {
		b = binary.AppendUvarint(b, ref(id.Replica))
		b = binary.BigEndian.AppendUint64(b, uint64(id.Anchor))
		return binary.AppendUvarint(b, uint64(id.Offset))
	}
	b = binary.AppendUvarint(b, uint64(len(c.Inserts)))
	for i := range c.Inserts {
		in := &c.Inserts[i]
		var flags byte
		same := i > 0 && c.Inserts[i-1].ID.Anchor == in.ID.Anchor
		if same {
			flags |= insSameSeq
		}
		lk, rk := originKind(in.ID, in.Left), originKind(in.ID, in.Right)
		if rk == originPrevID {
			rk = originExplicit
		}
		flags |= lk<<insLeftShift | rk<<insRightShift
		b = append(b, flags)
		if !same {
			b = binary.AppendUvarint(b, uint64(c.Clock-in.ID.Anchor))
		}
		b = binary.AppendUvarint(b, uint64(in.ID.Offset))
		if lk == originExplicit {
			b = appendID(b, in.Left)
		}
		if rk == originExplicit {
			b = appendID(b, in.Right)
		}
		b = appendString(b, in.Text)
	}
	b = binary.AppendUvarint(b, uint64(len(c.Deletes)))
	for _, r := range c.Deletes {
		b = appendID(b, r.ID)
		b = binary.AppendUvarint(b, uint64(r.Len))
	}
	return b
}

// Bits of an insert's flags byte in a TextChange encoding.
const (
	insSameSeq    = 1 << 0
	insLeftShift  = 1 // 2 bits
	insRightShift = 3 // 2 bits

	originNone     = 0
	originPrevID   = 1
	originExplicit = 2
)

func originKind(id, o TextID) byte {
	switch {
	case o.IsZero():
		return originNone
	case o.Replica == id.Replica && o.Anchor == id.Anchor && id.Offset > 0 && o.Offset == id.Offset-1:
		return originPrevID
	}
	return originExplicit
}

// EncodeTextChange returns the canonical encoding of c.
func EncodeTextChange(c *TextChange) []byte {
	n := 64 + 24*len(c.Deps) + 40*len(c.Deletes)
	for i := range c.Inserts {
		n += 24 + len(c.Inserts[i].Text)
	}
	return AppendTextChange(make([]byte, 0, n), c)
}

// DecodeTextChange decodes a canonical encoding of a TextChange. It
// accepts exactly the byte strings AppendTextChange produces from changes
// that pass ValidateTextChange with the largest limit (MaxTextChars bytes);
// the caller applies the field's own limit. Errors wrap ErrCorruptText.
func DecodeTextChange(b []byte) (*TextChange, error) {
	d := textDecoder{b: b}
	if v := d.byte(); d.err == nil && v != textChangeVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorruptText, v)
	}
	c := &TextChange{}
	d.read(c.Replica[:])
	c.Clock = Timestamp(d.uint64())
	if n := d.count(16+8, MaxTextReplicas); n > 0 {
		c.Deps = make([]Stamp, n)
		for i := range c.Deps {
			d.read(c.Deps[i].Replica[:])
			c.Deps[i].Clock = Timestamp(d.uint64())
		}
	}
	replica := func(ref uint64) ReplicaID {
		switch {
		case ref == 0:
			return c.Replica
		case ref <= uint64(len(c.Deps)):
			return c.Deps[ref-1].Replica
		}
		d.fail("an id names an unknown replica")
		return ReplicaID{}
	}
	readID := func() TextID {
		r := replica(d.uvarint())
		a := Timestamp(d.uint64())
		o := d.uvarint()
		if o >= maxOffset {
			d.fail("an offset is out of range")
		}
		return TextID{Replica: r, Anchor: a, Offset: uint32(o)}
	}
	if n := d.count(4, MaxTextParts); n > 0 {
		c.Inserts = make([]TextInsert, n)
		for i := 0; i < n && d.err == nil; i++ {
			in := &c.Inserts[i]
			flags := d.byte()
			if rk := flags >> insRightShift & 3; flags>>5 != 0 || flags>>insLeftShift&3 == 3 || rk == originPrevID || rk == 3 {
				d.fail("unknown insert flags")
				break
			}
			in.ID.Replica = c.Replica
			if flags&insSameSeq != 0 {
				if i == 0 {
					d.fail("the first insert continues no sequence")
					break
				}
				in.ID.Anchor = c.Inserts[i-1].ID.Anchor
			} else {
				back := d.uvarint()
				if back >= uint64(c.Clock) {
					d.fail("an insert's sequence is opened before the epoch")
					break
				}
				in.ID.Anchor = c.Clock - Timestamp(back)
			}
			o := d.uvarint()
			if o >= maxOffset {
				d.fail("an offset is out of range")
			}
			in.ID.Offset = uint32(o)
			switch flags >> insLeftShift & 3 {
			case originPrevID:
				if in.ID.Offset == 0 {
					d.fail("an insert at offset 0 has no character before it")
				}
				in.Left = TextID{Replica: in.ID.Replica, Anchor: in.ID.Anchor, Offset: in.ID.Offset - 1}
			case originExplicit:
				in.Left = readID()
			}
			if flags>>insRightShift&3 == originExplicit {
				in.Right = readID()
			}
			in.Text = d.string()
		}
	}
	if n := d.count(4, MaxTextParts); n > 0 {
		c.Deletes = make([]TextRange, n)
		for i := 0; i < n && d.err == nil; i++ {
			c.Deletes[i].ID = readID()
			l := d.uvarint()
			if l >= maxOffset {
				d.fail("a delete is too long")
			}
			c.Deletes[i].Len = uint32(l)
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	if err := ValidateTextChange(c, MaxTextChars); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptText, err)
	}
	if !bytes.Equal(AppendTextChange(make([]byte, 0, len(b)), c), b) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrCorruptText)
	}
	return c, nil
}

// textDecoder reads canonical encodings; its first failure sticks.
type textDecoder struct {
	b   []byte
	err error
}

func (d *textDecoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorruptText, msg)
	}
	d.b = nil
}

func (d *textDecoder) read(p []byte) {
	if len(d.b) < len(p) {
		d.fail("truncated")
		clear(p)
		return
	}
	copy(p, d.b)
	d.b = d.b[len(p):]
}

func (d *textDecoder) byte() byte {
	var p [1]byte
	d.read(p[:])
	return p[0]
}

func (d *textDecoder) uint64() uint64 {
	var p [8]byte
	d.read(p[:])
	return binary.BigEndian.Uint64(p[:])
}

func (d *textDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.fail("bad or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *textDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 || n != len(binary.AppendVarint(nil, v)) {
		d.fail("bad or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and refuses one over limit or one that the
// remaining input could not hold at minSize bytes each, so that a forged
// count cannot make the decoder allocate more than the input's size.
func (d *textDecoder) count(minSize, limit int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(limit) || n > uint64(len(d.b)/minSize) {
		d.fail("count larger than the input or the limit")
		return 0
	}
	return int(n)
}

func (d *textDecoder) bytesField() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *textDecoder) string() string { return string(d.bytesField()) }

// textSummary reads from an encoded TextDoc what readers of an entry need
// without rebuilding the document: the text, the stamp of the newest
// change applied (zero for none), and how many heads it has (see
// TextDoc.Heads). It checks only what it reads; DecodeTextDoc checks the
// rest.
func textSummary(b []byte) (text string, newest Stamp, heads int, err error) {
	d := textDecoder{b: b}
	if v := d.byte(); d.err == nil && v != textDocVersion {
		return "", Stamp{}, 0, fmt.Errorf("%w: unknown version %d", ErrCorruptText, v)
	}
	text = d.string()
	nrep := d.count(16+8+1, MaxTextReplicas)
	version := make([]Stamp, nrep)
	seenBy := make([]Timestamp, nrep) // the newest clock of replica i that another replica's newest change had seen
	for i := 0; i < nrep && d.err == nil; i++ {
		d.read(version[i].Replica[:])
		version[i].Clock = Timestamp(d.uint64())
		ndeps := d.count(1+8, nrep)
		for range ndeps {
			j := d.uvarint()
			clock := Timestamp(d.uint64())
			if d.err != nil {
				break
			}
			if j >= uint64(nrep) {
				d.fail("a dependency names no replica")
				break
			}
			seenBy[j] = max(seenBy[j], clock)
		}
	}
	if d.err != nil {
		return "", Stamp{}, 0, d.err
	}
	if !utf8.ValidString(text) {
		return "", Stamp{}, 0, fmt.Errorf("%w: text is not valid UTF-8", ErrCorruptText)
	}
	for i, v := range version {
		if newest.Replica.IsZero() || v.Compare(newest) > 0 {
			newest = v
		}
		if seenBy[i] < v.Clock {
			heads++
		}
	}
	return text, newest, heads, nil
}

// simpleText recognises the canonical encoding of the commonest merged
// text, one typed by one replica from start to end with nothing deleted
// (an entry written once), without rebuilding the document: it accepts
// only encodings that DecodeTextDoc accepts, with exactly its checks, and
// returns the text and the newest change. FuzzDecodeTextDoc checks that
// it never accepts what DecodeTextDoc refuses.
func simpleText(b []byte) (string, Stamp, bool) {
	d := textDecoder{b: b}
	if d.byte() != textDocVersion {
		return "", Stamp{}, false
	}
	text := d.string()
	if d.err != nil || ValidateText("text", text, len(text), true) != nil {
		return "", Stamp{}, false
	}
	n := uint64(runeCount(text))
	var rep ReplicaID
	if d.uvarint() != 1 { // replicas
		return "", Stamp{}, false
	}
	d.read(rep[:])
	latest := Timestamp(d.uint64())
	if d.uvarint() != 0 || rep.IsZero() || ValidateClock(latest) != nil { // its dependencies
		return "", Stamp{}, false
	}
	if d.uvarint() != 1 || d.uvarint() != 0 { // one sequence, of that replica
		return "", Stamp{}, false
	}
	anchor := Timestamp(d.uint64())
	end := d.uvarint()
	if d.err != nil || ValidateClock(anchor) != nil || anchor > latest || end == 0 || end != n || end > maxOffset || end > MaxTextChars {
		return "", Stamp{}, false
	}
	nmarks := d.count(2, MaxTextChars)
	off, clock := uint64(0), uint64(anchor)
	for range nmarks {
		doff, dclock := d.uvarint(), d.uvarint()
		last := Timestamp(clock)
		off, clock = off+doff, clock+dclock
		if d.err != nil || doff == 0 || off >= end || clock > uint64(latest) || Timestamp(clock).Millis()-last.Millis() < markInterval {
			return "", Stamp{}, false
		}
	}
	// One run: the whole sequence, visible, from the start to the end.
	if d.uvarint() != 1 || d.byte() != runNewKey || d.uvarint() != 0 || d.varint() != 0 || d.uvarint() != end || d.uvarint() != 0 {
		return "", Stamp{}, false
	}
	if d.err != nil || len(d.b) != 0 {
		return "", Stamp{}, false
	}
	return text, Stamp{Clock: latest, Replica: rep}, true
}
