package export

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
)

// exportedAt is the export time of the test manifests.
var exportedAt = time.Date(2024, 7, 1, 9, 30, 15, 0, time.UTC)

// testWaves are two waves whose second label needs escaping in XML.
var testWaves = []study.Wave{
	{Number: 2, Label: "Middle <& end>", Start: "2024-04-01", End: "2024-06-30"},
	{Number: 1, Label: "Beginning", Start: "2024-01-01", End: "2024-03-31"},
}

// hostileRecords are entries of two navigators across two waves whose
// text tries everything a CSV, JSON or XML writer can get wrong.
func hostileRecords() []study.Record {
	created := time.Date(2024, 1, 15, 8, 0, 0, 123_000_000, time.FixedZone("CET", 3600))
	return []study.Record{
		{
			EntryID: "01900000-0000-7000-8000-000000000001", StudyCode: "PN-A", Wave: 1, Date: "2024-01-15",
			Title: `<script>alert("x")</script> & "quotes", commas`,
			Body:  "He said \"no\", then left.\r\nNext line, with a comma.\r\n😀 emoji and Cafe\u0301 (decomposed).\n]]> and </Body> and &amp;",
			Tags:  []string{"housing", "court; appeal"}, Mood: 7,
			Created: created, LastEdited: created.Add(26 * time.Hour), WaveDefinition: study.DefinitionDefault, Revisions: 5,
		},
		{
			EntryID: "01900000-0000-7000-8000-000000000002", StudyCode: "PN-A", Wave: 2, Date: "2024-04-02",
			Title: "=HYPERLINK(\"http://example.invalid\",\"click\")",
			Body:  "=1+1\rlone CR above, \"quoted\"\r\r\nmixed",
			Tags:  nil, Mood: 0,
			Created: created.Add(80 * 24 * time.Hour), LastEdited: created.Add(80 * 24 * time.Hour), WaveDefinition: study.DefinitionDefault, Revisions: 3,
		},
		{
			EntryID: "01900000-0000-7000-8000-000000000003", StudyCode: "PN-B", Wave: 1, Date: "2024-02-01",
			Title: "-minus", Body: "-went to the hostel\n+1 @alice\n\ttabbed\n'quoted already",
			Tags: []string{"zeta", "alpha"}, Mood: 10,
			Created: created.Add(17 * 24 * time.Hour), LastEdited: created.Add(18 * 24 * time.Hour), WaveDefinition: study.DefinitionDefault, Revisions: 9,
		},
		{
			EntryID: "01900000-0000-7000-8000-000000000004", StudyCode: "PN-B", Wave: 2, Date: "2024-05-05",
			Title: "", Body: "control \x01 char and \x7f delete, \uFFFE non-character",
			Tags: []string{"@mention"}, Mood: 1,
			Created: created.Add(110 * 24 * time.Hour), LastEdited: created.Add(111 * 24 * time.Hour), WaveDefinition: study.DefinitionDefault, Revisions: 4,
		},
		{
			EntryID: "01900000-0000-7000-8000-000000000005", StudyCode: "PN-B", Wave: 2, Date: "2024-06-30",
			Title: "Empty body", Body: "",
			Created: created.Add(150 * 24 * time.Hour), LastEdited: created.Add(150 * 24 * time.Hour), WaveDefinition: study.DefinitionDefault, Revisions: 2,
		},
	}
}

// manifestFor returns a manifest of all waves for recs.
func manifestFor(recs []study.Record) study.Manifest {
	return study.Manifest{
		Position: 42, ExportedAt: exportedAt, SnapshotAt: exportedAt, Wave: 0, Waves: testWaves, FormulaGuard: true,
		Entries: uint64(len(recs)), ExcludedNotShared: 3, ExcludedDeleted: 2, ExcludedErased: 1, ExcludedNoWave: 4,
	}
}

// sliceRecords serves recs as a database would: honouring the Pass, and
// copying each record into one reused Record, so that a writer that kept
// a record would see it change.
func sliceRecords(recs []study.Record) study.Records {
	return func(p study.Pass, yield func(*study.Record) error) error {
		var r study.Record
		for _, src := range recs {
			if p.Wave != 0 && src.Wave != p.Wave {
				continue
			}
			r = src
			if p.SkipBody {
				r.Body = ""
			}
			if p.SkipRevisions {
				r.Revisions = 0
			}
			if err := yield(&r); err != nil {
				return err
			}
		}
		return nil
	}
}

// ignoringRecords serves recs ignoring the Pass, as a Records function
// may.
func ignoringRecords(recs []study.Record) study.Records {
	return func(_ study.Pass, yield func(*study.Record) error) error {
		for i := range recs {
			r := recs[i]
			if err := yield(&r); err != nil {
				return err
			}
		}
		return nil
	}
}

type writer struct {
	name  string
	write func(*bytes.Buffer, study.Manifest, study.Records) error
}

var writers = []writer{
	{"CSV", func(b *bytes.Buffer, m study.Manifest, r study.Records) error { return WriteCSV(b, m, r) }},
	{"JSONL", func(b *bytes.Buffer, m study.Manifest, r study.Records) error { return WriteJSONL(b, m, r) }},
	{"QDPX", func(b *bytes.Buffer, m study.Manifest, r study.Records) error { return WriteQDPX(b, m, r) }},
}

func TestChecks(t *testing.T) {
	ok := hostileRecords()
	swap := hostileRecords()
	swap[0], swap[1] = swap[1], swap[0]
	dup := append(hostileRecords(), hostileRecords()[4])
	tests := []struct {
		name string
		edit func(m *study.Manifest, recs []study.Record) []study.Record
		want string
	}{
		{"ErrOutOfOrder", func(m *study.Manifest, _ []study.Record) []study.Record { return swap }, "not ordered after it"},
		{"ErrDuplicate", func(m *study.Manifest, _ []study.Record) []study.Record { m.Entries++; return dup }, "not ordered after it"},
		{"ErrWaveNotDefined", func(m *study.Manifest, r []study.Record) []study.Record { r[2].Wave = 3; return r }, "does not cover"},
		{"ErrWaveNotExported", func(m *study.Manifest, r []study.Record) []study.Record { m.Wave = 2; return r }, "does not cover"},
		{"ErrDateOutsideWave", func(m *study.Manifest, r []study.Record) []study.Record { r[1].Date = "2024-03-31"; return r }, "outside wave 2"},
		{"ErrBadDate", func(m *study.Manifest, r []study.Record) []study.Record { r[0].Date = "2024-1-15"; return r }, "not a date"},
		{"ErrBadEntryID", func(m *study.Manifest, r []study.Record) []study.Record { r[0].EntryID = "entry-1"; return r }, "not a UUID"},
		{"ErrNoStudyCode", func(m *study.Manifest, r []study.Record) []study.Record { r[0].StudyCode = ""; return r }, "no study code"},
		{"ErrTooFew", func(m *study.Manifest, r []study.Record) []study.Record { m.Entries++; return r }, "manifest counts 6"},
		{"ErrTooMany", func(m *study.Manifest, r []study.Record) []study.Record { m.Entries--; return r }, "manifest counts 4"},
		{"ErrNoExportTime", func(m *study.Manifest, r []study.Record) []study.Record { m.ExportedAt = time.Time{}; return r }, "no export time"},
		{"ErrUndefinedExportedWave", func(m *study.Manifest, r []study.Record) []study.Record { m.Wave = 9; return r }, "does not define it"},
		{"ErrDuplicateWave", func(m *study.Manifest, r []study.Record) []study.Record {
			m.Waves = append(append([]study.Wave(nil), m.Waves...), m.Waves[0])
			return r
		}, "twice"},
	}
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			t.Run("OK", func(t *testing.T) {
				var b bytes.Buffer
				if err := w.write(&b, manifestFor(ok), sliceRecords(ok)); err != nil {
					t.Fatal(err)
				}
			})
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					recs := hostileRecords()
					m := manifestFor(recs)
					recs = tt.edit(&m, recs)
					var b bytes.Buffer
					err := w.write(&b, m, sliceRecords(recs))
					if err == nil || !strings.Contains(err.Error(), tt.want) {
						t.Fatalf("got error %v, want one containing %q", err, tt.want)
					}
				})
			}
			t.Run("ErrFromRecords", func(t *testing.T) {
				sentinel := errors.New("snapshot lost")
				recs := hostileRecords()
				failing := func(p study.Pass, yield func(*study.Record) error) error {
					if err := yield(&recs[0]); err != nil {
						return err
					}
					return sentinel
				}
				var b bytes.Buffer
				if err := w.write(&b, manifestFor(recs), failing); !errors.Is(err, sentinel) {
					t.Fatalf("got error %v, want %v", err, sentinel)
				}
			})
		})
	}
}

func TestLineFeeds(t *testing.T) {
	for in, want := range map[string]string{
		"":               "",
		"a\r\nb":         "a\nb",
		"a\rb":           "a\nb",
		"a\r\r\nb":       "a\n\nb",
		"a\n\rb":         "a\n\nb",
		"\r":             "\n",
		"no breaks":      "no breaks",
		"a\nb\r\nc\rd\n": "a\nb\nc\nd\n",
	} {
		if got := lineFeeds(in); got != want {
			t.Errorf("lineFeeds(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPlainText(t *testing.T) {
	for in, want := range map[string]string{
		"Cafe\u0301":       "Caf\u00e9",
		"a\r\nb\rc":        "a\nb\nc",
		"tab\tkept":        "tab\tkept",
		"nul\x00bell\x07":  "nul\uFFFDbell\uFFFD",
		"c1\u0085del\x7f":  "c1\uFFFDdel\uFFFD",
		"bad\xffutf8":      "bad\uFFFDutf8",
		"\uFFFE\uFFFF":     "\uFFFD\uFFFD",
		"😀 <&> \"quoted\"": "😀 <&> \"quoted\"",
	} {
		if got := plainText(in); got != want {
			t.Errorf("plainText(%q) = %q, want %q", in, got, want)
		}
	}
}
