package study

import (
	"strings"
	"testing"
)

func TestMergeText(t *testing.T) {
	for _, tc := range []struct {
		name, base, mine, theirs string
		want                     string // "" with ok false: a conflict
		ok                       bool
	}{
		{"OnlyMine", "Thanks for this.", "Thanks for writing this.", "Thanks for this.", "Thanks for writing this.", true},
		{"OnlyTheirs", "Thanks for this.", "Thanks for this.", "Thanks a lot for this.", "Thanks a lot for this.", true},
		{"SameEdit", "Thanks.", "Thank you.", "Thank you.", "Thank you.", true},
		{"ApartEdits", "One two three four five.", "1 two three four five.", "One two three four 5.", "1 two three four 5.", true},
		{"ApartSentences",
			"You handled the move well. Let's talk on Thursday.",
			"You handled the move calmly and well. Let's talk on Thursday.",
			"You handled the move well. Let's talk on Friday instead.",
			"You handled the move calmly and well. Let's talk on Friday instead.", true},
		{"AppendedBothEnds", "middle", "start middle", "middle end", "start middle end", true},
		{"DeletedAndEditedApart", "a b c d e f", "a c d e f", "a b c d e F", "a c d e F", true},
		{"MultiLine", "line one\nline two\nline three", "line 1\nline two\nline three", "line one\nline two\nline 3", "line 1\nline two\nline 3", true},
		{"Unicode", "Très bien, merci.", "Très bien, merci beaucoup.", "Très très bien, merci.", "Très très bien, merci beaucoup.", true},
		{"ErrSameWordDifferently", "Let's talk on Thursday.", "Let's talk on Friday.", "Let's talk on Monday.", "", false},
		{"ErrInsertSamePlace", "a b", "a X b", "a Y b", "", false},
		{"ErrDeletedAndEdited", "keep this word", "keep word", "keep that word", "", false},
		{"EmptyBase", "", "mine", "", "mine", true},
		{"ErrEmptyBaseBoth", "", "mine", "theirs", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := MergeText(tc.base, tc.mine, tc.theirs)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Fatalf("MergeText = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
			if ok {
				// Merging is symmetric in the two edits.
				if back, ok2 := MergeText(tc.base, tc.theirs, tc.mine); !ok2 || back != got {
					t.Fatalf("swapped: %q, %v; want %q", back, ok2, got)
				}
			}
		})
	}
}

// TestMergeTextLarge: a feedback note at its size limit with an edit at
// each end merges, and a wholesale rewrite on both sides is a conflict,
// not an unbounded computation.
func TestMergeTextLarge(t *testing.T) {
	var b strings.Builder
	for i := 0; b.Len() < 8<<10; i++ {
		b.WriteString("word")
		b.WriteByte(byte('a' + i%26))
		b.WriteByte(' ')
	}
	base := b.String()
	mine := "Start. " + base
	theirs := base + "End."
	got, ok := MergeText(base, mine, theirs)
	if !ok || got != "Start. "+base+"End." {
		t.Fatalf("large merge: ok=%v, len %d", ok, len(got))
	}
	rewrite := strings.ReplaceAll(base, "word", "WORD")
	other := strings.ReplaceAll(base, "word", "term")
	if _, ok := MergeText(base, rewrite, other); ok {
		t.Fatal("two rewrites of every word merged")
	}
}

func TestTextTokens(t *testing.T) {
	got := textTokens("Don't stop,  now!")
	want := []string{"Don't", " ", "stop", ",", "  ", "now", "!"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("tokens %q, want %q", got, want)
	}
}
