package study

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MergeText merges two edits of one text made from the same base: the
// words mine changed and the words theirs changed, where they do not
// overlap, both land in the result. It reports false when the two edits
// changed the same words differently (or inserted different words at
// the same place); then there is no merge a person would trust, and the
// caller shows both versions instead.
//
// A text field is a last-writer-wins register: whichever write carries
// the later stamp replaces the other whole. An edit form that knows the
// text it was rendered from can do better when the register changed
// under it meanwhile (an edit from the same person's phone): it merges
// its own edit into the newer text before stamping, so the newer write
// holds both.
//
// The comparison works on words, spaces and punctuation. Its cost is
// bounded: past mergeMaxCells the changed middles of the texts are
// compared as wholes, which can only turn a merge into a conflict.
func MergeText(base, mine, theirs string) (string, bool) {
	switch {
	case mine == theirs:
		return mine, true
	case mine == base:
		return theirs, true
	case theirs == base:
		return mine, true
	}
	a, b, c := textTokens(base), textTokens(mine), textTokens(theirs)
	mb, mc := tokenMatches(a, b), tokenMatches(a, c)
	var out strings.Builder
	ok := true
	chunk := func(ca, cb, cc []string) {
		switch {
		case equalTokens(cb, ca):
			writeTokens(&out, cc)
		case equalTokens(cc, ca), equalTokens(cb, cc):
			writeTokens(&out, cb)
		default:
			ok = false
		}
	}
	la, lb, lc := 0, 0, 0
	for {
		i := 0
		for la+i < len(a) && lb+i < len(b) && lc+i < len(c) && mb[la+i] == lb+i && mc[la+i] == lc+i {
			i++
		}
		if i > 0 {
			writeTokens(&out, a[la:la+i])
			la, lb, lc = la+i, lb+i, lc+i
			continue
		}
		o := la
		for o < len(a) && (mb[o] < 0 || mc[o] < 0) {
			o++
		}
		if o == len(a) {
			chunk(a[la:], b[lb:], c[lc:])
			break
		}
		chunk(a[la:o], b[lb:mb[o]], c[lc:mc[o]])
		la, lb, lc = o, mb[o], mc[o]
	}
	if !ok {
		return "", false
	}
	return out.String(), true
}

// textTokens splits s into runs of letters and digits, runs of spaces,
// and single other characters.
func textTokens(s string) []string {
	var out []string
	class := func(r rune) int {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '\'' || r == '’':
			return 1
		case unicode.IsSpace(r):
			return 2
		}
		return 0
	}
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		k := class(r)
		if k != 0 {
			for n < len(s) {
				r2, n2 := utf8.DecodeRuneInString(s[n:])
				if class(r2) != k {
					break
				}
				n += n2
			}
		}
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}

// mergeMaxCells bounds the comparison table of two changed middles
// (2 bytes a cell).
const mergeMaxCells = 1 << 22

// tokenMatches returns, for each token of a, the index of the token of b
// it is matched with in a longest common subsequence, or -1.
func tokenMatches(a, b []string) []int {
	m := make([]int, len(a))
	for i := range m {
		m[i] = -1
	}
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		m[p] = p
		p++
	}
	s := 0
	for s < len(a)-p && s < len(b)-p && a[len(a)-1-s] == b[len(b)-1-s] {
		m[len(a)-1-s] = len(b) - 1 - s
		s++
	}
	x, y := a[p:len(a)-s], b[p:len(b)-s]
	n, k := len(x), len(y)
	if n == 0 || k == 0 || n*k > mergeMaxCells {
		return m
	}
	// lcs[i*(k+1)+j] is the length of the LCS of x[i:] and y[j:]; it
	// never exceeds min(n, k) ≤ 2048 here, so 16 bits hold it.
	lcs := make([]uint16, (n+1)*(k+1))
	for i := n - 1; i >= 0; i-- {
		for j := k - 1; j >= 0; j-- {
			switch {
			case x[i] == y[j]:
				lcs[i*(k+1)+j] = lcs[(i+1)*(k+1)+j+1] + 1
			default:
				lcs[i*(k+1)+j] = max(lcs[(i+1)*(k+1)+j], lcs[i*(k+1)+j+1])
			}
		}
	}
	for i, j := 0, 0; i < n && j < k; {
		switch {
		case x[i] == y[j]:
			m[p+i] = p + j
			i, j = i+1, j+1
		case lcs[(i+1)*(k+1)+j] >= lcs[i*(k+1)+j+1]:
			i++
		default:
			j++
		}
	}
	return m
}

func equalTokens(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func writeTokens(b *strings.Builder, t []string) {
	for _, s := range t {
		b.WriteString(s)
	}
}
