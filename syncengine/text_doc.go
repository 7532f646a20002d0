package syncengine

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// keyName identifies a sequence of character ids: the replica that opened
// it and the clock of the change that did.
type keyName struct {
	replica ReplicaID
	anchor  Timestamp
}

func (a keyName) compare(b keyName) int {
	if c := a.replica.Compare(b.replica); c != 0 {
		return c
	}
	switch {
	case a.anchor < b.anchor:
		return -1
	case a.anchor > b.anchor:
		return 1
	}
	return 0
}

// tkey is one sequence: its name, the next offset it will allot, its items
// by offset, and marks that bound from below the clock at which each of its
// characters was inserted.
type tkey struct {
	keyName
	end   uint32
	index idIndex
	marks []clockMark
}

// clockMark says that the characters of a sequence from off on (up to the
// next mark) were inserted by changes with clocks of at least clock. A new
// mark is made when a change's clock is markInterval or more after the
// last mark's, so a sequence written over a day holds a few hundred marks,
// however many changes wrote it.
type clockMark struct {
	off   uint32
	clock Timestamp
}

const markInterval = 60_000 // milliseconds

// replicaState is what a document knows of one replica's changes.
type replicaState struct {
	latest Timestamp // clock of its newest change applied
	deps   []Stamp   // Deps of that change, the replica's own entry left out
	key    int32     // its sequence with the greatest anchor, or -1
}

// TextDoc is the merged state of one text (a body or a feedback body):
// the characters every applied change inserted, in their merged order,
// with the deleted ones kept as tombstones, plus the changes it holds
// until the version they were made on arrives. Two TextDocs that received
// the same changes, in any order and batching, with any duplication, or by
// merging each other's states, have the same Text and the same canonical
// encoding.
//
// A TextDoc is not safe for concurrent use.
type TextDoc struct {
	limit    int
	root     *tnode
	head     *tnode
	keys     []*tkey
	keyOf    map[keyName]int32
	replicas map[ReplicaID]*replicaState
	version  []Stamp                 // newest change of each replica, sorted by replica
	pending  map[Stamp]*TextChange   // held changes
	waiting  map[ReplicaID]*waitHeap // held changes by the replica and clock they wait for
	woken    []ReplicaID             // replicas that advanced while changes were waiting
	bytes    int                     // visible text in bytes
	items    int                     // items in the tree
	text     string
	textOK   bool

	// cur remembers where the last local insert ended, so that typing
	// on from there skips finding the position: prev holds the last
	// character typed and right is the right origin it was typed with.
	cur struct {
		ok    bool
		pos   int
		prev  *item
		right cid
	}
	// lastRep and lastRS cache the state of the replica that edits
	// locally.
	lastRep ReplicaID
	lastRS  *replicaState
}

// NewTextDoc returns an empty document. limit is the most bytes of text a
// local edit may leave (MaxBodyBytes for a body, MaxFeedbackBodyBytes for
// feedback); zero means MaxBodyBytes. Changes from other replicas are not
// held to it, because refusing one would make replicas diverge: two
// devices that each stay within the limit can merge to a longer text.
func NewTextDoc(limit int) *TextDoc {
	if limit <= 0 {
		limit = MaxBodyBytes
	}
	d := &TextDoc{
		limit:    limit,
		keyOf:    map[keyName]int32{},
		replicas: map[ReplicaID]*replicaState{},
		waiting:  map[ReplicaID]*waitHeap{},
		pending:  map[Stamp]*TextChange{},
	}
	d.newTree()
	return d
}

// Limit returns the most bytes of text a local edit may leave.
func (d *TextDoc) Limit() int { return d.limit }

// Text returns the current text. It is kept up to date as changes apply,
// so reading it never replays history.
func (d *TextDoc) Text() string {
	if !d.textOK {
		var b strings.Builder
		b.Grow(d.bytes)
		for l := d.head; l != nil; l = l.next {
			for _, it := range l.items {
				if !it.deleted {
					b.Write(it.text)
				}
			}
		}
		d.text, d.textOK = b.String(), true
	}
	return d.text
}

// Len returns the length of the text in code points.
func (d *TextDoc) Len() int { return d.root.vis }

// LenUTF16 returns the length of the text in UTF-16 code units.
func (d *TextDoc) LenUTF16() int { return d.root.vis16 }

// Bytes returns the length of the text in bytes.
func (d *TextDoc) Bytes() int { return d.bytes }

// Runs returns how many runs of characters the document holds, deleted
// ones included: what its size beyond the text grows with. A run costs a
// few bytes in the canonical encoding (at most about 20) and about a
// hundred in memory, so a cap on runs bounds both without encoding the
// document.
func (d *TextDoc) Runs() int { return d.items }

// Chars returns how many characters the document has ever held, deleted
// ones included (at most MaxTextChars).
func (d *TextDoc) Chars() int { return d.root.len }

// Version returns, for every replica whose changes the document holds, the
// stamp of its newest change, sorted by replica. A change is part of the
// document if and only if its clock is at most its replica's clock here.
func (d *TextDoc) Version() []Stamp { return slices.Clone(d.version) }

// Has reports whether the change with stamp s is part of the document
// (held changes are not).
func (d *TextDoc) Has(s Stamp) bool {
	rs := d.replicas[s.Replica]
	return rs != nil && s.Clock <= rs.latest
}

// Updated returns the greatest clock of any change the document holds, or
// zero for a document no change has written.
func (d *TextDoc) Updated() Timestamp {
	var t Timestamp
	for _, v := range d.version {
		t = max(t, v.Clock)
	}
	return t
}

// Pending returns copies of the changes the document holds until the
// version they were made on arrives, sorted by stamp.
func (d *TextDoc) Pending() []*TextChange {
	out := d.sortedPending()
	for i, c := range out {
		out[i] = cloneChange(c)
	}
	return out
}

func (d *TextDoc) sortedPending() []*TextChange {
	out := make([]*TextChange, 0, len(d.pending))
	for _, c := range d.pending {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *TextChange) int { return a.Stamp.Compare(b.Stamp) })
	return out
}

// Heads returns the newest change of each replica that no other replica's
// newest change had seen, sorted by replica. A document written by one
// replica, or whose latest writer had seen everyone else's edits, has one
// head.
func (d *TextDoc) Heads() []Stamp {
	var heads []Stamp
	for _, v := range d.version {
		head := true
		for _, w := range d.version {
			if w.Replica == v.Replica {
				continue
			}
			deps := d.replicas[w.Replica].deps
			if i, ok := slices.BinarySearchFunc(deps, v.Replica, stampByReplica); ok && deps[i].Clock >= v.Clock {
				head = false
				break
			}
		}
		if head {
			heads = append(heads, v)
		}
	}
	return heads
}

// Concurrent reports whether the text holds edits that two or more
// replicas made without seeing each other's, with no edit made on top of
// them all since: what an app shows as "edited on two devices". It is the
// same on every replica that holds the same changes.
func (d *TextDoc) Concurrent() bool { return len(d.Heads()) > 1 }

func stampByReplica(s Stamp, r ReplicaID) int { return s.Replica.Compare(r) }

func (d *TextDoc) touched() { d.textOK = false }

// textID converts an internal id to its exported form.
func (d *TextDoc) textID(c cid) TextID {
	if c.none() {
		return TextID{}
	}
	k := d.keys[c.key]
	return TextID{Replica: k.replica, Anchor: k.anchor, Offset: c.off}
}

// addKey opens a sequence with no characters yet.
func (d *TextDoc) addKey(name keyName) int32 {
	k := int32(len(d.keys))
	d.keys = append(d.keys, &tkey{keyName: name})
	d.keyOf[name] = k
	return k
}

// allot reserves n ids at the end of sequence k for a change with clock t.
func (d *TextDoc) allot(k int32, n int, t Timestamp) cid {
	key := d.keys[k]
	c := cid{k, key.end}
	if m := len(key.marks); m == 0 || t.Millis()-key.marks[m-1].clock.Millis() >= markInterval {
		key.marks = append(key.marks, clockMark{off: key.end, clock: t})
	}
	key.end += uint32(n)
	return c
}

// replica returns the state of r, creating it.
func (d *TextDoc) replica(r ReplicaID) *replicaState {
	rs := d.replicas[r]
	if rs == nil {
		rs = &replicaState{key: -1}
		d.replicas[r] = rs
	}
	return rs
}

// record notes that r's change at clock t, made on deps, is applied.
func (d *TextDoc) record(r ReplicaID, t Timestamp, deps []Stamp) {
	d.recordState(d.replica(r), r, t, deps)
}

func (d *TextDoc) recordState(rs *replicaState, r ReplicaID, t Timestamp, deps []Stamp) {
	rs.latest = t
	rs.deps = rs.deps[:0]
	for _, s := range deps {
		if s.Replica != r {
			rs.deps = append(rs.deps, s)
		}
	}
	if len(d.waiting) > 0 {
		d.woken = append(d.woken, r)
	}
	i, ok := slices.BinarySearchFunc(d.version, r, stampByReplica)
	if ok {
		d.version[i].Clock = t
	} else {
		d.version = slices.Insert(d.version, i, Stamp{Clock: t, Replica: r})
	}
}

// noteKey keeps rs.key at the replica's sequence with the greatest anchor.
func (d *TextDoc) noteKey(rs *replicaState, k int32) {
	if rs.key < 0 || d.keys[rs.key].anchor < d.keys[k].anchor {
		rs.key = k
	}
}

// integrate places a run of characters received from another replica (or
// rebuilt from a state) between its origins, by the FugueMax rule.
func (d *TextDoc) integrate(id cid, n int, text string, n16 int, left, right cid, deleted bool) {
	d.cur.ok = false
	var l *item
	if !left.none() {
		it, j := d.findID(left)
		if j < it.n-1 {
			d.split(it, j+1)
		}
		l = it
	}
	var r *item
	if !right.none() {
		it, j := d.findID(right)
		if j > 0 {
			it = d.split(it, j)
		}
		r = it
	}
	var o *item
	if l == nil {
		o = d.firstItem()
	} else {
		o = nextItem(l)
	}
	dest := o
	if o != r {
		// Items between the origins were typed concurrently with this
		// run (the author saw its origins adjacent). Scan them; see the
		// package documentation for the rule.
		leftPos := d.pos(left)
		rightPos := d.root.len
		if r != nil {
			rightPos = position(r)
		}
		newID := d.textID(id)
		scanning := false
		for {
			if !scanning {
				dest = o
			}
			if o == nil || o == r {
				break
			}
			ol := d.pos(o.left)
			if ol < leftPos {
				break
			}
			if ol == leftPos {
				or := d.root.len
				if !o.right.none() {
					or = d.pos(o.right)
				}
				switch {
				case or < rightPos:
					scanning = true
				case or == rightPos:
					if newID.Compare(d.textID(o.id)) < 0 {
						goto place
					}
					scanning = false
				default:
					scanning = false
				}
			}
			o = nextItem(o)
		}
	}
place:
	var prev *item
	if dest == nil {
		prev = d.lastItem()
	} else {
		prev = prevItem(dest)
	}
	d.put(prev, id, n, text, n16, left, right, deleted)
}

// put places a run right after prev, extending prev when the run continues
// it, and returns the item that holds it.
func (d *TextDoc) put(prev *item, id cid, n int, text string, n16 int, left, right cid, deleted bool) *item {
	if prev != nil && prev.deleted == deleted && prev.id.key == id.key && prev.id.off+uint32(prev.n) == id.off && left == prev.last() && right == prev.right {
		if deleted {
			prev.n += n
			prev.leaf.add(n, 0, 0)
		} else {
			d.extend(prev, text, n, n16)
			d.bytes += len(text)
		}
		return prev
	}
	it := &item{id: id, n: n, left: left, right: right, deleted: deleted}
	if !deleted {
		it.text = []byte(text)
		it.n16 = n16
		d.bytes += len(text)
	}
	d.insertAfter(prev, it)
	return it
}

// deleteIDs deletes the visible characters among n ids of sequence k from
// off on.
func (d *TextDoc) deleteIDs(k int32, off uint32, n uint32) {
	d.cur.ok = false
	for n > 0 {
		it, j := d.findID(cid{k, off})
		take := min(uint32(it.n-j), n)
		if !it.deleted && !d.shiftDeleted(it, j, int(take)) {
			if j > 0 {
				it = d.split(it, j)
			}
			if uint32(it.n) > take {
				d.split(it, int(take))
			}
			b, _ := d.markDeleted(it)
			d.bytes -= b
		}
		off += take
		n -= take
	}
}

// Apply merges a change received from another replica (or from this one,
// again) into the document. A change already held or applied is a
// duplicate. A change made on a version the document does not hold yet is
// held, and applies as soon as that version is complete, together with
// whatever else it unblocks. Apply validates the change
// (ValidateTextChange, with the document's limit as the bound of one
// change's text) and its fit with the history; on error nothing changes.
func (d *TextDoc) Apply(c *TextChange) (TextStatus, error) {
	if err := ValidateTextChange(c, max(d.limit, MaxBodyBytes)); err != nil {
		return 0, err
	}
	return d.applyValid(c)
}

// applyValid is Apply for a change that passed ValidateTextChange.
func (d *TextDoc) applyValid(c *TextChange) (TextStatus, error) {
	st, err := d.offer(c)
	if err != nil || st != TextApplied {
		return st, err
	}
	d.drain()
	return TextApplied, nil
}

// Ready reports what Apply would do with c now, without doing it:
// TextApplied when c is ready to apply, TextDuplicate when the document
// already holds it, TextHeld when the version it was made on is not
// complete yet; and the error Apply would give for a change that skipped
// one of its own replica's changes. It does not check that c's ids are in
// the document, which Apply does (and then changes nothing).
func (d *TextDoc) Ready(c *TextChange) (TextStatus, error) {
	if d.pending[c.Stamp] != nil {
		return TextDuplicate, nil
	}
	ready, dup, _, err := d.readiness(c)
	switch {
	case err != nil:
		return 0, err
	case dup:
		return TextDuplicate, nil
	case !ready:
		return TextHeld, nil
	}
	return TextApplied, nil
}

// readiness says whether c can apply now. It is not ready, with no error,
// while the version it was made on is incomplete, and then names a
// replica whose next change it waits for; it is an error when c skipped a
// change of its own replica that the document holds (its replica forked),
// which no later change can mend.
func (d *TextDoc) readiness(c *TextChange) (ready, dup bool, wait Stamp, err error) {
	var latest Timestamp
	if rs := d.replicas[c.Replica]; rs != nil {
		latest = rs.latest
	}
	if c.Clock <= latest {
		return false, true, wait, nil
	}
	prev := prevOwn(c)
	if prev < latest {
		return false, false, wait, invalid("text change", ErrTextHistory, fmt.Sprintf("text change %s was not made on its replica's change %s", c.Clock, latest))
	}
	if prev > latest {
		return false, false, Stamp{Clock: prev, Replica: c.Replica}, nil
	}
	for _, s := range c.Deps {
		if s.Replica == c.Replica {
			continue
		}
		if rs := d.replicas[s.Replica]; rs == nil || rs.latest < s.Clock {
			return false, false, s, nil
		}
	}
	return true, false, wait, nil
}

// prevOwn returns the clock of c's replica's previous change in c.Deps.
func prevOwn(c *TextChange) Timestamp {
	if i, ok := slices.BinarySearchFunc(c.Deps, c.Replica, stampByReplica); ok {
		return c.Deps[i].Clock
	}
	return 0
}

// offer applies c if it is ready and holds it otherwise.
func (d *TextDoc) offer(c *TextChange) (TextStatus, error) {
	ready, dup, wait, err := d.readiness(c)
	if err != nil {
		return 0, err
	}
	if dup {
		return TextDuplicate, nil
	}
	if !ready {
		if d.pending[c.Stamp] != nil {
			return TextDuplicate, nil
		}
		if len(d.pending) >= MaxTextPending {
			return 0, invalid("text", ErrTooLarge, fmt.Sprintf("text holds %d changes waiting for earlier ones; the limit is %d", len(d.pending), MaxTextPending))
		}
		c = cloneChange(c)
		d.pending[c.Stamp] = c
		d.wait(wait, c)
		return TextHeld, nil
	}
	if err := d.applyReady(c); err != nil {
		return 0, err
	}
	return TextApplied, nil
}

// wait files the held change c until replica w.Replica reaches w.Clock.
func (d *TextDoc) wait(w Stamp, c *TextChange) {
	h := d.waiting[w.Replica]
	if h == nil {
		h = &waitHeap{}
		d.waiting[w.Replica] = h
	}
	h.push(waiter{w.Clock, c})
}

// drain applies every held change that has become ready, until none has.
// Only the changes waiting for a clock a replica has now reached are
// looked at. A held change that turns out not to fit the history once its
// version is complete is dropped: every replica that receives it finds the
// same.
func (d *TextDoc) drain() {
	for len(d.woken) > 0 {
		r := d.woken[len(d.woken)-1]
		d.woken = d.woken[:len(d.woken)-1]
		h := d.waiting[r]
		if h == nil {
			continue
		}
		var latest Timestamp
		if rs := d.replicas[r]; rs != nil {
			latest = rs.latest
		}
		for len(h.w) > 0 && h.w[0].clock <= latest {
			c := h.pop().c
			ready, dup, wait, err := d.readiness(c)
			if !ready && !dup && err == nil {
				d.wait(wait, c)
				continue
			}
			delete(d.pending, c.Stamp)
			if ready {
				_ = d.applyReady(c)
			}
		}
		if len(h.w) == 0 {
			delete(d.waiting, r)
		}
	}
	if len(d.waiting) == 0 {
		d.woken = d.woken[:0]
	}
}

// rewait files every held change again by what it waits for, applying the
// ones that are ready; Merge uses it after adding held changes.
func (d *TextDoc) rewait() {
	clear(d.waiting)
	d.woken = d.woken[:0]
	for _, c := range d.sortedPending() {
		// File everything as ready to look at; drain sorts it out.
		d.wait(Stamp{Replica: c.Replica}, c)
		d.woken = append(d.woken, c.Replica)
	}
	d.drain()
}

// waiter is a held change and the clock it waits for.
type waiter struct {
	clock Timestamp
	c     *TextChange
}

// waitHeap is a min-heap of waiters by clock.
type waitHeap struct{ w []waiter }

func (h *waitHeap) push(x waiter) {
	h.w = append(h.w, x)
	for i := len(h.w) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.w[i], h.w[p] = h.w[p], h.w[i]
		i = p
	}
}

func (h *waitHeap) pop() waiter {
	top := h.w[0]
	n := len(h.w) - 1
	h.w[0] = h.w[n]
	h.w[n] = waiter{}
	h.w = h.w[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && h.less(l, m) {
			m = l
		}
		if r < n && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.w[i], h.w[m] = h.w[m], h.w[i]
		i = m
	}
	return top
}

// less orders by clock, then by stamp, so the order of applying held
// changes does not depend on the order they arrived in.
func (h *waitHeap) less(i, j int) bool {
	if h.w[i].clock != h.w[j].clock {
		return h.w[i].clock < h.w[j].clock
	}
	return h.w[i].c.Stamp.Compare(h.w[j].c.Stamp) < 0
}

func cloneChange(c *TextChange) *TextChange {
	return &TextChange{Stamp: c.Stamp, Deps: slices.Clone(c.Deps), Inserts: slices.Clone(c.Inserts), Deletes: slices.Clone(c.Deletes)}
}

// plannedInsert is an insert resolved against the document.
type plannedInsert struct {
	id          cid
	left, right cid
	n, n16      int
}

// applyReady checks c against the document and applies it. Nothing
// changes when the check fails.
func (d *TextDoc) applyReady(c *TextChange) error {
	// Resolve every id first, with the sequences c opens numbered after
	// the existing ones, so a refusal leaves the document untouched.
	var opened []keyName
	ends := map[int32]uint32{}
	end := func(k int32) uint32 {
		if e, ok := ends[k]; ok {
			return e
		}
		if int(k) < len(d.keys) {
			return d.keys[k].end
		}
		return 0
	}
	lookup := func(id TextID) int32 {
		if k, ok := d.keyOf[keyName{id.Replica, id.Anchor}]; ok {
			return k
		}
		for i, o := range opened {
			if o.replica == id.Replica && o.anchor == id.Anchor {
				return int32(len(d.keys) + i)
			}
		}
		return -1
	}
	resolve := func(what string, id TextID) (cid, error) {
		if id.IsZero() {
			return noID, nil
		}
		k := lookup(id)
		if k < 0 || id.Offset >= end(k) {
			return noID, invalid("text change", ErrTextHistory, fmt.Sprintf("%s %s of a text change is not in its history", what, id))
		}
		return cid{k, id.Offset}, nil
	}
	total := d.root.len
	plan := make([]plannedInsert, len(c.Inserts))
	for i := range c.Inserts {
		in := &c.Inserts[i]
		k := lookup(in.ID)
		if k < 0 {
			if in.ID.Anchor != c.Clock || in.ID.Offset != 0 {
				return invalid("text change", ErrTextHistory, fmt.Sprintf("insert %s continues a sequence the text does not hold", in.ID))
			}
			opened = append(opened, keyName{in.ID.Replica, in.ID.Anchor})
			k = int32(len(d.keys) + len(opened) - 1)
		}
		if in.ID.Offset != end(k) {
			return invalid("text change", ErrTextHistory, fmt.Sprintf("insert %s does not continue its sequence at %d", in.ID, end(k)))
		}
		p := &plan[i]
		var err error
		if p.left, err = resolve("left origin", in.Left); err != nil {
			return err
		}
		if p.right, err = resolve("right origin", in.Right); err != nil {
			return err
		}
		p.n = runeCount(in.Text)
		p.n16 = utf16Len(in.Text, p.n)
		p.id = cid{k, in.ID.Offset}
		ends[k] = in.ID.Offset + uint32(p.n)
		total += p.n
	}
	if total > MaxTextChars {
		return invalid("text", ErrTooLarge, fmt.Sprintf("text would hold %d characters with its history; the limit is %d", total, MaxTextChars))
	}
	dels := make([]cid, len(c.Deletes))
	for i, r := range c.Deletes {
		k := lookup(r.ID)
		if k < 0 || uint64(r.ID.Offset)+uint64(r.Len) > uint64(end(k)) {
			return invalid("text change", ErrTextHistory, fmt.Sprintf("deleted ids %s×%d are not in the change's history", r.ID, r.Len))
		}
		dels[i] = cid{k, r.ID.Offset}
	}
	if len(d.replicas)+1 > MaxTextReplicas && d.replicas[c.Replica] == nil {
		return invalid("text", ErrTooLarge, fmt.Sprintf("text has been written by %d replicas; the limit is %d", len(d.replicas), MaxTextReplicas))
	}
	// An insert's origins were adjacent when it was typed, left before
	// right, and characters never change places, so on every replica its
	// left origin comes before its right one. A change that says
	// otherwise was not made by a replica of this text, and integrating
	// it would give an order that depends on when it arrived. Origins
	// already in the document are checked here; an origin among the
	// change's own inserts only once those are placed, with a copy to go
	// back to (a change made locally that way is rare: two splices that
	// touch).
	var backup *TextDoc
	for i := range plan {
		p := &plan[i]
		if d.has(p.left) && d.has(p.right) {
			if !d.ordered(p.left, p.right) {
				return misordered(c.Inserts[i].ID)
			}
		} else if backup == nil {
			backup = d.Clone()
		}
	}

	rs := d.replica(c.Replica)
	for _, name := range opened {
		d.noteKey(rs, d.addKey(name))
	}
	for i := range c.Inserts {
		p := &plan[i]
		got := d.allot(p.id.key, p.n, c.Clock)
		if got != p.id {
			panic("syncengine: planned id out of step")
		}
		if backup != nil && !d.ordered(p.left, p.right) {
			*d = *backup
			return misordered(c.Inserts[i].ID)
		}
		d.integrate(p.id, p.n, c.Inserts[i].Text, p.n16, p.left, p.right, false)
	}
	for i, r := range c.Deletes {
		d.deleteIDs(dels[i].key, dels[i].off, r.Len)
	}
	d.record(c.Replica, c.Clock, c.Deps)
	d.touched()
	return nil
}

// has reports whether the document holds the character c (or c names none).
func (d *TextDoc) has(c cid) bool {
	return c.none() || int(c.key) < len(d.keys) && c.off < d.keys[c.key].end
}

// ordered reports whether left comes before right in the document, where
// none as left is the start and as right the end.
func (d *TextDoc) ordered(left, right cid) bool {
	return left.none() || right.none() || d.pos(left) < d.pos(right)
}

func misordered(id TextID) error {
	return invalid("text change", ErrTextHistory, fmt.Sprintf("insert %s names a right origin that does not come after its left origin", id))
}

// Clone returns a deep copy of d.
func (d *TextDoc) Clone() *TextDoc {
	c := NewTextDoc(d.limit)
	for _, k := range d.keys {
		ck := c.keys[c.addKey(k.keyName)]
		ck.end = k.end
		ck.marks = slices.Clone(k.marks)
	}
	for r, rs := range d.replicas {
		c.replicas[r] = &replicaState{latest: rs.latest, deps: slices.Clone(rs.deps), key: rs.key}
	}
	c.version = slices.Clone(d.version)
	c.pending = maps.Clone(d.pending)
	for r, h := range d.waiting {
		c.waiting[r] = &waitHeap{w: slices.Clone(h.w)}
	}
	var prev *item
	for l := d.head; l != nil; l = l.next {
		for _, it := range l.items {
			x := &item{id: it.id, n: it.n, n16: it.n16, left: it.left, right: it.right, deleted: it.deleted, text: slices.Clip(slices.Clone(it.text))}
			c.insertAfter(prev, x)
			prev = x
		}
	}
	c.bytes = d.bytes
	return c
}
