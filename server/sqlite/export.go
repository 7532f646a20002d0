package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// exportScope is what one export reads everything through: the request,
// the wave plan and the redactor, all as its snapshot holds them.
type exportScope struct {
	req  study.ExportRequest
	plan study.WavePlan
	rd   *study.Redactor
	red  *study.Redaction
}

// exportBatchRows is how many kept entries of an export are written per
// transaction: enough to make the writes cheap, few enough to keep the
// memory of an export independent of the study's size.
const exportBatchRows = 256

// Export reads one snapshot of the research export of req and hands it
// to write; see study.Store.
func (db *DB) Export(ctx context.Context, req study.ExportRequest, write func(study.Manifest, study.Records) error) error {
	if err := study.CheckExportRequest(&req); err != nil {
		return err
	}
	var (
		m  study.Manifest
		id int64
	)
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		sc, err := db.exportScope(ctx, tx, req)
		if err != nil {
			return err
		}
		if m, err = db.exportManifest(ctx, tx, sc); err != nil {
			return err
		}
		// The export gets its id and keeps its entries in transactions of
		// its own: this snapshot does not see them, and does not need to.
		if id, err = db.beginExport(ctx, &m); err != nil {
			return err
		}
		m.ExportID = id
		records := func(p study.Pass, yield func(*study.Record) error) error {
			return db.exportRecords(ctx, tx, sc, p, yield)
		}
		if m.Redaction.Replacements, err = db.keepExportEntries(ctx, id, records, m.Entries); err != nil {
			return err
		}
		if req.Since != 0 {
			if m.Since, err = db.since(ctx, tx, id, req.Since); err != nil {
				return err
			}
		}
		return write(m, records)
	})
	if err != nil {
		if id != 0 {
			// Not ctx: the export may have failed because ctx ended.
			if derr := db.dropExport(context.WithoutCancel(ctx), id); derr != nil {
				return errors.Join(err, derr)
			}
		}
		return err
	}
	// The export is kept, and recorded in the audit log, only once the
	// snapshot was read in full and written out.
	summary, err := json.Marshal(&m)
	if err != nil {
		return fmt.Errorf("cannot encode export manifest: %w", err)
	}
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE exports SET complete = 1, summary = ? WHERE id = ?`, string(summary), id); err != nil {
			return fmt.Errorf("cannot keep export: %w", err)
		}
		// Whose entries the export holds: they see it in their activity.
		owners, err := queryIDs(ctx, tx, `SELECT DISTINCT e.owner_id FROM export_entries x JOIN entries e ON e.id = x.entry_id WHERE x.export_id = ?`, id)
		if err != nil {
			return fmt.Errorf("cannot find whose entries are exported: %w", err)
		}
		return db.audit(ctx, tx, "export", study.WaveName(req.Wave), m.AuditDetails(&req), owners...)
	})
}

// ExportPreview returns the manifest an export of req would have now.
func (db *DB) ExportPreview(ctx context.Context, req study.ExportRequest) (*study.Manifest, error) {
	if err := study.CheckExportRequest(&req); err != nil {
		return nil, err
	}
	var m study.Manifest
	err := db.readTx(ctx, func(tx *sql.Tx) error {
		sc, err := db.exportScope(ctx, tx, req)
		if err != nil {
			return err
		}
		m, err = db.exportManifest(ctx, tx, sc)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// ListExports returns a page of the exports made, newest first.
func (db *DB) ListExports(ctx context.Context, size uint32, token string) ([]*study.Manifest, string, error) {
	before, err := study.DecodeIntPageToken(token)
	if err != nil {
		return nil, "", err
	}
	n := study.ListPageSize(size)
	rows, err := db.read.QueryContext(ctx, `SELECT id, summary FROM exports WHERE complete = 1 AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?`, before, before, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list exports: %w", err)
	}
	defer rows.Close()
	var out []*study.Manifest
	for rows.Next() {
		var (
			id      int64
			summary string
			m       study.Manifest
		)
		if err := rows.Scan(&id, &summary); err != nil {
			return nil, "", fmt.Errorf("cannot list exports: %w", err)
		}
		if err := json.Unmarshal([]byte(summary), &m); err != nil {
			return nil, "", fmt.Errorf("export %d: stored manifest: %w", id, err)
		}
		m.ExportID = id
		out = append(out, &m)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot list exports: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		next = study.EncodeIntPageToken(out[n-1].ExportID)
	}
	return out, next, nil
}

// exportScope reads what the export of req is read through, refusing a
// wave, navigator or earlier export that does not exist.
func (db *DB) exportScope(ctx context.Context, tx *sql.Tx, req study.ExportRequest) (*exportScope, error) {
	sc := &exportScope{req: req}
	if req.Navigator != "" {
		nav, err := userByCode(ctx, tx, req.Navigator)
		if err != nil {
			return nil, err
		}
		if err := study.CheckExportNavigator(nav); err != nil {
			return nil, err
		}
		sc.req.Navigator = nav.StudyCode
	}
	var err error
	if sc.plan, err = loadPlan(ctx, tx); err != nil {
		return nil, err
	}
	if _, ok := sc.plan.Default(req.Wave); req.Wave != 0 && !ok {
		return nil, study.ErrUnknownWave(req.Wave)
	}
	if sc.red, err = readRedaction(ctx, tx); err != nil {
		return nil, err
	}
	if sc.rd, err = db.redactor(ctx, tx); err != nil {
		return nil, err
	}
	if req.Since != 0 {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM exports WHERE id = ? AND complete = 1`, req.Since).Scan(&n); err != nil {
			return nil, fmt.Errorf("cannot read exports: %w", err)
		}
		if n == 0 {
			return nil, study.ErrUnknownExport(req.Since)
		}
	}
	return sc, nil
}

// exportManifest reads the position, the wave definitions, the settings
// and the counts of the export. Every entry is counted by study's Tally,
// reading only the columns beside the state.
func (db *DB) exportManifest(ctx context.Context, tx *sql.Tx, sc *exportScope) (study.Manifest, error) {
	m := study.NewManifest(&sc.req, sc.plan, sc.red, db.now())
	var pos, at int64
	if err := tx.QueryRowContext(ctx, `SELECT value, changed_at FROM sequence WHERE id = 1`).Scan(&pos, &at); err != nil {
		return m, fmt.Errorf("cannot read sequence: %w", err)
	}
	m.Position = uint64(pos)
	if at > 0 {
		m.SnapshotAt = time.UnixMilli(at).UTC()
	}
	rows, err := tx.QueryContext(ctx, `SELECT u.study_code, e.date, e.res_visible, e.deleted, e.erased_at IS NOT NULL
		FROM entries e JOIN users u ON u.id = e.owner_id WHERE e.erased_at IS NOT NULL OR (e.state IS NOT NULL AND e.held_by IS NULL)`)
	if err != nil {
		return m, fmt.Errorf("cannot count entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e study.StoredEntry
		if err := rows.Scan(&e.Navigator, &e.Date, &e.ResearchVisible, &e.Deleted, &e.Erased); err != nil {
			return m, fmt.Errorf("cannot count entries: %w", err)
		}
		m.Tally(sc.plan, e)
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("cannot count entries: %w", err)
	}
	return m, nil
}

// exportRecords yields the exported entries in the order the writers
// need: by study code, date and id. Each row is decoded and dropped before
// the next, so memory does not depend on the number of entries.
func (db *DB) exportRecords(ctx context.Context, tx *sql.Tx, sc *exportScope, p study.Pass, yield func(*study.Record) error) error {
	req := &sc.req
	// The filters in SQL only narrow the rows read; study.Classify
	// decides.
	rows, err := tx.QueryContext(ctx, `
		SELECT e.rid, e.id, e.owner_id, u.study_code, e.date, e.state
		FROM entries e JOIN users u ON u.id = e.owner_id
		WHERE e.res_visible = 1 AND (? = '' OR u.study_code = ?) AND (? = '' OR e.date >= ?) AND (? = '' OR e.date <= ?)
		ORDER BY u.study_code COLLATE BINARY, e.date, e.id`,
		req.Navigator, req.Navigator, req.From, req.From, req.To, req.To)
	if err != nil {
		return fmt.Errorf("cannot read entries for export: %w", err)
	}
	defer rows.Close()
	history, err := tx.PrepareContext(ctx, `SELECT user_id, device_id, field, write_clock, received_at FROM history WHERE entry = ?`)
	if err != nil {
		return fmt.Errorf("cannot read history for export: %w", err)
	}
	defer history.Close()
	var (
		r      study.Record
		writes []study.HistoryWrite
	)
	for rows.Next() {
		var (
			rid, owner int64
			id, state  []byte
			code, date string
		)
		if err := rows.Scan(&rid, &id, &owner, &code, &date, &state); err != nil {
			return fmt.Errorf("cannot read entries for export: %w", err)
		}
		w, ex := study.Classify(req, sc.plan, code, date, true, false)
		if ex != study.Included || (p.Wave != 0 && w.Number != p.Wave) {
			continue
		}
		e, err := syncengine.DecodeEntryLazy(state)
		if err != nil {
			return fmt.Errorf("entry %x: stored state: %w", id, err)
		}
		study.RecordOf(&r, e, sc.rd, p.SkipBody)
		r.StudyCode, r.Wave, r.WaveDefinition, r.Revisions = code, w.Number, w.Definition(), 0
		if !p.SkipRevisions {
			if writes, err = readWrites(ctx, history, rid, writes[:0]); err != nil {
				return err
			}
			r.Revisions = study.Revisions(writes, owner)
		}
		if err := yield(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

func readWrites(ctx context.Context, stmt *sql.Stmt, rid int64, out []study.HistoryWrite) ([]study.HistoryWrite, error) {
	rows, err := stmt.QueryContext(ctx, rid)
	if err != nil {
		return nil, fmt.Errorf("cannot read history for export: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			w     study.HistoryWrite
			field int
			write int64
		)
		if err := rows.Scan(&w.User, &w.Device, &field, &write, &w.Received); err != nil {
			return nil, fmt.Errorf("cannot read history for export: %w", err)
		}
		w.Field, w.Write = syncengine.Field(field), uint64(write)
		out = append(out, w)
	}
	return out, rows.Err()
}

// beginExport gives an export its id; it is not listed until complete.
func (db *DB) beginExport(ctx context.Context, m *study.Manifest) (int64, error) {
	var id int64
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO exports (created_at, actor, position) VALUES (?, ?, ?) RETURNING id`,
			m.ExportedAt.UnixMilli(), study.ActorFrom(ctx), m.Position).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("cannot start export: %w", err)
	}
	return id, nil
}

// dropExport deletes an export that failed.
func (db *DB) dropExport(ctx context.Context, id int64) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM export_entries WHERE export_id = ?`, id); err != nil {
			return fmt.Errorf("cannot delete failed export: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM exports WHERE id = ? AND complete = 0`, id); err != nil {
			return fmt.Errorf("cannot delete failed export: %w", err)
		}
		return nil
	})
}

// dropIncompleteExports deletes exports a stopped server left half made.
func (db *DB) dropIncompleteExports(ctx context.Context) error {
	return db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM export_entries WHERE export_id IN (SELECT id FROM exports WHERE complete = 0)`); err != nil {
			return fmt.Errorf("cannot delete incomplete exports: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM exports WHERE complete = 0`); err != nil {
			return fmt.Errorf("cannot delete incomplete exports: %w", err)
		}
		return nil
	})
}

// keepExportEntries reads the records once and keeps each entry's id and
// text hash under the export, a batch per transaction. It returns the
// number of replacements the redaction made.
func (db *DB) keepExportEntries(ctx context.Context, id int64, records study.Records, want uint64) (uint64, error) {
	type kept struct {
		entry []byte
		hash  [32]byte
	}
	var (
		batch        []kept
		replacements uint64
		n            uint64
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := db.writeTx(ctx, func(tx *sql.Tx) error {
			for _, k := range batch {
				if _, err := tx.ExecContext(ctx, `INSERT INTO export_entries (export_id, entry_id, text_sha256) VALUES (?, ?, ?)`, id, k.entry, k.hash[:]); err != nil {
					return fmt.Errorf("cannot keep exported entries: %w", err)
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	err := records(study.Pass{SkipRevisions: true}, func(r *study.Record) error {
		eid, err := syncengine.ParseEntryID(r.EntryID)
		if err != nil {
			return err
		}
		n++
		replacements += uint64(r.Redactions.Total())
		batch = append(batch, kept{entry: append([]byte(nil), eid[:]...), hash: r.TextSHA256})
		if len(batch) == exportBatchRows {
			return flush()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if err := flush(); err != nil {
		return 0, err
	}
	if n != want {
		return 0, fmt.Errorf("the snapshot gave %d entries to export but counted %d", n, want)
	}
	return replacements, nil
}

// since compares the export newID with the earlier export oldID: the
// entries kept under each are compared by id and text hash; an entry
// only in the earlier one is classified by its state in tx, the new
// export's snapshot.
func (db *DB) since(ctx context.Context, tx *sql.Tx, newID, oldID int64) (*study.Since, error) {
	s := &study.Since{ExportID: oldID, Counts: map[study.SinceKind]uint64{}}
	var pos, at int64
	if err := tx.QueryRowContext(ctx, `SELECT position, created_at FROM exports WHERE id = ?`, oldID).Scan(&pos, &at); err != nil {
		return nil, fmt.Errorf("cannot read export %d: %w", oldID, err)
	}
	s.Position, s.ExportedAt = uint64(pos), time.UnixMilli(at).UTC()
	list := func(yield func(study.SinceKind, string) error) error {
		return db.sinceList(ctx, tx, newID, oldID, yield)
	}
	err := list(func(k study.SinceKind, _ string) error {
		s.Counts[k]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.List = list
	return s, nil
}

// sinceList yields the entries that differ between two exports, kind by
// kind in study.SinceKinds order, each kind by entry id. The new export's
// entries were committed after tx began, so they are read outside it.
func (db *DB) sinceList(ctx context.Context, tx *sql.Tx, newID, oldID int64, yield func(study.SinceKind, string) error) error {
	each := func(q querier, query string, fn func(id syncengine.EntryID) error, args ...any) error {
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("cannot compare exports: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return fmt.Errorf("cannot compare exports: %w", err)
			}
			if len(b) != len(syncengine.EntryID{}) {
				return fmt.Errorf("export entry id of %d bytes", len(b))
			}
			if err := fn(syncengine.EntryID(b)); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	added := `SELECT n.entry_id FROM export_entries n WHERE n.export_id = ?
		AND NOT EXISTS (SELECT 1 FROM export_entries o WHERE o.export_id = ? AND o.entry_id = n.entry_id) ORDER BY n.entry_id`
	if err := each(db.read, added, func(id syncengine.EntryID) error { return yield(study.SinceAdded, id.String()) }, newID, oldID); err != nil {
		return err
	}
	changed := `SELECT n.entry_id FROM export_entries n JOIN export_entries o ON o.export_id = ? AND o.entry_id = n.entry_id
		WHERE n.export_id = ? AND (o.text_sha256 IS NULL OR o.text_sha256 <> n.text_sha256) ORDER BY n.entry_id`
	if err := each(db.read, changed, func(id syncengine.EntryID) error { return yield(study.SinceChanged, id.String()) }, oldID, newID); err != nil {
		return err
	}
	gone := `SELECT o.entry_id FROM export_entries o WHERE o.export_id = ?
		AND NOT EXISTS (SELECT 1 FROM export_entries n WHERE n.export_id = ? AND n.entry_id = o.entry_id) ORDER BY o.entry_id`
	state, err := tx.PrepareContext(ctx, `SELECT erased_at IS NOT NULL, res_visible, deleted FROM entries WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("cannot compare exports: %w", err)
	}
	defer state.Close()
	for _, kind := range []study.SinceKind{study.SinceWithdrawn, study.SinceErased, study.SinceOutside} {
		err := each(db.read, gone, func(id syncengine.EntryID) error {
			var erased, shared, deleted bool
			if err := state.QueryRowContext(ctx, id[:]).Scan(&erased, &shared, &deleted); err != nil {
				return fmt.Errorf("cannot read entry %s: %w", id, err)
			}
			if study.ClassifyGone(erased, shared, deleted) != kind {
				return nil
			}
			return yield(kind, id.String())
		}, oldID, newID)
		if err != nil {
			return err
		}
	}
	return nil
}
