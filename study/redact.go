package study

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/diarysync/diarysync/syncengine"
	"golang.org/x/text/unicode/norm"
)

// De-identification: everything the research audience receives (exports,
// their pulled replicas, the console's previews) passes through a
// Redactor, which replaces phone numbers, e-mail addresses, postcodes and
// the study's list of terms (names of clients, places) with markers such
// as [phone]. Navigators and supervisors always see the text as written.

// RedactPattern is one kind of personal detail found by a regular
// expression (RE2 syntax, as Go's regexp reads it).
type RedactPattern struct {
	// Name names the pattern in settings and in counts, e.g. "phone".
	Name string
	// Marker replaces every match, e.g. "[phone]".
	Marker string
	// Expr is the regular expression.
	Expr string
}

// Redaction is the study's de-identification setting. Only an
// administrator changes it, and every manifest states it.
type Redaction struct {
	// Enabled turns de-identification on (the default) or off.
	Enabled bool
	// Patterns are the patterns applied, in order; DefaultRedactPatterns
	// until an administrator changes them.
	Patterns []RedactPattern
	// Version increases with every change to the setting or the term
	// list; stores use it to know when a cached Redactor is stale.
	Version int64
	// Terms is how many terms the study's list holds (filled in by
	// stores when they report the setting).
	Terms int
}

// RedactTerm is one entry of the study's list of terms to redact.
type RedactTerm struct {
	// Term is the text to find: whole words, ignoring case.
	Term string
	// Marker replaces it; DefaultTermMarker when empty.
	Marker string
}

// Redaction limits.
const (
	MaxRedactPatterns     = 32
	MaxRedactExprBytes    = 1024
	MaxRedactMarkerBytes  = 24
	MaxRedactTerms        = 10000
	MaxRedactTermBytes    = 128
	MaxRedactPatternName  = 32
	DefaultTermMarker     = "[name]"
	redactPatternNameRune = "abcdefghijklmnopqrstuvwxyz0123456789-_"
)

// The default patterns. Each is tested in redact_test.go; a match is only
// taken when it is not glued to a letter or digit (see Redactor).
var defaultRedactPatterns = []RedactPattern{
	{
		Name:   "email",
		Marker: "[email]",
		Expr:   `[\p{L}\p{N}._%+-]+@[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?(?:\.[\p{L}\p{N}](?:[\p{L}\p{N}-]*[\p{L}\p{N}])?)+`,
	},
	{
		// UK numbers: +44 or 0044 (with an optional "(0)") or a leading
		// 0, then 9 or 10 digits with single spaces, dots or dashes
		// between them; or an area code in parentheses, "(020) 7946 0958".
		Name:   "phone",
		Marker: "[phone]",
		Expr:   `(?:(?:\+|00)44[ .-]?(?:\(0\)[ .-]?)?|0)\d(?:[ .-]?\d){8,9}|\(0\d{2,4}\)[ .-]?\d(?:[ .-]?\d){4,7}`,
	},
	{
		// UK postcodes in any case, with or without the space: the
		// letters each position may hold, so that "M4 5pm" is no
		// postcode (no inward code ends in M).
		Name:   "postcode",
		Marker: "[postcode]",
		Expr:   `(?i)(?:GIR ?0AA|[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9][ABEHMNPRVWXY]) ?[0-9][ABD-HJLNP-UW-Z]{2})`,
	},
}

// DefaultRedactPatterns returns the patterns a new study uses: e-mail
// addresses, UK phone numbers and UK postcodes.
func DefaultRedactPatterns() []RedactPattern { return slices.Clone(defaultRedactPatterns) }

// DefaultRedaction is the setting of a new study: on, with the default
// patterns.
func DefaultRedaction() Redaction {
	return Redaction{Enabled: true, Patterns: DefaultRedactPatterns()}
}

// ValidateRedaction checks a setting as an administrator sends it.
func ValidateRedaction(r *Redaction) error {
	if len(r.Patterns) > MaxRedactPatterns {
		return syncengine.Errorf(syncengine.EINVALID, "at most %d redaction patterns", MaxRedactPatterns)
	}
	seen := map[string]bool{}
	for i := range r.Patterns {
		p := &r.Patterns[i]
		p.Name = strings.TrimSpace(p.Name)
		if p.Name == "" || len(p.Name) > MaxRedactPatternName || strings.Trim(p.Name, redactPatternNameRune) != "" {
			return syncengine.Errorf(syncengine.EINVALID, "redaction pattern name %q: use 1 to %d lowercase letters, digits, '-' or '_'", truncateText(p.Name, 40), MaxRedactPatternName)
		}
		if seen[p.Name] {
			return syncengine.Errorf(syncengine.EINVALID, "redaction pattern %q is given twice", p.Name)
		}
		seen[p.Name] = true
		if err := validateMarker(p.Marker); err != nil {
			return syncengine.Errorf(syncengine.EINVALID, "redaction pattern %q: %s", p.Name, syncengine.ErrorMessage(err))
		}
		if len(p.Expr) > MaxRedactExprBytes {
			return syncengine.Errorf(syncengine.EINVALID, "redaction pattern %q is longer than %d bytes", p.Name, MaxRedactExprBytes)
		}
		re, err := regexp.Compile(p.Expr)
		if err != nil {
			return syncengine.Errorf(syncengine.EINVALID, "redaction pattern %q is not a valid regular expression: %s", p.Name, err)
		}
		if re.MatchString("") {
			return syncengine.Errorf(syncengine.EINVALID, "redaction pattern %q matches empty text", p.Name)
		}
	}
	return nil
}

func validateMarker(m string) error {
	if m == "" {
		return syncengine.Errorf(syncengine.EINVALID, "a marker is needed, such as [phone]")
	}
	return syncengine.ValidateText("marker", m, MaxRedactMarkerBytes, false)
}

// ValidateRedactTerm checks and normalises a term for the study's list:
// NFC, surrounding space trimmed and inner space runs made one space.
// A term must start and end with a letter or digit, so that "whole word"
// means something.
func ValidateRedactTerm(t *RedactTerm) error {
	t.Term = strings.Join(strings.Fields(norm.NFC.String(t.Term)), " ")
	if t.Marker == "" {
		t.Marker = DefaultTermMarker
	}
	if t.Term == "" {
		return syncengine.Errorf(syncengine.EINVALID, "a redaction term cannot be empty")
	}
	if err := syncengine.ValidateText("redaction term", t.Term, MaxRedactTermBytes, false); err != nil {
		return err
	}
	first, _ := utf8.DecodeRuneInString(t.Term)
	last, _ := utf8.DecodeLastRuneInString(t.Term)
	if !wordRune(first) || !wordRune(last) {
		return syncengine.Errorf(syncengine.EINVALID, "redaction term %q must start and end with a letter or digit", truncateText(t.Term, 40))
	}
	return validateMarker(t.Marker)
}

// RedactTermKey is the key under which a term is unique on the list:
// two terms with the same key are the same term (they differ only in
// case or spacing). Stores keep it beside the term.
func RedactTermKey(term string) string {
	var b strings.Builder
	for _, r := range strings.Join(strings.Fields(norm.NFC.String(term)), " ") {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// RedactionCounts counts the replacements made, by marker.
type RedactionCounts map[string]int

// Add adds o's counts to c.
func (c RedactionCounts) Add(o RedactionCounts) {
	for k, v := range o {
		c[k] += v
	}
}

// Total returns the number of replacements.
func (c RedactionCounts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// Redactor replaces personal details in text. A match is taken only when
// it is not part of a longer word or number: the character before its
// first letter or digit and the one after its last are not letters or
// digits (so "2026-01-15" is never a phone number, and "Anna" is not
// found in "Annabel"). Terms are matched as whole words, ignoring case
// (Unicode case folding), in Unicode normalisation form C, the longest
// term first. Where two matches overlap, the one that starts first wins,
// then the longer. A disabled Redactor (or a nil one) changes nothing.
//
// A Redactor is safe for concurrent use.
type Redactor struct {
	enabled  bool
	patterns []compiledPattern
	terms    *termNode
}

type compiledPattern struct {
	re     *regexp.Regexp
	marker string
}

// termNode is a node of the trie of folded terms; a space in a term
// matches any run of white space in the text.
type termNode struct {
	children []termEdge // sorted by rune
	marker   string     // non-empty when a term ends here
}

type termEdge struct {
	r    rune
	next *termNode
}

func (n *termNode) child(r rune) *termNode {
	i, ok := slices.BinarySearchFunc(n.children, r, func(e termEdge, r rune) int { return cmp.Compare(e.r, r) })
	if !ok {
		return nil
	}
	return n.children[i].next
}

func (n *termNode) add(r rune) *termNode {
	i, ok := slices.BinarySearchFunc(n.children, r, func(e termEdge, r rune) int { return cmp.Compare(e.r, r) })
	if ok {
		return n.children[i].next
	}
	next := &termNode{}
	n.children = slices.Insert(n.children, i, termEdge{r: r, next: next})
	return next
}

// NewRedactor compiles a setting and the study's terms. It fails only on
// a setting that ValidateRedaction refuses.
func NewRedactor(r Redaction, terms []RedactTerm) (*Redactor, error) {
	if err := ValidateRedaction(&r); err != nil {
		return nil, err
	}
	rd := &Redactor{enabled: r.Enabled}
	for _, p := range r.Patterns {
		rd.patterns = append(rd.patterns, compiledPattern{re: regexp.MustCompile(p.Expr), marker: p.Marker})
	}
	for _, t := range terms {
		if err := ValidateRedactTerm(&t); err != nil {
			return nil, err
		}
		if rd.terms == nil {
			rd.terms = &termNode{}
		}
		n := rd.terms
		for _, c := range RedactTermKey(t.Term) {
			n = n.add(c)
		}
		if n.marker == "" {
			n.marker = t.Marker
		}
	}
	return rd, nil
}

// Enabled reports whether the Redactor changes anything.
func (rd *Redactor) Enabled() bool { return rd != nil && rd.enabled }

type span struct {
	start, end int
	marker     string
}

// Redact returns s with every match replaced by its marker, and the
// counts. When something is replaced, the result is in normalisation
// form C; text with nothing to replace comes back unchanged.
func (rd *Redactor) Redact(s string) (string, RedactionCounts) {
	if !rd.Enabled() || s == "" {
		return s, nil
	}
	t := s
	if !norm.NFC.IsNormalString(t) {
		t = norm.NFC.String(t)
	}
	var spans []span
	for _, p := range rd.patterns {
		for _, m := range p.re.FindAllStringIndex(t, -1) {
			if m[1] > m[0] && standsAlone(t, m[0], m[1]) {
				spans = append(spans, span{m[0], m[1], p.marker})
			}
		}
	}
	if rd.terms != nil {
		spans = rd.findTerms(t, spans)
	}
	if len(spans) == 0 {
		return s, nil
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(b.end, a.end)) })
	var b strings.Builder
	b.Grow(len(t))
	counts := RedactionCounts{}
	at := 0
	for _, sp := range spans {
		if sp.start < at {
			continue // overlaps a match already taken
		}
		b.WriteString(t[at:sp.start])
		b.WriteString(sp.marker)
		counts[sp.marker]++
		at = sp.end
	}
	b.WriteString(t[at:])
	return b.String(), counts
}

// findTerms appends the spans of the terms found in t: at each start of
// a word, the longest term that ends at the end of a word.
func (rd *Redactor) findTerms(t string, spans []span) []span {
	prev := rune(-1) // not a word rune
	for i := 0; i < len(t); {
		r, size := utf8.DecodeRuneInString(t[i:])
		if !wordRune(r) || (prev >= 0 && wordRune(prev)) {
			prev = r
			i += size
			continue
		}
		n, j, end, marker := rd.terms, i, -1, ""
		for j < len(t) {
			c, sz := utf8.DecodeRuneInString(t[j:])
			if unicode.IsSpace(c) {
				k := j + sz
				for k < len(t) {
					c2, sz2 := utf8.DecodeRuneInString(t[k:])
					if !unicode.IsSpace(c2) {
						break
					}
					k += sz2
				}
				c, sz = ' ', k-j
			} else {
				c = foldRune(c)
			}
			if n = n.child(c); n == nil {
				break
			}
			j += sz
			if n.marker != "" {
				next, _ := utf8.DecodeRuneInString(t[j:])
				if j == len(t) || !wordRune(next) {
					end, marker = j, n.marker
				}
			}
		}
		if end < 0 {
			prev = r
			i += size
			continue
		}
		spans = append(spans, span{i, end, marker})
		prev, _ = utf8.DecodeLastRuneInString(t[:end])
		i = end
	}
	return spans
}

// standsAlone reports whether t[start:end] is not glued to a letter or
// digit: the rune before a match that starts with a letter or digit is
// not one, and likewise the rune after a match that ends with one.
func standsAlone(t string, start, end int) bool {
	first, _ := utf8.DecodeRuneInString(t[start:])
	if before, _ := utf8.DecodeLastRuneInString(t[:start]); start > 0 && wordRune(first) && wordRune(before) {
		return false
	}
	last, _ := utf8.DecodeLastRuneInString(t[:end])
	if after, _ := utf8.DecodeRuneInString(t[end:]); end < len(t) && wordRune(last) && wordRune(after) {
		return false
	}
	return true
}

// wordRune reports whether r is part of a word: a letter, a digit or a
// combining mark.
func wordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)
}

// foldRune maps r to one rune of its case-folding orbit (the smallest),
// so that two runes that differ only in case fold alike.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		// The smallest rune of an ASCII letter's orbit is its capital
		// (the orbits of k and s also hold the Kelvin sign and the long
		// s, which are larger).
		if 'a' <= r && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}
	f := r
	for s := unicode.SimpleFold(r); s != r; s = unicode.SimpleFold(s) {
		f = min(f, s)
	}
	return f
}

// RedactEntry returns a copy of the research view v with its title,
// body and tag names redacted, and the counts. Tags that redact to the
// same name become one. v itself is not changed.
func (rd *Redactor) RedactEntry(v *syncengine.Entry) (*syncengine.Entry, RedactionCounts) {
	if !rd.Enabled() {
		return v, nil
	}
	out := *v
	counts := RedactionCounts{}
	var c RedactionCounts
	out.Title.Value, c = rd.Redact(v.Title.Value)
	counts.Add(c)
	out.Body.Value, c = rd.Redact(v.Body.Value)
	counts.Add(c)
	if len(v.Tags) > 0 {
		out.Tags = make([]syncengine.Tag, 0, len(v.Tags))
		changed := false
		for _, t := range v.Tags {
			name, c := rd.Redact(t.Name)
			if len(c) > 0 {
				changed = true
				counts.Add(c)
				t.Name = truncateText(name, syncengine.MaxTagBytes)
			}
			out.Tags = append(out.Tags, t)
		}
		if changed {
			slices.SortStableFunc(out.Tags, func(a, b syncengine.Tag) int { return strings.Compare(a.Name, b.Name) })
			out.Tags = slices.CompactFunc(out.Tags, func(a, b syncengine.Tag) bool { return a.Name == b.Name })
		}
	}
	return &out, counts
}

// truncateText cuts s to at most n bytes on a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
