package syncengine

import (
	"math"
	"slices"
	"unicode"
	"unicode/utf8"
)

// Limits of Diff's work. A middle snake that needs more than diffMaxCost
// steps is cut at the furthest point reached (as git's xdiff does), and once
// diffBudget steps are spent the rest of each unresolved region becomes one
// replacement, so that diffing two unrelated 256 KiB bodies still takes
// milliseconds. Both are fixed, so Diff is a function of its input alone.
const (
	diffMinCost = 256
	diffBudget  = 1 << 22
)

// Diff returns the splices that turn old into new: positions in code points
// of old, in increasing order, not overlapping, as Edit takes them. It
// trims the common prefix and suffix, then runs Myers's O(ND) difference
// algorithm (linear-space version) on code points over what is left, with
// its cost bounded, and last folds an unchanged stretch into the edits
// around it when it is no longer than they are on both sides, so that a
// rewritten sentence becomes one replacement rather than a scatter of
// letters that happen to match. It is deterministic: replicas that diff
// the same texts get the same splices.
func Diff(old, new string) []Splice {
	switch {
	case old == new:
		return nil
	case old == "":
		// Nothing to align with: the whole text is the one insert.
		return []Splice{{Text: new}}
	case new == "":
		return []Splice{{Del: runeCount(old)}}
	}
	p := commonPrefix(old, new)
	s := commonSuffix(old[p:], new[p:])
	a, b := old[p:len(old)-s], new[p:len(new)-s]
	base := runeCount(old[:p])
	ra := []rune(a)
	var out []Splice
	if a == "" || b == "" {
		out = []Splice{{Pos: 0, Del: len(ra), Text: b}}
	} else {
		m := newDiffer(ra, []rune(b))
		m.compare(0, len(m.a), 0, len(m.b))
		for _, g := range m.segments() {
			if !g.eq {
				out = append(out, Splice{Pos: g.a0, Del: g.a1 - g.a0, Text: string(m.b[g.b0:g.b1])})
			}
		}
	}
	// Align the splices in a window of the old text: the changed middle
	// and up to alignReach code points of context on either side.
	left, lb := lastRunes(old[:p], alignReach)
	right, rb := firstRunes(old[len(old)-s:], alignReach)
	w := alignWindow{o: slices.Concat(left, ra, right), atHead: lb == p, atTail: rb == s}
	for i := range out {
		out[i].Pos += len(left)
	}
	w.align(out)
	for i := range out {
		out[i].Pos += base - len(left)
	}
	return wholeWords([]rune(old), out)
}

// wholeWords widens each replacement (a splice that deletes and
// inserts) that starts or ends inside a word to the whole word, taking in
// the unchanged letters around it and merging with a splice it meets:
// "w45q" → "w61q" is one word for another, not two digits between letters
// that a concurrent deletion of the word would leave stranded. Pure
// inserts and deletes (typing, backspacing) stay as they are.
func wholeWords(o []rune, out []Splice) []Splice {
	if len(out) == 0 {
		return out
	}
	merged := out[:0:0]
	for i := 0; i < len(out); i++ {
		sp := out[i]
		if sp.Del > 0 && sp.Text != "" {
			first, _ := utf8.DecodeRuneInString(sp.Text)
			last, _ := utf8.DecodeLastRuneInString(sp.Text)
			floor := 0
			if len(merged) > 0 {
				floor = merged[len(merged)-1].Pos + merged[len(merged)-1].Del
			}
			for sp.Pos > floor && wordRune(o[sp.Pos-1]) && (wordRune(o[sp.Pos]) || wordRune(first)) {
				sp.Pos, sp.Del, sp.Text = sp.Pos-1, sp.Del+1, string(o[sp.Pos-1])+sp.Text
			}
			for {
				end := sp.Pos + sp.Del
				if end >= len(o) || !wordRune(o[end]) || !(wordRune(o[end-1]) || wordRune(last)) {
					break
				}
				if i+1 < len(out) && out[i+1].Pos == end {
					// The next splice starts here: take it in.
					nx := out[i+1]
					sp.Del, sp.Text = sp.Del+nx.Del, sp.Text+nx.Text
					i++
					continue
				}
				sp.Del, sp.Text = sp.Del+1, sp.Text+string(o[end])
			}
			if len(merged) > 0 && floor == sp.Pos {
				prev := &merged[len(merged)-1]
				prev.Del, prev.Text = prev.Del+sp.Del, prev.Text+sp.Text
				continue
			}
		}
		merged = append(merged, sp)
	}
	return merged
}

// alignReach bounds how far align slides an edit, and so the context it
// looks at.
const alignReach = 256

// lastRunes returns the last n code points of s (all if it has fewer) and
// their length in bytes; firstRunes the first n.
func lastRunes(s string, n int) ([]rune, int) {
	i := len(s)
	for k := 0; k < n && i > 0; k++ {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return []rune(s[i:]), len(s) - i
}

func firstRunes(s string, n int) ([]rune, int) {
	i := 0
	for k := 0; k < n && i < len(s); k++ {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return []rune(s[:i]), i
}

// alignWindow is a stretch o of the old text; atHead and atTail say
// whether it starts at the start of the text and ends at its end.
type alignWindow struct {
	o              []rune
	atHead, atTail bool
}

// align slides each pure insert and pure delete, where the surrounding
// text allows it without changing the result and by at most alignReach
// code points, to the position whose ends fall best on word and line
// boundaries ("again " before "about", not "gain a" after its "a"), so
// that an edit merges with concurrent edits as the words it is. Ties go to
// the later position. Positions are indexes into w.o.
func (w *alignWindow) align(splices []Splice) {
	o := w.o
	for i := range splices {
		sp := &splices[i]
		if (sp.Del == 0) == (sp.Text == "") {
			continue // a replacement has no equivalent positions
		}
		lo, hi := 0, len(o)
		if i > 0 {
			lo = splices[i-1].Pos + splices[i-1].Del
		}
		if i+1 < len(splices) {
			hi = splices[i+1].Pos
		}
		// The edit as a window of runes that slides over o: for a delete
		// the deleted runes themselves, for an insert its text.
		var e []rune
		if sp.Del > 0 {
			e = slices.Clone(o[sp.Pos : sp.Pos+sp.Del])
		} else {
			e = []rune(sp.Text)
		}
		p, end := sp.Pos, sp.Pos+sp.Del // the edit covers o[p:end] (empty for an insert)
		for k := 0; k < alignReach && p > lo && o[p-1] == e[len(e)-1]; k++ {
			copy(e[1:], e[:len(e)-1])
			e[0] = o[p-1]
			p--
			end--
		}
		best, bestP, bestE := -1, p, slices.Clone(e)
		for k := 0; ; k++ {
			if sc := w.scoreBefore(p, e[0]) + w.scoreAfter(end, e[len(e)-1]); sc >= best {
				best, bestP = sc, p
				copy(bestE, e)
			}
			if k >= 2*alignReach || end >= hi || o[end] != e[0] {
				break
			}
			first := e[0]
			copy(e, e[1:])
			e[len(e)-1] = first
			p++
			end++
		}
		sp.Pos = bestP
		if sp.Text != "" {
			sp.Text = string(bestE)
		}
	}
}

// scoreBefore rates the boundary before position p of the window, where
// the rune first comes next; scoreAfter the one after a stretch ending in
// last, where o[end] comes next. Higher is a better place for an edit to
// start or end; the ends of the text are the best, the ends of the window
// unknown.
func (w *alignWindow) scoreBefore(p int, first rune) int {
	switch {
	case p > 0:
		return boundaryPair(w.o[p-1], first)
	case w.atHead:
		return 6
	}
	return 0
}

func (w *alignWindow) scoreAfter(end int, last rune) int {
	switch {
	case end < len(w.o):
		return boundaryPair(last, w.o[end])
	case w.atTail:
		return 6
	}
	return 0
}

func boundaryPair(x, y rune) int {
	alnum := func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) }
	switch {
	case x == '\n' || y == '\n':
		return 4
	case !alnum(x) && !unicode.IsSpace(x) && unicode.IsSpace(y):
		return 3 // the end of a sentence
	case unicode.IsSpace(x) || unicode.IsSpace(y):
		return 2
	case !alnum(x) || !alnum(y):
		return 1
	}
	return 0
}

// wordRune reports whether r is part of a word.
func wordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
}

// commonPrefix returns the length in bytes of the longest common prefix of
// x and y that ends on a character boundary.
func commonPrefix(x, y string) int {
	n := min(len(x), len(y))
	p := 0
	for p < n && x[p] == y[p] {
		p++
	}
	for p > 0 && (p < len(x) && !utf8.RuneStart(x[p]) || p < len(y) && !utf8.RuneStart(y[p])) {
		p--
	}
	return p
}

// commonSuffix returns the length in bytes of the longest common suffix of
// x and y that starts on a character boundary.
func commonSuffix(x, y string) int {
	n := min(len(x), len(y))
	s := 0
	for s < n && x[len(x)-1-s] == y[len(y)-1-s] {
		s++
	}
	for s > 0 && !utf8.RuneStart(x[len(x)-s]) {
		s--
	}
	return s
}

type differ struct {
	a, b    []rune
	da, db  []bool // da[i]: a[i] is deleted; db[j]: b[j] is inserted
	vf, vb  []int  // furthest x on each diagonal, forwards and backwards
	off     int    // index of diagonal 0 in vf and vb
	maxCost int
	budget  int
}

func newDiffer(a, b []rune) *differ {
	n := len(a) + len(b) + 3
	return &differ{
		a: a, b: b,
		da: make([]bool, len(a)), db: make([]bool, len(b)),
		vf: make([]int, n), vb: make([]int, n),
		off:     len(b) + 1,
		maxCost: max(diffMinCost, int(math.Sqrt(float64(n)))),
		budget:  diffBudget,
	}
}

// compare marks the differences between a[a0:a1] and b[b0:b1].
func (m *differ) compare(a0, a1, b0, b1 int) {
	for {
		for a0 < a1 && b0 < b1 && m.a[a0] == m.b[b0] {
			a0++
			b0++
		}
		for a0 < a1 && b0 < b1 && m.a[a1-1] == m.b[b1-1] {
			a1--
			b1--
		}
		if a0 == a1 || b0 == b1 || m.budget <= 0 {
			for i := a0; i < a1; i++ {
				m.da[i] = true
			}
			for j := b0; j < b1; j++ {
				m.db[j] = true
			}
			return
		}
		x, y := m.split(a0, a1, b0, b1)
		m.compare(a0, x, b0, y)
		a0, b0 = x, y
	}
}

// split finds a point (x, y) on a shortest edit path from (a0, b0) to
// (a1, b1) by running the search from both ends until the paths meet
// (Myers's middle snake), or, when that costs too much, the furthest point
// either search has reached.
func (m *differ) split(a0, a1, b0, b1 int) (int, int) {
	vf, vb, off := m.vf, m.vb, m.off
	dmin, dmax := a0-b1, a1-b0
	fmid, bmid := a0-b0, a1-b1
	odd := (fmid-bmid)&1 != 0
	fmin, fmax, bmin, bmax := fmid, fmid, bmid, bmid
	vf[off+fmid] = a0
	vb[off+bmid] = a1
	for d := 1; ; d++ {
		if fmin > dmin {
			fmin--
			vf[off+fmin-1] = -1
		} else {
			fmin++
		}
		if fmax < dmax {
			fmax++
			vf[off+fmax+1] = -1
		} else {
			fmax--
		}
		for k := fmax; k >= fmin; k -= 2 {
			var x int
			if vf[off+k-1] >= vf[off+k+1] {
				x = vf[off+k-1] + 1
			} else {
				x = vf[off+k+1]
			}
			y := x - k
			x0 := x
			for x < a1 && y < b1 && m.a[x] == m.b[y] {
				x++
				y++
			}
			m.budget -= x - x0 + 1
			vf[off+k] = x
			if odd && bmin <= k && k <= bmax && vb[off+k] <= x {
				return x, y
			}
		}
		if bmin > dmin {
			bmin--
			vb[off+bmin-1] = math.MaxInt
		} else {
			bmin++
		}
		if bmax < dmax {
			bmax++
			vb[off+bmax+1] = math.MaxInt
		} else {
			bmax--
		}
		for k := bmax; k >= bmin; k -= 2 {
			var x int
			if vb[off+k-1] < vb[off+k+1] {
				x = vb[off+k-1]
			} else {
				x = vb[off+k+1] - 1
			}
			y := x - k
			x0 := x
			for x > a0 && y > b0 && m.a[x-1] == m.b[y-1] {
				x--
				y--
			}
			m.budget -= x0 - x + 1
			vb[off+k] = x
			if !odd && fmin <= k && k <= fmax && x <= vf[off+k] {
				return x, y
			}
		}
		if d < m.maxCost && m.budget > 0 {
			continue
		}
		fbest, fx := -1, 0
		for k := fmax; k >= fmin; k -= 2 {
			x := min(vf[off+k], a1)
			y := x - k
			if y > b1 {
				x, y = b1+k, b1
			}
			if x+y > fbest {
				fbest, fx = x+y, x
			}
		}
		bbest, bx := math.MaxInt, 0
		for k := bmax; k >= bmin; k -= 2 {
			x := max(a0, vb[off+k])
			y := x - k
			if y < b0 {
				x, y = b0+k, b0
			}
			if x+y < bbest {
				bbest, bx = x+y, x
			}
		}
		if (a1+b1)-bbest < fbest-(a0+b0) {
			return fx, fbest - fx
		}
		return bx, bbest - bx
	}
}

// diffSeg is a stretch of the edit: a[a0:a1] equal to b[b0:b1], or
// a[a0:a1] replaced by b[b0:b1].
type diffSeg struct {
	eq             bool
	a0, a1, b0, b1 int
}

// segments turns the marks into alternating equal and changed stretches,
// folding short equal stretches into the changes around them.
func (m *differ) segments() []diffSeg {
	var out []diffSeg
	i, j := 0, 0
	for i < len(m.a) || j < len(m.b) {
		i0, j0 := i, j
		for i < len(m.a) && j < len(m.b) && !m.da[i] && !m.db[j] {
			i++
			j++
		}
		if i > i0 {
			out = append(out, diffSeg{eq: true, a0: i0, a1: i, b0: j0, b1: j})
			continue
		}
		for i < len(m.a) && m.da[i] {
			i++
		}
		for j < len(m.b) && m.db[j] {
			j++
		}
		if i == i0 && j == j0 {
			// Marks that do not pair up cannot happen; take the rest as
			// changed rather than loop.
			i, j = len(m.a), len(m.b)
		}
		g := diffSeg{a0: i0, a1: i, b0: j0, b1: j}
		out = append(out, g)
		// Fold [change, equal, change] at the top while the equal part
		// is no longer than the changes on both sides of it.
		for n := len(out); n >= 3 && !out[n-1].eq && out[n-2].eq && !out[n-3].eq; n = len(out) {
			p, e, q := out[n-3], out[n-2], out[n-1]
			l := e.a1 - e.a0
			if l > max(p.a1-p.a0, p.b1-p.b0) || l > max(q.a1-q.a0, q.b1-q.b0) {
				break
			}
			out = append(out[:n-3], diffSeg{a0: p.a0, a1: q.a1, b0: p.b0, b1: q.b1})
		}
	}
	return out
}

// Rebase returns current with the edit from base to edited made on it: a
// three-way merge of plain texts, for an edit made on a text (base) that
// has changed since (current) where the edit's history is not at hand, as
// when an app hands over a text field's content long after it showed the
// field, or an edit has to be made again on a server's text. Characters
// the edit deleted are deleted where they still are; what it inserted goes
// where its neighbours went, after what current inserted at the same
// place; what current changed stays. It is deterministic.
func Rebase(base, edited, current string) string {
	if edited == base {
		return current
	}
	if current == base {
		return edited
	}
	n := runeCount(base)
	cur := []rune(current)
	// alive[i] is the position in current of base's i-th character, or -1
	// if current deleted it; gap[i] is where an insertion made before
	// base's i-th character (gap[n]: at the end) goes in current.
	alive := make([]int, n)
	gap := make([]int, n+1)
	i, j := 0, 0
	for _, a := range Diff(base, current) {
		for ; i < a.Pos; i, j = i+1, j+1 {
			alive[i], gap[i] = j, j
		}
		j += runeCount(a.Text)
		gap[i] = j
		for ; i < a.Pos+a.Del; i++ {
			alive[i], gap[i] = -1, j
		}
	}
	for ; i < n; i, j = i+1, j+1 {
		alive[i], gap[i] = j, j
	}
	gap[n] = j
	deleted := make([]bool, len(cur))
	inserts := make([][]string, len(cur)+1)
	for _, e := range Diff(base, edited) {
		for k := e.Pos; k < e.Pos+e.Del; k++ {
			if alive[k] >= 0 {
				deleted[alive[k]] = true
			}
		}
		if e.Text != "" {
			at := gap[e.Pos]
			if e.Del > 0 && alive[e.Pos] >= 0 {
				at = alive[e.Pos]
			}
			inserts[at] = append(inserts[at], e.Text)
		}
	}
	out := make([]byte, 0, max(len(current)+len(edited)-len(base), 0)+16)
	for j := 0; j <= len(cur); j++ {
		for _, s := range inserts[j] {
			out = append(out, s...)
		}
		if j < len(cur) && !deleted[j] {
			out = utf8.AppendRune(out, cur[j])
		}
	}
	return string(out)
}
