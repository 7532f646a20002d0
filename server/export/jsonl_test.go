package export

import (
	"bufio"
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestWriteJSONL(t *testing.T) {
	recs := hostileRecords()
	var b bytes.Buffer
	if err := WriteJSONL(&b, manifestFor(recs), sliceRecords(recs)); err != nil {
		t.Fatal(err)
	}
	out := b.String()

	t.Run("OneEntryPerLine", func(t *testing.T) {
		if !strings.HasSuffix(out, "\n") {
			t.Fatal("last line does not end in LF")
		}
		if n := strings.Count(out, "\n"); n != len(recs) {
			t.Fatalf("%d lines, want %d", n, len(recs))
		}
		if strings.Contains(out, "\r") {
			t.Fatal("a raw CR in the output: strings must escape it")
		}
	})

	t.Run("Keys", func(t *testing.T) {
		var line map[string]any
		if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &line); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range line {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		want := slices.Sorted(slices.Values(CSVHeader))
		if !slices.Equal(keys, want) {
			t.Fatalf("keys %q, want %q", keys, want)
		}
	})

	t.Run("RoundTripExact", func(t *testing.T) {
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for i := 0; sc.Scan(); i++ {
			var got struct {
				EntryID    string   `json:"entry_id"`
				StudyCode  string   `json:"study_code"`
				Wave       uint32   `json:"wave"`
				WaveLabel  string   `json:"wave_label"`
				Date       string   `json:"date"`
				Title      string   `json:"title"`
				Body       string   `json:"body"`
				Tags       []string `json:"tags"`
				Mood       *int     `json:"mood"`
				Created    string   `json:"created"`
				LastEdited string   `json:"last_edited"`
				Revisions  int      `json:"revisions"`
				WaveDef    string   `json:"wave_definition"`
			}
			if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
				t.Fatalf("line %d: %v", i+1, err)
			}
			r := recs[i]
			if got.EntryID != r.EntryID || got.StudyCode != r.StudyCode || got.Wave != r.Wave || got.Date != r.Date || got.Revisions != r.Revisions || got.WaveDef != r.WaveDefinition {
				t.Errorf("line %d: ids and numbers %+v differ from %+v", i+1, got, r)
			}
			// Exactly what the entry holds: CRLF and lone CR included.
			if got.Title != r.Title || got.Body != r.Body {
				t.Errorf("line %d: title %q body %q, want %q %q", i+1, got.Title, got.Body, r.Title, r.Body)
			}
			if want := slices.Sorted(slices.Values(r.Tags)); got.Tags == nil || !slices.Equal(got.Tags, want) {
				t.Errorf("line %d: tags %q, want %q (an array, never null)", i+1, got.Tags, want)
			}
			switch {
			case r.Mood == 0 && got.Mood != nil:
				t.Errorf("line %d: mood %d, want null (not recorded)", i+1, *got.Mood)
			case r.Mood != 0 && (got.Mood == nil || *got.Mood != r.Mood):
				t.Errorf("line %d: mood %v, want %d", i+1, got.Mood, r.Mood)
			}
			if want := r.Created.UTC().Format("2006-01-02T15:04:05.000Z"); got.Created != want {
				t.Errorf("line %d: created %q, want %q", i+1, got.Created, want)
			}
			if want := r.LastEdited.UTC().Format("2006-01-02T15:04:05.000Z"); got.LastEdited != want {
				t.Errorf("line %d: last_edited %q, want %q", i+1, got.LastEdited, want)
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("HTMLNotEscaped", func(t *testing.T) {
		if !strings.Contains(out, `<script>`) {
			t.Fatal(`"<" written as \u003c: the file is harder to read than it needs to be`)
		}
	})
}
