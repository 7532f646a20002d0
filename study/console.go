package study

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/diarysync/diarysync/syncengine"
)

// DeviceKind says what a device is: an app that keeps a replica of its
// own, or a browser signed in to the web console. The numbers match the
// API's DeviceKind and what the stores keep.
type DeviceKind int

// Device kinds.
const (
	// KindApp is a phone app or the command line, with a device token.
	KindApp DeviceKind = 1
	// KindBrowser is a web console session: a browser signed in with a
	// passphrase, which holds no replica and reads through the server.
	KindBrowser DeviceKind = 2
)

// String returns the kind's name as lists show it.
func (k DeviceKind) String() string {
	switch k {
	case KindApp:
		return "app"
	case KindBrowser:
		return "browser"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Passphrase limits for signing in to the web console.
const (
	// MinPassphraseChars is the fewest characters a passphrase may have.
	MinPassphraseChars = 12
	// MaxPassphraseBytes bounds what is hashed of a passphrase, so that a
	// megabyte typed into the field costs nothing.
	MaxPassphraseBytes = 1024
)

// CheckPassphrase refuses a passphrase that is too short, too long, not
// text, or the person's own study code (EINVALID).
func CheckPassphrase(passphrase, studyCode string) error {
	switch {
	case len(passphrase) > MaxPassphraseBytes:
		return syncengine.Errorf(syncengine.EINVALID, "the passphrase is longer than %d bytes", MaxPassphraseBytes)
	case !utf8.ValidString(passphrase):
		return syncengine.Errorf(syncengine.EINVALID, "the passphrase is not valid text")
	case utf8.RuneCountInString(passphrase) < MinPassphraseChars:
		return syncengine.Errorf(syncengine.EINVALID, "the passphrase needs at least %d characters; a few words you will remember make a good one", MinPassphraseChars)
	case strings.TrimSpace(passphrase) == "":
		return syncengine.Errorf(syncengine.EINVALID, "the passphrase must not be only spaces")
	case studyCode != "" && strings.Contains(strings.ToUpper(passphrase), strings.ToUpper(studyCode)) && utf8.RuneCountInString(passphrase)-utf8.RuneCountInString(studyCode) < MinPassphraseChars:
		return syncengine.Errorf(syncengine.EINVALID, "the passphrase must not be your study code with a few characters added")
	}
	return nil
}

// ConsoleRole reports whether a role signs in to the web console.
// Navigators write on their phones; the console is for the people who
// read, export and run the study.
func ConsoleRole(r Role) bool {
	return r == RoleSupervisor || r == RoleResearcher || r == RoleAdmin
}

// ErrNotConsoleRole is the answer to a navigator who tries to sign in to
// the console.
var ErrNotConsoleRole = syncengine.Errorf(syncengine.EPERMISSION, "the web console is for supervisors, researchers and administrators: navigators use the diary app on their phone")

// Browser session lifetimes.
const (
	// DefaultSessionIdle ends a console session nobody used for this long.
	DefaultSessionIdle = 30 * time.Minute
	// DefaultSessionLifetime ends a console session this long after it
	// began, however busy it is.
	DefaultSessionLifetime = 12 * time.Hour
	// MaxSessionLifetime bounds what a server may configure.
	MaxSessionLifetime = 7 * 24 * time.Hour
)

// SessionEnd is why a console session ended.
type SessionEnd string

// Reasons a session ends.
const (
	EndNone        SessionEnd = ""
	EndSignOut     SessionEnd = "signout"     // the person signed out
	EndRevoked     SessionEnd = "revoked"     // revoked from a device list
	EndReset       SessionEnd = "reset"       // an administrator reset the person's console access
	EndIdle        SessionEnd = "idle"        // unused for the idle timeout
	EndLifetime    SessionEnd = "lifetime"    // older than its lifetime
	EndDeactivated SessionEnd = "deactivated" // the account was deactivated
)

// ValidSessionEnd reports whether r is a reason a store records.
func ValidSessionEnd(r SessionEnd) bool {
	switch r {
	case EndSignOut, EndRevoked, EndReset, EndIdle, EndLifetime:
		return true
	}
	return false
}

// Session is a browser signed in to the web console, as a store keeps
// it: a device of kind KindBrowser with its own replica id (so the
// feedback it writes carries stamps of its own) and a lifetime. A store
// returns ended sessions too, so that the person can be told why.
type Session struct {
	Identity
	Started  time.Time
	LastSeen time.Time
	Expires  time.Time // the absolute end of its lifetime
	// Ended is when it was ended (zero while it may still be used), and
	// EndReason why; a device revoked from a device list has Ended set
	// and EndRevoked.
	Ended      time.Time
	EndReason  SessionEnd
	UserActive bool
}

// CheckSession returns EndNone and nil if the session may be used now,
// or why it may not and the error to give. idle is the idle timeout.
func CheckSession(s *Session, now time.Time, idle time.Duration) (SessionEnd, error) {
	switch {
	case !s.UserActive:
		return EndDeactivated, syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this account was deactivated")
	case !s.Ended.IsZero():
		r := s.EndReason
		if r == EndNone {
			r = EndRevoked
		}
		return r, syncengine.Errorf(syncengine.EUNAUTHENTICATED, "%s", sessionEndMessages[r])
	case !now.Before(s.Expires):
		return EndLifetime, syncengine.Errorf(syncengine.EUNAUTHENTICATED, "%s", sessionEndMessages[EndLifetime])
	case idle > 0 && now.Sub(s.LastSeen) >= idle:
		return EndIdle, syncengine.Errorf(syncengine.EUNAUTHENTICATED, "%s", sessionEndMessages[EndIdle])
	}
	return EndNone, nil
}

var sessionEndMessages = map[SessionEnd]string{
	EndSignOut:     "you signed out of this browser: sign in again",
	EndRevoked:     "this browser session was revoked from the device list: sign in again",
	EndReset:       "an administrator reset your console access: sign in with the new one-time code they give you",
	EndIdle:        "you were signed out after a while without using the console: sign in again",
	EndLifetime:    "this browser session reached its time limit: sign in again",
	EndDeactivated: "this account was deactivated",
}

// SessionEndMessage returns what to tell a person whose session ended
// for r.
func SessionEndMessage(r SessionEnd) string { return sessionEndMessages[r] }

// SessionTouchDue reports whether a store should record that a session
// was used now: not on every request (a page view would then always be a
// write), but often enough that the idle timeout is kept to within a
// tenth of itself, and at most a minute.
func SessionTouchDue(lastSeen, now time.Time, idle time.Duration) bool {
	every := min(time.Minute, idle/10)
	return now.Sub(lastSeen) >= every
}

// CheckSessionLifetime refuses a session lifetime a store must not give:
// none, or more than MaxSessionLifetime.
func CheckSessionLifetime(lifetime time.Duration) error {
	if lifetime <= 0 || lifetime > MaxSessionLifetime {
		return syncengine.Errorf(syncengine.EINVALID, "a console session lifetime must be more than 0 and at most %v", MaxSessionLifetime)
	}
	return nil
}

// CheckSessionStart checks what a store's StartSession is given before
// it reads anything: the session's name (returned as DeviceName makes
// it) and lifetime, and the study code's form (a malformed one is
// ErrBadLogin, as an unknown one is).
func CheckSessionStart(studyCode, name string, lifetime time.Duration) (string, error) {
	name, err := DeviceName(name)
	if err != nil {
		return "", err
	}
	if err := CheckSessionLifetime(lifetime); err != nil {
		return "", err
	}
	if syncengine.ValidateStudyCode(studyCode) != nil {
		return "", ErrBadLogin
	}
	return name, nil
}

// CheckBrowserEnrollment checks what a store's EnrollBrowser is given
// before it reads anything: the session's name (returned as DeviceName
// makes it), its lifetime, a passphrase hash, and the code's form.
func CheckBrowserEnrollment(code, passphraseHash, name string, lifetime time.Duration) (string, error) {
	name, err := DeviceName(name)
	if err != nil {
		return "", err
	}
	if err := CheckSessionLifetime(lifetime); err != nil {
		return "", err
	}
	if passphraseHash == "" {
		return "", syncengine.Errorf(syncengine.EINVALID, "a console session needs a passphrase")
	}
	if err := CheckCodeForm(code); err != nil {
		return "", err
	}
	return name, nil
}

// CheckSessionLimits refuses an idle timeout or lifetime out of range.
func CheckSessionLimits(idle, lifetime time.Duration) error {
	if idle < time.Second || idle > lifetime {
		return syncengine.Errorf(syncengine.EINVALID, "the console idle timeout %v must be at least a second and at most the session lifetime", idle)
	}
	if lifetime > MaxSessionLifetime {
		return syncengine.Errorf(syncengine.EINVALID, "the console session lifetime %v is over the limit of %v", lifetime, MaxSessionLifetime)
	}
	return nil
}

// LoginKey names what wrong sign-in attempts are counted against (an
// account, an address), and how many may fail before attempts are
// slowed.
type LoginKey struct {
	Key  string
	Free int
}

// Free wrong attempts before sign-in is slowed. An address may be a
// whole office behind one router, so it gets more than an account.
const (
	LoginFreeAccount = 5
	LoginFreeAddress = 20
	// LoginMaxWait is the longest a key is made to wait between
	// attempts.
	LoginMaxWait = 15 * time.Minute
	// LoginForgetAfter is how long failures are remembered after the
	// last one.
	LoginForgetAfter = 24 * time.Hour
)

// LoginFailures is what a store keeps of the wrong attempts against one
// key.
type LoginFailures struct {
	Count int
	Last  time.Time
}

// LoginWait returns how long the key must wait before its next attempt:
// nothing for its first free failures, then a wait that doubles with
// every further failure (1 s, 2 s, 4 s, …) up to LoginMaxWait, counted
// from the last failure. Failures older than LoginForgetAfter are
// forgotten. Guessing a 12-character passphrase at that pace is hopeless,
// while the person who mistyped it twice waits not at all.
func LoginWait(f LoginFailures, free int, now time.Time) time.Duration {
	if f.Count < free || now.Sub(f.Last) >= LoginForgetAfter {
		return 0
	}
	wait := LoginMaxWait
	if n := f.Count - free; n < 20 {
		wait = min(LoginMaxWait, time.Duration(math.Pow(2, float64(n)))*time.Second)
	}
	if left := f.Last.Add(wait).Sub(now); left > 0 {
		return left
	}
	return 0
}

// ErrLoginWait is the answer to an attempt that must wait.
func ErrLoginWait(wait time.Duration) error {
	return syncengine.Errorf(syncengine.ERATELIMIT, "too many wrong attempts: try again in %s", wait.Round(time.Second)+time.Second)
}

// ErrBadLogin is the answer to a wrong study code or passphrase: the same
// for both, so that guessing does not reveal who has an account.
var ErrBadLogin = syncengine.Errorf(syncengine.EUNAUTHENTICATED, "the study code or the passphrase is wrong")
