package sqlite

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/google/uuid"
)

var qAuthenticate = readQuery(`
		SELECT d.id, d.public_id, d.replica_id, d.secret_hash, u.id, u.study_code, u.role, ` + deviceRecordColumns + `
		FROM devices d JOIN users u ON u.id = d.user_id
		WHERE d.public_id = ? AND d.kind = ?`)

// Authenticate returns the identity a bearer token belongs to. A
// malformed, unknown or revoked token, or one whose user was deactivated,
// is EUNAUTHENTICATED; a revoked device is told who revoked it.
func (db *DB) Authenticate(ctx context.Context, token string) (*study.Identity, error) {
	device, secret, ok := study.ParseToken(token)
	if !ok {
		return nil, study.ErrBadToken
	}
	var (
		id      study.Identity
		hash    []byte
		replica []byte
		rec     deviceRecord
	)
	// A console session's token is a cookie, not a bearer token: the
	// API answers it as it answers an unknown one.
	err := db.rq.QueryRowContext(ctx, qAuthenticate, device, study.KindApp).
		Scan(append([]any{&id.DeviceID, &id.Device, &replica, &hash, &id.UserID, &id.StudyCode, &id.Role}, rec.dest()...)...)
	sum := study.SecretHash(secret)
	if errors.Is(err, sql.ErrNoRows) {
		// Compare anyway, so an unknown device takes as long as a known one.
		subtle.ConstantTimeCompare(sum, make([]byte, len(sum)))
		return nil, study.ErrBadToken
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up device: %w", err)
	}
	if subtle.ConstantTimeCompare(sum, hash) != 1 {
		return nil, study.ErrBadToken
	}
	r := rec.record(id.Device)
	if err := study.CheckDevice(r); err != nil {
		return nil, err
	}
	id.Pending = r.State == study.DevicePending
	copy(id.Replica[:], replica)
	return &id, nil
}

// deviceRecordColumns are what CheckDevice needs of a device (alias d)
// and its user (alias u).
const deviceRecordColumns = `d.pending, d.revoked_at, d.revocation, d.revoked_by, u.active`

type deviceRecord struct {
	pending    bool
	revokedAt  sql.NullInt64
	revocation study.Revocation
	revokedBy  string
	active     bool
}

func (r *deviceRecord) dest() []any {
	return []any{&r.pending, &r.revokedAt, &r.revocation, &r.revokedBy, &r.active}
}

func (r *deviceRecord) record(publicID string) study.DeviceRecord {
	out := study.DeviceRecord{PublicID: publicID, State: study.DeviceActive, UserActive: r.active}
	switch {
	case r.revokedAt.Valid:
		out.State, out.Revocation, out.RevokedBy = study.DeviceRevoked, r.revocation, r.revokedBy
		out.RevokedAt = time.UnixMilli(r.revokedAt.Int64).UTC()
	case r.pending:
		out.State = study.DevicePending
	}
	return out
}

var qDeviceActive = readQuery(`SELECT d.public_id, ` + deviceRecordColumns + ` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?`)

// DeviceActive returns nil if the device may still act (it is enrolled,
// not revoked, and its user is active), and the error Authenticate would
// give otherwise. Long-lived calls use it to notice a revocation made
// after they authenticated.
func (db *DB) DeviceActive(ctx context.Context, device int64) error {
	var (
		publicID string
		rec      deviceRecord
	)
	err := db.rq.QueryRowContext(ctx, qDeviceActive, device).
		Scan(append([]any{&publicID}, rec.dest()...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return study.ErrBadToken
	}
	if err != nil {
		return fmt.Errorf("cannot look up device: %w", err)
	}
	return study.CheckDevice(rec.record(publicID))
}

// IssueEnrollmentCode issues a one-time enrolment code for the active user
// with the given study code. The caller is kept with it as its issuer.
func (db *DB) IssueEnrollmentCode(ctx context.Context, studyCode string, ttl time.Duration) (code string, expires time.Time, err error) {
	if ttl, err = study.CodeTTL(ttl); err != nil {
		return "", time.Time{}, err
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		u, err := userByCode(ctx, tx, studyCode)
		if err != nil {
			return err
		}
		if err := study.CheckCodeIssuable(u); err != nil {
			return err
		}
		code, expires, err = db.issueCode(ctx, tx, u, ttl, false)
		return err
	})
	return code, expires, err
}

// issueCode stores a new code for u in tx, issued by the caller; an
// approved code enrols its device without approval.
func (db *DB) issueCode(ctx context.Context, tx *sql.Tx, u *study.User, ttl time.Duration, approved bool) (string, time.Time, error) {
	now := db.now()
	code, err := study.NewCode(db.rand)
	if err != nil {
		return "", time.Time{}, err
	}
	expires := now.Add(ttl)
	actor := study.ActorFrom(ctx)
	_, err = tx.ExecContext(ctx, `INSERT INTO enrollment_codes (code_hash, user_id, created_at, expires_at, issued_by, approved) VALUES (?, ?, ?, ?, ?, ?)`,
		study.CodeHash(code), u.ID, now.UnixMilli(), expires.UnixMilli(), actor, approved)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("cannot store enrolment code: %w", err)
	}
	details := map[string]string{"expires": expires.UTC().Format(time.RFC3339)}
	if approved {
		details["approval"] = "not needed"
	}
	return code, expires, db.audit(ctx, tx, "code.issue", u.StudyCode, details, u.ID)
}

// Enroll exchanges a one-time code for a new device and its token. The
// device is pending when its user has had a device before and the code
// does not let it through (see study.NewDeviceState). The enrolment is
// recorded with the code's issuer as the actor.
func (db *DB) Enroll(ctx context.Context, req study.EnrollRequest) (*study.Enrollment, error) {
	deviceName, err := study.DeviceName(req.DeviceName)
	if err != nil {
		return nil, err
	}
	if err := study.CheckCodeForm(req.Code); err != nil {
		return nil, err
	}
	var out *study.Enrollment
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		c, err := db.usableCode(ctx, tx, req.Code)
		if err != nil {
			return err
		}
		if err := study.CheckCodeFor(c.StudyCode, req.ForUser); err != nil {
			return err
		}
		if err := spendCode(ctx, tx, req.Code, db.nowMillis()); err != nil {
			return err
		}
		state := study.NewDeviceState(c.HadDevice, c.Approved)
		if out, err = db.newDevice(ctx, tx, &c.User, deviceName, study.KindApp, state, c.issuer()); err != nil {
			return err
		}
		// Whoever issued the code could have used it themselves: the log
		// names them as the actor, and the user among its subjects.
		return db.auditAs(ctx, tx, c.issuer(), "device.enrol", out.Device,
			map[string]string{"user": c.StudyCode, "name": deviceName, "role": c.Role.String(), "state": state.String()}, c.ID)
	})
	return out, err
}

// issuedCode is an enrolment code as looked up, with its user.
type issuedCode struct {
	study.User
	study.IssuedCode
	// HadDevice says the user has had a device before (of any kind), so
	// that a new one waits for approval unless the code lets it through.
	HadDevice bool
}

// issuer is who issued the code, the actor of what it enrols.
func (c *issuedCode) issuer() string {
	if c.IssuedBy == "" {
		return "system"
	}
	return c.IssuedBy
}

// usableCode looks up an enrolment code and returns it with its user if
// it may enrol a device now.
func (db *DB) usableCode(ctx context.Context, q querier, code string) (*issuedCode, error) {
	var (
		c         issuedCode
		expiresAt int64
		usedAt    sql.NullInt64
		created   int64
	)
	err := q.QueryRowContext(ctx, `
		SELECT c.expires_at, c.used_at, c.issued_by, c.approved, u.id, u.role, u.study_code, u.display_name, u.active, u.created_at,
			EXISTS (SELECT 1 FROM devices d WHERE d.user_id = c.user_id)
		FROM enrollment_codes c JOIN users u ON u.id = c.user_id
		WHERE c.code_hash = ?`, study.CodeHash(code)).
		Scan(&expiresAt, &usedAt, &c.IssuedBy, &c.Approved, &c.ID, &c.Role, &c.StudyCode, &c.DisplayName, &c.Active, &created, &c.HadDevice)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, study.ErrBadCode
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up enrolment code: %w", err)
	}
	c.CreatedAt = time.UnixMilli(created).UTC()
	c.Expires, c.Used, c.UserActive = time.UnixMilli(expiresAt), usedAt.Valid, c.Active
	if err := study.CheckCodeUsable(c.IssuedCode, db.now()); err != nil {
		return nil, err
	}
	return &c, nil
}

func spendCode(ctx context.Context, tx *sql.Tx, code string, now int64) error {
	if _, err := tx.ExecContext(ctx, `UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ?`, now, study.CodeHash(code)); err != nil {
		return fmt.Errorf("cannot mark enrolment code used: %w", err)
	}
	return nil
}

// newDevice stores a new device of the given kind and state for u, with
// a fresh public id, replica id and secret, recorded as issued by issuer,
// and returns its enrolment.
func (db *DB) newDevice(ctx context.Context, tx *sql.Tx, u *study.User, name string, kind study.DeviceKind, state study.DeviceState, issuer string) (*study.Enrollment, error) {
	secret, hash, err := study.NewSecret(db.rand)
	if err != nil {
		return nil, err
	}
	publicID, err := uuid.NewRandomFromReader(db.rand)
	if err != nil {
		return nil, fmt.Errorf("cannot make a device id: %w", err)
	}
	replicaID, err := uuid.NewRandomFromReader(db.rand)
	if err != nil {
		return nil, fmt.Errorf("cannot make a replica id: %w", err)
	}
	public, replica := publicID.String(), syncengine.ReplicaID(replicaID)
	if _, err := tx.ExecContext(ctx, `INSERT INTO devices (public_id, user_id, replica_id, name, secret_hash, enrolled_at, kind, pending, issued_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		public, u.ID, replica[:], name, hash, db.nowMillis(), kind, state == study.DevicePending, issuer); err != nil {
		return nil, fmt.Errorf("cannot store device: %w", err)
	}
	return &study.Enrollment{
		Token:       study.MakeToken(public, secret),
		Device:      public,
		Replica:     replica,
		Role:        u.Role,
		StudyCode:   u.StudyCode,
		DisplayName: u.DisplayName,
		State:       state,
	}, nil
}
