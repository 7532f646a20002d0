package study

import "github.com/diarysync/diarysync/syncengine"

// The errors below are the answers every store gives for the same
// situation, so that a caller reads the same message whichever engine
// keeps the study.

// ErrUnknownUser is the error for a study code no user has.
func ErrUnknownUser(code string) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "no user has the study code %q", code)
}

// ErrCodeInUse is the error for a new user whose study code is taken
// (ignoring case).
func ErrCodeInUse(code string) error {
	return syncengine.Errorf(syncengine.EEXISTS, "the study code %q is already in use", code)
}

// CheckCodeIssuable refuses an enrolment code for a deactivated user
// (ECONFLICT): the code could never be used.
func CheckCodeIssuable(u *User) error {
	if !u.Active {
		return syncengine.Errorf(syncengine.ECONFLICT, "user %s is deactivated", u.StudyCode)
	}
	return nil
}

// ErrNoAdmin is the error for an administrator's code asked of a store
// that has no active administrator.
var ErrNoAdmin = syncengine.Errorf(syncengine.ENOTFOUND, "this study has no active administrator; start the server once to create one")

// AdminStudyCode is the study code of the first administrator, whom a
// server creates on its first start.
const AdminStudyCode = "ADMIN"

// CheckDevicePublicID refuses a device id that is not one (EINVALID),
// without echoing more than a few dozen bytes of it.
func CheckDevicePublicID(publicID string) error {
	if !isUUID(publicID) {
		shown := publicID
		if len(shown) > 40 {
			shown = shown[:40] + "…"
		}
		return syncengine.Errorf(syncengine.EINVALID, "%q is not a device id", shown)
	}
	return nil
}

// ErrUnknownDevice is the error for a device id no device has.
func ErrUnknownDevice(publicID string) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "no device has the id %s", publicID)
}

// ErrUnknownEntry is the error for erasing an entry the store never had.
func ErrUnknownEntry(id syncengine.EntryID) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "the server has no entry %s (an entry never synced cannot be erased here; erase it on the device)", id)
}

// ErrWaveExists is the error for a new wave whose number is taken.
func ErrWaveExists(number uint32) error {
	return syncengine.Errorf(syncengine.EEXISTS, "wave %d already exists", number)
}

// ErrUnknownWave is the error for a wave number no wave has.
func ErrUnknownWave(number uint32) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "there is no wave %d", number)
}

// isUUID reports whether s is a UUID in its canonical text form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}
