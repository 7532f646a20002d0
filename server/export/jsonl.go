package export

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/diarysync/diarysync/study"
)

// jsonRecord is one line of a JSON Lines export.
type jsonRecord struct {
	EntryID    string         `json:"entry_id"`
	StudyCode  string         `json:"study_code"`
	Wave       uint32         `json:"wave"`
	WaveLabel  string         `json:"wave_label"`
	WaveDef    string         `json:"wave_definition"`
	Date       string         `json:"date"`
	Title      string         `json:"title"`
	Body       string         `json:"body"`
	Tags       []string       `json:"tags"`
	Mood       *int           `json:"mood"`
	Created    string         `json:"created"`
	LastEdited string         `json:"last_edited"`
	Revisions  int            `json:"revisions"`
	TextSHA256 string         `json:"text_sha256"`
	Redactions map[string]int `json:"redactions"`
}

// WriteJSONL writes the records as JSON Lines to w: one JSON object per
// entry and line, with the keys of the CSV export's columns (CSVHeader;
// WriteDictionary describes each). Every field is exactly what the
// de-identified entry holds: tags are an array (empty, never null), mood
// is null when not recorded, so that it never counts as 0 in an average,
// redactions is an object (empty when none), and times are RFC 3339 in
// UTC with milliseconds.
func WriteJSONL(w io.Writer, m study.Manifest, recs study.Records) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot export JSON Lines: %w", err)
	}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	// "<", ">" and "&" are common in diaries and nobody embeds this file
	// in HTML; writing them as \u003c would only make it harder to read.
	enc.SetEscapeHTML(false)
	rd := c.newReading(0)
	var (
		line jsonRecord
		mood int
	)
	err = recs(study.Pass{}, func(r *study.Record) error {
		id, _, err := rd.check(r)
		if err != nil {
			return err
		}
		wv, _ := c.wave(r.Wave)
		line = jsonRecord{
			EntryID:    id.String(),
			StudyCode:  r.StudyCode,
			Wave:       r.Wave,
			WaveLabel:  wv.Label,
			WaveDef:    r.WaveDefinition,
			Date:       r.Date,
			Title:      r.Title,
			Body:       r.Body,
			Tags:       sortedTags(r.Tags),
			Created:    formatTime(r.Created),
			LastEdited: formatTime(r.LastEdited),
			Revisions:  r.Revisions,
			TextSHA256: hex.EncodeToString(r.TextSHA256[:]),
			Redactions: r.Redactions,
		}
		if line.Redactions == nil {
			line.Redactions = map[string]int{}
		}
		if line.Tags == nil {
			line.Tags = []string{}
		}
		if r.Mood != 0 {
			mood = r.Mood
			line.Mood = &mood
		}
		if err := enc.Encode(&line); err != nil {
			return fmt.Errorf("cannot write entry %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cannot export JSON Lines: %w", err)
	}
	if err := rd.done(); err != nil {
		return fmt.Errorf("cannot export JSON Lines: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write JSON Lines: %w", err)
	}
	return nil
}
