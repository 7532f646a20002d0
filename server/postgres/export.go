package postgres

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
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
// statement, and how many entry ids a comparison of two exports reads at
// a time: enough to make the round trips cheap, few enough to keep the
// memory of an export independent of the study's size.
const exportBatchRows = 512

// Export reads one snapshot (a read-only REPEATABLE READ transaction) of
// the research export of req and hands it to write; see study.Store.
//
// An export needs two connections at once: its snapshot, and one for the
// rows it keeps while the snapshot is open. Exports therefore take one of
// a few slots first, so that they never hold every connection of the
// pool while waiting for one more.
func (db *DB) Export(ctx context.Context, req study.ExportRequest, write func(study.Manifest, study.Records) error) error {
	if err := study.CheckExportRequest(&req); err != nil {
		return err
	}
	select {
	case db.exportSlots <- struct{}{}:
		defer func() { <-db.exportSlots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	var (
		m  study.Manifest
		id int64
	)
	err := db.readTx(ctx, func(rtx pgx.Tx) error {
		sc, err := db.exportScope(ctx, rtx, req)
		if err != nil {
			return err
		}
		if m, err = db.exportManifest(ctx, rtx, sc); err != nil {
			return err
		}
		// The export gets its id and keeps its entries in transactions of
		// its own: this snapshot does not see them, and does not need to.
		// The snapshot's transaction holds the export's lock from before
		// its row exists until it is complete.
		if id, err = db.beginExport(ctx, rtx, &m); err != nil {
			return err
		}
		m.ExportID = id
		records := func(p study.Pass, yield func(*study.Record) error) error {
			return exportRecords(ctx, rtx, sc, p, yield)
		}
		if m.Redaction.Replacements, err = db.keepExportEntries(ctx, id, records, m.Entries); err != nil {
			return err
		}
		if req.Since != 0 {
			if m.Since, err = db.since(ctx, rtx, id, req.Since); err != nil {
				return err
			}
		}
		if err := write(m, records); err != nil {
			return err
		}
		// The export is kept, and recorded in the audit log, only once
		// the snapshot was read in full and written out.
		summary, err := json.Marshal(&m)
		if err != nil {
			return fmt.Errorf("cannot encode export manifest: %w", err)
		}
		return db.plainTx(ctx, func(t *tx) error {
			if _, err := t.Exec(ctx, `UPDATE exports SET complete = true, summary = $1 WHERE id = $2`, string(summary), id); err != nil {
				return fmt.Errorf("cannot keep export: %w", err)
			}
			// Whose entries the export holds: they see it in their activity.
			owners, err := queryIDs(ctx, t, `SELECT DISTINCT e.owner_id FROM export_entries x JOIN entries e ON e.id = x.entry_id WHERE x.export_id = $1`, id)
			if err != nil {
				return fmt.Errorf("cannot find whose entries are exported: %w", err)
			}
			return db.audit(ctx, t, "export", study.WaveName(req.Wave), m.AuditDetails(&req), owners...)
		})
	})
	if err != nil && id != 0 {
		// Not ctx: the export may have failed because ctx ended.
		if derr := db.dropExport(context.WithoutCancel(ctx), id); derr != nil {
			return errors.Join(err, derr)
		}
	}
	return err
}

// ExportPreview returns the manifest an export of req would have now.
func (db *DB) ExportPreview(ctx context.Context, req study.ExportRequest) (*study.Manifest, error) {
	if err := study.CheckExportRequest(&req); err != nil {
		return nil, err
	}
	var m study.Manifest
	err := db.readTx(ctx, func(rtx pgx.Tx) error {
		sc, err := db.exportScope(ctx, rtx, req)
		if err != nil {
			return err
		}
		m, err = db.exportManifest(ctx, rtx, sc)
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
	rows, err := db.pool.Query(ctx, `SELECT id, summary FROM exports WHERE complete AND ($1::bigint = 0 OR id < $1) ORDER BY id DESC LIMIT $2`, before, n+1)
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
func (db *DB) exportScope(ctx context.Context, rtx pgx.Tx, req study.ExportRequest) (*exportScope, error) {
	sc := &exportScope{req: req}
	if req.Navigator != "" {
		nav, err := userByCode(ctx, rtx, req.Navigator)
		if err != nil {
			return nil, err
		}
		if err := study.CheckExportNavigator(nav); err != nil {
			return nil, err
		}
		sc.req.Navigator = nav.StudyCode
	}
	var err error
	if sc.plan, err = loadPlan(ctx, rtx); err != nil {
		return nil, err
	}
	if _, ok := sc.plan.Default(req.Wave); req.Wave != 0 && !ok {
		return nil, study.ErrUnknownWave(req.Wave)
	}
	if sc.red, err = readRedaction(ctx, rtx); err != nil {
		return nil, err
	}
	if sc.rd, err = db.redactor(ctx, rtx); err != nil {
		return nil, err
	}
	if req.Since != 0 {
		var n int
		if err := rtx.QueryRow(ctx, `SELECT count(*) FROM exports WHERE id = $1 AND complete`, req.Since).Scan(&n); err != nil {
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
func (db *DB) exportManifest(ctx context.Context, rtx pgx.Tx, sc *exportScope) (study.Manifest, error) {
	m := study.NewManifest(&sc.req, sc.plan, sc.red, db.now())
	var pos, at int64
	if err := rtx.QueryRow(ctx, `SELECT value, changed_at FROM sequence WHERE id = 1`).Scan(&pos, &at); err != nil {
		return m, fmt.Errorf("cannot read sequence: %w", err)
	}
	m.Position = uint64(pos)
	if at > 0 {
		m.SnapshotAt = time.UnixMilli(at).UTC()
	}
	rows, err := rtx.Query(ctx, `SELECT u.study_code, e.date, e.res_visible, e.deleted, e.erased_at IS NOT NULL
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
// need: by study code (bytewise: the column's collation is "C"), date and
// id. Rows stream from the server one at a time, so memory does not
// depend on the number of entries. Each row carries its history's
// writes as arrays, since a connection runs one query at a time; a
// reading that skips revisions reads no history.
func exportRecords(ctx context.Context, rtx pgx.Tx, sc *exportScope, p study.Pass, yield func(*study.Record) error) error {
	req := &sc.req
	// The filters in SQL only narrow the rows read; study.Classify
	// decides.
	rows, err := rtx.Query(ctx, `
		SELECT e.id, e.owner_id, u.study_code, e.date, e.state,
			h.users, h.devices, h.fields, h.writes, h.received
		FROM entries e JOIN users u ON u.id = e.owner_id
		CROSS JOIN LATERAL (
			SELECT coalesce(array_agg(user_id), '{}') AS users, coalesce(array_agg(device_id), '{}') AS devices,
				coalesce(array_agg(field), '{}') AS fields, coalesce(array_agg(write_clock), '{}') AS writes,
				coalesce(array_agg(received_at), '{}') AS received
			FROM history WHERE entry = e.rid AND NOT $4::boolean
		) h
		WHERE e.res_visible AND ($1 = '' OR u.study_code = $1) AND ($2 = '' OR e.date >= $2) AND ($3 = '' OR e.date <= $3)
		ORDER BY u.study_code, e.date, e.id`, req.Navigator, req.From, req.To, p.SkipRevisions)
	if err != nil {
		return fmt.Errorf("cannot read entries for export: %w", err)
	}
	defer rows.Close()
	var (
		r      study.Record
		writes []study.HistoryWrite
	)
	for rows.Next() {
		var (
			owner                       int64
			id, state                   []byte
			code, date                  string
			users, devices, ws, receive []int64
			fields                      []int32
		)
		if err := rows.Scan(&id, &owner, &code, &date, &state, &users, &devices, &fields, &ws, &receive); err != nil {
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
		r.StudyCode, r.Wave, r.WaveDefinition = code, w.Number, w.Definition()
		if len(devices) != len(users) || len(fields) != len(users) || len(ws) != len(users) || len(receive) != len(users) {
			return fmt.Errorf("entry %x: history arrays of different lengths", id)
		}
		writes = writes[:0]
		for k := range users {
			writes = append(writes, study.HistoryWrite{User: users[k], Device: devices[k], Field: syncengine.Field(fields[k]), Write: uint64(ws[k]), Received: receive[k]})
		}
		r.Revisions = 0
		if !p.SkipRevisions {
			r.Revisions = study.Revisions(writes, owner)
		}
		if err := yield(&r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// beginExport gives an export its id; it is not listed until complete.
// It first takes, in rtx, the advisory lock the export's row names, so
// that no other process ever sees the row incomplete and unlocked while
// the export is being made; the lock ends with rtx, or with its
// connection if the process dies.
func (db *DB) beginExport(ctx context.Context, rtx pgx.Tx, m *study.Manifest) (int64, error) {
	var b [8]byte
	if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
		return 0, fmt.Errorf("cannot start export: %w", err)
	}
	// Any key but the migrations' will do; two exports drawing the same
	// one would only keep a stale export for a while.
	key := int64(binary.BigEndian.Uint64(b[:]) &^ (1 << 63))
	if key == lockKey {
		key++
	}
	if _, err := rtx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key); err != nil {
		return 0, fmt.Errorf("cannot start export: %w", err)
	}
	var id int64
	err := db.plainTx(ctx, func(t *tx) error {
		return t.QueryRow(ctx, `INSERT INTO exports (created_at, actor, position, lock_key) VALUES ($1, $2, $3, $4) RETURNING id`,
			m.ExportedAt.UnixMilli(), study.ActorFrom(ctx), int64(m.Position), key).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("cannot start export: %w", err)
	}
	return id, nil
}

// dropExport deletes an export that failed.
func (db *DB) dropExport(ctx context.Context, id int64) error {
	return db.plainTx(ctx, func(t *tx) error {
		if _, err := t.Exec(ctx, `DELETE FROM export_entries WHERE export_id = $1`, id); err != nil {
			return fmt.Errorf("cannot delete failed export: %w", err)
		}
		if _, err := t.Exec(ctx, `DELETE FROM exports WHERE id = $1 AND NOT complete`, id); err != nil {
			return fmt.Errorf("cannot delete failed export: %w", err)
		}
		return nil
	})
}

// dropIncompleteExports deletes the exports a stopped process left half
// made: the incomplete ones whose lock no process holds.
func (db *DB) dropIncompleteExports(ctx context.Context) error {
	rows, err := db.pool.Query(ctx, `SELECT id, lock_key FROM exports WHERE NOT complete`)
	if err != nil {
		return fmt.Errorf("cannot find incomplete exports: %w", err)
	}
	type incomplete struct{ id, key int64 }
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (incomplete, error) {
		var e incomplete
		err := r.Scan(&e.id, &e.key)
		return e, err
	})
	if err != nil {
		return fmt.Errorf("cannot find incomplete exports: %w", err)
	}
	for _, e := range found {
		err := db.plainTx(ctx, func(t *tx) error {
			var free bool
			if err := t.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, e.key).Scan(&free); err != nil {
				return err
			}
			if !free {
				return nil // being made
			}
			if _, err := t.Exec(ctx, `DELETE FROM export_entries WHERE export_id = $1
				AND EXISTS (SELECT 1 FROM exports WHERE id = $1 AND NOT complete)`, e.id); err != nil {
				return err
			}
			_, err := t.Exec(ctx, `DELETE FROM exports WHERE id = $1 AND NOT complete`, e.id)
			return err
		})
		if err != nil {
			return fmt.Errorf("cannot delete incomplete export %d: %w", e.id, err)
		}
	}
	return nil
}

// keepExportEntries reads the records once and keeps each entry's id and
// text hash under the export, a batch per statement. It returns the
// number of replacements the redaction made.
func (db *DB) keepExportEntries(ctx context.Context, id int64, records study.Records, want uint64) (uint64, error) {
	var (
		ids, hashes  [][]byte
		replacements uint64
		n            uint64
	)
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		err := db.plainTx(ctx, func(t *tx) error {
			if _, err := t.Exec(ctx, `INSERT INTO export_entries (export_id, entry_id, text_sha256)
				SELECT $1, * FROM unnest($2::bytea[], $3::bytea[])`, id, ids, hashes); err != nil {
				return fmt.Errorf("cannot keep exported entries: %w", err)
			}
			return nil
		})
		ids, hashes = ids[:0], hashes[:0]
		return err
	}
	err := records(study.Pass{SkipRevisions: true}, func(r *study.Record) error {
		eid, err := syncengine.ParseEntryID(r.EntryID)
		if err != nil {
			return err
		}
		n++
		replacements += uint64(r.Redactions.Total())
		h := r.TextSHA256
		ids, hashes = append(ids, eid[:]), append(hashes, h[:])
		if len(ids) == exportBatchRows {
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
// only in the earlier one is classified by its state in rtx, the new
// export's snapshot.
func (db *DB) since(ctx context.Context, rtx pgx.Tx, newID, oldID int64) (*study.Since, error) {
	s := &study.Since{ExportID: oldID, Counts: map[study.SinceKind]uint64{}}
	var pos, at int64
	if err := rtx.QueryRow(ctx, `SELECT position, created_at FROM exports WHERE id = $1`, oldID).Scan(&pos, &at); err != nil {
		return nil, fmt.Errorf("cannot read export %d: %w", oldID, err)
	}
	s.Position, s.ExportedAt = uint64(pos), time.UnixMilli(at).UTC()
	list := func(yield func(study.SinceKind, string) error) error {
		return db.sinceList(ctx, rtx, newID, oldID, yield)
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
// entries were committed after rtx began, so they are read outside it, a
// batch of ids at a time (so that no query is open while yield runs).
func (db *DB) sinceList(ctx context.Context, rtx pgx.Tx, newID, oldID int64, yield func(study.SinceKind, string) error) error {
	// each reads the ids query gives after an id, a batch at a time, and
	// hands each batch to fn.
	each := func(query string, fn func(ids [][]byte) error) error {
		after := []byte{}
		for {
			rows, err := db.pool.Query(ctx, query, newID, oldID, after, exportBatchRows)
			if err != nil {
				return fmt.Errorf("cannot compare exports: %w", err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
			if err != nil {
				return fmt.Errorf("cannot compare exports: %w", err)
			}
			for _, b := range ids {
				if len(b) != len(syncengine.EntryID{}) {
					return fmt.Errorf("export entry id of %d bytes", len(b))
				}
			}
			if len(ids) > 0 {
				if err := fn(ids); err != nil {
					return err
				}
			}
			if len(ids) < exportBatchRows {
				return nil
			}
			after = ids[len(ids)-1]
		}
	}
	yieldAll := func(kind study.SinceKind) func([][]byte) error {
		return func(ids [][]byte) error {
			for _, b := range ids {
				if err := yield(kind, syncengine.EntryID(b).String()); err != nil {
					return err
				}
			}
			return nil
		}
	}
	added := `SELECT n.entry_id FROM export_entries n WHERE n.export_id = $1 AND n.entry_id > $3
		AND NOT EXISTS (SELECT 1 FROM export_entries o WHERE o.export_id = $2 AND o.entry_id = n.entry_id) ORDER BY n.entry_id LIMIT $4`
	if err := each(added, yieldAll(study.SinceAdded)); err != nil {
		return err
	}
	changed := `SELECT n.entry_id FROM export_entries n JOIN export_entries o ON o.export_id = $2 AND o.entry_id = n.entry_id
		WHERE n.export_id = $1 AND n.entry_id > $3 AND (o.text_sha256 IS NULL OR o.text_sha256 <> n.text_sha256) ORDER BY n.entry_id LIMIT $4`
	if err := each(changed, yieldAll(study.SinceChanged)); err != nil {
		return err
	}
	gone := `SELECT o.entry_id FROM export_entries o WHERE o.export_id = $2 AND o.entry_id > $3
		AND NOT EXISTS (SELECT 1 FROM export_entries n WHERE n.export_id = $1 AND n.entry_id = o.entry_id) ORDER BY o.entry_id LIMIT $4`
	for _, kind := range []study.SinceKind{study.SinceWithdrawn, study.SinceErased, study.SinceOutside} {
		err := each(gone, func(ids [][]byte) error {
			type state struct{ erased, shared, deleted bool }
			states := make(map[syncengine.EntryID]state, len(ids))
			rows, err := rtx.Query(ctx, `SELECT id, erased_at IS NOT NULL, res_visible, deleted FROM entries WHERE id = ANY($1)`, ids)
			if err != nil {
				return fmt.Errorf("cannot compare exports: %w", err)
			}
			for rows.Next() {
				var (
					b  []byte
					st state
				)
				if err := rows.Scan(&b, &st.erased, &st.shared, &st.deleted); err != nil {
					rows.Close()
					return fmt.Errorf("cannot compare exports: %w", err)
				}
				states[syncengine.EntryID(b)] = st
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return fmt.Errorf("cannot compare exports: %w", err)
			}
			for _, b := range ids {
				id := syncengine.EntryID(b)
				st, ok := states[id]
				if !ok {
					return fmt.Errorf("cannot read entry %s: it is not in the store", id)
				}
				if study.ClassifyGone(st.erased, st.shared, st.deleted) != kind {
					continue
				}
				if err := yield(kind, id.String()); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
