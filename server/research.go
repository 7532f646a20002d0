package server

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"strconv"

	"github.com/diarysync/diarysync/server/export"
	"github.com/diarysync/diarysync/syncengine"
)

// ExportFormat is the file format of an export; the numbers match the
// API's ExportFormat.
type ExportFormat int

// Export formats.
const (
	FormatCSV   ExportFormat = 1
	FormatJSONL ExportFormat = 2
	FormatQDPX  ExportFormat = 3
)

var formatNames = map[ExportFormat]string{FormatCSV: "csv", FormatJSONL: "jsonl", FormatQDPX: "qdpx"}

// Export writes an export of one wave (0: every wave) in one format to w,
// read from one snapshot of the database. It calls manifest, before
// writing anything, with the manifest that describes the snapshot. Only
// entries shared for research and neither deleted nor erased are
// exported, with the author as a study code and nothing else about them.
// The export is recorded in the audit log with its counts.
func (db *DB) Export(ctx context.Context, wave uint32, format ExportFormat, manifest func(export.Manifest) error, w io.Writer) error {
	write := map[ExportFormat]func(io.Writer, export.Manifest, export.Records) error{
		FormatCSV: export.WriteCSV, FormatJSONL: export.WriteJSONL, FormatQDPX: export.WriteQDPX,
	}[format]
	if write == nil {
		return syncengine.Errorf(syncengine.EINVALID, "unknown export format %d: use CSV, JSON Lines or QDPX", format)
	}
	var m export.Manifest
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if m, err = db.manifest(ctx, tx, wave); err != nil {
			return err
		}
		if err := manifest(m); err != nil {
			return err
		}
		return write(w, m, func(p export.Pass, yield func(*export.Record) error) error {
			return exportRecords(ctx, tx, wave, p, yield)
		})
	})
	if err != nil {
		return err
	}
	// The audit entry is written after the snapshot was read in full;
	// an export that failed half way is not recorded as made.
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		return db.audit(ctx, tx, "export", waveName(wave), map[string]string{
			"format":              formatNames[format],
			"position":            fmt.Sprint(m.Position),
			"entries":             fmt.Sprint(m.Entries),
			"excluded_not_shared": fmt.Sprint(m.ExcludedNotShared),
			"excluded_deleted":    fmt.Sprint(m.ExcludedDeleted),
			"excluded_erased":     fmt.Sprint(m.ExcludedErased),
			"excluded_no_wave":    fmt.Sprint(m.ExcludedNoWave),
		})
	})
}

func waveName(w uint32) string {
	if w == 0 {
		return "all"
	}
	return strconv.FormatUint(uint64(w), 10)
}

// inWaves is the condition that an entry (alias e) is dated inside the
// selected wave (?; 0 for any wave).
const inWaves = `EXISTS (SELECT 1 FROM waves w WHERE e.date BETWEEN w.start_date AND w.end_date AND (? = 0 OR w.number = ?))`

// manifest reads the wave definitions and the counts of the export.
func (db *DB) manifest(ctx context.Context, tx *sql.Tx, wave uint32) (export.Manifest, error) {
	m := export.Manifest{ExportedAt: db.now().UTC(), Wave: wave}
	pos, err := currentSeq(ctx, tx)
	if err != nil {
		return m, err
	}
	m.Position = uint64(pos)
	waves, err := listWaves(ctx, tx, 0, MaxWaveNumber+1)
	if err != nil {
		return m, err
	}
	found := wave == 0
	for _, w := range waves {
		m.Waves = append(m.Waves, export.Wave{Number: w.Number, Label: w.Label, Start: w.Start, End: w.End})
		found = found || w.Number == wave
	}
	if !found {
		return m, syncengine.Errorf(syncengine.ENOTFOUND, "there is no wave %d", wave)
	}
	err = tx.QueryRowContext(ctx, `SELECT
			coalesce(sum(res_visible = 1), 0),
			coalesce(sum(deleted = 1), 0),
			coalesce(sum(deleted = 0 AND res_visible = 0), 0)
		FROM entries e WHERE erased_at IS NULL AND `+inWaves, wave, wave).
		Scan(&m.Entries, &m.ExcludedDeleted, &m.ExcludedNotShared)
	if err != nil {
		return m, fmt.Errorf("cannot count entries: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE erased_at IS NOT NULL`).Scan(&m.ExcludedErased); err != nil {
		return m, fmt.Errorf("cannot count erased entries: %w", err)
	}
	if wave == 0 {
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM entries e WHERE res_visible = 1 AND NOT `+inWaves, 0, 0).Scan(&m.ExcludedNoWave); err != nil {
			return m, fmt.Errorf("cannot count entries outside the waves: %w", err)
		}
	}
	return m, nil
}

// exportRecords yields the exported entries in the order the writers
// need: by study code, date and id. Each row is decoded and dropped before
// the next, so memory does not depend on the number of entries.
func exportRecords(ctx context.Context, tx *sql.Tx, wave uint32, p export.Pass, yield func(*export.Record) error) error {
	if p.Wave != 0 {
		wave = p.Wave
	}
	rows, err := tx.QueryContext(ctx, `
		SELECT e.id, u.study_code, w.number, e.state, (SELECT count(*) FROM history h WHERE h.entry = e.rid)
		FROM entries e
		JOIN users u ON u.id = e.owner_id
		JOIN waves w ON e.date BETWEEN w.start_date AND w.end_date
		WHERE e.res_visible = 1 AND (? = 0 OR w.number = ?)
		ORDER BY u.study_code, e.date, e.id`, wave, wave)
	if err != nil {
		return fmt.Errorf("cannot read entries for export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id    []byte
			r     export.Record
			state []byte
		)
		if err := rows.Scan(&id, &r.StudyCode, &r.Wave, &state, &r.Edits); err != nil {
			return fmt.Errorf("cannot read entries for export: %w", err)
		}
		e, err := syncengine.DecodeEntry(state)
		if err != nil {
			return fmt.Errorf("entry %x: stored state: %w", id, err)
		}
		e = e.View(syncengine.AudienceResearch)
		r.EntryID = e.ID.String()
		r.Date, r.Title, r.Tags, r.Mood = e.Date.Value, e.Title.Value, e.TagNames(), int(e.Mood.Value)
		if !p.SkipBody {
			r.Body = e.Body.Value
		}
		r.Created, r.LastEdited = e.Created.Time(), e.Updated().Time()
		if err := yield(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}
