package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestRevoke checks that revoking a device or deactivating a user takes
// effect on the very next call, for every device concerned and no other.
func TestRevoke(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	admin := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN").Token))
	phone := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	tablet := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	laptop := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	other := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-B")
	pull := func(dev TestDevice) error {
		_, err := ts.clients(bearer(dev.Token)).sync.Pull(ctx, &diaryv1.PullRequest{})
		return err
	}
	for _, d := range []TestDevice{phone, tablet, laptop, other} {
		wantCode(t, pull(d), 0)
	}
	// Streams opened before the revocations: they must not outlive them.
	phoneStream := subscribe(t, ts.clients(bearer(phone.Token)), 0)
	laptopStream := subscribe(t, ts.clients(bearer(laptop.Token)), 0)
	otherStream := subscribe(t, ts.clients(bearer(other.Token)), 0)
	for _, s := range []*subscription{phoneStream, laptopStream, otherStream} {
		s.next(t, time.Second)
	}
	ended := func(t *testing.T, s *subscription) {
		t.Helper()
		select {
		case err := <-s.done:
			wantCode(t, err, connect.CodeUnauthenticated)
		case <-time.After(2 * time.Second):
			t.Fatal("the stream of a revoked device is still open")
		}
	}

	t.Run("OK", func(t *testing.T) {
		// Revoking twice is not an error, and keeps the first time.
		first, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: phone.Device})
		wantCode(t, err, 0)
		again, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: phone.Device})
		wantCode(t, err, 0)
		if !first.GetDevice().GetRevokedAt().AsTime().Equal(again.GetDevice().GetRevokedAt().AsTime()) {
			t.Fatalf("revoked at %v, then %v", first.GetDevice().GetRevokedAt(), again.GetDevice().GetRevokedAt())
		}
		ended(t, phoneStream)
	})

	t.Run("ErrRevokedDevice", func(t *testing.T) {
		err := pull(phone)
		wantCode(t, err, connect.CodeUnauthenticated)
		if !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("message %q does not say the device was revoked", err)
		}
		// The user's other devices still work.
		wantCode(t, pull(tablet), 0)
	})

	t.Run("ErrDeactivatedUser", func(t *testing.T) {
		resp, err := admin.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "pn-a"})
		wantCode(t, err, 0)
		// The phone was revoked already: two more.
		if resp.GetDevicesRevoked() != 2 || resp.GetUser().GetActive() {
			t.Fatalf("DeactivateUser: %v", resp)
		}
		for _, d := range []TestDevice{phone, tablet, laptop} {
			wantCode(t, pull(d), connect.CodeUnauthenticated)
		}
		wantCode(t, pull(other), 0)
		ended(t, laptopStream)
		otherStream.quiet(t, 100*time.Millisecond)
		list, err := admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{StudyCode: "PN-A"})
		wantCode(t, err, 0)
		for _, d := range list.GetDevices() {
			if d.GetRevokedAt() == nil {
				t.Errorf("device %s of a deactivated user is not revoked", d.GetDeviceId())
			}
		}
		// A deactivated user gets no new codes.
		_, err = admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
		wantCode(t, err, connect.CodeFailedPrecondition)
	})

	t.Run("ErrStreamOfRevokedDevice", func(t *testing.T) {
		s, err := ts.clients(bearer(tablet.Token)).sync.Subscribe(ctx, &diaryv1.SubscribeRequest{})
		if err == nil {
			// A server stream reports its error on the first receive.
			if s.Receive() {
				t.Fatal("a revoked device opened a stream")
			}
			err = s.Err()
		}
		wantCode(t, err, connect.CodeUnauthenticated)
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: "not-a-device"})
		wantCode(t, err, connect.CodeInvalidArgument)
		_, err = admin.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "PN-Z"})
		wantCode(t, err, connect.CodeNotFound)
	})
}

// codeFormat is how an enrolment code looks: two groups of five from an
// alphabet without 0/O, 1/I/L.
var codeFormat = regexp.MustCompile(`^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}-[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}$`)

// TestEnroll checks one-time codes: their form, single use, expiry, and
// the rate limit on wrong guesses.
func TestEnroll(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	// Wrong guesses are made on purpose here; the limit has its own test.
	db := MustOpenDBWith(t, storetest.Options{Now: clock.Now, EnrollLimit: study.AttemptLimit{Burst: 1000, Refill: time.Minute}})
	ts := newTestServer(t, Config{Store: db})
	anon := ts.clients("")
	admin := ts.clients(bearer(MustEnrollDevice(t, db, study.RoleAdmin, "ADMIN").Token))
	if _, err := db.CreateUser(ctx, "PN-A", study.RoleNavigator, "Navigator A"); err != nil {
		t.Fatal(err)
	}
	issue := func(ttl time.Duration) string {
		t.Helper()
		req := &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"}
		if ttl != 0 {
			req.Ttl = durationpb.New(ttl)
		}
		resp, err := admin.admin.IssueEnrollmentCode(ctx, req)
		wantCode(t, err, 0)
		return resp.GetCode()
	}

	t.Run("OK", func(t *testing.T) {
		seen := map[string]bool{}
		for range 50 {
			c := issue(0)
			if !codeFormat.MatchString(c) {
				t.Fatalf("code %q is not two groups of five from the look-alike-free alphabet", c)
			}
			if seen[c] {
				t.Fatalf("code %q issued twice", c)
			}
			seen[c] = true
		}
		// Typed in lower case with spaces for dashes, as read aloud.
		c := issue(0)
		typed := strings.ToLower(strings.ReplaceAll(c, "-", " "))
		enr, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: typed, DeviceName: "phone"})
		wantCode(t, err, 0)
		if enr.GetStudyCode() != "PN-A" || enr.GetRole() != diaryv1.Role_ROLE_NAVIGATOR || !strings.HasPrefix(enr.GetToken(), study.TokenPrefix) {
			t.Fatalf("Enroll: %v", enr)
		}
		// At least 256 random bits after the device id.
		if secret := strings.Split(enr.GetToken(), ".")[2]; len(secret) < 43 {
			t.Fatalf("token secret %q is shorter than 256 bits", secret)
		}
		// The token works, and the store holds only its hash.
		_, err = ts.clients(bearer(enr.GetToken())).sync.Pull(ctx, &diaryv1.PullRequest{})
		wantCode(t, err, 0)
		var n int
		secret := strings.Split(enr.GetToken(), ".")[2]
		contains := `instr(secret_hash, ?) > 0`
		if onPostgres(db) {
			contains = `position(?::bytea in secret_hash) > 0`
		}
		if err := rawDB(db).QueryRow(`SELECT count(*) FROM devices WHERE `+contains, []byte(secret)).Scan(&n); err != nil || n != 0 {
			t.Fatalf("the token's secret is stored (%d rows, %v)", n, err)
		}
	})

	t.Run("ErrUsedTwice", func(t *testing.T) {
		c := issue(0)
		_, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: c})
		wantCode(t, err, 0)
		_, err = anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: c})
		wantCode(t, err, connect.CodeUnauthenticated)
		if !strings.Contains(err.Error(), "already used") {
			t.Fatalf("message %q does not say the code was used", err)
		}
	})

	t.Run("ErrExpired", func(t *testing.T) {
		tests := []struct {
			name    string
			ttl     time.Duration
			wait    time.Duration
			expired bool
		}{
			{"default ttl, just in time", 0, study.DefaultCodeTTL - time.Millisecond, false},
			{"default ttl, too late", 0, study.DefaultCodeTTL, true},
			{"one hour, too late", time.Hour, time.Hour + time.Second, true},
			{"a week, after six days", study.MaxCodeTTL, 6 * 24 * time.Hour, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := issue(tt.ttl)
				clock.Advance(tt.wait)
				_, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: c})
				if !tt.expired {
					wantCode(t, err, 0)
					return
				}
				wantCode(t, err, connect.CodeUnauthenticated)
				if !strings.Contains(err.Error(), "expired") {
					t.Fatalf("message %q does not say the code expired", err)
				}
			})
		}
	})

	t.Run("ErrTTLOutOfRange", func(t *testing.T) {
		for _, ttl := range []time.Duration{time.Second, study.MaxCodeTTL + time.Hour, -time.Hour} {
			_, err := admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A", Ttl: durationpb.New(ttl)})
			wantCode(t, err, connect.CodeInvalidArgument)
		}
	})
}

// TestEnroll_RateLimit checks that wrong codes from one address are slowed
// down, with a message that says when to try again.
func TestEnroll_RateLimit(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	db := MustOpenDBWith(t, storetest.Options{Now: clock.Now, EnrollLimit: study.AttemptLimit{Burst: 3, Refill: time.Hour}})
	ts := newTestServer(t, Config{Store: db})
	anon := ts.clients("")
	MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	good, _, err := db.IssueEnrollmentCode(ctx, "PN-A", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		// Good codes never count against the limit.
		for range 5 {
			c, _, err := db.IssueEnrollmentCode(ctx, "PN-A", 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: c})
			wantCode(t, err, 0)
		}
	})
	t.Run("ErrRateLimited", func(t *testing.T) {
		for _, wrong := range []string{"AAAAA-AAAAA", "too short", strings.Repeat("A", 100)} {
			_, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: wrong})
			wantCode(t, err, connect.CodeUnauthenticated)
		}
		// The fourth try is refused whatever the code, with a message
		// that says what to do.
		_, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: good})
		wantCode(t, err, connect.CodeResourceExhausted)
		var ce *connect.Error
		if !errors.As(err, &ce) || !strings.Contains(ce.Message(), "too many wrong enrolment codes") || !strings.Contains(ce.Message(), "try again in") {
			t.Fatalf("message %q is not clear", err)
		}
		// The limit is per address: another one may still enrol.
		tr := ts.http.Client().Transport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext
		other, _, err := db.IssueEnrollmentCode(ctx, "PN-A", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = ts.clientsOver(&http.Client{Transport: tr}, "").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: other})
		wantCode(t, err, 0)
		// One attempt comes back after the refill interval.
		clock.Advance(time.Hour)
		_, err = anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: good})
		wantCode(t, err, 0)
	})
}
