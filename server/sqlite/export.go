package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// Export reads one snapshot of the research export of req.Wave and hands
// it to write; see study.Store.
func (db *DB) Export(ctx context.Context, req study.ExportRequest, write func(study.Manifest, study.Records) error) error {
	if err := study.CheckExportFormat(req.Format); err != nil {
		return err
	}
	var m study.Manifest
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		if m, err = db.manifest(ctx, tx, req.Wave); err != nil {
			return err
		}
		return write(m, func(p study.Pass, yield func(*study.Record) error) error {
			return exportRecords(ctx, tx, req.Wave, p, yield)
		})
	})
	if err != nil {
		return err
	}
	// The audit entry is written after the snapshot was read in full;
	// an export that failed half way is not recorded as made.
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		return db.audit(ctx, tx, "export", study.WaveName(req.Wave), map[string]string{
			"format":              req.Format.String(),
			"position":            fmt.Sprint(m.Position),
			"entries":             fmt.Sprint(m.Entries),
			"excluded_not_shared": fmt.Sprint(m.ExcludedNotShared),
			"excluded_deleted":    fmt.Sprint(m.ExcludedDeleted),
			"excluded_erased":     fmt.Sprint(m.ExcludedErased),
			"excluded_no_wave":    fmt.Sprint(m.ExcludedNoWave),
		})
	})
}

// manifest reads the wave definitions and counts, with study's Tally,
// every entry the store keeps.
func (db *DB) manifest(ctx context.Context, tx *sql.Tx, wave uint32) (study.Manifest, error) {
	m := study.Manifest{ExportedAt: db.now().UTC(), Wave: wave}
	pos, err := currentSeq(ctx, tx)
	if err != nil {
		return m, err
	}
	m.Position = uint64(pos)
	waves, err := listWaves(ctx, tx, 0, study.MaxWaveNumber+1)
	if err != nil {
		return m, err
	}
	found := wave == 0
	for _, w := range waves {
		m.Waves = append(m.Waves, *w)
		found = found || w.Number == wave
	}
	if !found {
		return m, study.ErrUnknownWave(wave)
	}
	rows, err := tx.QueryContext(ctx, `SELECT date, res_visible, deleted, erased_at IS NOT NULL FROM entries`)
	if err != nil {
		return m, fmt.Errorf("cannot count entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e study.StoredEntry
		if err := rows.Scan(&e.Date, &e.ResearchVisible, &e.Deleted, &e.Erased); err != nil {
			return m, fmt.Errorf("cannot count entries: %w", err)
		}
		m.Tally(e)
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("cannot count entries: %w", err)
	}
	return m, nil
}

// exportRecords yields the exported entries in the order the writers
// need: by study code, date and id. Each row is decoded and dropped before
// the next, so memory does not depend on the number of entries.
func exportRecords(ctx context.Context, tx *sql.Tx, wave uint32, p study.Pass, yield func(*study.Record) error) error {
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
			r     study.Record
			state []byte
		)
		if err := rows.Scan(&id, &r.StudyCode, &r.Wave, &state, &r.Edits); err != nil {
			return fmt.Errorf("cannot read entries for export: %w", err)
		}
		e, err := syncengine.DecodeEntry(state)
		if err != nil {
			return fmt.Errorf("entry %x: stored state: %w", id, err)
		}
		study.RecordOf(&r, e, p.SkipBody)
		if err := yield(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}
