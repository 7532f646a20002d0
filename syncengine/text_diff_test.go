package syncengine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"pgregory.net/rapid"
)

// applySplices applies splices with positions in old's code points, as
// Diff returns them, to old.
func applySplices(t interface {
	Helper()
	Fatalf(string, ...any)
}, old string, splices []Splice) string {
	t.Helper()
	rs := []rune(old)
	end := 0
	for _, sp := range splices {
		if sp.Pos < end || sp.Del < 0 || sp.Pos+sp.Del > len(rs) {
			t.Fatalf("splices out of order or range: %+v in %d code points", splices, len(rs))
		}
		if sp.Del == 0 && sp.Text == "" {
			t.Fatalf("empty splice in %+v", splices)
		}
		end = sp.Pos + sp.Del
	}
	for i := len(splices) - 1; i >= 0; i-- {
		sp := splices[i]
		rs = slices.Concat(rs[:sp.Pos:sp.Pos], []rune(sp.Text), rs[sp.Pos+sp.Del:])
	}
	return string(rs)
}

// TestDiff checks that applying Diff(old, new) to old gives new, for
// random texts and for texts that differ by a few edits, and that a
// document edited with the splices gives it too.
func TestDiff(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		old := genText(30).Draw(t, "old")
		var new string
		if rapid.Bool().Draw(t, "related") {
			new = mutate(t, old)
		} else {
			new = genText(30).Draw(t, "new")
		}
		splices := Diff(old, new)
		if got := applySplices(t, old, splices); got != new {
			t.Fatalf("Diff(%q, %q) = %+v gives %q", old, new, splices, got)
		}
		if old == new && splices != nil {
			t.Fatalf("equal texts gave %+v", splices)
		}
		d := NewTextDoc(0)
		d.Splice(at(phone, 1), 0, 0, old)
		if _, err := d.Edit(at(phone, 2), splices...); err != nil || d.Text() != new {
			t.Fatalf("Edit with the diff gave %q, %v", d.Text(), err)
		}
	})
}

func TestDiffCharacterBoundaries(t *testing.T) {
	for _, tc := range []struct{ old, new string }{
		{"aé", "aè"},           // é and è share their first byte
		{"éa", "ũa"},           // é and ũ share their last byte
		{"a🙂b", "a🙃b"},         // emoji share three bytes
		{"e\u0301", "e\u0300"}, // combining marks
		{"", "🙂"},
		{"🙂", ""},
		{"ab", "ba"},
	} {
		splices := Diff(tc.old, tc.new)
		if got := applySplices(t, tc.old, splices); got != tc.new {
			t.Fatalf("Diff(%q, %q) = %+v gives %q", tc.old, tc.new, splices, got)
		}
		for _, sp := range splices {
			if !utf8.ValidString(sp.Text) {
				t.Fatalf("Diff(%q, %q) cut a character: %+v", tc.old, tc.new, splices)
			}
		}
	}
}

func TestDiffKeepsEditsWhole(t *testing.T) {
	// A rewritten word is one replacement, not letters that happen to
	// match; a word added in the middle is one insert.
	cases := []struct {
		old, new string
		want     []Splice
	}{
		{"Met J. at the hostel today.", "Met J. at the night shelter today.", []Splice{{Pos: 14, Del: 6, Text: "night shelter"}}},
		{"She asked about housing.", "She asked again about housing.", []Splice{{Pos: 10, Del: 0, Text: "again "}}},
		{"one two three", "one three", []Splice{{Pos: 4, Del: 4}}},
	}
	for _, tc := range cases {
		if got := Diff(tc.old, tc.new); !slices.Equal(got, tc.want) {
			t.Errorf("Diff(%q, %q) = %+v, want %+v", tc.old, tc.new, got, tc.want)
		}
	}
}

// TestDiffLargeBodies diffs 256 KiB bodies: one edited in a few places,
// and two unrelated ones, where the cost bound cuts the search short. Both
// must still be exact.
func TestDiffLargeBodies(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("met at the hostel she asked about housing again court date family relapse benefits shelter night outreach")
	body := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(words[rnd.IntN(len(words))])
			b.WriteByte(" \n"[rnd.IntN(2)])
		}
		return b.String()[:n]
	}
	old := body(MaxBodyBytes)
	rs := []rune(old)
	for range 40 {
		p := rnd.IntN(len(rs) - 100)
		rs = slices.Concat(rs[:p:p], []rune("edited "), rs[p+rnd.IntN(50):])
	}
	for _, new := range []string{string(rs), body(MaxBodyBytes)} {
		splices := Diff(old, new)
		if got := applySplices(t, old, splices); got != new {
			t.Fatal("diff of large bodies is wrong")
		}
		t.Logf("%d splices", len(splices))
	}
}

func FuzzDiff(f *testing.F) {
	f.Add("Met J. at the hostel.", "Met J. at the shelter, again.")
	f.Add("aé🙂", "aè🙃")
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, old, new string) {
		if !utf8.ValidString(old) || !utf8.ValidString(new) {
			return
		}
		if got := applySplices(t, old, Diff(old, new)); got != new {
			t.Fatalf("Diff(%q, %q) gives %q", old, new, got)
		}
	})
}

func TestRebase(t *testing.T) {
	for _, tc := range []struct {
		name                        string
		base, edited, current, want string
	}{
		{"Unchanged", "a b c", "a b c", "a x b c", "a x b c"},
		{"OnlyTheEdit", "a b c", "a B c", "a b c", "a B c"},
		{"Disjoint", "Went to the hostel.\n", "Went to the day centre.\n", "Went to the hostel.\nJ. was there.\n", "Went to the day centre.\nJ. was there.\n"},
		{"BothAppend", "one", "one two", "one three", "one three two"},
		{"DeleteWhatIsThere", "keep drop keep", "keep keep", "keep drop keep and more", "keep keep and more"},
		{"DeleteWhatWentAlready", "a drop b", "a b", "a b", "a b"},
		{"InsertIntoAStretchCurrentReplaced", "one two three", "one two and a half three", "one 2 three", "one 2 and a half three"},
		{"Emoji", "🙂 ok", "🙂🙂 ok", "🙂 ok!", "🙂🙂 ok!"},
		{"EditOfEmpty", "", "new", "other", "othernew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rebase(tc.base, tc.edited, tc.current); got != tc.want {
				t.Fatalf("Rebase(%q, %q, %q) = %q, want %q", tc.base, tc.edited, tc.current, got, tc.want)
			}
		})
	}
}

// FuzzRebase: whatever the texts, Rebase keeps every character that
// current inserted and base did not have, keeps every character of
// edited that base did not have, and gives edited when nothing changed
// meanwhile and current when the edit changed nothing.
func FuzzRebase(f *testing.F) {
	f.Add("Went to the hostel.", "Went to the day centre.", "Went to the hostel. J. too.")
	f.Add("", "a", "b")
	f.Fuzz(func(t *testing.T, base, edited, current string) {
		if !utf8.ValidString(base) || !utf8.ValidString(edited) || !utf8.ValidString(current) || len(base)+len(edited)+len(current) > 3000 {
			return
		}
		got := Rebase(base, edited, current)
		if !utf8.ValidString(got) {
			t.Fatal("Rebase made invalid UTF-8")
		}
		if Rebase(base, edited, base) != edited || Rebase(base, base, current) != current {
			t.Fatal("Rebase is not the identity where nothing changed")
		}
		count := func(s string) map[rune]int {
			m := map[rune]int{}
			for _, r := range s {
				m[r]++
			}
			return m
		}
		b, e, c, g := count(base), count(edited), count(current), count(got)
		for r, n := range c {
			if added := n - b[r]; added > 0 && g[r] < added {
				t.Fatalf("Rebase lost %q that current added: %q", r, got)
			}
		}
		for r, n := range e {
			if added := n - b[r]; added > 0 && g[r] < added {
				t.Fatalf("Rebase lost %q that the edit added: %q", r, got)
			}
		}
	})
}

// TestDiffReplacesWholeWords: a change inside a word replaces the word,
// so a concurrent deletion of the old word cannot strand the new letters;
// typing and backspacing stay the small edits they are.
func TestDiffReplacesWholeWords(t *testing.T) {
	for _, tc := range []struct {
		old, new string
		want     []Splice
	}{
		{"a w45q b", "a w61q b", []Splice{{Pos: 2, Del: 4, Text: "w61q"}}},
		{"I like teh cat", "I like the cat", []Splice{{Pos: 7, Del: 3, Text: "the"}}},
		{"hel", "hell", []Splice{{Pos: 3, Text: "l"}}},
		{"hello", "helo", []Splice{{Pos: 3, Del: 1}}},
		{"one two", "one twenty", []Splice{{Pos: 4, Del: 3, Text: "twenty"}}},
	} {
		got := Diff(tc.old, tc.new)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Diff(%q, %q) = %v, want %v", tc.old, tc.new, got, tc.want)
		}
		d := NewTextDoc(0)
		mustSplice(t, d, at(phone, 1), 0, 0, tc.old)
		if _, err := d.Edit(at(phone, 2), got...); err != nil || d.Text() != tc.new {
			t.Errorf("the splices of Diff(%q, %q) give %q (%v)", tc.old, tc.new, d.Text(), err)
		}
	}
}
