package syncengine

import (
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
