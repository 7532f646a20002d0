package export

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/diarysync/diarysync/study"
	"github.com/google/uuid"
)

// ManifestVersion is the version of the manifest file's layout; it grows
// when a key changes meaning (new keys do not change it).
const ManifestVersion = 1

// manifestWave is a wave definition in a manifest file.
type manifestWave struct {
	Number    uint32 `json:"number"`
	Label     string `json:"label"`
	Start     string `json:"start"`
	End       string `json:"end"`
	Navigator string `json:"navigator,omitempty"`
}

// manifestHead is the part of a manifest file before the lists.
type manifestHead struct {
	Version    int    `json:"manifest_version"`
	ExportID   int64  `json:"export_id,omitempty"`
	ExportedAt string `json:"exported_at,omitempty"`
	Snapshot   struct {
		Position uint64 `json:"position"`
		At       string `json:"at"`
	} `json:"snapshot"`
	Format    string `json:"format"`
	Empty     bool   `json:"empty"`
	Note      string `json:"note,omitempty"`
	Selection struct {
		Wave      string `json:"wave"`
		Navigator string `json:"navigator,omitempty"`
		From      string `json:"from,omitempty"`
		To        string `json:"to,omitempty"`
	} `json:"selection"`
	Waves          []manifestWave `json:"waves"`
	NavigatorWaves []manifestWave `json:"navigator_waves"`
	Counts         struct {
		Entries  uint64 `json:"entries"`
		Excluded struct {
			NotShared uint64 `json:"not_shared"`
			Deleted   uint64 `json:"deleted"`
			Erased    uint64 `json:"erased"`
			NoWave    uint64 `json:"no_wave"`
		} `json:"excluded"`
	} `json:"counts"`
	Redaction struct {
		Enabled  bool `json:"enabled"`
		Patterns []struct {
			Name   string `json:"name"`
			Marker string `json:"marker"`
			Expr   string `json:"expression"`
		} `json:"patterns"`
		Terms        int    `json:"terms"`
		Replacements uint64 `json:"replacements"`
	} `json:"redaction"`
	CSV *struct {
		BOM          bool `json:"bom"`
		FormulaGuard bool `json:"formula_guard"`
	} `json:"csv,omitempty"`
}

type manifestSince struct {
	ExportID   int64             `json:"export_id"`
	Position   uint64            `json:"position"`
	ExportedAt string            `json:"exported_at"`
	Counts     map[string]uint64 `json:"counts"`
}

type manifestEntry struct {
	EntryID        string         `json:"entry_id"`
	SourceGUID     string         `json:"source_guid"`
	StudyCode      string         `json:"study_code"`
	Wave           uint32         `json:"wave"`
	WaveDefinition string         `json:"wave_definition"`
	Date           string         `json:"date"`
	TextSHA256     string         `json:"text_sha256"`
	Redactions     map[string]int `json:"redactions"`
}

// WriteManifest writes an export's manifest as JSON to w: the snapshot,
// the selection, the wave definitions used, the counts of what was
// exported and left out by reason, the de-identification setting and its
// replacement count, the CSV settings, the comparison with an earlier
// export (m.Since: the entries added, changed, withdrawn, erased and now
// outside the selection), and per entry its id, the GUID of its .qdpx
// source, its wave and which definition placed it, and the SHA-256 of its
// exported text with its redaction counts. It reads the records once,
// with bodies, and streams: memory does not grow with the entries.
//
// inArchive leaves out what differs between two exports of the same
// snapshot with the same settings (the export's id and time), so that
// the manifest inside a .qdpx keeps the archive byte-identical.
func WriteManifest(w io.Writer, m study.Manifest, recs study.Records, inArchive bool) error {
	c, err := newChecker(&m)
	if err != nil {
		return fmt.Errorf("cannot write manifest: %w", err)
	}
	var h manifestHead
	h.Version = ManifestVersion
	if !inArchive {
		h.ExportID, h.ExportedAt = m.ExportID, formatTime(m.ExportedAt)
	}
	h.Snapshot.Position, h.Snapshot.At = m.Position, formatTime(m.SnapshotAt)
	h.Format = m.Format.String()
	h.Empty = m.Empty()
	if h.Empty {
		h.Note = "This export holds no entries: nothing in its selection is shared for research. The counts say what was left out and why."
	}
	h.Selection.Wave = study.WaveName(m.Wave)
	h.Selection.Navigator, h.Selection.From, h.Selection.To = m.Navigator, m.From, m.To
	h.Waves, h.NavigatorWaves = []manifestWave{}, []manifestWave{}
	for _, wv := range sortedWaves(m.Waves) {
		h.Waves = append(h.Waves, manifestWave{Number: wv.Number, Label: wv.Label, Start: wv.Start, End: wv.End})
	}
	for _, wv := range c.plan.All()[len(c.plan.Defaults):] {
		h.NavigatorWaves = append(h.NavigatorWaves, manifestWave{Number: wv.Number, Label: wv.Label, Start: wv.Start, End: wv.End, Navigator: wv.Navigator})
	}
	h.Counts.Entries = m.Entries
	h.Counts.Excluded.NotShared, h.Counts.Excluded.Deleted = m.ExcludedNotShared, m.ExcludedDeleted
	h.Counts.Excluded.Erased, h.Counts.Excluded.NoWave = m.ExcludedErased, m.ExcludedNoWave
	h.Redaction.Enabled, h.Redaction.Terms, h.Redaction.Replacements = m.Redaction.Enabled, m.Redaction.Terms, m.Redaction.Replacements
	h.Redaction.Patterns = make([]struct {
		Name   string `json:"name"`
		Marker string `json:"marker"`
		Expr   string `json:"expression"`
	}, len(m.Redaction.Patterns))
	for i, p := range m.Redaction.Patterns {
		h.Redaction.Patterns[i].Name, h.Redaction.Patterns[i].Marker, h.Redaction.Patterns[i].Expr = p.Name, p.Marker, p.Expr
	}
	if m.Format == study.FormatCSV {
		h.CSV = &struct {
			BOM          bool `json:"bom"`
			FormulaGuard bool `json:"formula_guard"`
		}{m.BOM, m.FormulaGuard}
	}
	head, err := json.MarshalIndent(&h, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot write manifest: %w", err)
	}
	bw := bufio.NewWriter(w)
	// The head is an object; the lists are added before its closing
	// brace, so the file stays one JSON object.
	bw.Write(head[:len(head)-2])
	if m.Since != nil {
		if err := writeSince(bw, m.Since); err != nil {
			return fmt.Errorf("cannot write manifest: %w", err)
		}
	}
	bw.WriteString(",\n  \"entries\": [")
	rd := c.newReading(0)
	first := true
	err = recs(study.Pass{SkipRevisions: true}, func(r *study.Record) error {
		id, _, err := rd.check(r)
		if err != nil {
			return err
		}
		e := manifestEntry{
			EntryID: id.String(), SourceGUID: sourceGUID(id), StudyCode: r.StudyCode,
			Wave: r.Wave, WaveDefinition: r.WaveDefinition, Date: r.Date,
			TextSHA256: hex.EncodeToString(r.TextSHA256[:]), Redactions: r.Redactions,
		}
		if e.Redactions == nil {
			e.Redactions = map[string]int{}
		}
		return writeListItem(bw, &first, e)
	})
	if err != nil {
		return fmt.Errorf("cannot write manifest: %w", err)
	}
	if err := rd.done(); err != nil {
		return fmt.Errorf("cannot write manifest: %w", err)
	}
	if !first {
		bw.WriteString("\n  ")
	}
	bw.WriteString("]\n}\n")
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("cannot write manifest: %w", err)
	}
	return nil
}

// writeSince writes the "since" member: the earlier export, the counts,
// and one list of entry ids per kind.
func writeSince(bw *bufio.Writer, s *study.Since) error {
	ms := manifestSince{ExportID: s.ExportID, Position: s.Position, ExportedAt: formatTime(s.ExportedAt), Counts: map[string]uint64{}}
	for _, k := range study.SinceKinds {
		ms.Counts[string(k)] = s.Counts[k]
	}
	b, err := json.MarshalIndent(&ms, "  ", "  ")
	if err != nil {
		return err
	}
	bw.WriteString(",\n  \"since\": ")
	bw.Write(b[:len(b)-4]) // before "\n  }"
	kind := study.SinceKind("")
	first := true
	closeList := func() {
		if kind == "" {
			return
		}
		if !first {
			bw.WriteString("\n    ")
		}
		bw.WriteString("]")
	}
	next := 0
	open := func(k study.SinceKind) {
		closeList()
		fmt.Fprintf(bw, ",\n    %q: [", k)
		kind, first = k, true
	}
	err = s.List(func(k study.SinceKind, id string) error {
		if _, err := uuid.Parse(id); err != nil {
			return fmt.Errorf("since list holds %q, not an entry id", truncate(id, 40))
		}
		for k != kind {
			if next == len(study.SinceKinds) {
				return fmt.Errorf("since list gives %s entries out of order", k)
			}
			open(study.SinceKinds[next])
			next++
		}
		if !first {
			bw.WriteString(",")
		}
		first = false
		fmt.Fprintf(bw, "\n      %q", id)
		return nil
	})
	if err != nil {
		return err
	}
	for next < len(study.SinceKinds) {
		open(study.SinceKinds[next])
		next++
	}
	closeList()
	bw.WriteString("\n  }")
	return nil
}

// writeListItem writes one item of a list of objects.
func writeListItem(bw *bufio.Writer, first *bool, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if !*first {
		bw.WriteString(",")
	}
	*first = false
	bw.WriteString("\n    ")
	_, err = bw.Write(b)
	return err
}
