// Package study is the application's domain beside syncengine: the people
// of a study (users, roles, devices, assignments, waves), the rules that
// decide who may write what and who may see an entry, the results a store
// hands back (push outcomes, pull pages, export snapshots), and the Store
// interface that every storage engine implements.
//
// It imports no infrastructure: no SQL, no RPC, no protobuf. Storage
// engines (server/sqlite, server/postgres) call the rules here instead of
// writing their own, and the server's handlers depend only on Store.
package study

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// Role is what a user does in the study. The numbers match the API's Role
// enum and what the stores keep.
type Role int

// Roles.
const (
	RoleNavigator  Role = 1
	RoleSupervisor Role = 2
	RoleResearcher Role = 3
	RoleAdmin      Role = 4
)

var roleNames = map[Role]string{RoleNavigator: "navigator", RoleSupervisor: "supervisor", RoleResearcher: "researcher", RoleAdmin: "admin"}

// String returns the role's lowercase name.
func (r Role) String() string {
	if n, ok := roleNames[r]; ok {
		return n
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool { _, ok := roleNames[r]; return ok }

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if strings.EqualFold(s, n) {
			return r, nil
		}
	}
	return 0, syncengine.Errorf(syncengine.EINVALID, "unknown role %q: use navigator, supervisor, researcher or admin", s)
}

// Identity is who is calling: the device and the user it belongs to.
type Identity struct {
	UserID    int64
	StudyCode string
	Role      Role
	DeviceID  int64
	Device    string // the device's public id
	Replica   syncengine.ReplicaID
	// Pending says the device waits for approval by one of the user's
	// active devices (see NewDeviceState and CheckOperation).
	Pending bool
}

type identityKey struct{}

// NewContext returns a context carrying id. Stores record the identity in
// a context as the actor of what they write to the audit log.
func NewContext(ctx context.Context, id *Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity ctx carries, or nil.
func IdentityFrom(ctx context.Context) *Identity {
	id, _ := ctx.Value(identityKey{}).(*Identity)
	return id
}

// ActorFrom returns the study code of the identity ctx carries, or
// "system" when the server acts on its own.
func ActorFrom(ctx context.Context) string {
	if id := IdentityFrom(ctx); id != nil {
		return id.StudyCode
	}
	return "system"
}

// User is a person in the study.
type User struct {
	ID          int64
	StudyCode   string
	Role        Role
	DisplayName string
	Active      bool
	CreatedAt   time.Time
}

// MaxDisplayNameBytes bounds a user's display name.
const MaxDisplayNameBytes = 128

// ValidateNewUser checks a user about to be created and returns the
// display name as it is stored (trimmed).
func ValidateNewUser(code string, role Role, displayName string) (string, error) {
	if err := syncengine.ValidateStudyCode(code); err != nil {
		return "", err
	}
	if !role.Valid() {
		return "", syncengine.Errorf(syncengine.EINVALID, "a user needs a role: navigator, supervisor, researcher or admin")
	}
	displayName = strings.TrimSpace(displayName)
	if err := syncengine.ValidateText("display name", displayName, MaxDisplayNameBytes, false); err != nil {
		return "", err
	}
	return displayName, nil
}

// CheckDeactivate refuses to deactivate the last active administrator
// (ECONFLICT): nobody could then manage the study, and codes for an
// administrator are issued only for an active one. activeAdmins is the
// number of active administrators, u among them if u is one.
func CheckDeactivate(u *User, activeAdmins int) error {
	if u.Role == RoleAdmin && u.Active && activeAdmins <= 1 {
		return syncengine.Errorf(syncengine.ECONFLICT, "%s is the last active administrator: create another administrator first", u.StudyCode)
	}
	return nil
}

// Assignment lets a supervisor see a navigator's shared entries.
type Assignment struct {
	SupervisorID, NavigatorID     int64
	SupervisorCode, NavigatorCode string
	CreatedAt                     time.Time
}

// CheckAssignment refuses an assignment whose people do not have the
// roles it needs.
func CheckAssignment(sup, nav *User) error {
	if sup.Role != RoleSupervisor {
		return syncengine.Errorf(syncengine.EINVALID, "%s is a %s, not a supervisor", sup.StudyCode, sup.Role)
	}
	if nav.Role != RoleNavigator {
		return syncengine.Errorf(syncengine.EINVALID, "%s is a %s, not a navigator", nav.StudyCode, nav.Role)
	}
	return nil
}

// CheckErasable refuses to erase "a navigator's entries" of someone who
// is not a navigator.
func CheckErasable(u *User) error {
	if u.Role != RoleNavigator {
		return syncengine.Errorf(syncengine.EINVALID, "%s is a %s, not a navigator", u.StudyCode, u.Role)
	}
	return nil
}

// Device is an enrolled device as administrators and its user see it.
type Device struct {
	ID        int64
	PublicID  string
	UserID    int64
	StudyCode string
	Name      string
	Kind      DeviceKind
	State     DeviceState
	Enrolled  time.Time
	// IssuedBy is the study code of whoever issued the code the device
	// enrolled with ("system" for the server's console).
	IssuedBy   string
	Approved   time.Time // when a device of the user approved it; zero if it never waited or still waits
	ApprovedBy string    // the public id of the device that approved it
	LastSync   time.Time // zero if never
	Revoked    time.Time // zero if not revoked
	Revocation Revocation
	RevokedBy  string // study code of who revoked it
}

// AuditEvent is one line of the audit log. Details never hold diary
// content. Actor is always the person who really acted: an enrolment is
// recorded with the administrator who issued its code as the actor.
type AuditEvent struct {
	ID      int64
	At      time.Time
	Actor   string
	Action  string
	Subject string
	Details map[string]string
}
