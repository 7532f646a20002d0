package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/diarysync/diarysync/study"
)

// CreateWave defines a new study-wide wave, or a navigator's own dates
// for an existing one.
func (db *DB) CreateWave(ctx context.Context, w study.Wave) (*study.Wave, error) {
	return db.saveWave(ctx, w, true)
}

// UpdateWave replaces the label and window of a study-wide wave, or a
// navigator's own dates for it.
func (db *DB) UpdateWave(ctx context.Context, w study.Wave) (*study.Wave, error) {
	return db.saveWave(ctx, w, false)
}

// saveWave checks w against the plan and writes it under the write lock,
// so that two processes saving waves at once cannot together make an
// overlap that each alone would not.
func (db *DB) saveWave(ctx context.Context, w study.Wave, create bool) (*study.Wave, error) {
	if err := study.ValidateWave(&w); err != nil {
		return nil, err
	}
	in := w
	err := db.writeTx(ctx, func(t *tx) error {
		w = in // a transaction run again starts afresh
		plan, err := loadPlan(ctx, t)
		if err != nil {
			return err
		}
		var navID int64
		if w.Navigator != "" {
			nav, err := userByCode(ctx, t, w.Navigator)
			if err != nil {
				return err
			}
			if err := study.CheckWaveNavigator(nav); err != nil {
				return err
			}
			navID, w.Navigator = nav.ID, nav.StudyCode
		}
		if err := study.CheckWaveSave(plan, &w, create); err != nil {
			return err
		}
		details := map[string]string{"start": w.Start, "end": w.End}
		switch {
		case w.Navigator != "":
			details["navigator"] = w.Navigator
			_, err = t.Exec(ctx, `INSERT INTO wave_dates (number, navigator_id, start_date, end_date) VALUES ($1, $2, $3, $4)
				ON CONFLICT (number, navigator_id) DO UPDATE SET start_date = excluded.start_date, end_date = excluded.end_date`, int32(w.Number), navID, w.Start, w.End)
		case create:
			details["label"] = w.Label
			_, err = t.Exec(ctx, `INSERT INTO waves (number, label, start_date, end_date) VALUES ($1, $2, $3, $4)`, int32(w.Number), w.Label, w.Start, w.End)
		default:
			details["label"] = w.Label
			_, err = t.Exec(ctx, `UPDATE waves SET label = $1, start_date = $2, end_date = $3 WHERE number = $4`, w.Label, w.Start, w.End, int32(w.Number))
		}
		if err != nil {
			return fmt.Errorf("cannot save wave: %w", err)
		}
		action := "wave.update"
		if create {
			action = "wave.create"
		}
		return db.audit(ctx, t, action, fmt.Sprint(w.Number), details)
	})
	if err != nil {
		return nil, err
	}
	return &w, nil
}

// DeleteWaveDates removes a navigator's own dates for a wave.
func (db *DB) DeleteWaveDates(ctx context.Context, number uint32, navigator string) error {
	return db.writeTx(ctx, func(t *tx) error {
		nav, err := userByCode(ctx, t, navigator)
		if err != nil {
			return err
		}
		tag, err := t.Exec(ctx, `DELETE FROM wave_dates WHERE number = $1 AND navigator_id = $2`, int64(number), nav.ID)
		if err != nil {
			return fmt.Errorf("cannot delete wave dates: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return study.ErrNoWaveDates(nav.StudyCode, number)
		}
		// The default's dates come back for the navigator, and may
		// overlap their other own dates: check the plan as it is now.
		plan, err := loadPlan(ctx, t)
		if err != nil {
			return err
		}
		if err := study.CheckWavePlan(plan); err != nil {
			return err
		}
		return db.audit(ctx, t, "wave.dates.delete", fmt.Sprint(number), map[string]string{"navigator": nav.StudyCode})
	})
}

// ListWaves returns a page of the study-wide waves in number order.
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

// ListWaveDefinitions returns a page of every wave definition: each
// study-wide wave, then the navigators' own dates for it by study code.
func (db *DB) ListWaveDefinitions(ctx context.Context, size uint32, token string) ([]*study.Wave, string, error) {
	var (
		after     int64
		afterCode string
	)
	if token != "" {
		s, err := study.DecodePageToken(token)
		if err != nil {
			return nil, "", err
		}
		num, code, ok := strings.Cut(s, "/")
		if _, err := fmt.Sscan(num, &after); !ok || err != nil {
			return nil, "", study.ErrPageToken()
		}
		afterCode = code
	}
	n := study.ListPageSize(size)
	// Defaults sort first within a number: their code is ''.
	rows, err := db.pool.Query(ctx, `SELECT number, code, label, start_date, end_date FROM (
			SELECT w.number, '' COLLATE "C" AS code, w.label, w.start_date, w.end_date FROM waves w
			UNION ALL
			SELECT d.number, u.study_code, w.label, d.start_date, d.end_date
			FROM wave_dates d JOIN users u ON u.id = d.navigator_id JOIN waves w ON w.number = d.number
		) AS defs WHERE number > $1::bigint OR (number = $1::bigint AND code > $2)
		ORDER BY number, code LIMIT $3`, after, afterCode, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list waves: %w", err)
	}
	defer rows.Close()
	var out []*study.Wave
	for rows.Next() {
		var (
			w      study.Wave
			number int32
		)
		if err := rows.Scan(&number, &w.Navigator, &w.Label, &w.Start, &w.End); err != nil {
			return nil, "", fmt.Errorf("cannot list waves: %w", err)
		}
		w.Number = uint32(number)
		out = append(out, &w)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot list waves: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		last := out[n-1]
		next = study.EncodePageToken(fmt.Sprintf("%d/%s", last.Number, last.Navigator))
	}
	return out, next, nil
}

func listWaves(ctx context.Context, q querier, after int64, limit int) ([]*study.Wave, error) {
	rows, err := q.Query(ctx, `SELECT number, label, start_date, end_date FROM waves WHERE number > $1::bigint ORDER BY number LIMIT $2`, after, limit)
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

// loadPlan reads every wave definition. A study has a handful of waves
// and navigators, and at most MaxWaveNumber waves.
func loadPlan(ctx context.Context, q querier) (study.WavePlan, error) {
	rows, err := q.Query(ctx, `SELECT number, '' COLLATE "C", label, start_date, end_date FROM waves
		UNION ALL
		SELECT d.number, u.study_code, '', d.start_date, d.end_date FROM wave_dates d JOIN users u ON u.id = d.navigator_id`)
	if err != nil {
		return study.WavePlan{}, fmt.Errorf("cannot read waves: %w", err)
	}
	defer rows.Close()
	var all []study.Wave
	for rows.Next() {
		var (
			w      study.Wave
			number int32
		)
		if err := rows.Scan(&number, &w.Navigator, &w.Label, &w.Start, &w.End); err != nil {
			return study.WavePlan{}, fmt.Errorf("cannot read waves: %w", err)
		}
		w.Number = uint32(number)
		all = append(all, w)
	}
	if err := rows.Err(); err != nil {
		return study.WavePlan{}, fmt.Errorf("cannot read waves: %w", err)
	}
	p := study.NewWavePlan(all)
	// Navigators' dates carry their wave's label.
	for code, ws := range p.Navigators {
		for i := range ws {
			if d, ok := p.Default(ws[i].Number); ok {
				ws[i].Label = d.Label
			}
		}
		p.Navigators[code] = ws
	}
	return p, nil
}
