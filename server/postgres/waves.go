package postgres

import (
	"context"
	"fmt"

	"github.com/diarysync/diarysync/study"
)

// CreateWave defines a new wave.
func (db *DB) CreateWave(ctx context.Context, w study.Wave) (*study.Wave, error) {
	if err := study.ValidateWave(&w); err != nil {
		return nil, err
	}
	err := db.writeTx(ctx, func(t *tx) error {
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM waves WHERE number = $1`, w.Number).Scan(&n); err != nil {
			return fmt.Errorf("cannot read waves: %w", err)
		}
		if n > 0 {
			return study.ErrWaveExists(w.Number)
		}
		if err := checkOverlap(ctx, t, &w); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO waves (number, label, start_date, end_date) VALUES ($1, $2, $3, $4)`, w.Number, w.Label, w.Start, w.End); err != nil {
			return fmt.Errorf("cannot create wave: %w", err)
		}
		return db.audit(ctx, t, "wave.create", fmt.Sprint(w.Number), map[string]string{"label": w.Label, "start": w.Start, "end": w.End})
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
	err := db.writeTx(ctx, func(t *tx) error {
		if err := checkOverlap(ctx, t, &w); err != nil {
			return err
		}
		tag, err := t.Exec(ctx, `UPDATE waves SET label = $1, start_date = $2, end_date = $3 WHERE number = $4`, w.Label, w.Start, w.End, w.Number)
		if err != nil {
			return fmt.Errorf("cannot update wave: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return study.ErrUnknownWave(w.Number)
		}
		return db.audit(ctx, t, "wave.update", fmt.Sprint(w.Number), map[string]string{"label": w.Label, "start": w.Start, "end": w.End})
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
	waves, err := listWaves(ctx, db.pool, after, n+1)
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
	rows, err := q.Query(ctx, `SELECT number, label, start_date, end_date FROM waves WHERE number > $1 ORDER BY number LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list waves: %w", err)
	}
	defer rows.Close()
	var out []*study.Wave
	for rows.Next() {
		var w study.Wave
		var number int32
		if err := rows.Scan(&number, &w.Label, &w.Start, &w.End); err != nil {
			return nil, fmt.Errorf("cannot list waves: %w", err)
		}
		w.Number = uint32(number)
		out = append(out, &w)
	}
	return out, rows.Err()
}

// checkOverlap applies study.CheckOverlap against the waves defined.
func checkOverlap(ctx context.Context, t *tx, w *study.Wave) error {
	waves, err := listWaves(ctx, t, 0, study.MaxWaveNumber+1)
	if err != nil {
		return err
	}
	return study.CheckOverlap(w, waves)
}
