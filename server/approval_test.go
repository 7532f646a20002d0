package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// deviceStatus returns the DeviceStatus detail of a Connect error, or nil.
func deviceStatus(err error) *diaryv1.DeviceStatus {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if derr != nil {
			continue
		}
		if ds, ok := v.(*diaryv1.DeviceStatus); ok {
			return ds
		}
	}
	return nil
}

// wantRevoked fails unless err tells a device it was revoked for the
// reason, by whom, in words that say so.
func wantRevoked(tb testing.TB, err error, reason diaryv1.RevocationReason, by, phrase string) {
	tb.Helper()
	wantCode(tb, err, connect.CodeUnauthenticated)
	ds := deviceStatus(err)
	if ds == nil || ds.GetState() != diaryv1.DeviceState_DEVICE_STATE_REVOKED || ds.GetRevocation() != reason || ds.GetRevokedBy() != by {
		tb.Fatalf("detail %v, want revoked for %v by %s", ds, reason, by)
	}
	if !strings.Contains(err.Error(), phrase) {
		tb.Fatalf("message %q does not say %q", err, phrase)
	}
}

// wantPending fails unless err tells a device it waits for approval.
func wantPending(tb testing.TB, err error) {
	tb.Helper()
	wantCode(tb, err, connect.CodeFailedPrecondition)
	if ds := deviceStatus(err); ds == nil || ds.GetState() != diaryv1.DeviceState_DEVICE_STATE_PENDING {
		tb.Fatalf("detail %v, want pending", ds)
	}
	if !strings.Contains(err.Error(), "waiting for approval") {
		tb.Fatalf("message %q does not say the device waits for approval", err)
	}
}

// auditRows returns the audit events with the given action, oldest first.
func auditRows(tb testing.TB, admin *clients, action string) []*diaryv1.AuditEvent {
	tb.Helper()
	resp, err := admin.admin.ListAuditEvents(context.Background(), &diaryv1.ListAuditEventsRequest{PageSize: 1000})
	wantCode(tb, err, 0)
	var out []*diaryv1.AuditEvent
	for _, e := range resp.GetEvents() {
		if e.GetAction() == action {
			out = append([]*diaryv1.AuditEvent{e}, out...)
		}
	}
	return out
}

// TestApproval reproduces the silent way into a navigator's diary: an
// administrator issues a code for an existing navigator and enrols a
// device with it. The device must learn nothing until one of the
// navigator's own devices approves it, what it writes must reach nobody
// meanwhile, the navigator must see the request, and the audit log must
// name the administrator.
func TestApproval(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	adminDev := MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN")
	admin := ts.clients(bearer(adminDev.Token))
	phoneDev := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	phone := ts.clients(bearer(phoneDev.Token))
	supDev := MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
	sup := ts.clients(bearer(supDev.Token))
	MustAssign(t, ts.DB, "SUP-1", "PN-A")
	w := newWriter(phoneDev)
	private, ch := w.newEntry("Just for me", "What I would tell nobody.", false, false)
	mustPush(t, phone, ch...)
	shared, ch := w.newEntry("For supervision", "Shared with SUP-1.", true, false)
	mustPush(t, phone, ch...)

	// The attack: a code for PN-A, used by the administrator.
	ic, err := admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
	wantCode(t, err, 0)
	enr, err := ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode(), DeviceName: "not PN-A's"})
	wantCode(t, err, 0)
	if enr.GetState() != diaryv1.DeviceState_DEVICE_STATE_PENDING {
		t.Fatalf("a second device of PN-A enrolled as %v, want pending", enr.GetState())
	}
	intruder := ts.clients(bearer(enr.GetToken()))
	intruderID, err := ts.DB.Authenticate(ctx, enr.GetToken())
	if err != nil {
		t.Fatal(err)
	}
	iw := newWriter(TestDevice{Token: enr.GetToken(), Identity: intruderID})
	var planted string

	t.Run("ErrPendingPullsNothing", func(t *testing.T) {
		_, err := intruder.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantPending(t, err)
		_, err = intruder.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{})
		wantPending(t, err)
		_, err = intruder.device.ListMyDevices(ctx, &diaryv1.ListMyDevicesRequest{})
		wantPending(t, err)
		_, err = intruder.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantPending(t, err)
		_, err = intruder.device.ListMyActivity(ctx, &diaryv1.ListMyActivityRequest{})
		wantPending(t, err)
		s, err := intruder.sync.Subscribe(ctx, &diaryv1.SubscribeRequest{})
		if err == nil {
			if s.Receive() {
				t.Fatal("a pending device opened a Subscribe stream")
			}
			err = s.Err()
		}
		wantPending(t, err)
	})

	t.Run("ErrPendingWritesExisting", func(t *testing.T) {
		// Even knowing the ids, it cannot share, delete or change them.
		for _, id := range []syncengine.EntryID{private, shared} {
			resp, err := intruder.sync.Push(ctx, &diaryv1.PushRequest{Changes: []*diaryv1.Change{
				iw.change(id, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: true}),
			}})
			wantCode(t, err, 0)
			if r := resp.GetResults()[0]; r.GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_AWAITING_APPROVAL {
				t.Fatalf("a pending device wrote an existing entry: %v", r)
			}
		}
	})

	t.Run("OKPendingWritesNewHeld", func(t *testing.T) {
		id, ch := iw.newEntry("Planted", "Written by the pending device.", true, true)
		planted = id.String()
		mustPush(t, intruder, ch...)
		// And may go on writing its own new entry.
		mustPush(t, intruder, iw.change(id, syncengine.Change{Field: syncengine.FieldTitle, Text: "Planted, edited"}))
		// Nobody sees it: not the supervisor it is shared with, not
		// PN-A's phone.
		if _, ok := pullAll(t, sup, 0).entries[planted]; ok {
			t.Fatal("the supervisor pulled an entry of a pending device")
		}
		if _, ok := pullAll(t, phone, 0).entries[planted]; ok {
			t.Fatal("PN-A's phone pulled an entry of a pending device")
		}
		hash, err := phone.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{})
		wantCode(t, err, 0)
		if hash.GetEntries() != 2 {
			t.Fatalf("PN-A's state hash covers %d entries, want 2", hash.GetEntries())
		}
	})

	t.Run("OKNavigatorSeesRequest", func(t *testing.T) {
		resp, err := phone.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantCode(t, err, 0)
		if resp.GetDevicesAwaitingApprovalCount() != 1 || len(resp.GetDevicesAwaitingApproval()) != 1 ||
			resp.GetDevicesAwaitingApproval()[0].GetDeviceId() != enr.GetDeviceId() || resp.GetDevicesAwaitingApproval()[0].GetIssuedBy() != "ADMIN" {
			t.Fatalf("PN-A's pull does not show the device waiting: %v", resp.GetDevicesAwaitingApproval())
		}
		// Only the last page of a sync says so: PN-A has two entries.
		first, err := phone.sync.Pull(ctx, &diaryv1.PullRequest{PageSize: 1})
		wantCode(t, err, 0)
		if !first.GetMore() || first.GetDevicesAwaitingApprovalCount() != 0 || len(first.GetDevicesAwaitingApproval()) != 0 {
			t.Fatalf("a first page of one entry: more %v, %d devices waiting", first.GetMore(), first.GetDevicesAwaitingApprovalCount())
		}
		last, err := phone.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: first.GetNextCursor(), PageSize: 1})
		wantCode(t, err, 0)
		if last.GetMore() || last.GetDevicesAwaitingApprovalCount() != 1 || len(last.GetDevicesAwaitingApproval()) != 1 {
			t.Fatalf("the last page: more %v, %d devices waiting", last.GetMore(), last.GetDevicesAwaitingApprovalCount())
		}
		list, err := phone.device.ListMyDevices(ctx, &diaryv1.ListMyDevicesRequest{})
		wantCode(t, err, 0)
		states := map[string]diaryv1.DeviceState{}
		for _, d := range list.GetDevices() {
			states[d.GetDeviceId()] = d.GetState()
			if d.GetCurrent() != (d.GetDeviceId() == phoneDev.Device) {
				t.Fatalf("device %s: current %v", d.GetDeviceId(), d.GetCurrent())
			}
		}
		if states[enr.GetDeviceId()] != diaryv1.DeviceState_DEVICE_STATE_PENDING || states[phoneDev.Device] != diaryv1.DeviceState_DEVICE_STATE_ACTIVE {
			t.Fatalf("ListMyDevices: %v", states)
		}
		// Another navigator's pull does not show it.
		other := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-B").Token))
		resp, err = other.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantCode(t, err, 0)
		if resp.GetDevicesAwaitingApprovalCount() != 0 {
			t.Fatal("PN-B sees PN-A's device request")
		}
	})

	t.Run("OKAuditNamesAdministrator", func(t *testing.T) {
		var row *diaryv1.AuditEvent
		for _, e := range auditRows(t, admin, "device.enrol") {
			if e.GetSubject() == enr.GetDeviceId() {
				row = e
			}
		}
		if row.GetActor() != "ADMIN" || row.GetDetails()["user"] != "PN-A" || row.GetDetails()["state"] != "pending" {
			t.Fatalf("the enrolment is audited as %v, want actor ADMIN, user PN-A", row)
		}
		// PN-A sees it in their activity, with the administrator named.
		act, err := phone.device.ListMyActivity(ctx, &diaryv1.ListMyActivityRequest{})
		wantCode(t, err, 0)
		found := false
		for _, e := range act.GetEvents() {
			if e.GetAction() == "device.enrol" && e.GetSubject() == enr.GetDeviceId() && e.GetActor() == "ADMIN" {
				found = true
			}
			if e.GetDetails()["user"] != "" && e.GetDetails()["user"] != "PN-A" {
				t.Fatalf("PN-A's activity holds another user's event: %v", e)
			}
		}
		if !found {
			t.Fatalf("PN-A's activity does not show the enrolment: %v", act.GetEvents())
		}
	})

	t.Run("ErrOtherNavigatorApproves", func(t *testing.T) {
		other := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-C").Token))
		_, err := other.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantCode(t, err, connect.CodeNotFound)
		// Nor can an administrator.
		_, err = admin.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantCode(t, err, connect.CodeNotFound)
	})

	t.Run("OKApproved", func(t *testing.T) {
		before := pullAll(t, phone, 0).cursor
		resp, err := phone.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantCode(t, err, 0)
		if d := resp.GetDevice(); d.GetState() != diaryv1.DeviceState_DEVICE_STATE_ACTIVE || d.GetApprovedBy() != phoneDev.Device {
			t.Fatalf("ApproveDevice: %v", d)
		}
		// A retry changes nothing.
		again, err := phone.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantCode(t, err, 0)
		if !again.GetDevice().GetApprovedAt().AsTime().Equal(resp.GetDevice().GetApprovedAt().AsTime()) {
			t.Fatal("approving twice moved the approval")
		}
		// What it wrote reaches its readers now, after their cursors.
		if e := pullAll(t, phone, before).entries[planted]; e.GetTitle().GetValue() != "Planted, edited" {
			t.Fatalf("PN-A's phone pulled %v after approval", e)
		}
		if _, ok := pullAll(t, sup, 0).entries[planted]; !ok {
			t.Fatal("the supervisor did not get the approved device's shared entry")
		}
		got := pullAll(t, intruder, 0).entries
		if len(got) != 3 {
			t.Fatalf("the approved device pulled %d entries, want 3", len(got))
		}
		if rows := auditRows(t, admin, "device.approve"); len(rows) != 1 || rows[0].GetActor() != "PN-A" {
			t.Fatalf("approval audited as %v", rows)
		}
	})

	t.Run("OKDenied", func(t *testing.T) {
		pend := MustEnrollPending(t, ts.DB, "PN-A")
		pc := ts.clients(bearer(pend.Token))
		pw := newWriter(pend)
		id, ch := pw.newEntry("Junk", "Written by a device PN-A will deny.", true, true)
		mustPush(t, pc, ch...)
		resp, err := phone.device.DenyDevice(ctx, &diaryv1.DenyDeviceRequest{DeviceId: pend.Device})
		wantCode(t, err, 0)
		if resp.GetDevice().GetRevocation() != diaryv1.RevocationReason_REVOCATION_REASON_DENIED {
			t.Fatalf("DenyDevice: %v", resp.GetDevice())
		}
		_, err = phone.device.DenyDevice(ctx, &diaryv1.DenyDeviceRequest{DeviceId: pend.Device})
		wantCode(t, err, 0) // a retry
		_, err = phone.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: pend.Device})
		wantCode(t, err, connect.CodeFailedPrecondition)
		_, err = pc.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantRevoked(t, err, diaryv1.RevocationReason_REVOCATION_REASON_DENIED, "PN-A", "denied")
		// Its entry is erased, and reached nobody.
		var state []byte
		if err := rawDB(ts.DB).QueryRow(`SELECT state FROM entries WHERE id = ?`, id[:]).Scan(&state); err != nil || state != nil {
			t.Fatalf("the denied device's entry is still stored (%v)", err)
		}
		if p := pullAll(t, phone, 0); p.entries[id.String()] != nil {
			t.Fatal("PN-A pulled the denied device's entry")
		}
		_, err = phone.device.DenyDevice(ctx, &diaryv1.DenyDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantCode(t, err, connect.CodeFailedPrecondition) // approved: revoke it instead
	})

	t.Run("OKRevokedByUser", func(t *testing.T) {
		_, err := phone.device.RevokeMyDevice(ctx, &diaryv1.RevokeMyDeviceRequest{DeviceId: enr.GetDeviceId()})
		wantCode(t, err, 0)
		_, err = intruder.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantRevoked(t, err, diaryv1.RevocationReason_REVOCATION_REASON_USER, "PN-A", "from another of your devices")
	})

	t.Run("OKRevokedByAdmin", func(t *testing.T) {
		d := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
		_, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: d.Device})
		wantCode(t, err, 0)
		_, err = ts.clients(bearer(d.Token)).sync.Pull(ctx, &diaryv1.PullRequest{})
		wantRevoked(t, err, diaryv1.RevocationReason_REVOCATION_REASON_ADMIN, "ADMIN", "revoked by an administrator (ADMIN)")
	})

	t.Run("OKRevokedSelf", func(t *testing.T) {
		d := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
		c := ts.clients(bearer(d.Token))
		_, err := c.device.RevokeMyDevice(ctx, &diaryv1.RevokeMyDeviceRequest{DeviceId: d.Device})
		wantCode(t, err, 0)
		_, err = c.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantRevoked(t, err, diaryv1.RevocationReason_REVOCATION_REASON_SELF, "PN-A", "signed out")
	})

	t.Run("ErrCodeForSomeoneElse", func(t *testing.T) {
		ic, err := admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-B"})
		wantCode(t, err, 0)
		_, err = ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode(), StudyCode: "PN-A"})
		wantCode(t, err, connect.CodeFailedPrecondition)
		if strings.Contains(err.Error(), "PN-B") {
			t.Fatalf("the refusal names the code's user: %v", err)
		}
		// The code was not spent.
		e, err := ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode(), StudyCode: "pn-b"})
		wantCode(t, err, 0)
		if e.GetStudyCode() != "PN-B" {
			t.Fatalf("enrolled %s", e.GetStudyCode())
		}
	})

	t.Run("OKReset", func(t *testing.T) {
		// A code issued before the reset stops working.
		stale, err := admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
		wantCode(t, err, 0)
		resp, err := admin.admin.ResetUser(ctx, &diaryv1.ResetUserRequest{StudyCode: "pn-a"})
		wantCode(t, err, 0)
		if resp.GetDevicesRevoked() != 1 || resp.GetCode() == "" {
			t.Fatalf("ResetUser: %v", resp)
		}
		_, err = phone.sync.Pull(ctx, &diaryv1.PullRequest{})
		wantRevoked(t, err, diaryv1.RevocationReason_REVOCATION_REASON_RESET, "ADMIN", "an administrator (ADMIN) reset this account")
		_, err = ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: stale.GetCode()})
		wantCode(t, err, connect.CodeUnauthenticated)
		// The reset's code enrols without approval, and the new phone
		// has the diary back.
		e, err := ts.clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: resp.GetCode(), DeviceName: "new phone"})
		wantCode(t, err, 0)
		if e.GetState() != diaryv1.DeviceState_DEVICE_STATE_ACTIVE {
			t.Fatalf("the device enrolled after a reset is %v", e.GetState())
		}
		newPhone := ts.clients(bearer(e.GetToken()))
		if got := pullAll(t, newPhone, 0).entries; got[private.String()] == nil || got[planted] == nil {
			t.Fatalf("the new phone pulled %d entries", len(got))
		}
		rows := auditRows(t, admin, "user.reset")
		if len(rows) != 1 || rows[0].GetActor() != "ADMIN" || rows[0].GetSubject() != "PN-A" {
			t.Fatalf("reset audited as %v", rows)
		}
		act, err := newPhone.device.ListMyActivity(ctx, &diaryv1.ListMyActivityRequest{PageSize: 3})
		wantCode(t, err, 0)
		actions := []string{}
		for _, ev := range act.GetEvents() {
			actions = append(actions, ev.GetActor()+" "+ev.GetAction())
		}
		if got := strings.Join(actions, ", "); got != "ADMIN device.enrol, ADMIN code.issue, ADMIN user.reset" || act.GetNextPageToken() == "" {
			t.Fatalf("PN-A's latest activity: %s (next %q)", got, act.GetNextPageToken())
		}
		// Only the audited reset lets a device through: the next one
		// waits again.
		if d := MustEnrollPending(t, ts.DB, "PN-A"); !d.Pending {
			t.Fatal("not pending")
		}
	})

	t.Run("ErrRevokingEveryDeviceIsNoReset", func(t *testing.T) {
		d := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-D")
		_, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: d.Device})
		wantCode(t, err, 0)
		MustEnrollPending(t, ts.DB, "PN-D")
	})
}
