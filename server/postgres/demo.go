package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// SeedDemo creates, once, the demo study and issues a fresh one-time
// enrolment code for each demo person.
func (db *DB) SeedDemo(ctx context.Context, today time.Time) ([]study.DemoUser, bool, error) {
	seeded := false
	err := db.writeTx(ctx, func(t *tx) error {
		seeded = false
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM users WHERE lower(study_code) = lower($1)`, study.DemoPeople[0].StudyCode).Scan(&n); err != nil {
			return fmt.Errorf("cannot look for the demo study: %w", err)
		}
		if n > 0 {
			return nil
		}
		seeded = true
		for _, p := range study.DemoPeople {
			if _, err := db.createUser(ctx, t, p.StudyCode, p.Role, p.Name); err != nil {
				return err
			}
		}
		for _, w := range study.DemoWaves(today) {
			if _, err := t.Exec(ctx, `INSERT INTO waves (number, label, start_date, end_date) VALUES ($1, $2, $3, $4)`, w.Number, w.Label, w.Start, w.End); err != nil {
				return fmt.Errorf("cannot create demo waves: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if seeded {
		for _, p := range study.DemoPeople {
			if p.Role != study.RoleNavigator {
				continue
			}
			if _, _, err := db.Assign(ctx, study.DemoSupervisor, p.StudyCode); err != nil {
				return nil, false, err
			}
		}
	}
	var out []study.DemoUser
	for _, p := range study.DemoPeople {
		code, _, err := db.IssueEnrollmentCode(ctx, p.StudyCode, study.DefaultCodeTTL)
		switch syncengine.ErrorCode(err) {
		case "":
		case syncengine.ENOTFOUND, syncengine.ECONFLICT:
			continue // renamed or deactivated since the demo was seeded
		default:
			return nil, false, err
		}
		p.Code = code
		out = append(out, p)
	}
	return out, seeded, nil
}
