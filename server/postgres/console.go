package postgres

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// CodeUser returns the user a one-time code is for, if the code may
// enrol now, without spending it.
func (db *DB) CodeUser(ctx context.Context, code string) (*study.User, error) {
	if err := study.CheckCodeForm(code); err != nil {
		return nil, err
	}
	c, err := db.usableCode(ctx, db.pool, code, false)
	if err != nil {
		return nil, err
	}
	return &c.User, nil
}

// EnrollBrowser exchanges a one-time code for a web console session and
// sets the person's console passphrase. The code's row is locked while
// it is checked and spent, as in Enroll, so a code sent to two processes
// at once starts one session.
func (db *DB) EnrollBrowser(ctx context.Context, code, passphraseHash, name string, lifetime time.Duration) (*study.Enrollment, error) {
	name, err := study.CheckBrowserEnrollment(code, passphraseHash, name, lifetime)
	if err != nil {
		return nil, err
	}
	var out *study.Enrollment
	err = db.plainTx(ctx, func(t *tx) error {
		c, err := db.usableCode(ctx, t, code, true)
		if err != nil {
			return err
		}
		// Refused before the code is spent: the navigator keeps it for
		// their phone.
		if !study.ConsoleRole(c.Role) {
			return study.ErrNotConsoleRole
		}
		now := db.nowMillis()
		if err := spendCode(ctx, t, code, now); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `INSERT INTO passphrases (user_id, hash, set_at) VALUES ($1, $2, $3)
			ON CONFLICT (user_id) DO UPDATE SET hash = excluded.hash, set_at = excluded.set_at`, c.ID, passphraseHash, now); err != nil {
			return fmt.Errorf("cannot store passphrase: %w", err)
		}
		// A first console sign-in is a new device like any other: once the
		// person has had a device, it waits for the approval of one of
		// them, unless the code lets it through (study.NewDeviceState).
		state := study.NewDeviceState(c.HadDevice, c.Approved)
		if out, err = db.newSession(ctx, t, &c.User, name, lifetime, state, c.issuer()); err != nil {
			return err
		}
		// Whoever issued the code could have used it: the log names them
		// as the actor, as for a phone's enrolment.
		return db.auditAs(ctx, t, c.issuer(), "console.enrol", out.Device,
			map[string]string{"user": c.StudyCode, "name": name, "role": c.Role.String(), "state": state.String()}, c.ID)
	})
	return out, err
}

func (db *DB) newSession(ctx context.Context, t *tx, u *study.User, name string, lifetime time.Duration, state study.DeviceState, issuer string) (*study.Enrollment, error) {
	e, err := db.newDevice(ctx, t, u, name, study.KindBrowser, state, issuer)
	if err != nil {
		return nil, err
	}
	now := db.now()
	if _, err := t.Exec(ctx, `INSERT INTO console_sessions (device_id, expires_at, last_seen_at)
		SELECT id, $1, $2 FROM devices WHERE public_id = $3`, now.Add(lifetime).UnixMilli(), now.UnixMilli(), e.Device); err != nil {
		return nil, fmt.Errorf("cannot store console session: %w", err)
	}
	return e, nil
}

// PassphraseHash returns the stored hash of the person's console
// passphrase, or ErrBadLogin.
func (db *DB) PassphraseHash(ctx context.Context, studyCode string) (string, error) {
	if syncengine.ValidateStudyCode(studyCode) != nil {
		return "", study.ErrBadLogin
	}
	var (
		hash   string
		active bool
		role   study.Role
	)
	err := db.pool.QueryRow(ctx, `SELECT p.hash, u.active, u.role FROM users u JOIN passphrases p ON p.user_id = u.id
		WHERE lower(u.study_code) = lower($1)`, studyCode).Scan(&hash, &active, &role)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", study.ErrBadLogin
	}
	if err != nil {
		return "", fmt.Errorf("cannot look up passphrase: %w", err)
	}
	if !active || !study.ConsoleRole(role) {
		return "", study.ErrBadLogin
	}
	return hash, nil
}

// StartSession starts a web console session for a person who proved
// their passphrase against hash. The passphrase's row is locked while it
// is compared, so that a reset committing meanwhile, on any process,
// either comes first (and the sign-in fails) or waits and ends the new
// session too.
func (db *DB) StartSession(ctx context.Context, studyCode, passphraseHash, name string, lifetime time.Duration) (*study.Enrollment, error) {
	name, err := study.CheckSessionStart(studyCode, name, lifetime)
	if err != nil {
		return nil, err
	}
	var out *study.Enrollment
	err = db.plainTx(ctx, func(t *tx) error {
		u, err := userByCode(ctx, t, studyCode)
		if syncengine.ErrorCode(err) == syncengine.ENOTFOUND {
			return study.ErrBadLogin
		}
		if err != nil {
			return err
		}
		var stored string
		err = t.QueryRow(ctx, `SELECT hash FROM passphrases WHERE user_id = $1 FOR UPDATE`, u.ID).Scan(&stored)
		if errors.Is(err, pgx.ErrNoRows) {
			return study.ErrBadLogin
		}
		if err != nil {
			return fmt.Errorf("cannot look up passphrase: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(stored), []byte(passphraseHash)) != 1 || !u.Active || !study.ConsoleRole(u.Role) {
			return study.ErrBadLogin
		}
		// The passphrase proves the person, who chose it in a session
		// that was approved or needed no approval: this one is active.
		if out, err = db.newSession(ctx, t, u, name, lifetime, study.DeviceActive, u.StudyCode); err != nil {
			return err
		}
		return db.auditAs(ctx, t, u.StudyCode, "console.signin", out.Device, map[string]string{"name": name}, u.ID)
	})
	return out, err
}

// Session returns the web console session a token belongs to.
func (db *DB) Session(ctx context.Context, token string) (*study.Session, error) {
	device, secret, ok := study.ParseToken(token)
	if !ok {
		return nil, study.ErrBadToken
	}
	var (
		s                           study.Session
		hash, replica               []byte
		revoked                     *int64
		enrolled, expires, lastSeen int64
		reason                      string
	)
	err := db.pool.QueryRow(ctx, `
		SELECT d.id, d.public_id, d.replica_id, d.secret_hash, d.revoked_at, d.pending, d.enrolled_at,
			u.id, u.study_code, u.role, u.active, s.expires_at, s.last_seen_at, s.end_reason
		FROM devices d JOIN users u ON u.id = d.user_id JOIN console_sessions s ON s.device_id = d.id
		WHERE d.public_id = $1 AND d.kind = $2`, device, int32(study.KindBrowser)).
		Scan(&s.DeviceID, &s.Device, &replica, &hash, &revoked, &s.Pending, &enrolled, &s.UserID, &s.StudyCode, &s.Role, &s.UserActive, &expires, &lastSeen, &reason)
	sum := study.SecretHash(secret)
	if errors.Is(err, pgx.ErrNoRows) {
		subtle.ConstantTimeCompare(sum, make([]byte, len(sum)))
		return nil, study.ErrBadToken
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up console session: %w", err)
	}
	if subtle.ConstantTimeCompare(sum, hash) != 1 {
		return nil, study.ErrBadToken
	}
	copy(s.Replica[:], replica)
	s.Started = time.UnixMilli(enrolled).UTC()
	s.Expires = time.UnixMilli(expires).UTC()
	s.LastSeen = time.UnixMilli(lastSeen).UTC()
	if revoked != nil {
		s.Ended = time.UnixMilli(*revoked).UTC()
		s.EndReason = study.SessionEnd(reason)
	}
	return &s, nil
}

// TouchSession records that the session was used now. A time never
// moves back, whichever process wrote the later one first.
func (db *DB) TouchSession(ctx context.Context, device int64) error {
	_, err := db.pool.Exec(ctx, `UPDATE console_sessions SET last_seen_at = greatest(last_seen_at, $1) WHERE device_id = $2`, db.nowMillis(), device)
	if err != nil {
		return fmt.Errorf("cannot record console session use: %w", err)
	}
	return nil
}

// EndSession ends a session for reason. Every process's streams look
// again at commit, so a live inbox of the session ends wherever it is
// open.
func (db *DB) EndSession(ctx context.Context, device int64, reason study.SessionEnd) error {
	if !study.ValidSessionEnd(reason) {
		return syncengine.Errorf(syncengine.EINVALID, "%q is not a reason to end a session", reason)
	}
	return db.writeTx(ctx, func(t *tx) error {
		var public string
		err := t.QueryRow(ctx, `SELECT d.public_id FROM devices d JOIN console_sessions s ON s.device_id = d.id WHERE d.id = $1`, device).Scan(&public)
		if errors.Is(err, pgx.ErrNoRows) {
			return syncengine.Errorf(syncengine.ENOTFOUND, "no console session %d", device)
		}
		if err != nil {
			return fmt.Errorf("cannot look up console session: %w", err)
		}
		// The browser ended itself, as a signed-out device does.
		tag, err := t.Exec(ctx, `UPDATE devices SET revoked_at = $1, revocation = $2, revoked_by = $3, pending = false WHERE id = $4 AND revoked_at IS NULL`,
			db.nowMillis(), int32(study.RevokedSelf), study.ActorFrom(ctx), device)
		if err != nil {
			return fmt.Errorf("cannot end console session: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil // ended already, for the reason recorded then
		}
		if _, err := t.Exec(ctx, `UPDATE console_sessions SET end_reason = $1 WHERE device_id = $2`, string(reason), device); err != nil {
			return fmt.Errorf("cannot end console session: %w", err)
		}
		t.notifyAll()
		return db.audit(ctx, t, "console.end", public, map[string]string{"reason": string(reason)})
	})
}

// endConsoleAccess, in a reset of the user's account, clears their
// console passphrase and marks the console sessions it is about to
// revoke as ended by the reset, so that the browser says so. It returns
// whether a passphrase was set. Deleting the passphrase's row waits for
// a sign-in comparing against it (see StartSession).
func endConsoleAccess(ctx context.Context, t *tx, userID int64) (bool, error) {
	tag, err := t.Exec(ctx, `DELETE FROM passphrases WHERE user_id = $1`, userID)
	if err != nil {
		return false, fmt.Errorf("cannot clear passphrase: %w", err)
	}
	if _, err := t.Exec(ctx, `UPDATE console_sessions SET end_reason = $1 WHERE device_id IN (
		SELECT id FROM devices WHERE user_id = $2 AND kind = $3 AND revoked_at IS NULL)`, string(study.EndReset), userID, int32(study.KindBrowser)); err != nil {
		return false, fmt.Errorf("cannot end console sessions: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// maxLoginKeyBytes bounds a login key.
const maxLoginKeyBytes = 128

// SpendLoginAttempt counts one attempt against each key as a failure,
// unless one of them must wait. The keys' rows exist (counting nothing)
// and are locked, in key order, before they are read, so parallel
// attempts through any number of processes queue on them and cannot
// together get past the limit; an attempt that must wait rolls back.
func (db *DB) SpendLoginAttempt(ctx context.Context, keys []study.LoginKey) error {
	for _, k := range keys {
		if k.Key == "" || len(k.Key) > maxLoginKeyBytes {
			return syncengine.Errorf(syncengine.EINVALID, "a sign-in key must be 1 to %d bytes", maxLoginKeyBytes)
		}
	}
	sorted := slices.Clone(keys)
	slices.SortFunc(sorted, func(a, b study.LoginKey) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	sorted = slices.CompactFunc(sorted, func(a, b study.LoginKey) bool { return a.Key == b.Key })
	return db.plainTx(ctx, func(t *tx) error {
		now := db.now()
		forget := now.Add(-study.LoginForgetAfter).UnixMilli()
		var wait time.Duration
		for _, k := range sorted {
			if _, err := t.Exec(ctx, `INSERT INTO login_failures (key, count, last_at) VALUES ($1, 0, $2) ON CONFLICT (key) DO NOTHING`,
				k.Key, now.UnixMilli()); err != nil {
				return fmt.Errorf("cannot read sign-in failures: %w", err)
			}
			var f study.LoginFailures
			var last int64
			if err := t.QueryRow(ctx, `SELECT count, last_at FROM login_failures WHERE key = $1 FOR UPDATE`, k.Key).Scan(&f.Count, &last); err != nil {
				return fmt.Errorf("cannot read sign-in failures: %w", err)
			}
			if f.Count > 0 {
				f.Last = time.UnixMilli(last)
				wait = max(wait, study.LoginWait(f, k.Free, now))
			}
		}
		if wait > 0 {
			return study.ErrLoginWait(wait)
		}
		for _, k := range sorted {
			if _, err := t.Exec(ctx, `UPDATE login_failures SET count = CASE WHEN last_at <= $2 OR count = 0 THEN 1 ELSE count + 1 END, last_at = $3 WHERE key = $1`,
				k.Key, forget, now.UnixMilli()); err != nil {
				return fmt.Errorf("cannot count sign-in attempt: %w", err)
			}
		}
		// SKIP LOCKED leaves rows other attempts hold alone.
		if _, err := t.Exec(ctx, `DELETE FROM login_failures WHERE key IN (
			SELECT key FROM login_failures WHERE last_at <= $1 LIMIT 100 FOR UPDATE SKIP LOCKED)`, forget); err != nil {
			return fmt.Errorf("cannot forget old sign-in failures: %w", err)
		}
		return nil
	})
}

// RefundLoginAttempt takes back one counted attempt of each key, or with
// reset forgets their failures.
func (db *DB) RefundLoginAttempt(ctx context.Context, keys []string, reset bool) error {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return db.plainTx(ctx, func(t *tx) error {
		for _, k := range keys {
			q := `UPDATE login_failures SET count = greatest(count - 1, 0) WHERE key = $1`
			if reset {
				q = `DELETE FROM login_failures WHERE key = $1`
			}
			if _, err := t.Exec(ctx, q, k); err != nil {
				return fmt.Errorf("cannot take back sign-in attempt: %w", err)
			}
		}
		return nil
	})
}

// DeviceClock returns the greatest clock among the changes kept from the
// device.
func (db *DB) DeviceClock(ctx context.Context, device int64) (syncengine.Timestamp, error) {
	var c int64
	err := db.pool.QueryRow(ctx, `SELECT greatest(coalesce((SELECT max(clock) FROM history WHERE device_id = $1), 0),
		coalesce((SELECT max(clock) FROM refusals WHERE device_id = $1), 0))`, device).Scan(&c)
	if err != nil {
		return 0, fmt.Errorf("cannot read the device's clock: %w", err)
	}
	return syncengine.Timestamp(c), nil
}

// QueryAudit returns a page of the audit log, newest first, filtered.
func (db *DB) QueryAudit(ctx context.Context, q study.AuditQuery) ([]*study.AuditEvent, string, error) {
	if err := study.CheckAuditQuery(&q); err != nil {
		return nil, "", err
	}
	before, err := study.DecodeIntPageToken(q.PageToken)
	if err != nil {
		return nil, "", err
	}
	args := []any{before}
	where := `($1::bigint = 0 OR id < $1)`
	// arg adds a value and returns its placeholder.
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Actor != "" {
		where += ` AND actor = ` + arg(q.Actor)
	}
	if q.Action != "" {
		if q.Action[len(q.Action)-1] == '.' {
			where += ` AND substr(action, 1, ` + arg(int32(len(q.Action))) + `) = ` + arg(q.Action)
		} else {
			where += ` AND action = ` + arg(q.Action)
		}
	}
	if q.Subject != "" {
		where += ` AND subject = ` + arg(q.Subject)
	}
	if !q.Since.IsZero() {
		where += ` AND at >= ` + arg(q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		where += ` AND at < ` + arg(q.Until.UnixMilli())
	}
	return db.listAudit(ctx, where, args, study.ListPageSize(q.PageSize))
}
