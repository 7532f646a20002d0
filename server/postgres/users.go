package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

const userColumns = `id, study_code, role, display_name, active, created_at`

func scanUser(row pgx.Row) (*study.User, error) {
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
	u, err := scanUser(q.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE lower(study_code) = lower($1)`, code))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, study.ErrUnknownUser(code)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up user %q: %w", code, err)
	}
	return u, nil
}

// UserByCode returns the user with the given study code (case-insensitive).
func (db *DB) UserByCode(ctx context.Context, code string) (*study.User, error) {
	return userByCode(ctx, db.pool, code)
}

// CreateUser adds a user. The study code must be unused (ignoring case).
func (db *DB) CreateUser(ctx context.Context, code string, role study.Role, displayName string) (*study.User, error) {
	displayName, err := study.ValidateNewUser(code, role, displayName)
	if err != nil {
		return nil, err
	}
	var u *study.User
	err = db.writeTx(ctx, func(t *tx) error {
		var err error
		u, err = db.createUser(ctx, t, code, role, displayName)
		return err
	})
	return u, err
}

func (db *DB) createUser(ctx context.Context, t *tx, code string, role study.Role, displayName string) (*study.User, error) {
	var n int
	if err := t.QueryRow(ctx, `SELECT count(*) FROM users WHERE lower(study_code) = lower($1)`, code).Scan(&n); err != nil {
		return nil, fmt.Errorf("cannot check study code: %w", err)
	}
	if n > 0 {
		return nil, study.ErrCodeInUse(code)
	}
	u, err := scanUser(t.QueryRow(ctx, `INSERT INTO users (study_code, role, display_name, created_at) VALUES ($1, $2, $3, $4) RETURNING `+userColumns,
		code, role, displayName, db.nowMillis()))
	if isUniqueViolation(err) {
		return nil, study.ErrCodeInUse(code)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot create user: %w", err)
	}
	return u, db.audit(ctx, t, "user.create", u.StudyCode, map[string]string{"role": role.String()}, u.ID)
}

// ListUsers returns up to size users after the page token, in study-code
// order (ignoring case, as SQLite's NOCASE orders them), and the token of
// the next page ("" when there is none).
func (db *DB) ListUsers(ctx context.Context, size uint32, token string) ([]*study.User, string, error) {
	after := ""
	if token != "" {
		var err error
		if after, err = study.DecodePageToken(token); err != nil {
			return nil, "", err
		}
	}
	// PostgreSQL's text holds no NUL. Study codes hold none either, and
	// NUL is the least byte, so every code after "a\x00…" is after "a".
	after, _, _ = strings.Cut(after, "\x00")
	n := study.ListPageSize(size)
	rows, err := db.pool.Query(ctx, `SELECT `+userColumns+` FROM users WHERE lower(study_code) > lower($1) ORDER BY lower(study_code) LIMIT $2`, after, n+1)
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

// DeactivateUser marks a user inactive and revokes all their devices.
func (db *DB) DeactivateUser(ctx context.Context, code string) (*study.User, int, error) {
	var u *study.User
	var revoked, erased int
	err := db.writeTx(ctx, func(t *tx) error {
		var err error
		if u, err = userByCode(ctx, t, code); err != nil {
			return err
		}
		var admins int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM users WHERE role = $1 AND active`, study.RoleAdmin).Scan(&admins); err != nil {
			return fmt.Errorf("cannot count administrators: %w", err)
		}
		if err := study.CheckDeactivate(u, admins); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `UPDATE users SET active = false WHERE id = $1`, u.ID); err != nil {
			return fmt.Errorf("cannot deactivate user: %w", err)
		}
		// Streams of the user's devices, on any process, end.
		if revoked, erased, err = db.revokeDevices(ctx, t, `user_id = $1`, []any{u.ID}, study.RevokedDeactivated); err != nil {
			return err
		}
		u.Active = false
		return db.audit(ctx, t, "user.deactivate", u.StudyCode, map[string]string{"devices_revoked": fmt.Sprint(revoked)}, u.ID)
	})
	if err != nil {
		return nil, 0, err
	}
	if erased > 0 {
		db.scrub(ctx)
	}
	return u, revoked, nil
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
	erased := 0
	err = db.writeTx(ctx, func(t *tx) error {
		u, err := userByCode(ctx, t, code)
		if err != nil {
			return err
		}
		if !u.Active {
			return syncengine.Errorf(syncengine.ECONFLICT, "user %s is deactivated: reactivating an account is not a reset", u.StudyCode)
		}
		// The reset ends the person's web console access too: their
		// browser sessions are devices, and the new code sets a new
		// passphrase.
		hadPassphrase, err := endConsoleAccess(ctx, t, u.ID)
		if err != nil {
			return err
		}
		var n int
		if n, erased, err = db.revokeDevices(ctx, t, `user_id = $1`, []any{u.ID}, study.RevokedByReset); err != nil {
			return err
		}
		now := db.nowMillis()
		if _, err := t.Exec(ctx, `UPDATE enrollment_codes SET expires_at = least(expires_at, $1) WHERE user_id = $2 AND used_at IS NULL`, now, u.ID); err != nil {
			return fmt.Errorf("cannot withdraw enrolment codes: %w", err)
		}
		details := map[string]string{"devices_revoked": fmt.Sprint(n)}
		if hadPassphrase {
			details["console_passphrase"] = "cleared"
		}
		if err := db.audit(ctx, t, "user.reset", u.StudyCode, details, u.ID); err != nil {
			return err
		}
		c, expires, err := db.issueCode(ctx, t, u, ttl, true)
		if err != nil {
			return err
		}
		out = &study.Reset{User: u, DevicesRevoked: n, Code: c, Expires: expires}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if erased > 0 {
		db.scrub(ctx)
	}
	return out, nil
}

func (db *DB) assignmentUsers(ctx context.Context, t *tx, supCode, navCode string) (*study.User, *study.User, error) {
	sup, err := userByCode(ctx, t, supCode)
	if err != nil {
		return nil, nil, err
	}
	nav, err := userByCode(ctx, t, navCode)
	if err != nil {
		return nil, nil, err
	}
	if err := study.CheckAssignment(sup, nav); err != nil {
		return nil, nil, err
	}
	return sup, nav, nil
}

// Assign lets the supervisor see what the navigator shares with
// supervisors: every such entry enters the supervisor's feed.
func (db *DB) Assign(ctx context.Context, supCode, navCode string) (created bool, supID int64, err error) {
	err = db.writeTx(ctx, func(t *tx) error {
		created = false
		sup, nav, err := db.assignmentUsers(ctx, t, supCode, navCode)
		if err != nil {
			return err
		}
		supID = sup.ID
		tag, err := t.Exec(ctx, `INSERT INTO assignments (supervisor_id, navigator_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			sup.ID, nav.ID, db.nowMillis())
		if err != nil {
			return fmt.Errorf("cannot assign: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		created = true
		if err := db.audit(ctx, t, "assign", nav.StudyCode, map[string]string{"supervisor": sup.StudyCode}, nav.ID, sup.ID); err != nil {
			return err
		}
		t.notify(&study.Wakeups{Readers: []int64{sup.ID}})
		return db.setFeedForOwner(ctx, t, sup.ID, nav.ID, true, 0)
	})
	return created, supID, err
}

// Unassign withdraws an assignment: every entry of the navigator that the
// supervisor could see gets a removal notice in the supervisor's feed.
func (db *DB) Unassign(ctx context.Context, supCode, navCode string) (removed bool, supID int64, err error) {
	err = db.writeTx(ctx, func(t *tx) error {
		removed = false
		sup, nav, err := db.assignmentUsers(ctx, t, supCode, navCode)
		if err != nil {
			return err
		}
		supID = sup.ID
		tag, err := t.Exec(ctx, `DELETE FROM assignments WHERE supervisor_id = $1 AND navigator_id = $2`, sup.ID, nav.ID)
		if err != nil {
			return fmt.Errorf("cannot unassign: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		removed = true
		if err := db.audit(ctx, t, "unassign", nav.StudyCode, map[string]string{"supervisor": sup.StudyCode}, nav.ID, sup.ID); err != nil {
			return err
		}
		t.notify(&study.Wakeups{Readers: []int64{sup.ID}})
		return db.setFeedForOwner(ctx, t, sup.ID, nav.ID, false, study.ReasonUnassigned)
	})
	return removed, supID, err
}

// setFeedForOwner makes every entry of owner that supervisors may see
// visible (or, with visible false, removed for reason) in reader's feed,
// each at a new sequence number.
func (db *DB) setFeedForOwner(ctx context.Context, t *tx, reader, owner int64, visible bool, reason study.RemovalReason) error {
	var rids []int64
	var err error
	if visible {
		rids, err = queryIDs(ctx, t, `SELECT rid FROM entries WHERE owner_id = $1 AND sup_visible ORDER BY rid`, owner)
	} else {
		rids, err = queryIDs(ctx, t, `SELECT f.entry FROM feed f JOIN entries e ON e.rid = f.entry
			WHERE f.reader = $1 AND e.owner_id = $2 AND f.visible ORDER BY f.entry`, reader, owner)
	}
	if err != nil {
		return fmt.Errorf("cannot find entries to update in feed: %w", err)
	}
	if len(rids) == 0 {
		return nil
	}
	first, err := nextSeqs(ctx, t, len(rids), db.nowMillis())
	if err != nil {
		return err
	}
	rows := make([]feedRow, len(rids))
	for i, rid := range rids {
		rows[i] = feedRow{reader: reader, entry: rid, seq: first + int64(i), visible: visible, reason: reason}
	}
	return upsertFeed(ctx, t, rows)
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
	rows, err := db.pool.Query(ctx, `
		SELECT a.supervisor_id, a.navigator_id, s.study_code, n.study_code, a.created_at
		FROM assignments a JOIN users s ON s.id = a.supervisor_id JOIN users n ON n.id = a.navigator_id
		WHERE (a.supervisor_id, a.navigator_id) > ($1, $2) AND ($3::bigint = 0 OR a.supervisor_id = $3)
		ORDER BY a.supervisor_id, a.navigator_id LIMIT $4`, afterSup, afterNav, supID, n+1)
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

// supervisorsQuery reads a navigator's supervisors, in order.
const supervisorsQuery = `SELECT supervisor_id FROM assignments WHERE navigator_id = $1 ORDER BY supervisor_id`

// supervisorsOf returns the ids of the supervisors assigned to navigator.
func supervisorsOf(ctx context.Context, q querier, navigator int64) ([]int64, error) {
	ids, err := queryIDs(ctx, q, supervisorsQuery, navigator)
	if err != nil {
		return nil, fmt.Errorf("cannot read assignments: %w", err)
	}
	return ids, nil
}

// EnsureAdmin creates the first administrator if the store has no
// administrator yet, and issues a one-time enrolment code for them, in
// one transaction under the advisory lock: of several processes starting
// at once on an empty database, exactly one creates the administrator
// and gets the code.
func (db *DB) EnsureAdmin(ctx context.Context) (code string, created bool, err error) {
	err = db.writeTx(ctx, func(t *tx) error {
		code, created = "", false
		if _, err := t.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey); err != nil {
			return fmt.Errorf("cannot take the advisory lock: %w", err)
		}
		var n int
		if err := t.QueryRow(ctx, `SELECT count(*) FROM users WHERE role = $1`, study.RoleAdmin).Scan(&n); err != nil {
			return fmt.Errorf("cannot look for an administrator: %w", err)
		}
		if n > 0 {
			return nil
		}
		created = true
		u, err := db.createUser(ctx, t, study.AdminStudyCode, study.RoleAdmin, "Administrator")
		if err != nil {
			return err
		}
		code, _, err = db.issueCode(ctx, t, u, study.DefaultCodeTTL, false)
		return err
	})
	return code, created, err
}

// AdminCode issues a one-time enrolment code for the first active
// administrator, one that enrols without approval.
func (db *DB) AdminCode(ctx context.Context) (string, error) {
	var code string
	err := db.pool.QueryRow(ctx, `SELECT study_code FROM users WHERE role = $1 AND active ORDER BY id LIMIT 1`, study.RoleAdmin).Scan(&code)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", study.ErrNoAdmin
	}
	if err != nil {
		return "", fmt.Errorf("cannot find an administrator: %w", err)
	}
	// Whoever runs this holds the database's credentials, and with them
	// the study: the code enrols its device without approval, so that an
	// administrator who lost their only device is not locked out. The
	// issue is audited with "system" as the actor.
	var c string
	err = db.writeTx(ctx, func(t *tx) error {
		u, err := userByCode(ctx, t, code)
		if err != nil {
			return err
		}
		c, _, err = db.issueCode(ctx, t, u, study.DefaultCodeTTL, true)
		return err
	})
	return c, err
}
