package syncengine

import (
	"slices"
	"unicode/utf8"
)

// The document is a list of items in text order, deleted ones included.
// An item is a run of characters with consecutive ids of one sequence,
// typed one after the other: its first character has explicit origins,
// each later one has the character before it as left origin and the
// item's right origin as its own. Items live in the leaves of a B+ tree
// whose nodes cache three lengths of their subtree (all characters,
// visible code points, visible UTF-16 code units), so that finding a
// position, or the position of an item, costs O(log n). Each sequence also
// keeps its items sorted by offset, so an id is found in O(log n) as well.

const (
	treeLeafMax = 64
	treeNodeMax = 32
	idChunkMax  = 128
)

// cid is a character id inside one document: the sequence's index in
// TextDoc.keys and the offset. key < 0 names no character.
type cid struct {
	key int32
	off uint32
}

var noID = cid{key: -1}

func (c cid) none() bool { return c.key < 0 }

type item struct {
	id      cid
	n       int // characters
	n16     int // UTF-16 code units of text; 0 when deleted
	left    cid // left origin of the first character
	right   cid // right origin of every character
	deleted bool
	text    []byte // UTF-8; nil when deleted
	leaf    *tnode
}

func (it *item) last() cid { return cid{it.id.key, it.id.off + uint32(it.n) - 1} }

func (it *item) vis() int {
	if it.deleted {
		return 0
	}
	return it.n
}

func (it *item) vis16() int {
	if it.deleted {
		return 0
	}
	return it.n16
}

func (it *item) contains(c cid) bool {
	return c.key == it.id.key && c.off >= it.id.off && c.off < it.id.off+uint32(it.n)
}

type tnode struct {
	parent     *tnode
	kids       []*tnode // internal nodes only
	items      []*item  // leaves only
	prev, next *tnode   // leaves only, in text order
	len        int      // characters, deleted ones included
	vis        int      // visible code points
	vis16      int      // visible UTF-16 code units
}

func (n *tnode) leaf() bool { return n.kids == nil }

func (n *tnode) add(dl, dv, d16 int) {
	for ; n != nil; n = n.parent {
		n.len += dl
		n.vis += dv
		n.vis16 += d16
	}
}

func (n *tnode) indexOf(it *item) int {
	for i, x := range n.items {
		if x == it {
			return i
		}
	}
	panic("syncengine: item not in its leaf")
}

func (n *tnode) kidIndex(k *tnode) int {
	for i, x := range n.kids {
		if x == k {
			return i
		}
	}
	panic("syncengine: node not in its parent")
}

// idIndex holds the items of one sequence sorted by offset, in chunks so
// that inserting into a long sequence moves at most a chunk.
type idIndex struct {
	chunks [][]*item
}

// chunk returns the index of the chunk that holds off, or would.
func (x *idIndex) chunk(off uint32) int {
	lo, hi := 0, len(x.chunks)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if x.chunks[m][0].id.off <= off {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

// find returns the item holding off, or nil.
func (x *idIndex) find(off uint32) *item {
	if len(x.chunks) == 0 {
		return nil
	}
	ch := x.chunks[x.chunk(off)]
	// Most lookups are for the newest item of a sequence.
	if it := ch[len(ch)-1]; it.id.off <= off {
		if off < it.id.off+uint32(it.n) {
			return it
		}
		return nil
	}
	lo, hi := 0, len(ch)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if ch[m].id.off <= off {
			lo = m
		} else {
			hi = m
		}
	}
	if it := ch[lo]; it.id.off <= off && off < it.id.off+uint32(it.n) {
		return it
	}
	return nil
}

func (x *idIndex) insert(it *item) {
	if len(x.chunks) == 0 {
		x.chunks = append(x.chunks, make([]*item, 0, 8))
	}
	c := x.chunk(it.id.off)
	ch := x.chunks[c]
	i, _ := slices.BinarySearchFunc(ch, it.id.off, func(a *item, off uint32) int {
		switch {
		case a.id.off < off:
			return -1
		case a.id.off > off:
			return 1
		}
		return 0
	})
	ch = slices.Insert(ch, i, it)
	if len(ch) <= idChunkMax {
		x.chunks[c] = ch
		return
	}
	half := len(ch) / 2
	right := make([]*item, len(ch)-half, idChunkMax)
	copy(right, ch[half:])
	clear(ch[half:])
	x.chunks[c] = ch[:half]
	x.chunks = slices.Insert(x.chunks, c+1, right)
}

func (x *idIndex) remove(it *item) {
	c := x.chunk(it.id.off)
	ch := x.chunks[c]
	i := slices.Index(ch, it)
	ch = slices.Delete(ch, i, i+1)
	if len(ch) == 0 {
		x.chunks = slices.Delete(x.chunks, c, c+1)
		return
	}
	x.chunks[c] = ch
}

// byteOffset returns the byte offset of the j-th code point of text, which
// holds n code points.
func byteOffset(text []byte, n, j int) int {
	if len(text) == n {
		return j
	}
	b := 0
	for ; j > 0; j-- {
		_, size := utf8.DecodeRune(text[b:])
		b += size
	}
	return b
}

// utf16Len returns the UTF-16 length of text, which holds n code points.
func utf16Len[T []byte | string](text T, n int) int {
	if len(text) == n {
		return n
	}
	u := 0
	for _, r := range string(text) {
		if r >= 0x10000 {
			u += 2
		} else {
			u++
		}
	}
	return u
}

// newTree resets the document to an empty list.
func (d *TextDoc) newTree() {
	leaf := &tnode{items: make([]*item, 0, 8)}
	d.root, d.head = leaf, leaf
}

// firstItem returns the first item of the list, or nil.
func (d *TextDoc) firstItem() *item {
	for l := d.head; l != nil; l = l.next {
		if len(l.items) > 0 {
			return l.items[0]
		}
	}
	return nil
}

// lastItem returns the last item of the list, or nil.
func (d *TextDoc) lastItem() *item {
	n := d.root
	for !n.leaf() {
		n = n.kids[len(n.kids)-1]
	}
	for l := n; l != nil; l = l.prev {
		if len(l.items) > 0 {
			return l.items[len(l.items)-1]
		}
	}
	return nil
}

func nextItem(it *item) *item {
	l := it.leaf
	if i := l.indexOf(it); i+1 < len(l.items) {
		return l.items[i+1]
	}
	for l = l.next; l != nil; l = l.next {
		if len(l.items) > 0 {
			return l.items[0]
		}
	}
	return nil
}

func prevItem(it *item) *item {
	l := it.leaf
	if i := l.indexOf(it); i > 0 {
		return l.items[i-1]
	}
	for l = l.prev; l != nil; l = l.prev {
		if len(l.items) > 0 {
			return l.items[len(l.items)-1]
		}
	}
	return nil
}

// position returns the index in the whole list (deleted characters
// included) of the first character of it.
func position(it *item) int {
	l := it.leaf
	p := 0
	for _, x := range l.items {
		if x == it {
			break
		}
		p += x.n
	}
	for n := l; n.parent != nil; n = n.parent {
		for _, k := range n.parent.kids {
			if k == n {
				break
			}
			p += k.len
		}
	}
	return p
}

// seekVisible returns the item holding the pos-th visible character and
// its offset in the item; it returns nil when pos is the visible length.
func (d *TextDoc) seekVisible(pos int) (*item, int) {
	n := d.root
	if pos >= n.vis {
		return nil, 0
	}
descend:
	for !n.leaf() {
		for _, k := range n.kids {
			if pos < k.vis {
				n = k
				continue descend
			}
			pos -= k.vis
		}
		panic("syncengine: visible length out of step")
	}
	for _, it := range n.items {
		if it.deleted {
			continue
		}
		if pos < it.n {
			return it, pos
		}
		pos -= it.n
	}
	panic("syncengine: visible length out of step")
}

// seekUTF16 is seekVisible for a position in UTF-16 code units: it returns
// the item and code point offset of the character that starts at pos16,
// and the code point position of that character in the text. ok is false
// when pos16 falls between the two halves of a surrogate pair.
func (d *TextDoc) seekUTF16(pos16 int) (it *item, j, pos int, ok bool) {
	n := d.root
	if pos16 >= n.vis16 {
		return nil, 0, n.vis, pos16 == n.vis16
	}
descend:
	for !n.leaf() {
		for _, k := range n.kids {
			if pos16 < k.vis16 {
				n = k
				continue descend
			}
			pos16 -= k.vis16
			pos += k.vis
		}
		panic("syncengine: UTF-16 length out of step")
	}
	for _, x := range n.items {
		if x.deleted {
			continue
		}
		if pos16 < x.n16 {
			if x.n16 == x.n {
				return x, pos16, pos + pos16, true
			}
			u := 0
			for _, r := range string(x.text) {
				if u == pos16 {
					return x, j, pos + j, true
				}
				if r >= 0x10000 {
					u += 2
				} else {
					u++
				}
				if u > pos16 {
					return nil, 0, 0, false
				}
				j++
			}
			panic("syncengine: UTF-16 length out of step")
		}
		pos16 -= x.n16
		pos += x.n
	}
	panic("syncengine: UTF-16 length out of step")
}

// utf16Before returns the number of visible UTF-16 code units before the
// pos-th visible character.
func (d *TextDoc) utf16Before(pos int) int {
	n := d.root
	if pos >= n.vis {
		return n.vis16
	}
	u := 0
descend:
	for !n.leaf() {
		for _, k := range n.kids {
			if pos < k.vis {
				n = k
				continue descend
			}
			pos -= k.vis
			u += k.vis16
		}
	}
	for _, it := range n.items {
		if it.deleted {
			continue
		}
		if pos < it.n {
			if it.n16 == it.n {
				return u + pos
			}
			return u + utf16Len(it.text[:byteOffset(it.text, it.n, pos)], pos)
		}
		pos -= it.n
		u += it.n16
	}
	return u
}

// insertAfter puts x into the list right after prev (at the start when
// prev is nil) and into its sequence's index.
func (d *TextDoc) insertAfter(prev, x *item) {
	var leaf *tnode
	var i int
	if prev == nil {
		leaf, i = d.head, 0
	} else {
		leaf = prev.leaf
		i = leaf.indexOf(prev) + 1
	}
	leaf.items = slices.Insert(leaf.items, i, x)
	d.items++
	x.leaf = leaf
	leaf.add(x.n, x.vis(), x.vis16())
	d.keys[x.id.key].index.insert(x)
	if len(leaf.items) > treeLeafMax {
		d.splitLeaf(leaf)
	}
}

func (d *TextDoc) splitLeaf(l *tnode) {
	half := len(l.items) / 2
	r := &tnode{items: make([]*item, len(l.items)-half, treeLeafMax+1)}
	copy(r.items, l.items[half:])
	clear(l.items[half:])
	l.items = l.items[:half]
	for _, it := range r.items {
		it.leaf = r
		r.len += it.n
		r.vis += it.vis()
		r.vis16 += it.vis16()
	}
	l.len -= r.len
	l.vis -= r.vis
	l.vis16 -= r.vis16
	r.prev, r.next = l, l.next
	if l.next != nil {
		l.next.prev = r
	}
	l.next = r
	d.insertNode(l, r)
}

// insertNode puts r into the tree right after its left sibling l, whose
// counts already exclude r's.
func (d *TextDoc) insertNode(l, r *tnode) {
	p := l.parent
	if p == nil {
		root := &tnode{kids: make([]*tnode, 0, treeNodeMax+1)}
		root.kids = append(root.kids, l, r)
		root.len = l.len + r.len
		root.vis = l.vis + r.vis
		root.vis16 = l.vis16 + r.vis16
		l.parent, r.parent = root, root
		d.root = root
		return
	}
	i := p.kidIndex(l)
	p.kids = slices.Insert(p.kids, i+1, r)
	r.parent = p
	if len(p.kids) <= treeNodeMax {
		return
	}
	half := len(p.kids) / 2
	q := &tnode{kids: make([]*tnode, len(p.kids)-half, treeNodeMax+1)}
	copy(q.kids, p.kids[half:])
	clear(p.kids[half:])
	p.kids = p.kids[:half]
	for _, k := range q.kids {
		k.parent = q
		q.len += k.len
		q.vis += k.vis
		q.vis16 += k.vis16
	}
	p.len -= q.len
	p.vis -= q.vis
	p.vis16 -= q.vis16
	d.insertNode(p, q)
}

// split cuts it before its j-th character (0 < j < it.n) and returns the
// new item holding the characters from j on.
func (d *TextDoc) split(it *item, j int) *item {
	r := &item{
		id:      cid{it.id.key, it.id.off + uint32(j)},
		n:       it.n - j,
		left:    cid{it.id.key, it.id.off + uint32(j) - 1},
		right:   it.right,
		deleted: it.deleted,
	}
	if !it.deleted {
		b := byteOffset(it.text, it.n, j)
		r.text = it.text[b:]
		it.text = it.text[:b:b]
		u := utf16Len(it.text, j)
		r.n16 = it.n16 - u
		it.n16 = u
	}
	it.n = j
	// Splitting moves no characters, so the tree's counts stay; only the
	// new item's own share moves from it to r, both in the same leaf.
	leaf := it.leaf
	i := leaf.indexOf(it) + 1
	leaf.items = slices.Insert(leaf.items, i, r)
	d.items++
	r.leaf = leaf
	d.keys[r.id.key].index.insert(r)
	if len(leaf.items) > treeLeafMax {
		d.splitLeaf(leaf)
	}
	return r
}

// findID returns the item holding c and c's offset in it, or nil.
func (d *TextDoc) findID(c cid) (*item, int) {
	it := d.keys[c.key].index.find(c.off)
	if it == nil {
		return nil, 0
	}
	return it, int(c.off - it.id.off)
}

// pos returns the index of c in the whole list; -1 for no character
// (the start).
func (d *TextDoc) pos(c cid) int {
	if c.none() {
		return -1
	}
	it, j := d.findID(c)
	return position(it) + j
}

// extend appends visible characters to it.
func (d *TextDoc) extend(it *item, text string, n, n16 int) {
	it.text = append(it.text, text...)
	it.n += n
	it.n16 += n16
	it.leaf.add(n, n, n16)
}

// markDeleted deletes the visible item it and returns the number of bytes
// of text it held and the item that now holds its characters: neighbouring
// deleted items of the same run are folded into one, which keeps a long
// run of backspacing a single item.
func (d *TextDoc) markDeleted(it *item) (int, *item) {
	b := len(it.text)
	it.leaf.add(0, -it.n, -it.n16)
	it.deleted, it.text, it.n16 = true, nil, 0
	leaf := it.leaf
	i := leaf.indexOf(it)
	if i+1 < len(leaf.items) {
		if nx := leaf.items[i+1]; nx.deleted && mergeable(it, nx) {
			it.n += nx.n
			d.keys[nx.id.key].index.remove(nx)
			leaf.items = slices.Delete(leaf.items, i+1, i+2)
			d.items--
		}
	}
	if i > 0 {
		if pv := leaf.items[i-1]; pv.deleted && mergeable(pv, it) {
			pv.n += it.n
			d.keys[it.id.key].index.remove(it)
			leaf.items = slices.Delete(leaf.items, i, i+1)
			d.items--
			return b, pv
		}
	}
	return b, it
}

// mergeable reports whether b continues a's run: the next ids of the same
// sequence, typed right after a's last character, with a's right origin.
func mergeable(a, b *item) bool {
	return a.id.key == b.id.key && a.id.off+uint32(a.n) == b.id.off && b.left == a.last() && b.right == a.right
}
