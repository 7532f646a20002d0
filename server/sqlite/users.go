package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

const userColumns = `id, study_code, role, display_name, active, created_at`

func scanUser(row interface{ Scan(...any) error }) (*study.User, error) {
	var u study.User
	var created int64
	if err := row.Scan(&u.ID, &u.StudyCode, &u.Role, &u.DisplayName, &u.Active, &created); err != nil {
		return nil, err
	}
	u.CreatedAt = time.UnixMilli(created).UTC()
	return &u, nil
}

func userByCode(ctx context.Context, q querier, code string) (*study.User, error) {
	if err := syncengine.ValidateStudyCode(code); err != nil {
		return nil, err
	}
	u, err := scanUser(q.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE study_code = ?`, code))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, study.ErrUnknownUser(code)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up user %q: %w", code, err)
	}
	return u, nil
}

// UserByCode returns the user with the given study code (case-insensitive).
func (db *DB) UserByCode(ctx context.Context, code string) (*study.User, error) {
	return userByCode(ctx, db.read, code)
}

// CreateUser adds a user. The study code must be unused (ignoring case).
func (db *DB) CreateUser(ctx context.Context, code string, role study.Role, displayName string) (*study.User, error) {
	displayName, err := study.ValidateNewUser(code, role, displayName)
	if err != nil {
		return nil, err
	}
	var u *study.User
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = db.createUser(ctx, tx, code, role, displayName)
		return err
	})
	return u, err
}

func (db *DB) createUser(ctx context.Context, tx *sql.Tx, code string, role study.Role, displayName string) (*study.User, error) {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE study_code = ?`, code).Scan(&n); err != nil {
		return nil, fmt.Errorf("cannot check study code: %w", err)
	}
	if n > 0 {
		return nil, study.ErrCodeInUse(code)
	}
	u, err := scanUser(tx.QueryRowContext(ctx, `INSERT INTO users (study_code, role, display_name, created_at) VALUES (?, ?, ?, ?) RETURNING `+userColumns,
		code, role, displayName, db.nowMillis()))
	if err != nil {
		return nil, fmt.Errorf("cannot create user: %w", err)
	}
	return u, db.audit(ctx, tx, "user.create", u.StudyCode, map[string]string{"role": role.String()}, u.ID)
}

// ListUsers returns up to size users after the page token, in study-code
// order, and the token of the next page ("" when there is none).
func (db *DB) ListUsers(ctx context.Context, size uint32, token string) ([]*study.User, string, error) {
	after := ""
	if token != "" {
		var err error
		if after, err = study.DecodePageToken(token); err != nil {
			return nil, "", err
		}
	}
	n := study.ListPageSize(size)
	rows, err := db.read.QueryContext(ctx, `SELECT `+userColumns+` FROM users WHERE study_code > ? ORDER BY study_code LIMIT ?`, after, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list users: %w", err)
	}
	defer rows.Close()
	var users []*study.User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, "", fmt.Errorf("cannot list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot list users: %w", err)
	}
	next := ""
	if len(users) > n {
		users = users[:n]
		next = study.EncodePageToken(users[n-1].StudyCode)
	}
	return users, next, nil
}

// DeactivateUser marks a user inactive and revokes all their devices. It
// returns the user and how many devices it revoked. The last active
// administrator cannot be deactivated (ECONFLICT): nobody could then
// manage the study, and "diaryd admin-code" issues codes only for an
// active administrator.
func (db *DB) DeactivateUser(ctx context.Context, code string) (*study.User, int, error) {
	var u *study.User
	var revoked int
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if u, err = userByCode(ctx, tx, code); err != nil {
			return err
		}
		var admins int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = ? AND active = 1`, study.RoleAdmin).Scan(&admins); err != nil {
			return fmt.Errorf("cannot count administrators: %w", err)
		}
		if err := study.CheckDeactivate(u, admins); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET active = 0 WHERE id = ?`, u.ID); err != nil {
			return fmt.Errorf("cannot deactivate user: %w", err)
		}
		n, err := db.revokeDevices(ctx, tx, `user_id = ?`, []any{u.ID}, study.RevokedDeactivated)
		if err != nil {
			return err
		}
		revoked = n
		u.Active = false
		return db.audit(ctx, tx, "user.deactivate", u.StudyCode, map[string]string{"devices_revoked": fmt.Sprint(revoked)}, u.ID)
	})
	return u, revoked, err
}

// ResetUser is what an administrator does for a person who lost their
// only device: every device of the account is revoked (each is told, at
// its next request, that an administrator reset the account), codes
// issued for it and not used yet stop working, and a new one-time code is
// issued that enrols a device without approval. The reset is in the
// audit log with the administrator as the actor and the person among its
// subjects, so they see it in their activity.
func (db *DB) ResetUser(ctx context.Context, code string, ttl time.Duration) (*study.Reset, error) {
	ttl, err := study.CodeTTL(ttl)
	if err != nil {
		return nil, err
	}
	var out *study.Reset
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		u, err := userByCode(ctx, tx, code)
		if err != nil {
			return err
		}
		if !u.Active {
			return syncengine.Errorf(syncengine.ECONFLICT, "user %s is deactivated: reactivating an account is not a reset", u.StudyCode)
		}
		// The reset ends the person's web console access too: their
		// browser sessions are devices, and the new code sets a new
		// passphrase.
		hadPassphrase, err := endConsoleAccess(ctx, tx, u.ID)
		if err != nil {
			return err
		}
		n, err := db.revokeDevices(ctx, tx, `user_id = ?`, []any{u.ID}, study.RevokedByReset)
		if err != nil {
			return err
		}
		now := db.nowMillis()
		if _, err := tx.ExecContext(ctx, `UPDATE enrollment_codes SET expires_at = min(expires_at, ?) WHERE user_id = ? AND used_at IS NULL`, now, u.ID); err != nil {
			return fmt.Errorf("cannot withdraw enrolment codes: %w", err)
		}
		details := map[string]string{"devices_revoked": fmt.Sprint(n)}
		if hadPassphrase {
			details["console_passphrase"] = "cleared"
		}
		if err := db.audit(ctx, tx, "user.reset", u.StudyCode, details, u.ID); err != nil {
			return err
		}
		c, expires, err := db.issueCode(ctx, tx, u, ttl, true)
		if err != nil {
			return err
		}
		out = &study.Reset{User: u, DevicesRevoked: n, Code: c, Expires: expires}
		return nil
	})
	if err != nil {
		return nil, err
	}
	db.scrubWAL(ctx)
	return out, nil
}

func (db *DB) assignmentUsers(ctx context.Context, tx *sql.Tx, supCode, navCode string) (*study.User, *study.User, error) {
	sup, err := userByCode(ctx, tx, supCode)
	if err != nil {
		return nil, nil, err
	}
	nav, err := userByCode(ctx, tx, navCode)
	if err != nil {
		return nil, nil, err
	}
	if err := study.CheckAssignment(sup, nav); err != nil {
		return nil, nil, err
	}
	return sup, nav, nil
}

// Assign lets the supervisor see what the navigator shares with
// supervisors: every such entry enters the supervisor's feed. It reports
// false if the assignment already existed.
func (db *DB) Assign(ctx context.Context, supCode, navCode string) (created bool, supID int64, err error) {
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		sup, nav, err := db.assignmentUsers(ctx, tx, supCode, navCode)
		if err != nil {
			return err
		}
		supID = sup.ID
		res, err := tx.ExecContext(ctx, `INSERT INTO assignments (supervisor_id, navigator_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
			sup.ID, nav.ID, db.nowMillis())
		if err != nil {
			return fmt.Errorf("cannot assign: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		created = true
		if err := db.audit(ctx, tx, "assign", nav.StudyCode, map[string]string{"supervisor": sup.StudyCode}, nav.ID, sup.ID); err != nil {
			return err
		}
		return db.setFeedForOwner(ctx, tx, sup.ID, nav.ID, true, 0)
	})
	return created, supID, err
}

// Unassign withdraws an assignment: every entry of the navigator that the
// supervisor could see gets a removal notice in the supervisor's feed. It
// reports false if there was no such assignment.
func (db *DB) Unassign(ctx context.Context, supCode, navCode string) (removed bool, supID int64, err error) {
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		sup, nav, err := db.assignmentUsers(ctx, tx, supCode, navCode)
		if err != nil {
			return err
		}
		supID = sup.ID
		res, err := tx.ExecContext(ctx, `DELETE FROM assignments WHERE supervisor_id = ? AND navigator_id = ?`, sup.ID, nav.ID)
		if err != nil {
			return fmt.Errorf("cannot unassign: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		removed = true
		if err := db.audit(ctx, tx, "unassign", nav.StudyCode, map[string]string{"supervisor": sup.StudyCode}, nav.ID, sup.ID); err != nil {
			return err
		}
		return db.setFeedForOwner(ctx, tx, sup.ID, nav.ID, false, study.ReasonUnassigned)
	})
	return removed, supID, err
}

// setFeedForOwner makes every entry of owner that supervisors may see
// visible (or, with visible false, removed for reason) in reader's feed,
// each at a new sequence number.
func (db *DB) setFeedForOwner(ctx context.Context, tx *sql.Tx, reader, owner int64, visible bool, reason study.RemovalReason) error {
	var query string
	if visible {
		query = `SELECT rid FROM entries WHERE owner_id = ? AND sup_visible = 1`
	} else {
		query = `SELECT f.entry FROM feed f JOIN entries e ON e.rid = f.entry
			WHERE f.reader = ? AND e.owner_id = ? AND f.visible = 1`
	}
	args := []any{owner}
	if !visible {
		args = []any{reader, owner}
	}
	rids, err := queryIDs(ctx, tx, query, args...)
	if err != nil {
		return fmt.Errorf("cannot find entries to update in feed: %w", err)
	}
	if len(rids) == 0 {
		return nil
	}
	first, err := nextSeqs(ctx, tx, len(rids), db.nowMillis())
	if err != nil {
		return err
	}
	rows := make([]feedRow, len(rids))
	for i, rid := range rids {
		rows[i] = feedRow{reader: reader, entry: rid, seq: first + int64(i), visible: visible, reason: reason}
	}
	return db.upsertFeed(ctx, tx, rows)
}

// ListAssignments returns a page of assignments ordered by supervisor and
// navigator ids, optionally for one supervisor.
func (db *DB) ListAssignments(ctx context.Context, size uint32, token, supCode string) ([]*study.Assignment, string, error) {
	var afterSup, afterNav int64
	if token != "" {
		s, err := study.DecodePageToken(token)
		if err != nil {
			return nil, "", err
		}
		a, b, ok := strings.Cut(s, ":")
		afterSup, err = strconv.ParseInt(a, 10, 64)
		if !ok || err != nil {
			return nil, "", study.ErrPageToken()
		}
		if afterNav, err = strconv.ParseInt(b, 10, 64); err != nil {
			return nil, "", study.ErrPageToken()
		}
	}
	var supID int64
	if supCode != "" {
		sup, err := db.UserByCode(ctx, supCode)
		if err != nil {
			return nil, "", err
		}
		supID = sup.ID
	}
	n := study.ListPageSize(size)
	rows, err := db.read.QueryContext(ctx, `
		SELECT a.supervisor_id, a.navigator_id, s.study_code, n.study_code, a.created_at
		FROM assignments a JOIN users s ON s.id = a.supervisor_id JOIN users n ON n.id = a.navigator_id
		WHERE (a.supervisor_id, a.navigator_id) > (?, ?) AND (? = 0 OR a.supervisor_id = ?)
		ORDER BY a.supervisor_id, a.navigator_id LIMIT ?`, afterSup, afterNav, supID, supID, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list assignments: %w", err)
	}
	defer rows.Close()
	var out []*study.Assignment
	for rows.Next() {
		var a study.Assignment
		var created int64
		if err := rows.Scan(&a.SupervisorID, &a.NavigatorID, &a.SupervisorCode, &a.NavigatorCode, &created); err != nil {
			return nil, "", fmt.Errorf("cannot list assignments: %w", err)
		}
		a.CreatedAt = time.UnixMilli(created).UTC()
		out = append(out, &a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot list assignments: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		last := out[n-1]
		next = study.EncodePageToken(fmt.Sprintf("%d:%d", last.SupervisorID, last.NavigatorID))
	}
	return out, next, nil
}

// supervisorsOf returns the ids of the supervisors assigned to navigator.
func supervisorsOf(ctx context.Context, q querier, navigator int64) ([]int64, error) {
	ids, err := queryIDs(ctx, q, qSupervisorsOf, navigator)
	if err != nil {
		return nil, fmt.Errorf("cannot read assignments: %w", err)
	}
	return ids, nil
}

// EnsureAdmin creates the first administrator (study code "ADMIN") if the
// store has no administrator yet, and then issues a one-time enrolment
// code for them. It reports whether it created the user.
func (db *DB) EnsureAdmin(ctx context.Context) (code string, created bool, err error) {
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM users WHERE role = ?`, study.RoleAdmin).Scan(&n); err != nil {
			return fmt.Errorf("cannot look for an administrator: %w", err)
		}
		if n > 0 {
			return nil
		}
		created = true
		_, err := db.createUser(ctx, tx, study.AdminStudyCode, study.RoleAdmin, "Administrator")
		return err
	})
	if err != nil || !created {
		return "", created, err
	}
	code, _, err = db.IssueEnrollmentCode(ctx, study.AdminStudyCode, study.DefaultCodeTTL)
	return code, created, err
}

// AdminCode issues a one-time enrolment code for the first active
// administrator.
func (db *DB) AdminCode(ctx context.Context) (string, error) {
	var code string
	err := db.read.QueryRowContext(ctx, `SELECT study_code FROM users WHERE role = ? AND active = 1 ORDER BY id LIMIT 1`, study.RoleAdmin).Scan(&code)
	if errors.Is(err, sql.ErrNoRows) {
		return "", study.ErrNoAdmin
	}
	if err != nil {
		return "", fmt.Errorf("cannot find an administrator: %w", err)
	}
	// Whoever runs this holds the data directory, and with it the
	// database: the code enrols its device without approval, so that an
	// administrator who lost their only device is not locked out. The
	// issue is audited with "system" as the actor.
	var c string
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		u, err := userByCode(ctx, tx, code)
		if err != nil {
			return err
		}
		c, _, err = db.issueCode(ctx, tx, u, study.DefaultCodeTTL, true)
		return err
	})
	return c, err
}
