package client

import (
	"context"
	"errors"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// TestApproval follows a new device of a navigator who already has a
// phone: it waits, writes entries nobody sees, the phone sees the request
// at its next sync and approves it, and then both hold the same diary.
func TestApproval(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mine := mustCreate(t, phone, Draft{Title: "on the phone"})
	mustSync(t, phone)

	tablet := MustOpen(t, Options{})
	p, err := tablet.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "tablet")
	if err != nil {
		t.Fatal(err)
	}
	st, _ := tablet.Status(ctx)
	if st.DeviceState != study.DevicePending {
		t.Fatalf("the tablet is %s, want pending", st.DeviceState)
	}
	// Its body is queued as a text edit, but a pending device cannot
	// pull to hear whether the server merges text: it sends the whole
	// text, of an entry nobody else sees yet.
	written := mustCreate(t, tablet, Draft{Title: "on the tablet, waiting", Body: "Met J. at the hostel."})
	r, err := tablet.SyncReport(ctx)
	if err != nil || !r.AwaitingApproval || r.Accepted == 0 || r.Received != 0 || r.Pending != 0 {
		t.Fatalf("the pending tablet's sync: %+v, %v", r, err)
	}
	edited := "Met J. at the hostel. Bring the form."
	if err := tablet.Update(ctx, written, Edit{Body: &edited}); err != nil {
		t.Fatal(err)
	}
	if r, err := tablet.SyncReport(ctx); err != nil || !r.AwaitingApproval || r.Accepted != 1 || r.Pending != 0 {
		t.Fatalf("the pending tablet's sync of a body edit: %+v, %v", r, err)
	}
	if _, err := tablet.Get(ctx, mine); err == nil {
		t.Fatal("the pending tablet holds the phone's entry")
	}
	if _, _, err := tablet.Devices(ctx, ""); err == nil {
		t.Fatal("a pending device listed the account's devices")
	}

	// The phone sees the request at its next sync, not before.
	r, err = phone.SyncReport(ctx)
	if err != nil || r.Received != 0 {
		t.Fatalf("the phone pulled the pending tablet's entry: %+v, %v", r, err)
	}
	st, _ = phone.Status(ctx)
	if st.AwaitingApprovalCount != 1 || len(st.AwaitingApproval) != 1 || st.AwaitingApproval[0].ID != p.DeviceID || st.AwaitingApproval[0].Name != "tablet" {
		t.Fatalf("the phone's status does not show the request: %+v", st.AwaitingApproval)
	}
	devices, _, err := phone.Devices(ctx, "")
	if err != nil || len(devices) != 2 || !devices[1].This || devices[0].State != study.DevicePending {
		t.Fatalf("the phone's device list: %+v, %v", devices, err)
	}

	if _, err := phone.ApproveDevice(ctx, p.DeviceID); err != nil {
		t.Fatal(err)
	}
	if st, _ = phone.Status(ctx); st.AwaitingApprovalCount != 0 || len(st.AwaitingApproval) != 0 {
		t.Fatalf("an answered request is still shown: %+v", st.AwaitingApproval)
	}
	mustSync(t, tablet)
	mustSync(t, phone)
	if st, _ = tablet.Status(ctx); st.DeviceState != study.DeviceActive {
		t.Fatalf("the approved tablet is %s", st.DeviceState)
	}
	if e, err := phone.Get(ctx, written); err != nil || e.Body != edited {
		t.Fatalf("the phone does not have the tablet's entry after approval: %+v, %v", e, err)
	}
	assertConverged(t, phone, tablet)

	// Activity shows who issued the tablet's code and who approved it.
	acts, _, err := phone.Activity(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, a := range acts {
		seen[a.Action] = a.Actor
	}
	if seen["device.approve"] != "PN-A" || seen["device.enrol"] == "" {
		t.Fatalf("activity: %+v", acts)
	}
}

// TestDeny: a denied device is told so at its next sync, wipes itself, and
// what it wrote while waiting reaches nobody.
func TestDeny(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mustSync(t, phone)
	stranger := MustOpen(t, Options{})
	p, err := stranger.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "not mine")
	if err != nil {
		t.Fatal(err)
	}
	planted := mustCreate(t, stranger, Draft{Title: "planted", ShareSupervisor: true})
	mustSync(t, stranger)
	mustSync(t, phone)
	if _, err := phone.DenyDevice(ctx, p.DeviceID); err != nil {
		t.Fatal(err)
	}
	err = stranger.Sync(ctx)
	var re *RevokedError
	if !errors.As(err, &re) || re.Reason != study.RevokedDenied {
		t.Fatalf("the denied device's sync: %v", err)
	}
	mustSync(t, phone)
	if _, err := phone.Get(ctx, planted); err == nil {
		t.Fatal("the phone holds the denied device's entry")
	}
	assertConverged(t, phone)
}

// TestReplace: enrolling an enrolled profile again replaces its device:
// what the old device had not synced is pushed first, the new device is
// approved by the old one, the old one is revoked, and nothing is lost.
func TestReplace(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mustCreate(t, nav, Draft{Title: "synced"})
	mustSync(t, nav)
	unsynced := mustCreate(t, nav, Draft{Title: "not synced yet"})
	old, _ := nav.Profile()

	if _, err := nav.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "again"); err == nil {
		t.Fatal("an enrolled profile enrolled again without replacing its device")
	}
	p, err := nav.Replace(ctx, ts.code(t, study.RoleNavigator, "PN-A"), "replacement")
	if err != nil {
		t.Fatal(err)
	}
	if p.DeviceID == old.DeviceID || p.Replica == old.Replica {
		t.Fatalf("the profile kept its old device: %+v", p)
	}
	st, _ := nav.Status(ctx)
	if st.DeviceState != study.DeviceActive || st.Pending != 0 {
		t.Fatalf("after replacing: %+v", st)
	}
	devices, _, err := nav.Devices(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		if d.ID == old.DeviceID && (d.State != study.DeviceRevoked || d.Revocation != study.RevokedSelf) {
			t.Fatalf("the old device is %s (%s)", d.State, d.Revocation)
		}
		if d.ID == p.DeviceID && (!d.This || d.ApprovedBy != old.DeviceID) {
			t.Fatalf("the new device: %+v", d)
		}
	}
	mustSync(t, nav)
	if e, err := nav.Get(ctx, unsynced); err != nil || e.Pending != 0 {
		t.Fatalf("the unsynced entry: %+v, %v", e, err)
	}
	// A device enrolled afterwards (approved by the new one) pulls it
	// all: nothing stayed behind on the old device.
	other := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mustSync(t, other)
	if _, err := other.Get(ctx, unsynced); err != nil {
		t.Fatal(err)
	}
	assertConverged(t, nav, other)
}
