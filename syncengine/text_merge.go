package syncengine

import (
	"errors"
	"fmt"
	"slices"
)

// piece is a run of characters to integrate, all deleted or all visible.
type piece struct {
	id          cid
	n, n16      int
	left, right cid
	deleted     bool
	text        string
	state       uint8 // 0 waiting, 1 on the stack, 2 integrated
}

var errPieces = errors.New("runs do not form a history")

// integratePieces integrates runs given in any order, each after the runs
// holding its origins and the character before it in its sequence, so
// that every sequence grows from its end as it does when changes apply.
// The runs of each sequence must cover its ids from the sequence's current
// end on, without gaps or overlaps.
func (d *TextDoc) integratePieces(ps []piece) error {
	byKey := make(map[int32][]int)
	for i := range ps {
		byKey[ps[i].id.key] = append(byKey[ps[i].id.key], i)
	}
	for k, idx := range byKey {
		slices.SortFunc(idx, func(a, b int) int { return int(int64(ps[a].id.off) - int64(ps[b].id.off)) })
		at := d.keys[k].end
		for _, i := range idx {
			if ps[i].id.off != at || ps[i].n <= 0 {
				return fmt.Errorf("%w: sequence %d has a gap or overlap at offset %d", errPieces, k, at)
			}
			at += uint32(ps[i].n)
		}
	}
	// find returns the run holding c, or -1 when c is already in the
	// document.
	find := func(c cid) (int, error) {
		if int(c.key) >= len(d.keys) {
			return 0, fmt.Errorf("%w: unknown sequence", errPieces)
		}
		if c.off < d.keys[c.key].end {
			return -1, nil
		}
		idx := byKey[c.key]
		j, _ := slices.BinarySearchFunc(idx, c.off, func(i int, off uint32) int {
			switch p := &ps[i]; {
			case p.id.off+uint32(p.n) <= off:
				return -1
			case p.id.off > off:
				return 1
			}
			return 0
		})
		if j == len(idx) || !(ps[idx[j]].id.off <= c.off && c.off < ps[idx[j]].id.off+uint32(ps[idx[j]].n)) {
			return 0, fmt.Errorf("%w: origin %d+%d is nowhere", errPieces, c.key, c.off)
		}
		return idx[j], nil
	}
	var stack []int
	for start := range ps {
		if ps[start].state != 0 {
			continue
		}
		ps[start].state = 1
		stack = append(stack[:0], start)
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			p := &ps[top]
			before := noID
			if p.id.off > 0 {
				before = cid{p.id.key, p.id.off - 1}
			}
			dep := -1
			for _, c := range [3]cid{before, p.left, p.right} {
				if c.none() {
					continue
				}
				i, err := find(c)
				if err != nil {
					return err
				}
				if i < 0 {
					continue
				}
				if ps[i].state == 1 {
					return fmt.Errorf("%w: runs depend on each other in a cycle", errPieces)
				}
				dep = i
				break
			}
			if dep >= 0 {
				ps[dep].state = 1
				stack = append(stack, dep)
				continue
			}
			key := d.keys[p.id.key]
			if p.id.off != key.end {
				return fmt.Errorf("%w: sequence %d grows out of order", errPieces, p.id.key)
			}
			key.end += uint32(p.n)
			d.integrate(p.id, p.n, p.text, p.n16, p.left, p.right, p.deleted)
			p.state = 2
			stack = stack[:len(stack)-1]
		}
	}
	return nil
}

// Merge merges the state of o into d: afterwards d holds every change
// either held. Merge is commutative, associative and idempotent: merging
// states in any order and grouping gives the same canonical encoding as
// applying all their changes. Both documents must come from one history
// (every id names the same character in both), as every document built by
// Apply, Edit and Merge from changes the server accepted does. On error
// (a limit would be broken) d does not change.
func (d *TextDoc) Merge(o *TextDoc) error {
	if d == o {
		return nil
	}
	newReplicas, missing := 0, 0
	for _, v := range o.version {
		if d.replicas[v.Replica] == nil || d.replicas[v.Replica].latest == 0 {
			newReplicas++
		}
	}
	for _, k := range o.keys {
		if j, ok := d.keyOf[k.keyName]; ok {
			missing += int(max(k.end, d.keys[j].end) - d.keys[j].end)
		} else {
			missing += int(k.end)
		}
	}
	if len(d.version)+newReplicas > MaxTextReplicas {
		return invalid("text", ErrTooLarge, fmt.Sprintf("merged text would be written by %d replicas; the limit is %d", len(d.version)+newReplicas, MaxTextReplicas))
	}
	if d.root.len+missing > MaxTextChars {
		return invalid("text", ErrTooLarge, fmt.Sprintf("merged text would hold %d characters with its history; the limit is %d", d.root.len+missing, MaxTextChars))
	}
	morePending := 0
	for s := range o.pending {
		if d.pending[s] == nil {
			morePending++
		}
	}
	if len(d.pending)+morePending > MaxTextPending {
		return invalid("text", ErrTooLarge, fmt.Sprintf("merged text would hold %d waiting changes; the limit is %d", len(d.pending)+morePending, MaxTextPending))
	}

	km := make([]int32, len(o.keys))
	for i, k := range o.keys {
		j, ok := d.keyOf[k.keyName]
		if !ok {
			j = d.addKey(k.keyName)
		}
		km[i] = j
	}
	tr := func(c cid) cid {
		if c.none() {
			return c
		}
		return cid{km[c.key], c.off}
	}
	var ps []piece
	for i, k := range o.keys {
		dk := d.keys[km[i]]
		if k.end <= dk.end {
			continue
		}
		from := dk.end
		for _, ch := range k.index.chunks {
			for _, it := range ch {
				if it.id.off+uint32(it.n) <= from {
					continue
				}
				cut := 0
				if it.id.off < from {
					cut = int(from - it.id.off)
				}
				p := piece{id: cid{km[i], it.id.off + uint32(cut)}, n: it.n - cut, right: tr(it.right), deleted: it.deleted}
				if cut > 0 {
					p.left = cid{km[i], p.id.off - 1}
				} else {
					p.left = tr(it.left)
				}
				if !it.deleted {
					p.text = string(it.text[byteOffset(it.text, it.n, cut):])
					p.n16 = utf16Len(p.text, p.n)
				}
				ps = append(ps, p)
			}
		}
		dk.marks = slices.Clone(k.marks)
	}
	if err := d.integratePieces(ps); err != nil {
		// o's runs come from a document this package built, so they
		// always form a history.
		panic("syncengine: merging a document whose runs do not form a history: " + err.Error())
	}
	for l := o.head; l != nil; l = l.next {
		for _, it := range l.items {
			if it.deleted {
				d.deleteIDs(km[it.id.key], it.id.off, uint32(it.n))
			}
		}
	}
	for _, v := range o.version {
		ors := o.replicas[v.Replica]
		rs := d.replica(v.Replica)
		if ors.latest > rs.latest {
			d.record(v.Replica, ors.latest, ors.deps)
		}
	}
	for i, k := range o.keys {
		d.noteKey(d.replica(k.replica), km[i])
	}
	d.drain()
	added := false
	for s, c := range o.pending {
		if !d.Has(s) && d.pending[s] == nil {
			d.pending[s] = c
			added = true
		}
	}
	if added || len(d.pending) > 0 {
		d.rewait()
	}
	d.touched()
	return nil
}
