package study

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"strings"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// Device tokens look like "ds1.<device id>.<secret>". The device id finds
// the device; the secret (256 random bits, base64url) is checked against
// its stored SHA-256 in constant time. No store keeps the secret.
const TokenPrefix = "ds1."

// NewSecret returns a new device secret and the SHA-256 a store keeps of
// it.
func NewSecret(r io.Reader) (secret string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", nil, fmt.Errorf("cannot make a device secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, SecretHash(secret), nil
}

// SecretHash returns the SHA-256 of a device secret.
func SecretHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// ParseToken splits a device token into the device's public id and its
// secret, and reports whether it has the form of one.
func ParseToken(token string) (device, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, TokenPrefix)
	if !ok {
		return "", "", false
	}
	device, secret, ok = strings.Cut(rest, ".")
	if !ok || len(device) != 36 || len(secret) != 43 {
		return "", "", false
	}
	return device, secret, true
}

// MakeToken joins a device's public id and secret into its token.
func MakeToken(device, secret string) string { return TokenPrefix + device + "." + secret }

// ErrBadToken is the answer to a token that is malformed or unknown.
var ErrBadToken = syncengine.Errorf(syncengine.EUNAUTHENTICATED, "the device token is not valid: enrol this device again")

// Enrolment codes: 10 characters from an alphabet without look-alikes
// (no 0/O, 1/I/L), about 49 bits, shown as two groups of five.
const (
	// CodeAlphabet holds the characters of enrolment codes.
	CodeAlphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
	codeLength   = 10
	// DefaultCodeTTL is how long an enrolment code works unless told
	// otherwise.
	DefaultCodeTTL = 24 * time.Hour
	// MaxCodeTTL is the longest an enrolment code may work.
	MaxCodeTTL = 7 * 24 * time.Hour
	// MaxCodeBytes bounds what is read of a code a caller sends.
	MaxCodeBytes = 64
)

// NewCode returns a new enrolment code, such as "K7MPQ-3XRTA".
func NewCode(r io.Reader) (string, error) {
	var b strings.Builder
	max := big.NewInt(int64(len(CodeAlphabet)))
	for i := range codeLength {
		if i == codeLength/2 {
			b.WriteByte('-')
		}
		n, err := rand.Int(r, max)
		if err != nil {
			return "", fmt.Errorf("cannot make an enrolment code: %w", err)
		}
		b.WriteByte(CodeAlphabet[n.Int64()])
	}
	return b.String(), nil
}

// NormalizeCode removes spaces and dashes and upper-cases, so a code can
// be typed as read.
func NormalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		if r == ' ' || r == '-' {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// CodeHash returns the SHA-256 a store keeps of an enrolment code.
func CodeHash(code string) []byte {
	h := sha256.Sum256([]byte(NormalizeCode(code)))
	return h[:]
}

// ErrBadCode is the answer to an enrolment code that is malformed or
// unknown.
var ErrBadCode = syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this enrolment code is not valid: check it, or ask an administrator for a new one")

// CheckCodeForm returns ErrBadCode unless code (as typed) has the form of
// an enrolment code, so that a store looks up only codes that could
// exist.
func CheckCodeForm(code string) error {
	norm := NormalizeCode(code)
	if len(code) > MaxCodeBytes || len(norm) != codeLength || strings.Trim(norm, CodeAlphabet) != "" {
		return ErrBadCode
	}
	return nil
}

// CodeTTL returns the lifetime of a new code when ttl was asked for (0:
// the default), or an error when it is out of range.
func CodeTTL(ttl time.Duration) (time.Duration, error) {
	if ttl == 0 {
		ttl = DefaultCodeTTL
	}
	if ttl < time.Minute || ttl > MaxCodeTTL {
		return 0, syncengine.Errorf(syncengine.EINVALID, "code lifetime %v is out of range: use 1 minute to 7 days", ttl)
	}
	return ttl, nil
}

// IssuedCode is an enrolment code as a store keeps it.
type IssuedCode struct {
	Expires    time.Time
	Used       bool
	UserActive bool
	// IssuedBy is the study code of the administrator who issued it
	// ("system" for the server's console): the actor of the enrolment.
	IssuedBy string
	// Approved says the device it enrols starts active, without
	// approval (see NewDeviceState).
	Approved bool
}

// CheckCodeUsable returns nil if a stored code may enrol a device now,
// and the error to give otherwise.
func CheckCodeUsable(c IssuedCode, now time.Time) error {
	switch {
	case c.Used:
		return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this enrolment code was already used: ask an administrator for a new one")
	case !now.Before(c.Expires):
		return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this enrolment code expired: ask an administrator for a new one")
	case !c.UserActive:
		return syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this account was deactivated")
	}
	return nil
}

// CheckCodeFor returns nil if a code issued for the user with study code
// codeUser may enrol a device for want ("" for anyone), and ECONFLICT
// otherwise. A profile that belongs to someone asks for its own user, so
// that a code for someone else is refused before it is spent. The error
// does not name the code's user: holding a code is no reason to learn
// whose it is.
func CheckCodeFor(codeUser, want string) error {
	if want == "" || strings.EqualFold(codeUser, want) {
		return nil
	}
	return syncengine.Errorf(syncengine.ECONFLICT, "this enrolment code is not for %s, whom this profile belongs to: it was not used; enrol it in a new profile", want)
}

// EnrollRequest is what a device sends to enrol.
type EnrollRequest struct {
	Code       string // the one-time code, as typed
	DeviceName string
	// ForUser, if set, is the study code the enrolment must be for: a
	// profile that belongs to someone enrols only as them, and a code
	// for anyone else is refused before it is spent.
	ForUser string
}

// MaxDeviceNameBytes bounds a device's name.
const MaxDeviceNameBytes = 64

// DeviceName returns the name a new device is stored with ("device" when
// none was given), or an error when it is not acceptable.
func DeviceName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		name = "device"
	}
	if err := syncengine.ValidateText("device name", name, MaxDeviceNameBytes, false); err != nil {
		return "", err
	}
	return name, nil
}

// Enrollment is what a device gets for a valid code.
type Enrollment struct {
	Token       string
	Device      string
	Replica     syncengine.ReplicaID
	Role        Role
	StudyCode   string
	DisplayName string
	// State is DeviceActive, or DevicePending when the device waits for
	// approval by another of the user's devices.
	State DeviceState
}

// EnrolLinkPrefix starts the link a QR code of an enrolment code
// encodes, so that a phone app can scan it instead of the person typing
// the server's address and the code.
const EnrolLinkPrefix = "diarysync:enrol?"

// EnrolLink returns the link that carries an enrolment code and the
// address of the server it works on:
// diarysync:enrol?server=<URL>&code=<code>, both query-escaped.
func EnrolLink(serverURL, code string) string {
	return EnrolLinkPrefix + "server=" + url.QueryEscape(serverURL) + "&code=" + url.QueryEscape(code)
}
