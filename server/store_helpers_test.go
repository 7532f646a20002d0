package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// The tests of this package are the store conformance suite: they reach
// the store through MustOpenDB and newTestServer, which open a fresh store
// on the engine DIARYSYNC_TEST_STORE names (SQLite by default, or
// PostgreSQL on the server DIARYSYNC_TEST_POSTGRES names), so that
// "go test ./server/..." runs every test against either engine. Checks of
// what is stored use rawDB, whose "?" queries run on both.

// MustOpenDB opens a new, empty store and closes it when the test ends.
func MustOpenDB(tb testing.TB) *storetest.Store {
	tb.Helper()
	return MustOpenDBWith(tb, storetest.Options{})
}

// MustOpenDBWith is MustOpenDB with options, such as an injected clock.
func MustOpenDBWith(tb testing.TB, opts storetest.Options) *storetest.Store {
	tb.Helper()
	return storetest.Open(tb, opts)
}

// rawDB returns a connection of its own to the store's tables, for
// checks of what is stored that no API shows (a secret never kept, an
// erased entry's history gone) and for damaging the store on purpose.
// Queries use "?" placeholders on either engine.
func rawDB(db *storetest.Store) *storetest.DB { return storetest.Raw(db) }

// onPostgres reports whether the suite runs on PostgreSQL, for the few
// checks that must read an engine's own catalogue.
func onPostgres(db *storetest.Store) bool { return db.Engine == storetest.Postgres }

// MustEnroll creates a user with the role and study code (if new) and
// enrols a device for them.
func MustEnroll(tb testing.TB, db study.Store, role study.Role, code string) *study.Identity {
	tb.Helper()
	return MustEnrollDevice(tb, db, role, code).Identity
}

// TestDevice is an enrolled device: its token for the API and the
// identity the server gives it.
type TestDevice struct {
	Token string
	*study.Identity
}

// MustEnrollDevice is MustEnroll that also returns the device's token.
func MustEnrollDevice(tb testing.TB, db study.Store, role study.Role, code string) TestDevice {
	tb.Helper()
	ctx := context.Background()
	if _, err := db.UserByCode(ctx, code); err != nil {
		if _, err := db.CreateUser(ctx, code, role, ""); err != nil {
			tb.Fatal(err)
		}
	}
	c, _, err := db.IssueEnrollmentCode(ctx, code, 0)
	if err != nil {
		tb.Fatal(err)
	}
	enr, err := db.Enroll(ctx, study.EnrollRequest{Code: c, DeviceName: "test device"})
	if err != nil {
		tb.Fatal(err)
	}
	if enr.State == study.DevicePending {
		// The user has a device already: it consents, as a person would.
		MustApprove(tb, db, code, enr.Device)
	}
	id, err := db.Authenticate(ctx, enr.Token)
	if err != nil {
		tb.Fatal(err)
	}
	return TestDevice{Token: enr.Token, Identity: id}
}

// MustAssign assigns the navigator to the supervisor.
func MustAssign(tb testing.TB, db study.Store, supervisor, navigator string) {
	tb.Helper()
	if _, _, err := db.Assign(context.Background(), supervisor, navigator); err != nil {
		tb.Fatal(err)
	}
}

// MustPush pushes changes straight into the store and fails the test
// unless every one was applied.
func MustPush(tb testing.TB, db study.Store, who *study.Identity, in []study.Incoming) {
	tb.Helper()
	results, _, err := db.Push(context.Background(), who, in)
	if err != nil {
		tb.Fatal(err)
	}
	for i, r := range results {
		if r.Outcome != study.OutcomeApplied {
			tb.Fatalf("change %d: outcome %d (%d: %s), want applied", i, r.Outcome, r.Reason, r.Message)
		}
	}
}

// entryChanges returns the changes that create a typical entry.
func entryChanges(replica syncengine.ReplicaID, clock *syncengine.Clock, shareSup, shareRes bool) []study.Incoming {
	id := syncengine.NewEntryID()
	mk := func(c syncengine.Change) study.Incoming {
		c.Entry, c.Replica, c.Clock = id, replica, clock.Now()
		return study.Incoming{Change: c}
	}
	out := []study.Incoming{
		mk(syncengine.Change{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"}),
		mk(syncengine.Change{Field: syncengine.FieldBody, Text: benchBody}),
		mk(syncengine.Change{Field: syncengine.FieldDate, Text: time.Now().Format(time.DateOnly)}),
		mk(syncengine.Change{Field: syncengine.FieldTag, Tag: "housing", Flag: true}),
	}
	if shareSup {
		out = append(out, mk(syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))
	}
	if shareRes {
		out = append(out, mk(syncengine.Change{Field: syncengine.FieldShareResearch, Flag: true}))
	}
	return out
}

const benchBody = `Met J. outside the hostel this morning. She had been moved again and lost her paperwork for the housing appointment, so we spent an hour on the phone to the council. She was calm but tired. I noticed I wanted to fix everything for her, which is something I know from my own time in hostels. Talked it through; we have a plan for Thursday.`

// testClock is an injectable clock that moves only when told to, so that
// expiry and rate limits can be tested without waiting.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// MustApprove approves the pending device publicID of the user with the
// given study code from another of the user's active devices.
func MustApprove(tb testing.TB, db study.Store, code, publicID string) {
	tb.Helper()
	ctx := context.Background()
	u, err := db.UserByCode(ctx, code)
	if err != nil {
		tb.Fatal(err)
	}
	devices, _, err := db.ListDevices(ctx, 1000, "", code)
	if err != nil {
		tb.Fatal(err)
	}
	for _, d := range devices {
		if d.State == study.DeviceActive {
			approver := &study.Identity{UserID: u.ID, StudyCode: u.StudyCode, Role: u.Role, DeviceID: d.ID, Device: d.PublicID}
			if _, _, err := db.ApproveDevice(ctx, approver, publicID); err != nil {
				tb.Fatal(err)
			}
			return
		}
	}
	tb.Fatalf("%s has no active device to approve %s with", code, publicID)
}

// MustEnrollPending enrols another device for an existing user with
// devices and leaves it waiting for approval.
func MustEnrollPending(tb testing.TB, db study.Store, code string) TestDevice {
	tb.Helper()
	ctx := context.Background()
	c, _, err := db.IssueEnrollmentCode(ctx, code, 0)
	if err != nil {
		tb.Fatal(err)
	}
	enr, err := db.Enroll(ctx, study.EnrollRequest{Code: c, DeviceName: "new device"})
	if err != nil {
		tb.Fatal(err)
	}
	if enr.State != study.DevicePending {
		tb.Fatalf("the new device of %s is %s, want pending", code, enr.State)
	}
	id, err := db.Authenticate(ctx, enr.Token)
	if err != nil {
		tb.Fatal(err)
	}
	return TestDevice{Token: enr.Token, Identity: id}
}
