package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// MustOpenDB opens a database in a temporary directory and closes it when
// the test ends.
func MustOpenDB(tb testing.TB) *DB {
	tb.Helper()
	db, err := OpenDB(context.Background(), filepath.Join(tb.TempDir(), "diary.db"), DBOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// MustEnroll creates a user with the role and study code (if new) and
// enrols a device for them.
func MustEnroll(tb testing.TB, db *DB, role Role, code string) *Identity {
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
	enr, err := db.Enroll(ctx, c, "test device")
	if err != nil {
		tb.Fatal(err)
	}
	id, err := db.Authenticate(ctx, enr.Token)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// entryChanges returns the changes that create a typical entry.
func entryChanges(replica syncengine.ReplicaID, clock *syncengine.Clock, shareSup, shareRes bool) []Incoming {
	id := syncengine.NewEntryID()
	mk := func(c syncengine.Change) Incoming {
		c.Entry, c.Replica, c.Clock = id, replica, clock.Now()
		return Incoming{Change: c}
	}
	out := []Incoming{
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
