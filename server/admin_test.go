package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
)

// TestAdmin_Pages checks that every admin list pages through everything
// once, in order, whatever the page size.
func TestAdmin_Pages(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	admin := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN").Token))
	for i := range 5 {
		MustEnrollDevice(t, ts.DB, study.RoleNavigator, fmt.Sprintf("PN-%d", i))
		MustEnrollDevice(t, ts.DB, study.RoleSupervisor, fmt.Sprintf("SUP-%d", i))
		MustAssign(t, ts.DB, fmt.Sprintf("SUP-%d", i%2), fmt.Sprintf("PN-%d", i))
		_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: uint32(i + 1), Label: fmt.Sprint("Wave ", i+1), StartDate: fmt.Sprintf("202%d-01-01", i), EndDate: fmt.Sprintf("202%d-12-31", i)}})
		wantCode(t, err, 0)
	}
	lists := []struct {
		name string
		want string
		page func(size uint32, token string) ([]string, string, error)
	}{
		{"users", "ADMIN PN-0 PN-1 PN-2 PN-3 PN-4 SUP-0 SUP-1 SUP-2 SUP-3 SUP-4", func(size uint32, token string) ([]string, string, error) {
			resp, err := admin.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageSize: size, PageToken: token})
			var out []string
			for _, u := range resp.GetUsers() {
				out = append(out, u.GetStudyCode())
			}
			return out, resp.GetNextPageToken(), err
		}},
		{"devices", "SUP-4 PN-4 SUP-3 PN-3 SUP-2 PN-2 SUP-1 PN-1 SUP-0 PN-0 ADMIN", func(size uint32, token string) ([]string, string, error) {
			resp, err := admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{PageSize: size, PageToken: token})
			var out []string
			for _, d := range resp.GetDevices() {
				out = append(out, d.GetStudyCode())
			}
			return out, resp.GetNextPageToken(), err
		}},
		{"assignments", "SUP-0:PN-0 SUP-0:PN-2 SUP-0:PN-4 SUP-1:PN-1 SUP-1:PN-3", func(size uint32, token string) ([]string, string, error) {
			resp, err := admin.admin.ListAssignments(ctx, &diaryv1.ListAssignmentsRequest{PageSize: size, PageToken: token})
			var out []string
			for _, a := range resp.GetAssignments() {
				out = append(out, a.GetSupervisorCode()+":"+a.GetNavigatorCode())
			}
			return out, resp.GetNextPageToken(), err
		}},
		{"waves", "1 2 3 4 5", func(size uint32, token string) ([]string, string, error) {
			resp, err := admin.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{PageSize: size, PageToken: token})
			var out []string
			for _, w := range resp.GetWaves() {
				out = append(out, fmt.Sprint(w.GetNumber()))
			}
			return out, resp.GetNextPageToken(), err
		}},
	}
	for _, l := range lists {
		t.Run(l.name, func(t *testing.T) {
			for _, size := range []uint32{0, 1, 2, 3, 100, 5000} {
				var got []string
				token := ""
				for pages := 1; ; pages++ {
					items, next, err := l.page(size, token)
					wantCode(t, err, 0)
					if size > 0 && len(items) > int(size) {
						t.Fatalf("page size %d: page of %d", size, len(items))
					}
					got = append(got, items...)
					if next == "" {
						break
					}
					if pages > 20 {
						t.Fatalf("page size %d: pages do not end", size)
					}
					token = next
				}
				if strings.Join(got, " ") != l.want {
					t.Fatalf("page size %d: got %v, want %s", size, got, l.want)
				}
			}
			_, _, err := l.page(0, "not a token the server issued!")
			wantCode(t, err, connect.CodeInvalidArgument)
		})
	}
}

// TestAdmin_Errors checks that bad admin input gets the right code and a
// message that says what is wrong.
func TestAdmin_Errors(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	admin := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN").Token))
	MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
	_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: "Baseline", StartDate: "2026-01-01", EndDate: "2026-03-31"}})
	wantCode(t, err, 0)
	wave := func(n uint32, label, start, end string) *diaryv1.Wave {
		return &diaryv1.Wave{Number: n, Label: label, StartDate: start, EndDate: end}
	}
	tests := []struct {
		name    string
		call    func() error
		code    connect.Code
		message string
	}{
		{"ErrUserNoRole", func() error {
			_, err := admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-B"})
			return err
		}, connect.CodeInvalidArgument, "needs a role"},
		{"ErrUserBadCode", func() error {
			_, err := admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN B", Role: diaryv1.Role_ROLE_NAVIGATOR})
			return err
		}, connect.CodeInvalidArgument, "study code"},
		{"ErrUserExistsIgnoringCase", func() error {
			_, err := admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "pn-a", Role: diaryv1.Role_ROLE_NAVIGATOR})
			return err
		}, connect.CodeAlreadyExists, "already in use"},
		{"ErrUserNameTooLong", func() error {
			_, err := admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-C", Role: diaryv1.Role_ROLE_NAVIGATOR, DisplayName: strings.Repeat("n", study.MaxDisplayNameBytes+1)})
			return err
		}, connect.CodeResourceExhausted, "the limit is 128 bytes"},
		{"ErrAssignWrongRoles", func() error {
			_, err := admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "PN-A", NavigatorCode: "SUP-1"})
			return err
		}, connect.CodeInvalidArgument, "not a supervisor"},
		{"ErrAssignUnknown", func() error {
			_, err := admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-Z"})
			return err
		}, connect.CodeNotFound, `"PN-Z"`},
		{"ErrWaveOverlap", func() error {
			_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: wave(2, "Mid", "2026-03-31", "2026-06-30")})
			return err
		}, connect.CodeFailedPrecondition, "overlaps wave 1"},
		{"ErrWaveExists", func() error {
			_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: wave(1, "Again", "2027-01-01", "2027-02-01")})
			return err
		}, connect.CodeAlreadyExists, "already exists"},
		{"ErrWaveBackwards", func() error {
			_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: wave(3, "Back", "2027-02-01", "2027-01-01")})
			return err
		}, connect.CodeInvalidArgument, "before it starts"},
		{"ErrWaveBadDate", func() error {
			_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: wave(3, "Bad", "2027-02-30", "2027-03-01")})
			return err
		}, connect.CodeInvalidArgument, "wave start"},
		{"ErrWaveNoLabel", func() error {
			_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: wave(3, "  ", "2027-01-01", "2027-03-01")})
			return err
		}, connect.CodeInvalidArgument, "needs a label"},
		{"ErrWaveMissing", func() error {
			_, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{})
			return err
		}, connect.CodeInvalidArgument, "wave number"},
		{"ErrUpdateUnknownWave", func() error {
			_, err := admin.admin.UpdateWave(ctx, &diaryv1.UpdateWaveRequest{Wave: wave(9, "Nine", "2030-01-01", "2030-02-01")})
			return err
		}, connect.CodeNotFound, "no wave 9"},
		{"ErrIssueCodeUnknownUser", func() error {
			_, err := admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-Z"})
			return err
		}, connect.CodeNotFound, `"PN-Z"`},
		{"ErrRevokeBadID", func() error {
			_, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: "0000"})
			return err
		}, connect.CodeInvalidArgument, "not a device id"},
		{"ErrDeactivateLastAdmin", func() error {
			_, err := admin.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "ADMIN"})
			return err
		}, connect.CodeFailedPrecondition, "last active administrator"},
		{"ErrListDevicesUnknownUser", func() error {
			_, err := admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{StudyCode: "PN-Z"})
			return err
		}, connect.CodeNotFound, `"PN-Z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, tt.code)
			var ce *connect.Error
			if !errors.As(err, &ce) || !strings.Contains(ce.Message(), tt.message) {
				t.Fatalf("message %q does not contain %q", err, tt.message)
			}
		})
	}
}

// TestAdmin_DeactivateAdmin checks that administrators can be deactivated
// as long as one stays active, so that the study can always be managed.
func TestAdmin_DeactivateAdmin(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	first := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN").Token))
	second := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN-2").Token))
	t.Run("OK", func(t *testing.T) {
		resp, err := second.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "ADMIN"})
		wantCode(t, err, 0)
		if resp.GetUser().GetActive() || resp.GetDevicesRevoked() != 1 {
			t.Fatalf("DeactivateUser: %v", resp)
		}
		_, err = first.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{})
		wantCode(t, err, connect.CodeUnauthenticated)
		// A new code goes to the administrator still active.
		code, err := ts.DB.AdminCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		enr, err := ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: code})
		wantCode(t, err, 0)
		if enr.GetStudyCode() != "ADMIN-2" {
			t.Fatalf("admin code enrolled %s, want ADMIN-2", enr.GetStudyCode())
		}
	})
	t.Run("ErrLastAdmin", func(t *testing.T) {
		_, err := second.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "ADMIN-2"})
		wantCode(t, err, connect.CodeFailedPrecondition)
		_, err = second.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{})
		wantCode(t, err, 0)
	})
}
