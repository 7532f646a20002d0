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
	err := db.pool.QueryRow(ctx, `
		SELECT d.id, d.public_id, d.replica_id, d.secret_hash, d.revoked_at, u.id, u.study_code, u.role, u.active
		FROM devices d JOIN users u ON u.id = d.user_id
		WHERE d.public_id = $1`, device).
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
		var (
			userID           int64
			expiresAt        int64
			usedAt           *int64
			role             study.Role
			studyCode, dname string
			active           bool
		)
		err := t.QueryRow(ctx, `
			SELECT c.user_id, c.expires_at, c.used_at, u.role, u.study_code, u.display_name, u.active
			FROM enrollment_codes c JOIN users u ON u.id = c.user_id
			WHERE c.code_hash = $1 FOR UPDATE OF c`, study.CodeHash(code)).
			Scan(&userID, &expiresAt, &usedAt, &role, &studyCode, &dname, &active)
		if errors.Is(err, pgx.ErrNoRows) {
			return study.ErrBadCode
		}
		if err != nil {
			return fmt.Errorf("cannot look up enrolment code: %w", err)
		}
		now := db.now()
		if err := study.CheckCodeUsable(study.IssuedCode{Expires: time.UnixMilli(expiresAt), Used: usedAt != nil, UserActive: active}, now); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `UPDATE enrollment_codes SET used_at = $1 WHERE code_hash = $2`, now.UnixMilli(), study.CodeHash(code)); err != nil {
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
		if _, err := t.Exec(ctx, `INSERT INTO devices (public_id, user_id, replica_id, name, secret_hash, enrolled_at) VALUES ($1, $2, $3, $4, $5, $6)`,
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
		return db.auditAs(ctx, t, studyCode, "device.enrol", public, map[string]string{"name": deviceName, "role": role.String()})
	})
	return out, err
}
