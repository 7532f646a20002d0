package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/diarysync/diarysync/syncengine"
	"github.com/google/uuid"
)

// Role is what a user does in the study. The numbers match the API's Role
// enum and the users.role column.
type Role int

// Roles.
const (
	RoleNavigator  Role = 1
	RoleSupervisor Role = 2
	RoleResearcher Role = 3
	RoleAdmin      Role = 4
)

var roleNames = map[Role]string{RoleNavigator: "navigator", RoleSupervisor: "supervisor", RoleResearcher: "researcher", RoleAdmin: "admin"}

// String returns the role's lowercase name.
func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool { _, ok := roleNames[r]; return ok }

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if strings.EqualFold(s, n) {
			return r, nil
		}
	}
	return 0, syncengine.Errorf(syncengine.EINVALID, "unknown role %q: use navigator, supervisor, researcher or admin", s)
}

// Identity is who is calling: the device and the user it belongs to.
type Identity struct {
	UserID    int64
	StudyCode string
	Role      Role
	DeviceID  int64
	Device    string // the device's public id
	Replica   syncengine.ReplicaID
}

type identityKey struct{}

// withIdentity returns a context carrying id.
func withIdentity(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// identityFrom returns the caller's identity; handlers behind the auth
// interceptor always have one.
func identityFrom(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// Device tokens look like "ds1.<device id>.<secret>". The device id finds
// the row; the secret (256 random bits, base64url) is checked against its
// stored SHA-256 in constant time. The server never stores the secret.
const tokenPrefix = "ds1."

func newSecret(r io.Reader) (secret string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", nil, fmt.Errorf("cannot make a device secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	return secret, h[:], nil
}

func parseToken(token string) (device, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, tokenPrefix)
	if !ok {
		return "", "", false
	}
	device, secret, ok = strings.Cut(rest, ".")
	if !ok || len(device) != 36 || len(secret) != 43 {
		return "", "", false
	}
	return device, secret, true
}

var errBadToken = syncengine.Errorf(syncengine.EUNAUTHENTICATED, "the device token is not valid: enrol this device again")

// Authenticate returns the identity a bearer token belongs to. A
// malformed, unknown or revoked token, or one whose user was deactivated,
// is EUNAUTHENTICATED.
func (db *DB) Authenticate(ctx context.Context, token string) (*Identity, error) {
	device, secret, ok := parseToken(token)
	if !ok {
		return nil, errBadToken
	}
	var (
		id      Identity
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
	sum := sha256.Sum256([]byte(secret))
	if errors.Is(err, sql.ErrNoRows) {
		// Compare anyway, so an unknown device takes as long as a known one.
		subtle.ConstantTimeCompare(sum[:], make([]byte, len(sum)))
		return nil, errBadToken
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up device: %w", err)
	}
	if subtle.ConstantTimeCompare(sum[:], hash) != 1 {
		return nil, errBadToken
	}
	if err := deviceState(revoked.Valid, active); err != nil {
		return nil, err
	}
	copy(id.Replica[:], replica)
	return &id, nil
}

func deviceState(revoked, active bool) error {
	// Deactivation revokes every device too; it is checked first because
	// asking for a new enrolment code, as a revoked device is told to,
	// cannot help a deactivated account.
	if !active {
		return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this account was deactivated")
	}
	if revoked {
		return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this device was revoked: ask an administrator for a new enrolment code")
	}
	return nil
}

// DeviceActive returns nil if the device is still enrolled and its user
// active, and the error Authenticate would give otherwise. Long-lived
// calls use it to notice a revocation made after they authenticated.
func (db *DB) DeviceActive(ctx context.Context, device int64) error {
	var revoked, active bool
	err := db.read.QueryRowContext(ctx, `SELECT d.revoked_at IS NOT NULL, u.active FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?`, device).Scan(&revoked, &active)
	if errors.Is(err, sql.ErrNoRows) {
		return errBadToken
	}
	if err != nil {
		return fmt.Errorf("cannot look up device: %w", err)
	}
	return deviceState(revoked, active)
}

// Enrolment codes: 10 characters from an alphabet without look-alikes
// (no 0/O, 1/I/L), about 49 bits, shown as two groups of five.
const (
	codeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
	codeLength   = 10
	// DefaultCodeTTL is how long an enrolment code works unless told
	// otherwise.
	DefaultCodeTTL = 24 * time.Hour
	// MaxCodeTTL is the longest an enrolment code may work.
	MaxCodeTTL = 7 * 24 * time.Hour
)

func newCode(r io.Reader) (string, error) {
	var b strings.Builder
	max := big.NewInt(int64(len(codeAlphabet)))
	for i := range codeLength {
		if i == codeLength/2 {
			b.WriteByte('-')
		}
		n, err := rand.Int(r, max)
		if err != nil {
			return "", fmt.Errorf("cannot make an enrolment code: %w", err)
		}
		b.WriteByte(codeAlphabet[n.Int64()])
	}
	return b.String(), nil
}

// normalizeCode removes spaces and dashes and upper-cases, so a code can
// be typed as read.
func normalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		if r == ' ' || r == '-' {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func codeHash(code string) []byte {
	h := sha256.Sum256([]byte(normalizeCode(code)))
	return h[:]
}

// IssueEnrollmentCode issues a one-time enrolment code for the active user
// with the given study code.
func (db *DB) IssueEnrollmentCode(ctx context.Context, studyCode string, ttl time.Duration) (code string, expires time.Time, err error) {
	if ttl == 0 {
		ttl = DefaultCodeTTL
	}
	if ttl < time.Minute || ttl > MaxCodeTTL {
		return "", time.Time{}, syncengine.Errorf(syncengine.EINVALID, "code lifetime %v is out of range: use 1 minute to 7 days", ttl)
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		u, err := userByCode(ctx, tx, studyCode)
		if err != nil {
			return err
		}
		if !u.Active {
			return syncengine.Errorf(syncengine.ECONFLICT, "user %s is deactivated", u.StudyCode)
		}
		now := db.now()
		if code, err = newCode(db.rand); err != nil {
			return err
		}
		expires = now.Add(ttl)
		_, err = tx.ExecContext(ctx, `INSERT INTO enrollment_codes (code_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)`,
			codeHash(code), u.ID, now.UnixMilli(), expires.UnixMilli())
		if err != nil {
			return fmt.Errorf("cannot store enrolment code: %w", err)
		}
		return db.audit(ctx, tx, "code.issue", u.StudyCode, map[string]string{"expires": expires.UTC().Format(time.RFC3339)})
	})
	return code, expires, err
}

// Enrollment is what a device gets for a valid code.
type Enrollment struct {
	Token       string
	Device      string
	Replica     syncengine.ReplicaID
	Role        Role
	StudyCode   string
	DisplayName string
}

// MaxDeviceNameBytes bounds a device's name.
const MaxDeviceNameBytes = 64

var errBadCode = syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this enrolment code is not valid: check it, or ask an administrator for a new one")

// Enroll exchanges a one-time code for a new device and its token.
func (db *DB) Enroll(ctx context.Context, code, deviceName string) (*Enrollment, error) {
	deviceName = strings.TrimSpace(deviceName)
	if deviceName == "" {
		deviceName = "device"
	}
	if err := syncengine.ValidateText("device name", deviceName, MaxDeviceNameBytes, false); err != nil {
		return nil, err
	}
	norm := normalizeCode(code)
	if len(norm) != codeLength || strings.Trim(norm, codeAlphabet) != "" {
		return nil, errBadCode
	}
	var out *Enrollment
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var (
			userID           int64
			expiresAt        int64
			usedAt           sql.NullInt64
			role             Role
			studyCode, dname string
			active           bool
		)
		err := tx.QueryRowContext(ctx, `
			SELECT c.user_id, c.expires_at, c.used_at, u.role, u.study_code, u.display_name, u.active
			FROM enrollment_codes c JOIN users u ON u.id = c.user_id
			WHERE c.code_hash = ?`, codeHash(norm)).
			Scan(&userID, &expiresAt, &usedAt, &role, &studyCode, &dname, &active)
		if errors.Is(err, sql.ErrNoRows) {
			return errBadCode
		}
		if err != nil {
			return fmt.Errorf("cannot look up enrolment code: %w", err)
		}
		now := db.now()
		switch {
		case usedAt.Valid:
			return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this enrolment code was already used: ask an administrator for a new one")
		case now.UnixMilli() >= expiresAt:
			return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this enrolment code expired: ask an administrator for a new one")
		case !active:
			return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this account was deactivated")
		}
		if _, err := tx.ExecContext(ctx, `UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ?`, now.UnixMilli(), codeHash(norm)); err != nil {
			return fmt.Errorf("cannot mark enrolment code used: %w", err)
		}
		secret, hash, err := newSecret(db.rand)
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
		out = &Enrollment{
			Token:       tokenPrefix + public + "." + secret,
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
