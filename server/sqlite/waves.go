package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/diarysync/diarysync/study"
)

// CreateWave defines a new wave.
func (db *DB) CreateWave(ctx context.Context, w study.Wave) (*study.Wave, error) {
	if err := study.ValidateWave(&w); err != nil {
		return nil, err
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM waves WHERE number = ?`, w.Number).Scan(&n); err != nil {
			return fmt.Errorf("cannot read waves: %w", err)
		}
		if n > 0 {
			return study.ErrWaveExists(w.Number)
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
func (db *DB) UpdateWave(ctx context.Context, w study.Wave) (*study.Wave, error) {
	if err := study.ValidateWave(&w); err != nil {
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
			return study.ErrUnknownWave(w.Number)
		}
		return db.audit(ctx, tx, "wave.update", fmt.Sprint(w.Number), map[string]string{"label": w.Label, "start": w.Start, "end": w.End})
	})
	if err != nil {
		return nil, err
	}
	return &w, nil
}

// ListWaves returns a page of waves in number order.
func (db *DB) ListWaves(ctx context.Context, size uint32, token string) ([]*study.Wave, string, error) {
	after, err := study.DecodeIntPageToken(token)
	if err != nil {
		return nil, "", err
	}
	n := study.ListPageSize(size)
	waves, err := listWaves(ctx, db.read, after, n+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(waves) > n {
		waves = waves[:n]
		next = study.EncodeIntPageToken(int64(waves[n-1].Number))
	}
	return waves, next, nil
}

func listWaves(ctx context.Context, q querier, after int64, limit int) ([]*study.Wave, error) {
	rows, err := q.QueryContext(ctx, `SELECT number, label, start_date, end_date FROM waves WHERE number > ? ORDER BY number LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list waves: %w", err)
	}
	defer rows.Close()
	var out []*study.Wave
	for rows.Next() {
		var w study.Wave
		if err := rows.Scan(&w.Number, &w.Label, &w.Start, &w.End); err != nil {
			return nil, fmt.Errorf("cannot list waves: %w", err)
		}
		out = append(out, &w)
	}
	return out, rows.Err()
}

// checkOverlap applies study.CheckOverlap against the waves defined.
func checkOverlap(ctx context.Context, tx *sql.Tx, w *study.Wave) error {
	waves, err := listWaves(ctx, tx, 0, study.MaxWaveNumber+1)
	if err != nil {
		return err
	}
	return study.CheckOverlap(w, waves)
}
