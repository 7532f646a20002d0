package server

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// DemoUser is one person of the demo study and their one-time code.
type DemoUser struct {
	StudyCode string
	Role      Role
	Name      string
	Code      string
}

var demoPeople = []struct {
	code string
	role Role
	name string
}{
	{"PN-A", RoleNavigator, "Navigator A"},
	{"PN-B", RoleNavigator, "Navigator B"},
	{"PN-C", RoleNavigator, "Navigator C"},
	{"SUP-1", RoleSupervisor, "Supervisor 1"},
	{"RES-1", RoleResearcher, "Researcher 1"},
}

// SeedDemo creates, once, a demo study: navigators PN-A, PN-B and PN-C,
// supervisor SUP-1 assigned to all three, researcher RES-1, and four
// interview waves around today (wave 2 holds today). Every call issues a
// fresh one-time enrolment code for each demo person. It reports whether
// it seeded the study on this call.
func (db *DB) SeedDemo(ctx context.Context, today time.Time) ([]DemoUser, bool, error) {
	seeded := false
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE study_code = 'PN-A'`).Scan(&n); err != nil {
			return fmt.Errorf("cannot look for the demo study: %w", err)
		}
		if n > 0 {
			return nil
		}
		seeded = true
		for _, p := range demoPeople {
			if _, err := db.createUser(ctx, tx, p.code, p.role, p.name); err != nil {
				return err
			}
		}
		day := func(offset int) string { return today.AddDate(0, 0, offset).Format(time.DateOnly) }
		for _, w := range []Wave{
			{1, "Baseline", day(-90), day(-31)},
			{2, "Mid-intervention", day(-30), day(30)},
			{3, "End of intervention", day(31), day(90)},
			{4, "Follow-up", day(91), day(180)},
		} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO waves (number, label, start_date, end_date) VALUES (?, ?, ?, ?)`, w.Number, w.Label, w.Start, w.End); err != nil {
				return fmt.Errorf("cannot create demo waves: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	if seeded {
		for _, nav := range []string{"PN-A", "PN-B", "PN-C"} {
			if _, _, err := db.Assign(ctx, "SUP-1", nav); err != nil {
				return nil, false, err
			}
		}
	}
	var out []DemoUser
	for _, p := range demoPeople {
		code, _, err := db.IssueEnrollmentCode(ctx, p.code, DefaultCodeTTL)
		switch syncengine.ErrorCode(err) {
		case "":
		case syncengine.ENOTFOUND, syncengine.ECONFLICT:
			continue // renamed or deactivated since the demo was seeded
		default:
			return nil, false, err
		}
		out = append(out, DemoUser{StudyCode: p.code, Role: p.role, Name: p.name, Code: code})
	}
	return out, seeded, nil
}
