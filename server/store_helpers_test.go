package server

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// MustOpenDB opens a database in a temporary directory and closes it when
// the test ends.
func MustOpenDB(tb testing.TB) *sqlite.DB {
	tb.Helper()
	return MustOpenDBWith(tb, sqlite.Options{})
}

// MustOpenDBWith is MustOpenDB with options, such as an injected clock.
func MustOpenDBWith(tb testing.TB, opts sqlite.Options) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "diary.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		db.Close()
		if raw, ok := raws.LoadAndDelete(db.Path()); ok {
			raw.(*sql.DB).Close()
		}
	})
	return db
}

// raws holds the connections rawDB opened, by file.
var raws sync.Map

// rawDB returns a connection of its own to the store's SQLite file, for
// checks of what is stored that no API shows (a secret never kept, an
// erased entry's history gone) and for damaging the file on purpose.
// MustOpenDB's cleanup closes it.
func rawDB(db *sqlite.DB) *sql.DB {
	if raw, ok := raws.Load(db.Path()); ok {
		return raw.(*sql.DB)
	}
	raw, err := sql.Open("sqlite", "file:"+db.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		panic(err) // sql.Open fails only for an unknown driver
	}
	if old, loaded := raws.LoadOrStore(db.Path(), raw); loaded {
		raw.Close()
		return old.(*sql.DB)
	}
	return raw
}

// MustEnroll creates a user with the role and study code (if new) and
// enrols a device for them.
func MustEnroll(tb testing.TB, db *sqlite.DB, role study.Role, code string) *study.Identity {
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
func MustEnrollDevice(tb testing.TB, db *sqlite.DB, role study.Role, code string) TestDevice {
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
func MustAssign(tb testing.TB, db *sqlite.DB, supervisor, navigator string) {
	tb.Helper()
	if _, _, err := db.Assign(context.Background(), supervisor, navigator); err != nil {
		tb.Fatal(err)
	}
}

// MustPush pushes changes straight into the store and fails the test
// unless every one was applied.
func MustPush(tb testing.TB, db *sqlite.DB, who *study.Identity, in []study.Incoming) {
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
func MustApprove(tb testing.TB, db *sqlite.DB, code, publicID string) {
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
func MustEnrollPending(tb testing.TB, db *sqlite.DB, code string) TestDevice {
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
