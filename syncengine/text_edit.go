package syncengine

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Splice replaces del code points at pos with ins, as an edit made on this
// replica, and returns the change to store in the outbox and send. The
// stamp is the change's: s.Replica is this replica and s.Clock a fresh
// clock reading, later than the replica's previous change to this text.
// A splice that changes nothing returns a nil change and no error.
//
// Errors (nothing changes): a position out of range (ErrInvalidPosition),
// text that is not valid UTF-8 or holds control characters, a result over
// the document's limit (ErrTooLarge), a stamp not after the replica's
// previous change (ErrInvalidClock).
func (d *TextDoc) Splice(s Stamp, pos, del int, ins string) (*TextChange, error) {
	return d.Edit(s, Splice{Pos: pos, Del: del, Text: ins})
}

// SpliceUTF16 is Splice with pos and del counted in UTF-16 code units, as
// phone text views count them. A position between the two halves of a
// surrogate pair is an error (ErrInvalidPosition).
func (d *TextDoc) SpliceUTF16(s Stamp, pos16, del16 int, ins string) (*TextChange, error) {
	if del16 < 0 {
		return nil, invalid("position", ErrInvalidPosition, fmt.Sprintf("cannot delete %d UTF-16 code units", del16))
	}
	pos, err := d.CodePointPos(pos16)
	if err != nil {
		return nil, err
	}
	end, err := d.CodePointPos(pos16 + del16)
	if err != nil {
		return nil, err
	}
	return d.Splice(s, pos, end-pos, ins)
}

// CodePointPos converts a position in UTF-16 code units to one in code
// points. It fails for a position outside the text or between the two
// halves of a surrogate pair.
func (d *TextDoc) CodePointPos(pos16 int) (int, error) {
	if pos16 < 0 || pos16 > d.root.vis16 {
		return 0, invalid("position", ErrInvalidPosition, fmt.Sprintf("position %d is outside the text, which is %d UTF-16 code units long", pos16, d.root.vis16))
	}
	_, _, pos, ok := d.seekUTF16(pos16)
	if !ok {
		return 0, invalid("position", ErrInvalidPosition, fmt.Sprintf("position %d falls inside a character that takes two UTF-16 code units", pos16))
	}
	return pos, nil
}

// UTF16Pos converts a position in code points to one in UTF-16 code units.
func (d *TextDoc) UTF16Pos(pos int) (int, error) {
	if pos < 0 || pos > d.root.vis {
		return 0, invalid("position", ErrInvalidPosition, fmt.Sprintf("position %d is outside the text, which is %d characters long", pos, d.root.vis))
	}
	return d.utf16Before(pos), nil
}

// SetText makes the text equal to text, as a text field hands over its
// whole new content, and returns the change: the edit from the current
// text to text that Diff finds. It returns a nil change when the text is
// already equal.
func (d *TextDoc) SetText(s Stamp, text string) (*TextChange, error) {
	// Edit checks the inserted text and the size; only what Diff needs
	// is checked here.
	if !utf8.ValidString(text) {
		return nil, invalid("text", ErrInvalidUTF8, "text is not valid UTF-8")
	}
	return d.Edit(s, Diff(d.Text(), text)...)
}

// Edit applies several splices as one change. Their positions refer to the
// text before the edit, as Diff returns them: they must be in increasing
// order and must not overlap. See Splice for the stamp and the errors.
func (d *TextDoc) Edit(s Stamp, splices ...Splice) (*TextChange, error) {
	rs, err := d.checkLocal(s)
	if err != nil {
		return nil, err
	}
	end, ins, insChars, empty := 0, 0, 0, true
	for i, sp := range splices {
		if sp.Pos < end || sp.Del < 0 || sp.Pos > d.root.vis-sp.Del {
			if i > 0 && sp.Pos < end {
				return nil, invalid("position", ErrInvalidPosition, fmt.Sprintf("splice at %d overlaps the splice before it or comes before it", sp.Pos))
			}
			return nil, invalid("position", ErrInvalidPosition, fmt.Sprintf("cannot replace %d characters at %d in a text of %d characters", sp.Del, sp.Pos, d.root.vis))
		}
		end = sp.Pos + sp.Del
		if sp.Text != "" {
			if err := ValidateText("text", sp.Text, d.limit, true); err != nil {
				return nil, err
			}
			ins += len(sp.Text)
			insChars += runeCount(sp.Text)
		}
		if sp.Del > 0 || sp.Text != "" {
			empty = false
		}
	}
	if empty {
		return nil, nil
	}
	if d.bytes+ins > d.limit {
		after := d.bytes + ins
		for _, sp := range splices {
			after -= d.visibleBytes(sp.Pos, sp.Del)
		}
		if after > d.limit {
			return nil, invalid("text", ErrTooLarge, fmt.Sprintf("text would be %d bytes; the limit is %d bytes", after, d.limit))
		}
	}
	if d.root.len+insChars > MaxTextChars {
		return nil, invalid("text", ErrTooLarge, fmt.Sprintf("text would hold %d characters with its history; the limit is %d", d.root.len+insChars, MaxTextChars))
	}
	if err := checkParts(splices); err != nil {
		return nil, err
	}
	return d.edit(rs, s, splices, 0), nil
}

// checkParts refuses splices whose change could hold more than
// MaxTextParts parts: each splice inserts at most once, and deletes at most
// one range per character.
func checkParts(splices []Splice) error {
	parts := 0
	for _, sp := range splices {
		parts += sp.Del + 1
	}
	if parts > MaxTextParts {
		return invalid("text", ErrTooLarge, fmt.Sprintf("edit could need %d parts; the limit is %d", parts, MaxTextParts))
	}
	return nil
}

// checkLocal checks the stamp of a local edit and returns its replica's
// state, which it creates.
func (d *TextDoc) checkLocal(s Stamp) (*replicaState, error) {
	if s.Replica.IsZero() {
		return nil, invalid("replica id", ErrInvalidID, "replica id must not be the nil UUID")
	}
	if err := ValidateClock(s.Clock); err != nil {
		return nil, err
	}
	rs := d.lastRS
	if rs == nil || d.lastRep != s.Replica {
		if rs = d.replicas[s.Replica]; rs != nil {
			d.lastRep, d.lastRS = s.Replica, rs
		}
	}
	if rs != nil && s.Clock <= rs.latest {
		return nil, invalid("clock", ErrInvalidClock, fmt.Sprintf("clock %s is not after this replica's previous change to the text, %s", s.Clock, rs.latest))
	}
	if rs == nil && len(d.replicas) >= MaxTextReplicas {
		return nil, invalid("text", ErrTooLarge, fmt.Sprintf("text has been written by %d replicas; the limit is %d", len(d.replicas), MaxTextReplicas))
	}
	return rs, nil
}

// edit applies checked splices. Splices apply from the last to the first,
// so that each position still refers to the text before the edit. With
// unseen non-zero (see LegacyWrite), characters inserted at or after that
// clock are not deleted, and the inserts open a sequence of their own
// anchored at s.Clock, so that their ids derive from the stamp alone.
func (d *TextDoc) edit(rs *replicaState, s Stamp, splices []Splice, unseen Timestamp) *TextChange {
	var c *TextChange
	if len(splices) == 1 && len(d.version) <= len(changeBlock{}.deps) {
		// One splice is the common case (a keystroke): one allocation.
		blk := &changeBlock{}
		c = &blk.c
		c.Stamp = s
		c.Deps = append(blk.deps[:0], d.version...)
		c.Inserts = blk.ins[:0]
	} else {
		c = &TextChange{Stamp: s, Deps: slices.Clone(d.version)}
	}
	for i := len(splices) - 1; i >= 0; i-- {
		sp := splices[i]
		if sp.Del > 0 {
			c.Deletes = d.deleteVisible(sp.Pos, sp.Del, unseen, c.Deletes)
		}
		if sp.Text != "" {
			if rs == nil {
				rs = d.replica(s.Replica)
			}
			c.Inserts = append(c.Inserts, d.insertLocal(rs, s, sp.Pos, sp.Text, unseen != 0))
		}
	}
	if len(c.Inserts)+len(c.Deletes) == 0 {
		// Only possible for a legacy write whose deletes were all of
		// characters it cannot have seen.
		return nil
	}
	if len(c.Inserts) == 0 {
		c.Inserts = nil
	}
	if rs == nil {
		rs = d.replica(s.Replica)
	}
	d.recordState(rs, s.Replica, s.Clock, c.Deps)
	d.touched()
	return c
}

// changeBlock holds a one-splice change and its slices in one allocation
// of 256 bytes.
type changeBlock struct {
	c    TextChange
	ins  [1]TextInsert
	deps [2]Stamp
}

// insertLocal inserts text before the pos-th visible character (at the end
// when pos is the length), after any deleted characters there.
func (d *TextDoc) insertLocal(rs *replicaState, s Stamp, pos int, text string, fresh bool) TextInsert {
	n := runeCount(text)
	n16 := utf16Len(text, n)
	var prev *item
	right := noID
	if d.cur.ok && d.cur.pos == pos {
		prev, right = d.cur.prev, d.cur.right
	} else {
		c, j := d.seekVisible(pos)
		switch {
		case c == nil:
			prev = d.lastItem()
		case j > 0:
			prev = c
			c = d.split(c, j)
			right = c.id
		default:
			prev = prevItem(c)
			right = c.id
		}
	}
	left := noID
	if prev != nil {
		left = prev.last()
	}
	k := rs.key
	if k < 0 || fresh && d.keys[k].anchor != s.Clock || uint64(d.keys[k].end)+uint64(n) > maxOffset {
		name := keyName{s.Replica, s.Clock}
		var ok bool
		if k, ok = d.keyOf[name]; !ok {
			k = d.addKey(name)
		}
		d.noteKey(rs, k)
	}
	id := d.allot(k, n, s.Clock)
	it := d.put(prev, id, n, text, n16, left, right, false)
	d.cur.ok, d.cur.pos, d.cur.prev, d.cur.right = true, pos+n, it, right
	return TextInsert{ID: d.textID(id), Left: d.textID(left), Right: d.textID(right), Text: text}
}

// deleteVisible deletes del visible characters from pos on and appends the
// ids it deleted to out, joining consecutive ids into one range. With
// unseen non-zero it skips (keeps) characters inserted at or after that
// clock.
func (d *TextDoc) deleteVisible(pos, del int, unseen Timestamp, out []TextRange) []TextRange {
	d.cur.ok = false
	it, j := d.seekVisible(pos)
	for del > 0 {
		if it.deleted {
			it, j = nextItem(it), 0
			continue
		}
		take := min(it.n-j, del)
		if unseen != 0 {
			n, keep := d.unseenRun(it.id.key, it.id.off+uint32(j), take, unseen)
			if keep {
				j += n
				del -= n
				if j == it.n {
					it, j = nextItem(it), 0
				}
				continue
			}
			take = n
		}
		if first := (cid{it.id.key, it.id.off + uint32(j)}); d.shiftDeleted(it, j, take) {
			out = appendRange(out, d.textID(first), take)
			del -= take
			if del > 0 {
				it, j = nextItem(it), 0
			}
			continue
		}
		if j > 0 {
			it, j = d.split(it, j), 0
		}
		if it.n > take {
			d.split(it, take)
		}
		out = appendRange(out, d.textID(it.id), take)
		del -= take
		b, surv := d.markDeleted(it)
		d.bytes -= b
		if del > 0 {
			it = nextItem(surv)
		}
	}
	return out
}

// appendRange appends n ids from id on to out, extending the last range
// when they continue it.
func appendRange(out []TextRange, id TextID, n int) []TextRange {
	if k := len(out) - 1; k >= 0 && out[k].ID.Replica == id.Replica && out[k].ID.Anchor == id.Anchor && out[k].ID.Offset+out[k].Len == id.Offset {
		out[k].Len += uint32(n)
		return out
	}
	return append(out, TextRange{ID: id, Len: uint32(n)})
}

// shiftDeleted deletes the n visible characters of it from its j-th on
// when they are at one end of it, next to a deleted item of the same run
// in the same leaf, by moving the boundary between the two items: the
// common case of backspacing (and forward-deleting) through text, which
// then costs no new item. It reports whether it could.
func (d *TextDoc) shiftDeleted(it *item, j, n int) bool {
	leaf := it.leaf
	switch {
	case j > 0 && j+n == it.n:
		i := leaf.indexOf(it)
		if i+1 >= len(leaf.items) {
			return false
		}
		nx := leaf.items[i+1]
		if !nx.deleted || !mergeable(it, nx) {
			return false
		}
		b := byteOffset(it.text, it.n, j)
		u := utf16Len(it.text[b:], n)
		d.bytes -= len(it.text) - b
		it.text = it.text[:b]
		it.n, it.n16 = j, it.n16-u
		nx.id.off -= uint32(n)
		nx.n += n
		nx.left = it.last()
		leaf.add(0, -n, -u)
		return true
	case j == 0 && n < it.n:
		i := leaf.indexOf(it)
		if i == 0 {
			return false
		}
		pv := leaf.items[i-1]
		if !pv.deleted || !mergeable(pv, it) {
			return false
		}
		b := byteOffset(it.text, it.n, n)
		u := utf16Len(it.text[:b], n)
		d.bytes -= b
		it.text = it.text[b:]
		it.n, it.n16 = it.n-n, it.n16-u
		it.id.off += uint32(n)
		pv.n += n
		it.left = pv.last()
		leaf.add(0, -n, -u)
		return true
	}
	return false
}

// unseenRun looks at n characters of sequence k from off on and returns
// how many of the first ones share one answer to "was inserted at or after
// clock t", and that answer. It goes by the sequence's clock marks, which
// bound insertion clocks from below, so the answer "yes" is certain.
func (d *TextDoc) unseenRun(k int32, off uint32, n int, t Timestamp) (int, bool) {
	marks := d.keys[k].marks
	i, found := slices.BinarySearchFunc(marks, off, func(m clockMark, off uint32) int {
		switch {
		case m.off < off:
			return -1
		case m.off > off:
			return 1
		}
		return 0
	})
	if !found {
		i--
	}
	if i+1 < len(marks) {
		n = min(n, int(marks[i+1].off-off))
	}
	return n, marks[i].clock >= t
}

// visibleBytes returns the UTF-8 length of n visible characters from pos on.
func (d *TextDoc) visibleBytes(pos, n int) int {
	if n == 0 {
		return 0
	}
	it, j := d.seekVisible(pos)
	b := 0
	for n > 0 {
		if !it.deleted {
			take := min(it.n-j, n)
			b += byteOffset(it.text, it.n, j+take) - byteOffset(it.text, it.n, j)
			n -= take
		}
		it, j = nextItem(it), 0
	}
	return b
}

// LegacyWrite merges a whole-body write from a device that predates
// TextDoc and returns the change it becomes, which the caller stores and
// sends like any other; it returns a nil change when the write is a
// duplicate, older than the device's last one, or changes nothing.
//
// A character inserted by a change whose clock is s.Clock or later cannot
// have been seen by the device (it would have observed that clock before
// writing). The write is made into the edit, found by Diff, from the rest
// of the text (what the device may have seen) to text; the unseen
// characters stay where they are, and text inserted next to them goes
// before them. The change is stamped with s.Clock and
// LegacyReplica(s.Replica), so every replica that merges the same write in
// the same state makes the same change, and a retry is a duplicate.
//
// What an old device can remove is therefore any character it may have
// seen and left out of text, including one typed elsewhere that it never
// received, if that was typed before its write's clock: less than today,
// when its write replaces the whole body. A word deleted elsewhere and
// still present in text comes back.
func (d *TextDoc) LegacyWrite(s Stamp, text string) (*TextChange, error) {
	ls := Stamp{Clock: s.Clock, Replica: LegacyReplica(s.Replica)}
	if s.Replica.IsZero() {
		return nil, invalid("replica id", ErrInvalidID, "replica id must not be the nil UUID")
	}
	if err := ValidateClock(s.Clock); err != nil {
		return nil, err
	}
	if err := ValidateText("text", text, max(d.limit, MaxBodyBytes), true); err != nil {
		return nil, err
	}
	if d.Has(ls) {
		return nil, nil
	}
	rs, err := d.checkLocal(ls)
	if err != nil {
		return nil, err
	}
	seen, after := d.seenText(s.Clock)
	splices := Diff(seen, text)
	if len(splices) == 0 {
		return nil, nil
	}
	insChars := 0
	for i, sp := range splices {
		insChars += runeCount(sp.Text)
		// Map positions in the seen text to positions in the whole text.
		start := 0
		if sp.Pos > 0 {
			start = after[sp.Pos-1]
		}
		end := start
		if sp.Del > 0 {
			end = after[sp.Pos+sp.Del-1]
		}
		splices[i].Pos, splices[i].Del = start, end-start
	}
	if d.root.len+insChars > MaxTextChars {
		return nil, invalid("text", ErrTooLarge, fmt.Sprintf("text would hold %d characters with its history; the limit is %d", d.root.len+insChars, MaxTextChars))
	}
	if err := checkParts(splices); err != nil {
		return nil, err
	}
	return d.edit(rs, ls, splices, s.Clock), nil
}

// seenText returns the text without the characters inserted at or after
// clock t, and for each of its characters the position in the whole text
// just after it.
func (d *TextDoc) seenText(t Timestamp) (string, []int) {
	var b strings.Builder
	after := make([]int, 0, d.root.vis)
	pos := 0
	for l := d.head; l != nil; l = l.next {
		for _, it := range l.items {
			if it.deleted {
				continue
			}
			for j := 0; j < it.n; {
				n, unseen := d.unseenRun(it.id.key, it.id.off+uint32(j), it.n-j, t)
				if !unseen {
					lo, hi := byteOffset(it.text, it.n, j), byteOffset(it.text, it.n, j+n)
					b.Write(it.text[lo:hi])
					for k := 1; k <= n; k++ {
						after = append(after, pos+k)
					}
				}
				pos += n
				j += n
			}
		}
	}
	return b.String(), after
}
