package export

import (
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/diarysync/diarysync/study"
)

// CSVHeader is the header row of a CSV export, one column per field;
// WriteDictionary describes each.
var CSVHeader = columnNames()

// TagSeparator joins an entry's tags in the tags column of a CSV export.
// A tag may itself contain it; the JSON Lines export, which carries tags
// as an array, is exact where that matters.
const TagSeparator = "; "

// utf8BOM is the byte order mark --bom puts first.
const utf8BOM = "\uFEFF"

// WriteCSV writes the records as RFC 4180 CSV to w: UTF-8, CRLF between
// records, a header row (CSVHeader), then one row per entry. Mood is
// empty when not recorded; created and last_edited are RFC 3339 in UTC
// with milliseconds; revisions counts the navigator's own saves.
//
// Two things are written differently from what the entry holds, both so
// that the file means the same in every program that opens it:
//
//   - Every line break inside a cell, whether the device wrote LF, CRLF
//     or a lone CR, is written as CRLF, the line break of RFC 4180;
//     encoding/csv reads it back as LF. Written as it came, a lone CR
//     would vanish (encoding/csv's writer drops it) or end the row early
//     in some readers.
//   - Unless the manifest's FormulaGuard is off, a cell that starts with
//     '=', '+', '-', '@', a tab or a single quote gets one more single
//     quote in front. Spreadsheets run a cell that starts with one of
//     the first four as a formula: a diary line such as "-went to the
//     hostel" would show as an error, and a crafted one could reach the
//     network. The quote makes the spreadsheet show the text as it is.
//     Because a cell that already started with a quote gets one too, the
//     change is exactly reversible: RestoreCSVField removes it. R and
//     pandas users, who open the file in no spreadsheet, turn the guard
//     off (--no-formula-guard), and the manifest says so.
//
// The file starts with a UTF-8 byte order mark when the manifest's BOM
// is set (--bom): Excel then opens it as UTF-8 with a double click, where
// it would otherwise garble accents, Arabic and emoji. RFC 4180 has no
// BOM, and R and pandas keep it as part of the first column's name unless
// told (encoding "UTF-8-BOM", "utf-8-sig"), so it is off by default.
//
// The JSON Lines export carries every field unchanged.
func WriteCSV(w io.Writer, m study.Manifest, recs study.Records) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot export CSV: %w", err)
	}
	if m.BOM {
		if _, err := io.WriteString(w, utf8BOM); err != nil {
			return fmt.Errorf("cannot write CSV: %w", err)
		}
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("cannot write CSV header: %w", err)
	}
	rd := c.newReading(0)
	row := make([]string, len(CSVHeader))
	err = recs(study.Pass{}, func(r *study.Record) error {
		id, _, err := rd.check(r)
		if err != nil {
			return err
		}
		wv, _ := c.wave(r.Wave)
		mood := ""
		if r.Mood != 0 {
			mood = strconv.Itoa(r.Mood)
		}
		row = append(row[:0],
			id.String(),
			r.StudyCode,
			strconv.FormatUint(uint64(r.Wave), 10),
			wv.Label,
			r.WaveDefinition,
			r.Date,
			r.Title,
			r.Body,
			strings.Join(sortedTags(r.Tags), TagSeparator),
			mood,
			formatTime(r.Created),
			formatTime(r.LastEdited),
			strconv.Itoa(r.Revisions),
			hex.EncodeToString(r.TextSHA256[:]),
			redactionText(r.Redactions),
		)
		for i := range row {
			row[i] = csvCell(row[i], m.FormulaGuard)
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("cannot write entry %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot export CSV: %w", err)
	}
	if err := rd.done(); err != nil {
		return fmt.Errorf("cannot export CSV: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("cannot write CSV: %w", err)
	}
	return nil
}

// csvCell writes one cell's value as WriteCSV documents it.
func csvCell(s string, guard bool) string {
	s = lineFeeds(s)
	if s == "" || !guard {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\'':
		return "'" + s
	}
	return s
}

// RestoreCSVField returns the value of a cell read from a CSV export as
// the entry held it, undoing the quote WriteCSV puts in front of a cell
// that starts with '=', '+', '-', '@', a tab or a quote. Line breaks stay
// LF.
func RestoreCSVField(cell string) string {
	return strings.TrimPrefix(cell, "'")
}
