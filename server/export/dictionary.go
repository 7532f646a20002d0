package export

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/diarysync/diarysync/study"
)

// column is one column of a CSV export and one key of a JSON Lines export.
type column struct {
	name     string
	csvType  string
	jsonType string
	meaning  string
}

// columns are the data dictionary of the CSV and JSON Lines exports, in
// column order. The README's copy is checked against it by a test.
var columns = []column{
	{"entry_id", "text", "string", "The entry's id (a UUIDv7). It stays the same across exports, and the .qdpx source of the entry has the GUID given beside it in the manifest."},
	{"study_code", "text", "string", "The navigator who wrote the entry, by study code (a pseudonym such as PN-A); nothing else about the author is exported."},
	{"wave", "integer", "number", "The number of the interview wave whose dates for this navigator hold the entry's date."},
	{"wave_label", "text", "string", "The label of that wave, such as Baseline."},
	{"wave_definition", "text", "string", "Which dates placed the entry in the wave: default (the study-wide dates) or navigator (the navigator's own interview dates for that wave)."},
	{"date", "date (YYYY-MM-DD)", "string (YYYY-MM-DD)", "The day the entry is about, as the navigator set it."},
	{"title", "text", "string", "The entry's title, de-identified."},
	{"body", "text", "string", "The entry's text, de-identified: phone numbers, e-mail addresses, postcodes and the study's list of names appear as markers such as [phone] and [name] (see the manifest for the setting). CSV line breaks are CRLF; JSON has LF."},
	{"tags", "text", "array of strings", "The navigator's tags, in alphabetical order; CSV joins them with \"; \" (a tag may itself hold that; JSON Lines is exact). In a .qdpx each tag is a code, coding the entry's whole text."},
	{"mood", "integer 1-10, empty", "number or null", "The mood the navigator recorded; empty (CSV) or null (JSON) when none was, never 0."},
	{"created", "time (RFC 3339, UTC)", "string (RFC 3339, UTC)", "When the entry was first written, by the device's clock, to the millisecond."},
	{"last_edited", "time (RFC 3339, UTC)", "string (RFC 3339, UTC)", "When the entry's own fields were last changed (supervisors' feedback does not count)."},
	{"revisions", "integer", "number", "How many times the navigator saved the entry: one per save on a device, however many fields it changed. Supervisors' feedback is not counted."},
	{"text_sha256", "text (64 hex digits)", "string (64 hex digits)", "SHA-256 of the exported body as a .qdpx source holds it (UTF-8, LF line breaks, Unicode NFC): equal in two exports exactly when the text a coder codes is the same."},
	{"redactions", "text", "object", "How many replacements de-identification made in the title, body and tags, by marker: CSV writes \"[name]=2; [phone]=1\", JSON an object; empty (CSV) or {} (JSON) when none."},
}

// columnNames returns the column names in order.
func columnNames() []string {
	out := make([]string, len(columns))
	for i, c := range columns {
		out[i] = c.name
	}
	return out
}

// DictionaryFile returns the name of the data dictionary written beside
// an export file: FILE.dictionary.md.
func DictionaryFile(exportFile string) string { return exportFile + ".dictionary.md" }

// ManifestFile returns the name of the manifest written beside an export
// file: FILE.manifest.json.
func ManifestFile(exportFile string) string { return exportFile + ".manifest.json" }

// WriteDictionary writes the data dictionary of a CSV or JSON Lines
// export as a Markdown table: each column, its type, and what it means.
func WriteDictionary(w io.Writer, f study.ExportFormat) error {
	var b strings.Builder
	switch f {
	case study.FormatCSV:
		b.WriteString("# Data dictionary: CSV export\n\n")
		b.WriteString("RFC 4180 CSV, UTF-8 (with a byte order mark when exported with --bom), CRLF line breaks, one header row, then one row per diary entry.\n")
		b.WriteString("A cell that starts with =, +, -, @, a tab or ' has one more ' in front, so that spreadsheets show it as text; the manifest says whether this formula guard was on.\n\n")
		b.WriteString("| column | type | meaning |\n|---|---|---|\n")
		for _, c := range columns {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", c.name, c.csvType, escapeCell(c.meaning))
		}
	case study.FormatJSONL:
		b.WriteString("# Data dictionary: JSON Lines export\n\n")
		b.WriteString("UTF-8, one JSON object per line and diary entry, with these keys; every value is exactly what the entry holds after de-identification.\n\n")
		b.WriteString("| key | type | meaning |\n|---|---|---|\n")
		for _, c := range columns {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", c.name, c.jsonType, escapeCell(c.meaning))
		}
	default:
		return fmt.Errorf("no data dictionary for %s: it describes CSV and JSON Lines exports", f)
	}
	b.WriteString("\nThe manifest beside the file (FILE.manifest.json) says which snapshot, waves, filters and de-identification the export used, what it left out and why, and per entry its text hash and redaction counts.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", "\\|") }

// redactionText writes redaction counts for a CSV cell and a REFI-QDA
// variable: "[name]=2; [phone]=1", markers in order.
func redactionText(c study.RedactionCounts) string {
	if len(c) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(c))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Itoa(c[k])
	}
	return strings.Join(parts, "; ")
}
