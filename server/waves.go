package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/diarysync/diarysync/syncengine"
)

// Wave is one interview wave: entries dated within [Start, End] belong
// to it.
type Wave struct {
	Number uint32
	Label  string
	Start  string // YYYY-MM-DD, inclusive
	End    string // YYYY-MM-DD, inclusive
}

// Wave limits.
const (
	MaxWaveNumber     = 1000
	MaxWaveLabelBytes = 128
)

func validateWave(w *Wave) error {
	if w.Number == 0 || w.Number > MaxWaveNumber {
		return syncengine.Errorf(syncengine.EINVALID, "wave number must be from 1 to %d", MaxWaveNumber)
	}
	w.Label = strings.TrimSpace(w.Label)
	if w.Label == "" {
		return syncengine.Errorf(syncengine.EINVALID, "wave %d needs a label", w.Number)
	}
	if err := syncengine.ValidateText("wave label", w.Label, MaxWaveLabelBytes, false); err != nil {
		return err
	}
	if err := syncengine.ValidateDate(w.Start); err != nil {
		return syncengine.Errorf(syncengine.EINVALID, "wave start: %s", syncengine.ErrorMessage(err))
	}
	if err := syncengine.ValidateDate(w.End); err != nil {
		return syncengine.Errorf(syncengine.EINVALID, "wave end: %s", syncengine.ErrorMessage(err))
	}
	if w.End < w.Start {
		return syncengine.Errorf(syncengine.EINVALID, "wave %d ends (%s) before it starts (%s)", w.Number, w.End, w.Start)
	}
	return nil
}

// checkOverlap refuses a window that overlaps another wave's, so that
// every entry belongs to at most one wave.
func checkOverlap(ctx context.Context, tx *sql.Tx, w *Wave) error {
	var other uint32
	err := tx.QueryRowContext(ctx, `SELECT number FROM waves WHERE number <> ? AND start_date <= ? AND end_date >= ? LIMIT 1`, w.Number, w.End, w.Start).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot check wave windows: %w", err)
	}
	return syncengine.Errorf(syncengine.ECONFLICT, "wave %d (%s to %s) overlaps wave %d", w.Number, w.Start, w.End, other)
}

// CreateWave defines a new wave.
func (db *DB) CreateWave(ctx context.Context, w Wave) (*Wave, error) {
	if err := validateWave(&w); err != nil {
		return nil, err
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM waves WHERE number = ?`, w.Number).Scan(&n); err != nil {
			return fmt.Errorf("cannot read waves: %w", err)
		}
		if n > 0 {
			return syncengine.Errorf(syncengine.EEXISTS, "wave %d already exists", w.Number)
		}
		if err := checkOverlap(ctx, tx, &w); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO waves (number, label, start_date, end_date) VALUES (?, ?, ?, ?)`, w.Number, w.Label, w.Start, w.End); err != nil {
			return fmt.Errorf("cannot create wave: %w", err)
		}
		return db.audit(ctx, tx, "wave.create", fmt.Sprint(w.Number), map[string]string{"label": w.Label, "start": w.Start, "end": w.End})
	})
	if err != nil {
		return nil, err
	}
	return &w, nil
}

// UpdateWave replaces the label and window of an existing wave.
func (db *DB) UpdateWave(ctx context.Context, w Wave) (*Wave, error) {
	if err := validateWave(&w); err != nil {
		return nil, err
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if err := checkOverlap(ctx, tx, &w); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE waves SET label = ?, start_date = ?, end_date = ? WHERE number = ?`, w.Label, w.Start, w.End, w.Number)
		if err != nil {
			return fmt.Errorf("cannot update wave: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return syncengine.Errorf(syncengine.ENOTFOUND, "there is no wave %d", w.Number)
		}
		return db.audit(ctx, tx, "wave.update", fmt.Sprint(w.Number), map[string]string{"label": w.Label, "start": w.Start, "end": w.End})
	})
	if err != nil {
		return nil, err
	}
	return &w, nil
}

// ListWaves returns a page of waves in number order.
func (db *DB) ListWaves(ctx context.Context, size uint32, token string) ([]*Wave, string, error) {
	after, err := decodeIntPageToken(token)
	if err != nil {
		return nil, "", err
	}
	n := listPageSize(size)
	waves, err := listWaves(ctx, db.read, after, n+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(waves) > n {
		waves = waves[:n]
		next = encodePageToken(fmt.Sprint(waves[n-1].Number))
	}
	return waves, next, nil
}

func listWaves(ctx context.Context, q querier, after int64, limit int) ([]*Wave, error) {
	rows, err := q.QueryContext(ctx, `SELECT number, label, start_date, end_date FROM waves WHERE number > ? ORDER BY number LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list waves: %w", err)
	}
	defer rows.Close()
	var out []*Wave
	for rows.Next() {
		var w Wave
		if err := rows.Scan(&w.Number, &w.Label, &w.Start, &w.End); err != nil {
			return nil, fmt.Errorf("cannot list waves: %w", err)
		}
		out = append(out, &w)
	}
	return out, rows.Err()
}
