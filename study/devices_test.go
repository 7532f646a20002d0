package study

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

func TestNewDeviceState(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		hadDevice, codeApproved bool
		want                    DeviceState
	}{
		{"FirstDevice", false, false, DeviceActive},
		{"FirstDeviceApprovedCode", false, true, DeviceActive},
		// Revoking every device does not lift this: the user has had a
		// device, so the next one waits.
		{"LaterDevice", true, false, DevicePending},
		{"LaterDeviceAfterReset", true, true, DeviceActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NewDeviceState(tc.hadDevice, tc.codeApproved); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCheckDevice(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)
	t.Run("OK", func(t *testing.T) {
		for _, s := range []DeviceState{DeviceActive, DevicePending} {
			if err := CheckDevice(DeviceRecord{PublicID: "d", State: s, UserActive: true}); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	})
	// Each way a device can end is told apart, so the person holding it
	// knows whether they did it, someone else did, and who.
	for _, tc := range []struct {
		name   string
		rec    DeviceRecord
		reason Revocation
		want   string
	}{
		{"ErrSelf", DeviceRecord{State: DeviceRevoked, Revocation: RevokedSelf, RevokedBy: "PN-A", RevokedAt: at, UserActive: true}, RevokedSelf, "signed out on 2026-03-02 09:30 UTC"},
		{"ErrUser", DeviceRecord{State: DeviceRevoked, Revocation: RevokedByUser, RevokedBy: "PN-A", RevokedAt: at, UserActive: true}, RevokedByUser, "from another of your devices"},
		{"ErrDenied", DeviceRecord{State: DeviceRevoked, Revocation: RevokedDenied, RevokedBy: "PN-A", RevokedAt: at, UserActive: true}, RevokedDenied, "denied"},
		{"ErrAdmin", DeviceRecord{State: DeviceRevoked, Revocation: RevokedByAdmin, RevokedBy: "ADMIN", RevokedAt: at, UserActive: true}, RevokedByAdmin, "revoked by an administrator (ADMIN)"},
		{"ErrReset", DeviceRecord{State: DeviceRevoked, Revocation: RevokedByReset, RevokedBy: "ADMIN", RevokedAt: at, UserActive: true}, RevokedByReset, "an administrator (ADMIN) reset this account"},
		{"ErrDeactivated", DeviceRecord{State: DeviceRevoked, Revocation: RevokedByAdmin, RevokedBy: "ADMIN", UserActive: false}, RevokedDeactivated, "deactivated"},
		// A deactivated account is told so, not to ask for a new code.
		{"ErrDeactivatedActiveDevice", DeviceRecord{State: DeviceActive}, RevokedDeactivated, "this account was deactivated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.rec.PublicID = "dev-1"
			err := CheckDevice(tc.rec)
			var de *DeviceError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DeviceError", err)
			}
			if syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED || de.State != DeviceRevoked || de.Revocation != tc.reason || de.Device != "dev-1" {
				t.Fatalf("got code %s, %+v", syncengine.ErrorCode(err), de)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("message %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestCheckOperation(t *testing.T) {
	active := *navigator
	pending := *navigator
	pending.Pending, pending.Device = true, "dev-pending"
	t.Run("OK", func(t *testing.T) {
		for _, op := range []Operation{OpPush, OpOther} {
			if err := CheckOperation(&active, op); err != nil {
				t.Fatalf("active device, op %d: %v", op, err)
			}
		}
		if err := CheckOperation(&pending, OpPush); err != nil {
			t.Fatalf("a pending device may push: %v", err)
		}
	})
	t.Run("ErrPending", func(t *testing.T) {
		err := CheckOperation(&pending, OpOther)
		var de *DeviceError
		if !errors.As(err, &de) || de.State != DevicePending || syncengine.ErrorCode(err) != syncengine.ECONFLICT {
			t.Fatalf("got %v", err)
		}
		if !strings.Contains(err.Error(), "diary device approve dev-pending") {
			t.Fatalf("message %q does not say how to approve", err)
		}
	})
}

func TestCheckApproval(t *testing.T) {
	mine := &Device{PublicID: "d2", Name: "tablet", State: DevicePending}
	t.Run("OK", func(t *testing.T) {
		if err := CheckApproval(navigator, mine, navigator.UserID); err != nil {
			t.Fatal(err)
		}
		if ok, err := CheckApprovable(mine); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if ok, err := CheckDeniable(mine); !ok || err != nil {
			t.Fatal(ok, err)
		}
	})
	t.Run("ErrOtherUser", func(t *testing.T) {
		// Another person's device is as if it did not exist.
		err := CheckApproval(navigator, mine, navigator.UserID+1)
		if syncengine.ErrorCode(err) != syncengine.ENOTFOUND || !strings.Contains(err.Error(), "none of your devices") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrApproverPending", func(t *testing.T) {
		p := *navigator
		p.Pending = true
		if err := CheckApproval(&p, mine, navigator.UserID); syncengine.ErrorCode(err) != syncengine.ECONFLICT {
			t.Fatalf("a pending device approved another: %v", err)
		}
	})
	t.Run("OKAgain", func(t *testing.T) {
		// A retry of an approval or a denial that took effect is no error.
		d := *mine
		d.State = DeviceActive
		if ok, err := CheckApprovable(&d); ok || err != nil {
			t.Fatalf("approving an approved device: %v, %v", ok, err)
		}
		d.State, d.Revocation = DeviceRevoked, RevokedDenied
		if ok, err := CheckDeniable(&d); ok || err != nil {
			t.Fatalf("denying a denied device: %v, %v", ok, err)
		}
	})
	t.Run("ErrNotPending", func(t *testing.T) {
		d := *mine
		d.State, d.Revocation = DeviceRevoked, RevokedByAdmin
		if _, err := CheckApprovable(&d); syncengine.ErrorCode(err) != syncengine.ECONFLICT {
			t.Fatalf("approving a revoked device: %v", err)
		}
		if _, err := CheckDeniable(&d); syncengine.ErrorCode(err) != syncengine.ECONFLICT {
			t.Fatalf("denying a revoked device: %v", err)
		}
		d.State = DeviceActive
		if _, err := CheckDeniable(&d); syncengine.ErrorCode(err) != syncengine.ECONFLICT {
			t.Fatalf("denying an approved device: %v", err)
		}
	})
}

func TestCheckCodeFor(t *testing.T) {
	if err := CheckCodeFor("PN-A", ""); err != nil {
		t.Fatal(err)
	}
	if err := CheckCodeFor("PN-A", "pn-a"); err != nil {
		t.Fatal(err)
	}
	err := CheckCodeFor("PN-B", "PN-A")
	if syncengine.ErrorCode(err) != syncengine.ECONFLICT || !strings.Contains(err.Error(), "not for PN-A") || strings.Contains(err.Error(), "PN-B") {
		t.Fatalf("got %v: want a conflict that does not name the code's user", err)
	}
}

// TestDecide_Pending checks what a device waiting for approval may write:
// new entries, held back from everyone, and its own held entries; never
// an entry that existed before it. Nobody else writes a held entry.
func TestDecide_Pending(t *testing.T) {
	pending := *navigator
	pending.Pending, pending.DeviceID = true, 101
	other := *navigator // an active device of the same navigator
	existing := func() *Target {
		return &Target{Exists: true, Owner: navigator.UserID, Entry: &syncengine.Entry{ID: entryID}, Supervisors: []int64{supervisor.UserID}}
	}
	held := func() *Target {
		t := existing()
		t.HeldBy = pending.DeviceID
		return t
	}
	fresh := &Target{Owner: navigator.UserID, Entry: &syncengine.Entry{ID: entryID}}
	for _, tc := range []struct {
		name   string
		who    *Identity
		t      *Target
		apply  bool
		hold   bool
		reason Refusal
	}{
		{"OKNewEntryHeld", &pending, fresh, true, true, 0},
		{"OKOwnHeldEntry", &pending, held(), true, true, 0},
		{"OKActiveDeviceNewEntry", &other, fresh, true, false, 0},
		{"ErrExistingEntry", &pending, existing(), false, false, RefusedAwaitingApproval},
		{"ErrHeldForAnother", &other, held(), false, false, RefusedNotPermitted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := change(tc.who, syncengine.FieldTitle, now)
			d := Decide(tc.who, &c, tc.t, now)
			if d.Apply != tc.apply || d.Hold != tc.hold || d.Result.Reason != tc.reason {
				t.Fatalf("got %+v", d)
			}
			if !tc.apply && !d.Remember {
				// After approval the same change would be accepted: a
				// late copy must get the refusal the device already has.
				t.Fatal("a refusal that depends on the device's state is not remembered")
			}
		})
	}
	t.Run("ErrSupervisorFeedbackOnHeld", func(t *testing.T) {
		tg := held()
		tg.Entry.ShareSupervisor = syncengine.Flag{Value: true, Stamp: syncengine.Stamp{Clock: 1, Replica: navReplica}}
		tg.Entry.Created = 1
		c := change(supervisor, syncengine.FieldFeedbackBody, now)
		if d := Decide(supervisor, &c, tg, now); d.Apply {
			t.Fatalf("a supervisor wrote feedback on an entry held back for a pending device: %+v", d)
		}
	})
	t.Run("OKRetryOfHeld", func(t *testing.T) {
		// A retry keeps its answer, whatever the device's state now.
		tg := existing()
		tg.Known = true
		c := change(&pending, syncengine.FieldTitle, now)
		if d := Decide(&pending, &c, tg, now); d.Result.Outcome != OutcomeDuplicate {
			t.Fatalf("got %+v", d)
		}
	})
}
