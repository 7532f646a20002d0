package export

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/diarysync/diarysync/study"
)

// CSVHeader is the header row of a CSV export, one column per field.
var CSVHeader = []string{
	"entry_id", "study_code", "wave", "wave_label", "date", "title", "body",
	"tags", "mood", "created", "last_edited", "edits",
}

// TagSeparator joins an entry's tags in the tags column of a CSV export.
// A tag may itself contain it; the JSON Lines export, which carries tags
// as an array, is exact where that matters.
const TagSeparator = "; "

// WriteCSV writes the records as RFC 4180 CSV to w: UTF-8 without a byte
// order mark, CRLF between records, a header row (CSVHeader), then one
// row per entry. Mood is empty when not recorded; created and last_edited
// are RFC 3339 in UTC with milliseconds; edits counts the accepted changes
// in the entry's history.
//
// Two things are written differently from what the entry holds, both so
// that the file means the same in every program that opens it:
//
//   - Every line break inside a cell, whether the device wrote LF, CRLF
//     or a lone CR, is written as CRLF, the line break of RFC 4180;
//     encoding/csv reads it back as LF. Written as it came, a lone CR
//     would vanish (encoding/csv's writer drops it) or end the row early
//     in some readers.
//   - A cell that starts with '=', '+', '-', '@', a tab or a single quote
//     gets one more single quote in front. Spreadsheets run a cell that
//     starts with one of the first four as a formula: a diary line such
//     as "-went to the hostel" would show as an error, and a crafted one
//     could reach the network. The quote makes the spreadsheet show the
//     text as it is. Because a cell that already started with a quote
//     gets one too, the change is exactly reversible: RestoreCSVField
//     removes it.
//
// The JSON Lines export carries every field unchanged.
//
// No byte order mark: RFC 4180 has none, and R, pandas and most CSV
// readers would keep it as part of the first column's name; Excel reads
// the file as UTF-8 through Data > From Text/CSV.
func WriteCSV(w io.Writer, m study.Manifest, recs study.Records) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot export CSV: %w", err)
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
		row[0] = id.String()
		row[1] = r.StudyCode
		row[2] = strconv.FormatUint(uint64(r.Wave), 10)
		row[3] = wv.Label
		row[4] = r.Date
		row[5] = r.Title
		row[6] = r.Body
		row[7] = strings.Join(sortedTags(r.Tags), TagSeparator)
		row[8] = mood
		row[9] = formatTime(r.Created)
		row[10] = formatTime(r.LastEdited)
		row[11] = strconv.Itoa(r.Edits)
		for i := range row {
			row[i] = csvCell(row[i])
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
func csvCell(s string) string {
	s = lineFeeds(s)
	if s == "" {
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
