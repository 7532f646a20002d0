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
	err := db.read.QueryRowContext(ctx, `
		SELECT d.id, d.public_id, d.replica_id, d.secret_hash, d.revoked_at, u.id, u.study_code, u.role, u.active
		FROM devices d JOIN users u ON u.id = d.user_id
		WHERE d.public_id = ?`, device).
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
		var (
			userID           int64
			expiresAt        int64
			usedAt           sql.NullInt64
			role             study.Role
			studyCode, dname string
			active           bool
		)
		err := tx.QueryRowContext(ctx, `
			SELECT c.user_id, c.expires_at, c.used_at, u.role, u.study_code, u.display_name, u.active
			FROM enrollment_codes c JOIN users u ON u.id = c.user_id
			WHERE c.code_hash = ?`, study.CodeHash(code)).
			Scan(&userID, &expiresAt, &usedAt, &role, &studyCode, &dname, &active)
		if errors.Is(err, sql.ErrNoRows) {
			return study.ErrBadCode
		}
		if err != nil {
			return fmt.Errorf("cannot look up enrolment code: %w", err)
		}
		now := db.now()
		if err := study.CheckCodeUsable(study.IssuedCode{Expires: time.UnixMilli(expiresAt), Used: usedAt.Valid, UserActive: active}, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ?`, now.UnixMilli(), study.CodeHash(code)); err != nil {
			return fmt.Errorf("cannot mark enrolment code used: %w", err)
		}
		secret, hash, err := study.NewSecret(db.rand)
		if err != nil {
			return err
		}
		publicID, err := uuid.NewRandomFromReader(db.rand)
		if err != nil {
			return fmt.Errorf("cannot make a device id: %w", err)
		}
		replicaID, err := uuid.NewRandomFromReader(db.rand)
		if err != nil {
			return fmt.Errorf("cannot make a replica id: %w", err)
		}
		public, replica := publicID.String(), syncengine.ReplicaID(replicaID)
		if _, err := tx.ExecContext(ctx, `INSERT INTO devices (public_id, user_id, replica_id, name, secret_hash, enrolled_at) VALUES (?, ?, ?, ?, ?, ?)`,
			public, userID, replica[:], deviceName, hash, now.UnixMilli()); err != nil {
			return fmt.Errorf("cannot store device: %w", err)
		}
		out = &study.Enrollment{
			Token:       study.MakeToken(public, secret),
			Device:      public,
			Replica:     replica,
			Role:        role,
			StudyCode:   studyCode,
			DisplayName: dname,
		}
		return db.auditAs(ctx, tx, studyCode, "device.enrol", public, map[string]string{"name": deviceName, "role": role.String()})
	})
	return out, err
}
