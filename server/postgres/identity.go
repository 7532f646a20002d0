package postgres

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Authenticate returns the identity a bearer token belongs to.
func (db *DB) Authenticate(ctx context.Context, token string) (*study.Identity, error) {
	device, secret, ok := study.ParseToken(token)
	if !ok {
		return nil, study.ErrBadToken
	}
	var (
		id      study.Identity
		hash    []byte
		replica []byte
		revoked *int64
		active  bool
	)
	// A console session's token is a cookie, not a bearer token: the
	// API answers it as it answers an unknown one.
	err := db.pool.QueryRow(ctx, `
		SELECT d.id, d.public_id, d.replica_id, d.secret_hash, d.revoked_at, u.id, u.study_code, u.role, u.active
		FROM devices d JOIN users u ON u.id = d.user_id
		WHERE d.public_id = $1 AND d.kind = $2`, device, int32(study.KindApp)).
		Scan(&id.DeviceID, &id.Device, &replica, &hash, &revoked, &id.UserID, &id.StudyCode, &id.Role, &active)
	sum := study.SecretHash(secret)
	if errors.Is(err, pgx.ErrNoRows) {
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
	if err := study.DeviceState(revoked != nil, active); err != nil {
		return nil, err
	}
	copy(id.Replica[:], replica)
	return &id, nil
}

// DeviceActive returns nil if the device is still enrolled and its user
// active, and the error Authenticate would give otherwise.
func (db *DB) DeviceActive(ctx context.Context, device int64) error {
	var revoked, active bool
	err := db.pool.QueryRow(ctx, `SELECT d.revoked_at IS NOT NULL, u.active FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1`, device).Scan(&revoked, &active)
	if errors.Is(err, pgx.ErrNoRows) {
		return study.ErrBadToken
	}
	if err != nil {
		return fmt.Errorf("cannot look up device: %w", err)
	}
	return study.DeviceState(revoked, active)
}

// IssueEnrollmentCode issues a one-time enrolment code for the active user
// with the given study code.
func (db *DB) IssueEnrollmentCode(ctx context.Context, studyCode string, ttl time.Duration) (code string, expires time.Time, err error) {
	if ttl, err = study.CodeTTL(ttl); err != nil {
		return "", time.Time{}, err
	}
	err = db.writeTx(ctx, func(t *tx) error {
		u, err := userByCode(ctx, t, studyCode)
		if err != nil {
			return err
		}
		code, expires, err = db.issueCode(ctx, t, u, ttl)
		return err
	})
	return code, expires, err
}

func (db *DB) issueCode(ctx context.Context, t *tx, u *study.User, ttl time.Duration) (string, time.Time, error) {
	if err := study.CheckCodeIssuable(u); err != nil {
		return "", time.Time{}, err
	}
	now := db.now()
	code, err := study.NewCode(db.rand)
	if err != nil {
		return "", time.Time{}, err
	}
	expires := now.Add(ttl)
	if _, err := t.Exec(ctx, `INSERT INTO enrollment_codes (code_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
		study.CodeHash(code), u.ID, now.UnixMilli(), expires.UnixMilli()); err != nil {
		return "", time.Time{}, fmt.Errorf("cannot store enrolment code: %w", err)
	}
	return code, expires, db.audit(ctx, t, "code.issue", u.StudyCode, map[string]string{"expires": expires.UTC().Format(time.RFC3339)})
}

// Enroll exchanges a one-time code for a new device and its token. The
// code's row is locked while it is checked and marked used, so a code
// sent to two processes at once enrols one device.
func (db *DB) Enroll(ctx context.Context, code, deviceName string) (*study.Enrollment, error) {
	deviceName, err := study.DeviceName(deviceName)
	if err != nil {
		return nil, err
	}
	if err := study.CheckCodeForm(code); err != nil {
		return nil, err
	}
	var out *study.Enrollment
	err = db.plainTx(ctx, func(t *tx) error {
		c, err := db.usableCode(ctx, t, code, true)
		if err != nil {
			return err
		}
		if err := spendCode(ctx, t, code, db.nowMillis()); err != nil {
			return err
		}
		if out, err = db.newDevice(ctx, t, &c.User, deviceName, study.KindApp); err != nil {
			return err
		}
		return db.auditAs(ctx, t, c.StudyCode, "device.enrol", out.Device, map[string]string{"name": deviceName, "role": c.Role.String()})
	})
	return out, err
}

// issuedCode is an enrolment code as looked up, with its user.
type issuedCode struct {
	study.User
	study.IssuedCode
}

// usableCode looks up an enrolment code and returns it with its user if
// it may enrol a device now. With lock (in a transaction) the code's row
// stays locked until the commit, so that it is spent once.
func (db *DB) usableCode(ctx context.Context, q querier, code string, lock bool) (*issuedCode, error) {
	var (
		c         issuedCode
		expiresAt int64
		usedAt    *int64
		created   int64
	)
	query := `SELECT c.expires_at, c.used_at, u.id, u.role, u.study_code, u.display_name, u.active, u.created_at
		FROM enrollment_codes c JOIN users u ON u.id = c.user_id
		WHERE c.code_hash = $1`
	if lock {
		query += ` FOR UPDATE OF c`
	}
	err := q.QueryRow(ctx, query, study.CodeHash(code)).
		Scan(&expiresAt, &usedAt, &c.ID, &c.Role, &c.StudyCode, &c.DisplayName, &c.Active, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, study.ErrBadCode
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up enrolment code: %w", err)
	}
	c.CreatedAt = time.UnixMilli(created).UTC()
	c.IssuedCode = study.IssuedCode{Expires: time.UnixMilli(expiresAt), Used: usedAt != nil, UserActive: c.Active}
	if err := study.CheckCodeUsable(c.IssuedCode, db.now()); err != nil {
		return nil, err
	}
	return &c, nil
}

func spendCode(ctx context.Context, t *tx, code string, now int64) error {
	if _, err := t.Exec(ctx, `UPDATE enrollment_codes SET used_at = $1 WHERE code_hash = $2`, now, study.CodeHash(code)); err != nil {
		return fmt.Errorf("cannot mark enrolment code used: %w", err)
	}
	return nil
}

// newDevice stores a new device of the given kind for u, with a fresh
// public id, replica id and secret, and returns its enrolment.
func (db *DB) newDevice(ctx context.Context, t *tx, u *study.User, name string, kind study.DeviceKind) (*study.Enrollment, error) {
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
	if _, err := t.Exec(ctx, `INSERT INTO devices (public_id, user_id, replica_id, name, secret_hash, enrolled_at, kind) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		public, u.ID, replica[:], name, hash, db.nowMillis(), int32(kind)); err != nil {
		return nil, fmt.Errorf("cannot store device: %w", err)
	}
	return &study.Enrollment{
		Token:       study.MakeToken(public, secret),
		Device:      public,
		Replica:     replica,
		Role:        u.Role,
		StudyCode:   u.StudyCode,
		DisplayName: u.DisplayName,
	}, nil
}
