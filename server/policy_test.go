package server

import (
	"context"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// rpcCall is a harmless call of one procedure: it changes nothing even
// when allowed. want is what a caller the policy lets through gets.
type rpcCall struct {
	want connect.Code // 0: success
	call func(ctx context.Context, c *clients) error
}

// rpcCalls has one call for every procedure of the API. TestPolicy fails
// when a procedure is missing here, so a new RPC cannot ship untested.
var rpcCalls = map[string]rpcCall{
	diaryv1connect.SyncServicePushProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.sync.Push(ctx, &diaryv1.PushRequest{})
		return err
	}},
	diaryv1connect.SyncServicePullProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.sync.Pull(ctx, &diaryv1.PullRequest{})
		return err
	}},
	diaryv1connect.SyncServiceSubscribeProcedure: {0, func(ctx context.Context, c *clients) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		s, err := c.sync.Subscribe(ctx, &diaryv1.SubscribeRequest{})
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Receive() {
			return nil
		}
		return s.Err()
	}},
	diaryv1connect.SyncServiceGetStateHashProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{})
		return err
	}},
	diaryv1connect.SyncServiceMarkReadProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.sync.MarkRead(ctx, &diaryv1.MarkReadRequest{})
		return err
	}},
	// A device name over the limit is refused before the code is looked
	// at, so the call neither enrols nor counts as a wrong guess.
	diaryv1connect.DeviceServiceEnrollProcedure: {connect.CodeResourceExhausted, func(ctx context.Context, c *clients) error {
		_, err := c.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: "ABCDE-FGHJK", DeviceName: strings.Repeat("x", study.MaxDeviceNameBytes+1)})
		return err
	}},
	diaryv1connect.AdminServiceCreateUserProcedure: {connect.CodeInvalidArgument, func(ctx context.Context, c *clients) error {
		_, err := c.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "not a code!", Role: diaryv1.Role_ROLE_NAVIGATOR})
		return err
	}},
	diaryv1connect.AdminServiceListUsersProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{})
		return err
	}},
	diaryv1connect.AdminServiceDeactivateUserProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "NOBODY"})
		return err
	}},
	diaryv1connect.AdminServiceAssignNavigatorProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "NOBODY", NavigatorCode: "NOBODY-2"})
		return err
	}},
	diaryv1connect.AdminServiceUnassignNavigatorProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.UnassignNavigator(ctx, &diaryv1.UnassignNavigatorRequest{SupervisorCode: "NOBODY", NavigatorCode: "NOBODY-2"})
		return err
	}},
	diaryv1connect.AdminServiceListAssignmentsProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ListAssignments(ctx, &diaryv1.ListAssignmentsRequest{})
		return err
	}},
	diaryv1connect.AdminServiceIssueEnrollmentCodeProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "NOBODY"})
		return err
	}},
	diaryv1connect.AdminServiceListDevicesProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{})
		return err
	}},
	diaryv1connect.AdminServiceRevokeDeviceProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: uuid.NewString()})
		return err
	}},
	diaryv1connect.AdminServiceCreateWaveProcedure: {connect.CodeInvalidArgument, func(ctx context.Context, c *clients) error {
		_, err := c.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 0, Label: "x", StartDate: "2026-01-01", EndDate: "2026-01-02"}})
		return err
	}},
	diaryv1connect.AdminServiceUpdateWaveProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.UpdateWave(ctx, &diaryv1.UpdateWaveRequest{Wave: &diaryv1.Wave{Number: 999, Label: "x", StartDate: "2026-01-01", EndDate: "2026-01-02"}})
		return err
	}},
	diaryv1connect.AdminServiceListWavesProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{})
		return err
	}},
	diaryv1connect.AdminServiceDeleteWaveDatesProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.DeleteWaveDates(ctx, &diaryv1.DeleteWaveDatesRequest{Number: 1, NavigatorCode: "NOBODY"})
		return err
	}},
	diaryv1connect.AdminServiceGetRedactionProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.GetRedaction(ctx, &diaryv1.GetRedactionRequest{})
		return err
	}},
	diaryv1connect.AdminServiceUpdateRedactionProcedure: {connect.CodeInvalidArgument, func(ctx context.Context, c *clients) error {
		_, err := c.admin.UpdateRedaction(ctx, &diaryv1.UpdateRedactionRequest{Enabled: true, Patterns: []*diaryv1.RedactionPattern{{Name: "x", Marker: "[x]", Expression: "("}}})
		return err
	}},
	diaryv1connect.AdminServiceAddRedactionTermProcedure: {connect.CodeInvalidArgument, func(ctx context.Context, c *clients) error {
		_, err := c.admin.AddRedactionTerm(ctx, &diaryv1.AddRedactionTermRequest{Term: &diaryv1.RedactionTerm{Term: " "}})
		return err
	}},
	diaryv1connect.AdminServiceRemoveRedactionTermProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.RemoveRedactionTerm(ctx, &diaryv1.RemoveRedactionTermRequest{Term: "nobody on the list"})
		return err
	}},
	diaryv1connect.AdminServiceListRedactionTermsProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ListRedactionTerms(ctx, &diaryv1.ListRedactionTermsRequest{})
		return err
	}},
	diaryv1connect.AdminServiceEraseEntryProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: syncengine.NewEntryID().String()})
		return err
	}},
	diaryv1connect.AdminServiceEraseNavigatorProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.EraseNavigator(ctx, &diaryv1.EraseNavigatorRequest{StudyCode: "NOBODY"})
		return err
	}},
	diaryv1connect.AdminServiceListAuditEventsProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{})
		return err
	}},
	diaryv1connect.AdminServiceResetUserProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.admin.ResetUser(ctx, &diaryv1.ResetUserRequest{StudyCode: "NOBODY"})
		return err
	}},
	diaryv1connect.DeviceServiceListMyDevicesProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.device.ListMyDevices(ctx, &diaryv1.ListMyDevicesRequest{})
		return err
	}},
	diaryv1connect.DeviceServiceApproveDeviceProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: uuid.NewString()})
		return err
	}},
	diaryv1connect.DeviceServiceDenyDeviceProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.device.DenyDevice(ctx, &diaryv1.DenyDeviceRequest{DeviceId: uuid.NewString()})
		return err
	}},
	diaryv1connect.DeviceServiceRevokeMyDeviceProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.device.RevokeMyDevice(ctx, &diaryv1.RevokeMyDeviceRequest{DeviceId: uuid.NewString()})
		return err
	}},
	diaryv1connect.DeviceServiceListMyActivityProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.device.ListMyActivity(ctx, &diaryv1.ListMyActivityRequest{})
		return err
	}},
	diaryv1connect.ResearchServiceListWavesProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.research.ListWaves(ctx, &diaryv1.ResearchServiceListWavesRequest{})
		return err
	}},
	diaryv1connect.ResearchServicePreviewExportProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		_, err := c.research.PreviewExport(ctx, &diaryv1.PreviewExportRequest{Export: &diaryv1.ExportWaveRequest{Wave: 999, Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV}})
		return err
	}},
	diaryv1connect.ResearchServiceListExportsProcedure: {0, func(ctx context.Context, c *clients) error {
		_, err := c.research.ListExports(ctx, &diaryv1.ListExportsRequest{})
		return err
	}},
	diaryv1connect.ResearchServiceExportWaveProcedure: {connect.CodeNotFound, func(ctx context.Context, c *clients) error {
		s, err := c.research.ExportWave(ctx, &diaryv1.ExportWaveRequest{Wave: 999, Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV})
		if err != nil {
			return err
		}
		defer s.Close()
		for s.Receive() {
		}
		return s.Err()
	}},
}

// apiProcedures returns every procedure of every service in the diary.v1
// package, as registered by the generated code.
func apiProcedures(tb testing.TB) []string {
	tb.Helper()
	var out []string
	protoregistry.GlobalFiles.RangeFilesByPackage("diary.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			s := fd.Services().Get(i)
			for j := range s.Methods().Len() {
				out = append(out, "/"+string(s.FullName())+"/"+string(s.Methods().Get(j).Name()))
			}
		}
		return true
	})
	if len(out) == 0 {
		tb.Fatal("no diary.v1 services registered")
	}
	slices.Sort(out)
	return out
}

// TestPolicy checks, for every procedure of the API, every role and every
// kind of bad credential, that the server lets through exactly the
// callers the policy table names, over Connect and gRPC.
func TestPolicy(t *testing.T) {
	procedures := apiProcedures(t)

	t.Run("OK", func(t *testing.T) {
		for _, p := range procedures {
			if _, ok := policy[p]; !ok {
				t.Errorf("%s has no entry in the policy table: nobody can call it", p)
			}
			if _, ok := rpcCalls[p]; !ok {
				t.Errorf("%s has no call in rpcCalls: its access is untested", p)
			}
		}
		for p := range policy {
			if !slices.Contains(procedures, p) {
				t.Errorf("policy names %s, which the API does not have", p)
			}
		}
	})

	ts := newTestServer(t, Config{})
	ctx := context.Background()
	auth := map[string]string{
		"none":          "",
		"malformed":     "Bearer not-a-token",
		"wrong scheme":  "Basic dXNlcjpwYXNz",
		"unknown token": bearer(study.TokenPrefix + uuid.NewString() + "." + strings.Repeat("A", 43)),
	}
	for _, r := range allRoles {
		auth[r.String()] = bearer(MustEnrollDevice(t, ts.DB, r, "U-"+strings.ToUpper(r.String())).Token)
	}
	revoked := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-REVOKED")
	if _, err := ts.DB.RevokeDevice(ctx, revoked.Device); err != nil {
		t.Fatal(err)
	}
	auth["revoked token"] = bearer(revoked.Token)
	stolen := MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN-2")
	// The right device id with another device's secret.
	auth["wrong secret"] = bearer(study.TokenPrefix + stolen.Device + "." + strings.Split(revoked.Token, ".")[2])
	// A navigator's second device, waiting for approval: it may push
	// (new entries only) and call nothing else.
	MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-PENDING")
	auth["pending navigator"] = bearer(MustEnrollPending(t, ts.DB, "PN-PENDING").Token)

	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			for _, p := range procedures {
				call, ok := rpcCalls[p]
				if !ok {
					continue // reported above
				}
				t.Run(strings.TrimPrefix(p, "/diary.v1."), func(t *testing.T) {
					for caller, header := range auth {
						want := call.want
						role, isRole := roleNamed(caller)
						pending := caller == "pending navigator"
						if pending {
							role, isRole = study.RoleNavigator, true
						}
						switch {
						case publicProcedures[p]:
						case !isRole:
							want = connect.CodeUnauthenticated
						case !allowed(p, role):
							want = connect.CodePermissionDenied
						case pending && operations[p] != study.OpPush:
							want = connect.CodeFailedPrecondition
						}
						name := caller + "/OK"
						if want != call.want {
							name = caller + "/Err" + strings.ReplaceAll(want.String(), "_", "")
						}
						t.Run(name, func(t *testing.T) {
							err := call.call(ctx, ts.clients(header, proto.opts...))
							wantCode(t, err, want)
						})
					}
				})
			}
		})
	}
}

func roleNamed(name string) (study.Role, bool) {
	for _, r := range allRoles {
		if r.String() == name {
			return r, true
		}
	}
	return 0, false
}

// TestPolicy_Laws checks the policy table against the product's rules,
// so that widening access is a deliberate change to this test too.
func TestPolicy_Laws(t *testing.T) {
	for p, roles := range policy {
		service := strings.Split(p, "/")[1]
		switch service {
		case "diary.v1.SyncService":
			// Administrators manage people and devices; they see no
			// diary content.
			if slices.Contains(roles, study.RoleAdmin) {
				t.Errorf("%s is open to administrators", p)
			}
		case "diary.v1.AdminService":
			if !slices.Equal(roles, []study.Role{study.RoleAdmin}) {
				t.Errorf("%s is open to %v, want administrators only", p, roles)
			}
		case "diary.v1.ResearchService":
			if !slices.Equal(roles, []study.Role{study.RoleResearcher}) {
				t.Errorf("%s is open to %v, want researchers only", p, roles)
			}
		}
	}
	if got := policy[diaryv1connect.SyncServicePushProcedure]; slices.Contains(got, study.RoleResearcher) {
		t.Error("researchers may push")
	}
	for p := range publicProcedures {
		if p != diaryv1connect.DeviceServiceEnrollProcedure {
			t.Errorf("%s needs no token", p)
		}
	}
}
