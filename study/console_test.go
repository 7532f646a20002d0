package study

import (
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

func TestCheckPassphrase(t *testing.T) {
	for _, tc := range []struct {
		name, pass string
		ok         bool
	}{
		{"OK", "correct horse battery", true},
		{"OKExactlyTwelve", "abcdefghijkl", true},
		{"OKTwelveRunes", "ééééééééééé1", true},
		{"ErrEleven", "abcdefghijk", false},
		{"ErrEmpty", "", false},
		{"ErrSpaces", strings.Repeat(" ", 20), false},
		{"ErrTooLong", strings.Repeat("a", MaxPassphraseBytes+1), false},
		{"ErrNotUTF8", "abcdefghijkl\xff", false},
		{"ErrStudyCodePadded", "sup-1sup-1!!", false},
		{"OKStudyCodeInsideALongerOne", "SUP-1 reads reflections daily", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPassphrase(tc.pass, "SUP-1")
			if (err == nil) != tc.ok {
				t.Fatalf("CheckPassphrase(%q) = %v, want ok=%v", tc.pass, err, tc.ok)
			}
			if err != nil && syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Fatalf("code %s, want EINVALID", syncengine.ErrorCode(err))
			}
		})
	}
}

func TestConsoleRole(t *testing.T) {
	for r, want := range map[Role]bool{RoleNavigator: false, RoleSupervisor: true, RoleResearcher: true, RoleAdmin: true, 0: false} {
		if got := ConsoleRole(r); got != want {
			t.Errorf("ConsoleRole(%s) = %v", r, got)
		}
	}
}

func TestCheckSession(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	live := Session{Started: now.Add(-time.Hour), LastSeen: now.Add(-5 * time.Minute), Expires: now.Add(time.Hour), UserActive: true}
	for _, tc := range []struct {
		name string
		edit func(s *Session)
		want SessionEnd
	}{
		{"OK", func(s *Session) {}, EndNone},
		{"Idle", func(s *Session) { s.LastSeen = now.Add(-30 * time.Minute) }, EndIdle},
		{"JustNotIdle", func(s *Session) { s.LastSeen = now.Add(-30*time.Minute + time.Millisecond) }, EndNone},
		{"Lifetime", func(s *Session) { s.Expires = now }, EndLifetime},
		{"SignedOut", func(s *Session) { s.Ended, s.EndReason = now.Add(-time.Minute), EndSignOut }, EndSignOut},
		{"RevokedFromDeviceList", func(s *Session) { s.Ended = now.Add(-time.Minute) }, EndRevoked},
		{"Reset", func(s *Session) { s.Ended, s.EndReason = now.Add(-time.Minute), EndReset }, EndReset},
		{"DeactivatedFirst", func(s *Session) { s.UserActive = false; s.Ended = now }, EndDeactivated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := live
			tc.edit(&s)
			got, err := CheckSession(&s, now, 30*time.Minute)
			if got != tc.want {
				t.Fatalf("CheckSession = %q, want %q", got, tc.want)
			}
			if (err == nil) != (tc.want == EndNone) {
				t.Fatalf("error %v with reason %q", err, got)
			}
			if err != nil && (syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED || syncengine.ErrorMessage(err) != SessionEndMessage(got)) {
				t.Fatalf("error %v (%s), want EUNAUTHENTICATED with the reason's message", err, syncengine.ErrorCode(err))
			}
		})
	}
}

func TestSessionTouchDue(t *testing.T) {
	now := time.Now()
	if SessionTouchDue(now.Add(-59*time.Second), now, 30*time.Minute) {
		t.Error("touched again within a minute under a 30-minute idle timeout")
	}
	if !SessionTouchDue(now.Add(-time.Minute), now, 30*time.Minute) {
		t.Error("not touched after a minute")
	}
	// A short idle timeout is kept to within a tenth of itself.
	if !SessionTouchDue(now.Add(-time.Second), now, 10*time.Second) {
		t.Error("not touched after a tenth of a 10-second idle timeout")
	}
}

func TestCheckSessionLimits(t *testing.T) {
	if err := CheckSessionLimits(DefaultSessionIdle, DefaultSessionLifetime); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]time.Duration{{0, time.Hour}, {2 * time.Hour, time.Hour}, {time.Hour, MaxSessionLifetime + 1}} {
		if err := CheckSessionLimits(l[0], l[1]); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Errorf("CheckSessionLimits(%v, %v) = %v, want EINVALID", l[0], l[1], err)
		}
	}
}

func TestLoginWait(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		count int
		ago   time.Duration
		want  time.Duration
	}{
		{"NoFailures", 0, 0, 0},
		{"WithinTheFree", 4, 0, 0},
		{"FirstPastTheFree", 5, 0, time.Second},
		{"Doubling", 7, 0, 4 * time.Second},
		{"PartlyWaited", 7, 3 * time.Second, time.Second},
		{"Waited", 7, 4 * time.Second, 0},
		{"Capped", 40, 0, LoginMaxWait},
		{"CappedHuge", 1 << 30, 0, LoginMaxWait},
		{"Forgotten", 40, LoginForgetAfter, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := LoginWait(LoginFailures{Count: tc.count, Last: now.Add(-tc.ago)}, LoginFreeAccount, now)
			if got != tc.want {
				t.Fatalf("LoginWait(%d failures, %v ago) = %v, want %v", tc.count, tc.ago, got, tc.want)
			}
		})
	}
	if err := ErrLoginWait(1500 * time.Millisecond); syncengine.ErrorCode(err) != syncengine.ERATELIMIT || !strings.Contains(err.Error(), "try again in 3s") {
		t.Fatalf("ErrLoginWait = %v", err)
	}
}

// TestCheckBrowserEnrollment: every store refuses the same inputs to
// EnrollBrowser, before it reads anything.
func TestCheckBrowserEnrollment(t *testing.T) {
	code, err := NewCode(strings.NewReader(strings.Repeat("x", 64)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what             string
		code, hash, name string
		lifetime         time.Duration
		ok               bool
	}{
		{"valid", code, "hash", "laptop", time.Hour, true},
		{"no lifetime", code, "hash", "laptop", 0, false},
		{"lifetime too long", code, "hash", "laptop", MaxSessionLifetime + time.Second, false},
		{"no passphrase", code, "", "laptop", time.Hour, false},
		{"malformed code", "not a code", "hash", "laptop", time.Hour, false},
		{"name too long", code, "hash", strings.Repeat("n", 1000), time.Hour, false},
	} {
		name, err := CheckBrowserEnrollment(tc.code, tc.hash, tc.name, tc.lifetime)
		if tc.ok != (err == nil) {
			t.Errorf("%s: err = %v, want ok=%v", tc.what, err, tc.ok)
		}
		if err == nil && name != tc.name {
			t.Errorf("%s: name %q, want %q", tc.what, name, tc.name)
		}
		if err != nil && syncengine.ErrorCode(err) == syncengine.EINTERNAL {
			t.Errorf("%s: %v is not an application error", tc.what, err)
		}
	}
}

func TestCheckSessionStart(t *testing.T) {
	for _, tc := range []struct {
		what, code, name string
		lifetime         time.Duration
		want             error // nil: ok
		invalid          bool  // refused as bad input (not as a bad login)
	}{
		{what: "valid", code: "SUP-1", name: "laptop", lifetime: time.Hour},
		{what: "malformed study code", code: "no such code!", name: "laptop", lifetime: time.Hour, want: ErrBadLogin},
		{what: "no lifetime", code: "SUP-1", name: "laptop", invalid: true},
		{what: "name too long", code: "SUP-1", name: strings.Repeat("n", 1000), lifetime: time.Hour, invalid: true},
	} {
		name, err := CheckSessionStart(tc.code, tc.name, tc.lifetime)
		switch {
		case tc.invalid:
			if err == nil || err == ErrBadLogin || syncengine.ErrorCode(err) == syncengine.EINTERNAL {
				t.Errorf("%s: err = %v, want an application error about the input", tc.what, err)
			}
		case err != tc.want:
			t.Errorf("%s: err = %v, want %v", tc.what, err, tc.want)
		case err == nil && name != tc.name:
			t.Errorf("%s: name %q, want %q", tc.what, name, tc.name)
		}
	}
}
