package study

import (
	"fmt"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// DeviceState is where a device is in its life; the numbers match the
// API's DeviceState.
type DeviceState int

// Device states.
const (
	// DevicePending is a device enrolled for a user who already had a
	// device: it waits for one of the user's active devices to approve
	// it. Until then it may write new entries, which reach nobody, and
	// do nothing else.
	DevicePending DeviceState = 1
	// DeviceActive is a device that may do what its user's role allows.
	DeviceActive DeviceState = 2
	// DeviceRevoked is a device whose token no longer works.
	DeviceRevoked DeviceState = 3
)

var deviceStateNames = map[DeviceState]string{DevicePending: "pending", DeviceActive: "active", DeviceRevoked: "revoked"}

// String returns the state's lowercase name.
func (s DeviceState) String() string {
	if n, ok := deviceStateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Revocation says who ended a device and how; the numbers match the
// API's RevocationReason. A revoked device is told which, so that the
// person holding it knows whether they did it themselves or someone else
// did.
type Revocation int

// Revocations.
const (
	// RevokedSelf: the device revoked itself (it was replaced by a new
	// enrolment of the same profile, or signed out).
	RevokedSelf Revocation = 1
	// RevokedByUser: the user revoked it from another of their devices.
	RevokedByUser Revocation = 2
	// RevokedByAdmin: an administrator revoked it.
	RevokedByAdmin Revocation = 3
	// RevokedByReset: an administrator reset the account, which revokes
	// every device of it.
	RevokedByReset Revocation = 4
	// RevokedDenied: the device was waiting for approval and the user
	// denied it from another of their devices.
	RevokedDenied Revocation = 5
	// RevokedDeactivated: an administrator deactivated the account.
	RevokedDeactivated Revocation = 6
)

var revocationNames = map[Revocation]string{
	RevokedSelf:        "self",
	RevokedByUser:      "user",
	RevokedByAdmin:     "admin",
	RevokedByReset:     "reset",
	RevokedDenied:      "denied",
	RevokedDeactivated: "deactivated",
}

// String returns the revocation's lowercase name.
func (r Revocation) String() string {
	if n, ok := revocationNames[r]; ok {
		return n
	}
	return fmt.Sprintf("revocation(%d)", int(r))
}

// NewDeviceState returns the state a newly enrolled device starts in.
// The first device of a user is active: nobody else could approve it.
// Once a user has ever had a device, a new one is pending until one of
// the user's active devices approves it, so that nobody (an
// administrator who issued a code included) gets at a person's entries
// without that person knowing. Revoking every device does not lift this;
// only a code that lets its device through does (codeApproved): the one
// an administrator's audited account reset issues, or the one issued at
// the server's own console.
func NewDeviceState(hadDevice, codeApproved bool) DeviceState {
	if !hadDevice || codeApproved {
		return DeviceActive
	}
	return DevicePending
}

// DeviceRecord is what a store knows of a device when it checks whether
// the device may act.
type DeviceRecord struct {
	PublicID   string
	State      DeviceState
	Revocation Revocation // when State is DeviceRevoked
	RevokedBy  string     // study code of who revoked it, or "system"
	RevokedAt  time.Time
	UserActive bool
}

// DeviceError is the error a device gets when it may not do what it asked
// because of its own state: it is revoked, its account was deactivated,
// or it waits for approval. It carries the state, so that the server can
// tell the device precisely (a revoked device wipes its replica), and it
// wraps an application error with the message a person reads.
type DeviceError struct {
	Device     string // the device's public id
	State      DeviceState
	Revocation Revocation
	RevokedBy  string
	RevokedAt  time.Time
	Err        *syncengine.Error
}

// Error implements the error interface.
func (e *DeviceError) Error() string { return e.Err.Message }

// Unwrap returns the application error, so that syncengine.ErrorCode and
// ErrorMessage see it.
func (e *DeviceError) Unwrap() error { return e.Err }

// CheckDevice returns nil if a device may authenticate (it is active or
// pending, and its user is active), and the DeviceError to give it
// otherwise. The message says who revoked the device and when.
func CheckDevice(d DeviceRecord) error {
	revoked := func(format string, args ...any) error {
		return &DeviceError{Device: d.PublicID, State: DeviceRevoked, Revocation: d.Revocation, RevokedBy: d.RevokedBy, RevokedAt: d.RevokedAt,
			Err: syncengine.Errorf(syncengine.EUNAUTHENTICATED, format, args...)}
	}
	// Deactivation revokes every device too; it is checked first because
	// asking for a new enrolment code, as a revoked device is told to,
	// cannot help a deactivated account.
	if !d.UserActive {
		return &DeviceError{Device: d.PublicID, State: DeviceRevoked, Revocation: RevokedDeactivated, RevokedBy: d.RevokedBy, RevokedAt: d.RevokedAt,
			Err: syncengine.Errorf(syncengine.EUNAUTHENTICATED, "this account was deactivated")}
	}
	if d.State != DeviceRevoked {
		return nil
	}
	on := ""
	if !d.RevokedAt.IsZero() {
		on = " on " + d.RevokedAt.UTC().Format("2006-01-02 15:04 UTC")
	}
	by := d.RevokedBy
	if by == "" {
		by = "system"
	}
	switch d.Revocation {
	case RevokedSelf:
		return revoked("this device was signed out%s (it was replaced, or signed itself out): enrol it again to use it", on)
	case RevokedByUser:
		return revoked("this device was revoked%s from another of your devices: enrol it again with a new code if that was a mistake", on)
	case RevokedDenied:
		return revoked("this device's enrolment was denied%s from another of your devices", on)
	case RevokedByReset:
		return revoked("an administrator (%s) reset this account%s, which revoked all of its devices: enrol again with the code they give you", by, on)
	case RevokedDeactivated:
		return revoked("this account was deactivated")
	}
	return revoked("this device was revoked by an administrator (%s)%s: ask an administrator for a new enrolment code", by, on)
}

// Operation is what a call does, as far as the rules that depend on a
// device's state are concerned.
type Operation int

// Operations.
const (
	// OpOther is anything that reads the study or manages it: pulling,
	// subscribing, state hashes, exports, lists, approvals, revocations,
	// administration.
	OpOther Operation = iota
	// OpPush writes changes; for a pending device, Decide lets only new
	// entries through.
	OpPush
)

// CheckOperation returns nil if the caller's device may do op now, and
// the DeviceError to give it otherwise. A device waiting for approval may
// push (new entries only, which reach nobody until it is approved, see
// Decide) and nothing else: it pulls nothing, so it learns nothing of
// the account it enrolled into until one of the user's devices consents.
func CheckOperation(who *Identity, op Operation) error {
	if !who.Pending || op == OpPush {
		return nil
	}
	return ErrAwaitingApproval(who.Device)
}

// ErrAwaitingApproval is the error a device waiting for approval gets for
// anything but a push.
func ErrAwaitingApproval(device string) error {
	return &DeviceError{Device: device, State: DevicePending, Err: syncengine.Errorf(syncengine.ECONFLICT,
		"this device is waiting for approval: on another of your devices, approve it (diary device approve %s); until then it can write new entries but receives nothing", device)}
}

// CheckApproval returns nil if approver may approve, deny or revoke
// target, a device of the user with id targetUser: the approver must be
// an active device of the same user. A device of another user is
// ENOTFOUND, as if it did not exist, so that nobody learns of other
// people's devices; a pending approver is ECONFLICT.
func CheckApproval(approver *Identity, target *Device, targetUser int64) error {
	if targetUser != approver.UserID {
		return syncengine.Errorf(syncengine.ENOTFOUND, "none of your devices has the id %s", target.PublicID)
	}
	if approver.Pending {
		return ErrAwaitingApproval(approver.Device)
	}
	return nil
}

// CheckApprovable says whether target can be approved: it returns true
// when it waits for approval, false with no error when it is active
// already (approving twice, as a retry does, changes nothing), and
// ECONFLICT for a revoked device.
func CheckApprovable(target *Device) (bool, error) {
	switch target.State {
	case DevicePending:
		return true, nil
	case DeviceActive:
		return false, nil
	}
	return false, syncengine.Errorf(syncengine.ECONFLICT, "device %s (%s) was revoked; it cannot be approved", target.PublicID, target.Name)
}

// CheckDeniable says whether target can be denied: it returns true when
// it waits for approval, false with no error when it was denied already
// (a retry), and ECONFLICT otherwise: an approved device is revoked, not
// denied.
func CheckDeniable(target *Device) (bool, error) {
	switch {
	case target.State == DevicePending:
		return true, nil
	case target.State == DeviceRevoked && target.Revocation == RevokedDenied:
		return false, nil
	case target.State == DeviceActive:
		return false, syncengine.Errorf(syncengine.ECONFLICT, "device %s (%s) is approved already: revoke it instead", target.PublicID, target.Name)
	}
	return false, syncengine.Errorf(syncengine.ECONFLICT, "device %s (%s) was revoked; it cannot be denied", target.PublicID, target.Name)
}

// MaxAwaitingApproval is the most devices waiting for approval that a
// pull answer lists; the account's device list has them all.
const MaxAwaitingApproval = 10

// Reset is what an administrator's account reset did: for a person who
// lost their only device, every device of the account is revoked and a
// one-time code is issued that enrols a device without approval.
type Reset struct {
	User           *User
	DevicesRevoked int
	Code           string
	Expires        time.Time
}
