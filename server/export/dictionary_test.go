package export

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// readmeTable is the data dictionary as the README shows it.
func readmeTable() string {
	var b strings.Builder
	b.WriteString("| column | CSV | JSON Lines | meaning |\n|---|---|---|---|\n")
	for _, c := range columns {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", c.name, c.csvType, c.jsonType, escapeCell(c.meaning))
	}
	return b.String()
}

// TestDictionaryInREADME keeps the README's data dictionary the one the
// exports ship.
func TestDictionaryInREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte(readmeTable())) {
		t.Fatalf("README.md's data dictionary differs from the exports'; it should read:\n\n%s", readmeTable())
	}
}

func TestWriteDictionary(t *testing.T) {
	for _, f := range []study.ExportFormat{study.FormatCSV, study.FormatJSONL} {
		var b bytes.Buffer
		if err := WriteDictionary(&b, f); err != nil {
			t.Fatal(err)
		}
		for _, c := range columns {
			if !strings.Contains(b.String(), "| "+c.name+" |") {
				t.Errorf("%s dictionary lacks %s", f, c.name)
			}
		}
	}
	if err := WriteDictionary(&bytes.Buffer{}, study.FormatQDPX); err == nil {
		t.Error("a dictionary for a .qdpx")
	}
	if got := strings.Join(CSVHeader, ","); got != "entry_id,study_code,wave,wave_label,wave_definition,date,title,body,tags,mood,created,last_edited,revisions,text_sha256,redactions" {
		t.Errorf("CSV header %s", got)
	}
}
