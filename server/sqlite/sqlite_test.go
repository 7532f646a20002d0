package sqlite

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// MustOpenDB opens a store in a temporary directory and closes it when
// the test ends.
func MustOpenDB(tb testing.TB) *DB {
	tb.Helper()
	db, err := Open(context.Background(), filepath.Join(tb.TempDir(), "diary.db"), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// MustEnroll creates a user with the role and study code (if new) and
// enrols a device for them.
func MustEnroll(tb testing.TB, db *DB, role study.Role, code string) *study.Identity {
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
	return id
}

// MustAssign assigns the navigator to the supervisor.
func MustAssign(tb testing.TB, db *DB, supervisor, navigator string) {
	tb.Helper()
	if _, _, err := db.Assign(context.Background(), supervisor, navigator); err != nil {
		tb.Fatal(err)
	}
}

// MustPush pushes changes and fails the test unless every one was
// applied.
func MustPush(tb testing.TB, db *DB, who *study.Identity, in []study.Incoming) {
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

// entryChanges returns the changes that create a small entry, shared with
// supervisors if shareSup (the share is the last change).
func entryChanges(replica syncengine.ReplicaID, clock *syncengine.Clock, shareSup bool) []study.Incoming {
	id := syncengine.NewEntryID()
	mk := func(c syncengine.Change) study.Incoming {
		c.Entry, c.Replica, c.Clock = id, replica, clock.Now()
		return study.Incoming{Change: c}
	}
	out := []study.Incoming{
		mk(syncengine.Change{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"}),
		mk(syncengine.Change{Field: syncengine.FieldDate, Text: time.Now().Format(time.DateOnly)}),
	}
	if shareSup {
		out = append(out, mk(syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))
	}
	return out
}

// TestBulk checks that chunks are powers of two that add up, and that a
// statement over more rows than one chunk writes them all.
func TestBulk(t *testing.T) {
	t.Run("OKChunks", func(t *testing.T) {
		for _, n := range []int{1, 2, 3, 500, 511, 512, 513, 1000, 2049} {
			sum, last := 0, maxChunkRows*2
			for sum < n {
				size := chunkSize(n - sum)
				if size&(size-1) != 0 || size > maxChunkRows || size > last {
					t.Fatalf("%d rows: chunk of %d after %d", n, size, last)
				}
				sum, last = sum+size, size
			}
			if sum != n {
				t.Fatalf("%d rows: chunks add up to %d", n, sum)
			}
		}
	})

	t.Run("OKMoreRowsThanChanges", func(t *testing.T) {
		// One change for an entry three supervisors see writes three feed
		// rows: a chunk of two and a chunk of one.
		db := MustOpenDB(t)
		nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
		sups := make([]*study.Identity, 3)
		for i := range sups {
			sups[i] = MustEnroll(t, db, study.RoleSupervisor, "SUP-"+string(rune('1'+i)))
			MustAssign(t, db, "SUP-"+string(rune('1'+i)), "PN-A")
		}
		clock := syncengine.NewClock(nil)
		in := entryChanges(nav.Replica, clock, true)
		share := in[len(in)-1]
		MustPush(t, db, nav, []study.Incoming{share})
		for _, s := range sups {
			page, err := db.Pull(context.Background(), s, study.PullRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Entries) != 1 || page.Entries[0].ID != share.Change.Entry {
				t.Fatalf("supervisor %s pulled %d entries, want the shared one", s.StudyCode, len(page.Entries))
			}
		}
	})
}

// MustApprove approves the pending device publicID of the user with the
// given study code from another of the user's active devices.
func MustApprove(tb testing.TB, db *DB, code, publicID string) {
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
