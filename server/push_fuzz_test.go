package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// Entries the FuzzPush store holds before any input arrives; the seeds in
// testdata/fuzz/FuzzPush name them, so that mutations reach the checks
// that depend on an entry's state.
const (
	fuzzShared = "01936f2e-8b1a-7c3d-9e4f-000000000001" // PN-A's, shared with SUP-1
	fuzzOthers = "01936f2e-8b1a-7c3d-9e4f-000000000002" // PN-B's
	fuzzErased = "01936f2e-8b1a-7c3d-9e4f-000000000003" // PN-A's, erased
	fuzzFull   = "01936f2e-8b1a-7c3d-9e4f-000000000004" // PN-A's, with the most tags allowed
)

// historyCount returns the number of changes the store has accepted.
func historyCount(tb testing.TB, db *storetest.Store) int {
	tb.Helper()
	var n int
	if err := rawDB(db).QueryRow(`SELECT count(*) FROM history`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// FuzzPush pushes arbitrary bytes, read as a PushRequest, into a real
// store as a navigator or a supervisor, and pushes them again. Nothing may
// panic; a push of at most study.MaxPushChanges commits and answers one result
// per change, each well formed; the store gains one history row per
// applied change; and the replay applies nothing again: every applied
// change comes back a duplicate and every refusal stands, even one that
// depended on the entry's state (a full entry that a removal later in the
// same push made room in): the server keeps such refusals. (A refused
// change that shares its clock with an applied one, which no device
// sends, comes back a duplicate.)
//
// Flags rewrite the input so that mutations get past the checks that
// random bytes rarely pass: fixReplica stamps every change with the
// caller's replica id, fixClock moves its clock into the hour before the
// server's time.
func FuzzPush(f *testing.F) {
	ctx := context.Background()
	clock := newTestClock() // stands still: no clock-ahead refusal flips with time
	db := MustOpenDBWith(f, storetest.Options{Now: clock.Now, Synchronous: "NORMAL"})
	nav := MustEnroll(f, db, study.RoleNavigator, "PN-A")
	other := MustEnroll(f, db, study.RoleNavigator, "PN-B")
	sup := MustEnroll(f, db, study.RoleSupervisor, "SUP-1")
	MustAssign(f, db, "SUP-1", "PN-A")
	stamp := syncengine.NewClock(func() time.Time { return clock.Now().Add(-2 * time.Hour) })
	write := func(who *study.Identity, entry string, changes ...syncengine.Change) {
		id, err := syncengine.ParseEntryID(entry)
		if err != nil {
			f.Fatal(err)
		}
		in := make([]study.Incoming, len(changes))
		for i, c := range changes {
			c.Entry, c.Replica, c.Clock = id, who.Replica, stamp.Now()
			in[i].Change = c
		}
		MustPush(f, db, who, in)
	}
	title := func(s string) syncengine.Change { return syncengine.Change{Field: syncengine.FieldTitle, Text: s} }
	write(nav, fuzzShared, title("shared"), syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true})
	write(other, fuzzOthers, title("another navigator's"))
	write(nav, fuzzErased, title("erased"))
	if _, _, err := db.EraseEntry(ctx, mustEntryID(f, fuzzErased)); err != nil {
		f.Fatal(err)
	}
	full := []syncengine.Change{title("full")}
	for i := range syncengine.MaxTags {
		full = append(full, syncengine.Change{Field: syncengine.FieldTag, Tag: fmt.Sprint("t", i), Flag: true})
	}
	write(nav, fuzzFull, full...)

	// More seeds live in testdata/fuzz/FuzzPush.
	seed := &diaryv1.PushRequest{Changes: []*diaryv1.Change{{EntryId: fuzzShared, Field: diaryv1.Field_FIELD_BODY, Value: &diaryv1.Change_Text{Text: "body"}}}}
	b, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, false, true, true)
	// Text edits of the shared entry's body: two in order, and the second
	// alone (made on one the store does not hold), with their own stamps.
	shared := mustEntryID(f, fuzzShared)
	doc := &syncengine.Entry{ID: shared}
	var edits []*diaryv1.Change
	for _, text := range []string{"Met J.", "Met J. at the hostel 🙂"} {
		c := syncengine.Change{Entry: shared, Field: syncengine.FieldBody, Stamp: syncengine.Stamp{Clock: stamp.Now(), Replica: nav.Replica}}
		if err := doc.EditText(&c, func(d *syncengine.TextDoc) (*syncengine.TextChange, error) { return d.SetText(c.Stamp, text) }); err != nil {
			f.Fatal(err)
		}
		edits = append(edits, wire.ChangeToProto(&c))
	}
	for _, req := range []*diaryv1.PushRequest{{Changes: edits}, {Changes: edits[1:]}} {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false, false, false)
	}

	f.Fuzz(func(t *testing.T, b []byte, asSupervisor, fixReplica, fixClock bool) {
		var req diaryv1.PushRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return // the RPC layer refuses the whole request
		}
		who := nav
		if asSupervisor {
			who = sup
		}
		now := clock.Now()
		decode := func() []study.Incoming {
			in := make([]study.Incoming, len(req.GetChanges()))
			for i, p := range req.GetChanges() {
				p = proto.Clone(p).(*diaryv1.Change)
				if fixReplica {
					p.ReplicaId = who.Replica.String()
				}
				if fixClock {
					back := int64(p.GetClock()>>16) % time.Hour.Milliseconds()
					p.Clock = uint64(syncengine.NewTimestamp(now.UnixMilli()-back, uint16(p.GetClock())))
				}
				in[i].Change, in[i].Invalid = wire.ChangeFromProto(p)
			}
			return in
		}
		before := historyCount(t, db)
		first := decode()
		results, _, err := db.Push(ctx, who, first)
		if len(req.GetChanges()) > study.MaxPushChanges {
			if syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
				t.Fatalf("a push of %d changes: %v, want too large", len(req.GetChanges()), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("push: %v", err)
		}
		if len(results) != len(req.GetChanges()) {
			t.Fatalf("%d results for %d changes", len(results), len(req.GetChanges()))
		}
		applied := 0
		appliedClocks := map[syncengine.Timestamp]bool{}
		for i, r := range results {
			switch {
			case r.Outcome == study.OutcomeApplied || r.Outcome == study.OutcomeDuplicate:
				if r.Reason != 0 || r.Message != "" {
					t.Fatalf("change %d: outcome %d with reason %d %q", i, r.Outcome, r.Reason, r.Message)
				}
				if r.Outcome == study.OutcomeApplied {
					applied++
					appliedClocks[first[i].Change.Clock] = true
				}
			case r.Outcome == study.OutcomeRefused:
				if r.Reason < study.RefusedInvalid || r.Reason > study.RefusedTextHistory || r.Message == "" {
					t.Fatalf("change %d refused with reason %d and message %q", i, r.Reason, r.Message)
				}
			default:
				t.Fatalf("change %d: outcome %d", i, r.Outcome)
			}
		}
		if n := historyCount(t, db); n != before+applied {
			t.Fatalf("%d changes applied, but the history grew by %d", applied, n-before)
		}

		// The replay, as after a lost answer.
		again, _, err := db.Push(ctx, who, decode())
		if err != nil {
			t.Fatalf("replayed push: %v", err)
		}
		for i, r := range results {
			g := again[i]
			switch {
			case r.Outcome != study.OutcomeRefused && g.Outcome == study.OutcomeDuplicate:
			case r.Outcome == study.OutcomeRefused && g.Outcome == study.OutcomeRefused && g.Reason == r.Reason:
			case r.Outcome == study.OutcomeRefused && g.Outcome == study.OutcomeDuplicate && appliedClocks[first[i].Change.Clock]:
				// The input gave two changes one clock, which a device
				// never does: the server knows a change by its device and
				// clock, so the replay takes this one for the other.
			default:
				t.Fatalf("change %d: outcome %d (%d %q), then %d (%d %q) on the replay", i, r.Outcome, r.Reason, r.Message, g.Outcome, g.Reason, g.Message)
			}
		}
		if n := historyCount(t, db); n != before+applied {
			t.Fatalf("the replay added %d history rows", n-before-applied)
		}
	})
}
