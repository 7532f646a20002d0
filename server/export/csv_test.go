package export

import (
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// readCSV parses a CSV export with encoding/csv and undoes the formula
// quoting, as a researcher's script would.
func readCSV(t *testing.T, data []byte) [][]string {
	t.Helper()
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("cannot read the CSV back: %v", err)
	}
	for _, row := range rows {
		for i := range row {
			row[i] = RestoreCSVField(row[i])
		}
	}
	return rows
}

func TestWriteCSV(t *testing.T) {
	recs := hostileRecords()
	var b bytes.Buffer
	if err := WriteCSV(&b, manifestFor(recs), sliceRecords(recs)); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()

	t.Run("RoundTrip", func(t *testing.T) {
		rows := readCSV(t, out)
		if !slices.Equal(rows[0], CSVHeader) {
			t.Fatalf("header = %q, want %q", rows[0], CSVHeader)
		}
		if len(rows) != len(recs)+1 {
			t.Fatalf("got %d rows, want %d", len(rows), len(recs)+1)
		}
		labels := map[uint32]string{1: "Beginning", 2: "Middle <& end>"}
		for i, r := range recs {
			mood := ""
			if r.Mood != 0 {
				mood = strconv.Itoa(r.Mood)
			}
			tags := slices.Sorted(slices.Values(r.Tags))
			want := []string{
				r.EntryID, r.StudyCode, strconv.Itoa(int(r.Wave)), labels[r.Wave], r.WaveDefinition, r.Date,
				r.Title, lineFeeds(r.Body), strings.Join(tags, "; "), mood,
				r.Created.UTC().Format("2006-01-02T15:04:05.000Z"),
				r.LastEdited.UTC().Format("2006-01-02T15:04:05.000Z"),
				strconv.Itoa(r.Revisions), hex.EncodeToString(r.TextSHA256[:]), redactionText(r.Redactions),
			}
			if got := rows[i+1]; !slices.Equal(got, want) {
				for j := range want {
					if got[j] != want[j] {
						t.Errorf("entry %d, column %s = %q, want %q", i, CSVHeader[j], got[j], want[j])
					}
				}
			}
		}
	})

	t.Run("UTF8WithoutByteOrderMark", func(t *testing.T) {
		if !bytes.HasPrefix(out, []byte("entry_id,study_code,")) {
			t.Fatalf("export starts %q, want the header with no byte order mark", out[:min(len(out), 24)])
		}
		if !bytes.Contains(out, []byte("😀")) {
			t.Fatal("emoji not written as UTF-8")
		}
	})

	t.Run("RecordsEndInCRLF", func(t *testing.T) {
		if !bytes.HasPrefix(out, []byte(strings.Join(CSVHeader, ",")+"\r\n")) {
			t.Fatalf("header row does not end in CRLF: %q", out[:min(len(out), 120)])
		}
		if !bytes.HasSuffix(out, []byte("\r\n")) {
			t.Fatal("last row does not end in CRLF")
		}
		// Every CR is part of a CRLF: a lone CR would end a row in some
		// readers and vanish in others.
		if n, m := bytes.Count(out, []byte("\r")), bytes.Count(out, []byte("\r\n")); n != m {
			t.Fatalf("%d CRs but %d CRLFs", n, m)
		}
	})

	t.Run("LoneCRIsALineBreak", func(t *testing.T) {
		rows := readCSV(t, out)
		if got, want := rows[2][7], "=1+1\nlone CR above, \"quoted\"\n\nmixed"; got != want {
			t.Fatalf("body = %q, want %q", got, want)
		}
	})
}

func TestCSVFormulaQuoting(t *testing.T) {
	// The cell as encoding/csv reads it back, before RestoreCSVField.
	cells := map[string]string{
		"=1+1":                   "'=1+1",
		"+44 20 7946 0000":       "'+44 20 7946 0000",
		"-went to the hostel":    "'-went to the hostel",
		"@alice":                 "'@alice",
		"\tindented":             "'\tindented",
		"'already quoted":        "''already quoted",
		"''":                     "'''",
		"plain text":             "plain text",
		" =not at the start":     " =not at the start",
		"1=1":                    "1=1",
		"":                       "",
		"=cmd|' /C calc'!A0":     "'=cmd|' /C calc'!A0",
		"-\r\n- a bulleted list": "'-\n- a bulleted list",
	}
	for body, want := range cells {
		t.Run(strconv.Quote(body), func(t *testing.T) {
			recs := []study.Record{{
				EntryID: "01900000-0000-7000-8000-0000000000aa", StudyCode: "PN-A", Wave: 1, Date: "2024-01-02",
				Title: "t", Body: body, Created: exportedAt, LastEdited: exportedAt, WaveDefinition: study.DefinitionDefault, Revisions: 1,
			}}
			var b bytes.Buffer
			if err := WriteCSV(&b, manifestFor(recs), sliceRecords(recs)); err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(&b).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			got := rows[1][7]
			if got != want {
				t.Fatalf("cell = %q, want %q", got, want)
			}
			if restored := RestoreCSVField(got); restored != lineFeeds(body) {
				t.Fatalf("RestoreCSVField(%q) = %q, want %q", got, restored, lineFeeds(body))
			}
		})
	}
}
