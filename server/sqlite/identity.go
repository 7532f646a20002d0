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

// Authenticate returns the identity a bearer token belongs to. A
// malformed, unknown or revoked token, or one whose user was deactivated,
// is EUNAUTHENTICATED.
func (db *DB) Authenticate(ctx context.Context, token string) (*study.Identity, error) {
	device, secret, ok := study.ParseToken(token)
	if !ok {
		return nil, study.ErrBadToken
	}
	var (
		id      study.Identity
		hash    []byte
		replica []byte
		revoked sql.NullInt64
		active  bool
	)
	// A console session's token is a cookie, not a bearer token: the
	// API answers it as it answers an unknown one.
	err := db.read.QueryRowContext(ctx, `
		SELECT d.id, d.public_id, d.replica_id, d.secret_hash, d.revoked_at, u.id, u.study_code, u.role, u.active
		FROM devices d JOIN users u ON u.id = d.user_id
		WHERE d.public_id = ? AND d.kind = ?`, device, study.KindApp).
		Scan(&id.DeviceID, &id.Device, &replica, &hash, &revoked, &id.UserID, &id.StudyCode, &id.Role, &active)
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
	if err := study.DeviceState(revoked.Valid, active); err != nil {
		return nil, err
	}
	copy(id.Replica[:], replica)
	return &id, nil
}

// DeviceActive returns nil if the device is still enrolled and its user
// active, and the error Authenticate would give otherwise. Long-lived
// calls use it to notice a revocation made after they authenticated.
func (db *DB) DeviceActive(ctx context.Context, device int64) error {
	var revoked, active bool
	err := db.read.QueryRowContext(ctx, `SELECT d.revoked_at IS NOT NULL, u.active FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?`, device).Scan(&revoked, &active)
	if errors.Is(err, sql.ErrNoRows) {
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
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		u, err := userByCode(ctx, tx, studyCode)
		if err != nil {
			return err
		}
		if err := study.CheckCodeIssuable(u); err != nil {
			return err
		}
		now := db.now()
		if code, err = study.NewCode(db.rand); err != nil {
			return err
		}
		expires = now.Add(ttl)
		_, err = tx.ExecContext(ctx, `INSERT INTO enrollment_codes (code_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			study.CodeHash(code), u.ID, now.UnixMilli(), expires.UnixMilli())
		if err != nil {
			return fmt.Errorf("cannot store enrolment code: %w", err)
		}
		return db.audit(ctx, tx, "code.issue", u.StudyCode, map[string]string{"expires": expires.UTC().Format(time.RFC3339)})
	})
	return code, expires, err
}

// Enroll exchanges a one-time code for a new device and its token.
func (db *DB) Enroll(ctx context.Context, code, deviceName string) (*study.Enrollment, error) {
	deviceName, err := study.DeviceName(deviceName)
	if err != nil {
		return nil, err
	}
	if err := study.CheckCodeForm(code); err != nil {
		return nil, err
	}
	var out *study.Enrollment
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		c, err := db.usableCode(ctx, tx, code)
		if err != nil {
			return err
		}
		if err := spendCode(ctx, tx, code, db.nowMillis()); err != nil {
			return err
		}
		if out, err = db.newDevice(ctx, tx, &c.User, deviceName, study.KindApp); err != nil {
			return err
		}
		return db.auditAs(ctx, tx, c.StudyCode, "device.enrol", out.Device, map[string]string{"name": deviceName, "role": c.Role.String()})
	})
	return out, err
}

// issuedCode is an enrolment code as looked up, with its user.
type issuedCode struct {
	study.User
	study.IssuedCode
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
		SELECT c.expires_at, c.used_at, u.id, u.role, u.study_code, u.display_name, u.active, u.created_at
		FROM enrollment_codes c JOIN users u ON u.id = c.user_id
		WHERE c.code_hash = ?`, study.CodeHash(code)).
		Scan(&expiresAt, &usedAt, &c.ID, &c.Role, &c.StudyCode, &c.DisplayName, &c.Active, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, study.ErrBadCode
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up enrolment code: %w", err)
	}
	c.CreatedAt = time.UnixMilli(created).UTC()
	c.IssuedCode = study.IssuedCode{Expires: time.UnixMilli(expiresAt), Used: usedAt.Valid, UserActive: c.Active}
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

// newDevice stores a new device of the given kind for u, with a fresh
// public id, replica id and secret, and returns its enrolment.
func (db *DB) newDevice(ctx context.Context, tx *sql.Tx, u *study.User, name string, kind study.DeviceKind) (*study.Enrollment, error) {
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO devices (public_id, user_id, replica_id, name, secret_hash, enrolled_at, kind) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		public, u.ID, replica[:], name, hash, db.nowMillis(), kind); err != nil {
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
