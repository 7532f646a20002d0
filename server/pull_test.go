package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	notShared  = diaryv1.RemovalReason_REMOVAL_REASON_NOT_SHARED
	unassigned = diaryv1.RemovalReason_REMOVAL_REASON_UNASSIGNED
	deleted    = diaryv1.RemovalReason_REMOVAL_REASON_DELETED
)

// replica is a reader's copy of what it may see, kept the way a device
// keeps it: each pulled entry replaces the copy, each removal drops it.
type replica struct {
	name    string
	c       *clients
	cursor  uint64
	entries map[string]*diaryv1.Entry
}

func newReplica(name string, c *clients) *replica {
	return &replica{name: name, c: c, entries: map[string]*diaryv1.Entry{}}
}

// sync pulls everything after the replica's cursor, applies it, checks
// that the replica now has the server's state hash, and returns what the
// pull carried.
func (r *replica) sync(tb testing.TB) *pulled {
	tb.Helper()
	p := pullAll(tb, r.c, r.cursor)
	for id := range p.removals {
		delete(r.entries, id)
	}
	maps.Copy(r.entries, p.entries)
	r.cursor = p.cursor
	sh, err := r.c.sync.GetStateHash(context.Background(), &diaryv1.GetStateHashRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	mine := stateHashOf(tb, &pulled{entries: r.entries})
	if string(sh.GetStateHash()) != string(mine) || sh.GetEntries() != uint64(len(r.entries)) || sh.GetCursor() != r.cursor {
		tb.Fatalf("%s: server state hash %x over %d entries at %d; replica %x over %d at %d",
			r.name, sh.GetStateHash(), sh.GetEntries(), sh.GetCursor(), mine, len(r.entries), r.cursor)
	}
	return p
}

// expect checks what the last sync carried: these entries (by name) and
// these removals, nothing else.
func expect(tb testing.TB, who string, p *pulled, names map[syncengine.EntryID]string, entries []syncengine.EntryID, removals map[syncengine.EntryID]diaryv1.RemovalReason) {
	tb.Helper()
	label := func(id string) string {
		e, _ := syncengine.ParseEntryID(id)
		return names[e]
	}
	var gotE, wantE []string
	for id := range p.entries {
		gotE = append(gotE, label(id))
	}
	for _, id := range entries {
		wantE = append(wantE, names[id])
	}
	gotR, wantR := map[string]diaryv1.RemovalReason{}, map[string]diaryv1.RemovalReason{}
	for id, r := range p.removals {
		gotR[label(id)] = r
	}
	for id, r := range removals {
		wantR[names[id]] = r
	}
	slices.Sort(gotE)
	slices.Sort(wantE)
	if !slices.Equal(gotE, wantE) || !maps.Equal(gotR, wantR) {
		tb.Fatalf("%s pulled entries %v and removals %v; want entries %v and removals %v", who, gotE, gotR, wantE, wantR)
	}
}

// TestPull_Visibility checks who sees what, and that withdrawing and
// restoring visibility (unsharing, deleting, unassigning) reaches each
// reader on their next pull, and only readers who saw the entry.
func TestPull_Visibility(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	db := ts.DB
	for _, u := range []struct {
		code string
		role study.Role
	}{{"PN-A", study.RoleNavigator}, {"PN-B", study.RoleNavigator}, {"SUP-1", study.RoleSupervisor}, {"SUP-2", study.RoleSupervisor}, {"SUP-3", study.RoleSupervisor}, {"RES-1", study.RoleResearcher}} {
		if _, err := db.CreateUser(ctx, u.code, u.role, "Secret Name of "+u.code); err != nil {
			t.Fatal(err)
		}
	}
	a := newWriter(MustEnrollDevice(t, db, study.RoleNavigator, "PN-A"))
	b := newWriter(MustEnrollDevice(t, db, study.RoleNavigator, "PN-B"))
	MustAssign(t, db, "SUP-1", "PN-A")
	MustAssign(t, db, "SUP-2", "PN-B")
	ac, bc := ts.clients(bearer(a.Token)), ts.clients(bearer(b.Token))
	s1 := MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-1")
	readers := map[string]*replica{
		"PN-A":  newReplica("PN-A", ac),
		"PN-B":  newReplica("PN-B", bc),
		"SUP-1": newReplica("SUP-1", ts.clients(bearer(s1.Token))),
		"SUP-2": newReplica("SUP-2", ts.clients(bearer(MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-2").Token))),
		"SUP-3": newReplica("SUP-3", ts.clients(bearer(MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-3").Token))),
		"RES-1": newReplica("RES-1", ts.clients(bearer(MustEnrollDevice(t, db, study.RoleResearcher, "RES-1").Token))),
	}
	names := map[syncengine.EntryID]string{}
	create := func(w *writer, c *clients, name string, shareSup, shareRes bool) syncengine.EntryID {
		id, changes := w.newEntry(name, "body of "+name, shareSup, shareRes)
		mustPush(t, c, changes...)
		names[id] = name
		return id
	}
	set := func(w *writer, c *clients, id syncengine.EntryID, f syncengine.Field, v bool) {
		mustPush(t, c, w.change(id, syncengine.Change{Field: f, Flag: v}))
	}
	a1 := create(a, ac, "a1 shared with supervisors", true, false)
	a2 := create(a, ac, "a2 private", false, false)
	a3 := create(a, ac, "a3 shared with both", true, true)
	a4 := create(a, ac, "a4 shared, deleted", true, false)
	set(a, ac, a4, syncengine.FieldDeleted, true)
	b1 := create(b, bc, "b1 shared with both", true, true)
	mustPush(t, readers["SUP-1"].c, newWriter(s1).change(a3, syncengine.Change{Field: syncengine.FieldFeedbackBody, Feedback: syncengine.NewFeedbackID(), Text: "Thanks for sharing."}))

	type step struct {
		entries  []syncengine.EntryID
		removals map[syncengine.EntryID]diaryv1.RemovalReason
	}
	// check syncs every reader and compares what each pull carried; a
	// reader not named must have pulled nothing.
	check := func(t *testing.T, want map[string]step) {
		t.Helper()
		for _, name := range slices.Sorted(maps.Keys(readers)) {
			p := readers[name].sync(t)
			w := want[name]
			expect(t, name, p, names, w.entries, w.removals)
		}
	}

	t.Run("OK", func(t *testing.T) {
		check(t, map[string]step{
			"PN-A": {entries: []syncengine.EntryID{a1, a2, a3, a4}},
			"PN-B": {entries: []syncengine.EntryID{b1}},
			// a4 was visible to SUP-1 until it was deleted: that it was
			// never pulled in between does not matter, the notice is due.
			"SUP-1": {entries: []syncengine.EntryID{a1, a3}, removals: map[syncengine.EntryID]diaryv1.RemovalReason{a4: deleted}},
			"SUP-2": {entries: []syncengine.EntryID{b1}},
			"RES-1": {entries: []syncengine.EntryID{a3, b1}},
		})
		// The owner holds the full state, tombstones and replica ids
		// included, so that their devices can merge into it.
		if e := readers["PN-A"].entries[a4.String()]; !e.GetDeleted().GetValue() || e.GetTitle().GetReplicaId() != a.Replica.String() {
			t.Fatalf("owner's copy of a4: %v", e)
		}
		// Supervisors see feedback; research sees none. Neither sees
		// which device wrote what, nor anyone's name.
		if fb := readers["SUP-1"].entries[a3.String()].GetFeedback(); len(fb) != 1 || fb[0].GetAuthor() != "SUP-1" {
			t.Fatalf("supervisor's copy of a3 has feedback %v", fb)
		}
		for _, name := range []string{"SUP-1", "SUP-2", "RES-1"} {
			for _, e := range readers[name].entries {
				if name == "RES-1" && len(e.GetFeedback()) > 0 {
					t.Errorf("research copy of %s carries feedback", names[mustEntryID(t, e.GetId())])
				}
				if e.GetAuthor() != "PN-A" && e.GetAuthor() != "PN-B" {
					t.Errorf("%s's copy has author %q, want the study code", name, e.GetAuthor())
				}
				text, err := protojson.Marshal(e)
				if err != nil {
					t.Fatal(err)
				}
				for _, secret := range []string{a.Replica.String(), b.Replica.String(), s1.Replica.String(), "replicaId", "Secret Name"} {
					if strings.Contains(string(text), secret) {
						t.Errorf("%s's copy of %s contains %q: %s", name, names[mustEntryID(t, e.GetId())], secret, text)
					}
				}
			}
		}
	})

	t.Run("OKUnshare", func(t *testing.T) {
		set(a, ac, a1, syncengine.FieldShareSupervisor, false)
		check(t, map[string]step{
			"PN-A":  {entries: []syncengine.EntryID{a1}},
			"SUP-1": {removals: map[syncengine.EntryID]diaryv1.RemovalReason{a1: notShared}},
		})
	})

	t.Run("OKDelete", func(t *testing.T) {
		set(a, ac, a3, syncengine.FieldDeleted, true)
		check(t, map[string]step{
			"PN-A":  {entries: []syncengine.EntryID{a3}},
			"SUP-1": {removals: map[syncengine.EntryID]diaryv1.RemovalReason{a3: deleted}},
			"RES-1": {removals: map[syncengine.EntryID]diaryv1.RemovalReason{a3: deleted}},
		})
	})

	t.Run("OKReshare", func(t *testing.T) {
		set(a, ac, a1, syncengine.FieldShareSupervisor, true)
		check(t, map[string]step{
			"PN-A":  {entries: []syncengine.EntryID{a1}},
			"SUP-1": {entries: []syncengine.EntryID{a1}},
		})
	})

	t.Run("OKUnassign", func(t *testing.T) {
		if removed, _, err := db.Unassign(ctx, "SUP-1", "PN-A"); err != nil || !removed {
			t.Fatalf("Unassign: %v %v", removed, err)
		}
		// Only a1 is visible to SUP-1 now; a3 and a4 were removed or
		// never seen, and get no second notice.
		check(t, map[string]step{
			"SUP-1": {removals: map[syncengine.EntryID]diaryv1.RemovalReason{a1: unassigned}},
		})
		// Edits while unassigned reach nobody but the owner.
		mustPush(t, ac, a.change(a1, syncengine.Change{Field: syncengine.FieldTitle, Text: "a1 edited"}))
		names[a1] = "a1 shared with supervisors"
		check(t, map[string]step{"PN-A": {entries: []syncengine.EntryID{a1}}})
	})

	t.Run("OKReassign", func(t *testing.T) {
		MustAssign(t, db, "SUP-1", "PN-A")
		check(t, map[string]step{"SUP-1": {entries: []syncengine.EntryID{a1}}})
		if got := readers["SUP-1"].entries[a1.String()].GetTitle().GetValue(); got != "a1 edited" {
			t.Fatalf("reassigned supervisor has title %q, want the edit made meanwhile", got)
		}
	})

	t.Run("OKNewSupervisorGetsNoRemovals", func(t *testing.T) {
		// SUP-3 is assigned to A after a3 and a4 stopped being visible:
		// it gets a1 and no notices about entries it never saw.
		MustAssign(t, db, "SUP-3", "PN-A")
		check(t, map[string]step{"SUP-3": {entries: []syncengine.EntryID{a1}}})
		set(a, ac, a2, syncengine.FieldDeleted, true)
		set(a, ac, a1, syncengine.FieldShareResearch, false)
		check(t, map[string]step{
			"PN-A":  {entries: []syncengine.EntryID{a1, a2}},
			"SUP-1": {entries: []syncengine.EntryID{a1}}, // the research flag is part of its view
			"SUP-3": {entries: []syncengine.EntryID{a1}},
		})
	})

	t.Run("OKResearchUnshare", func(t *testing.T) {
		set(b, bc, b1, syncengine.FieldShareResearch, false)
		check(t, map[string]step{
			"PN-B":  {entries: []syncengine.EntryID{b1}},
			"SUP-2": {entries: []syncengine.EntryID{b1}},
			"RES-1": {removals: map[syncengine.EntryID]diaryv1.RemovalReason{b1: notShared}},
		})
		set(b, bc, b1, syncengine.FieldShareResearch, true)
		check(t, map[string]step{
			"PN-B":  {entries: []syncengine.EntryID{b1}},
			"SUP-2": {entries: []syncengine.EntryID{b1}},
			"RES-1": {entries: []syncengine.EntryID{b1}},
		})
	})

	t.Run("OKFromScratch", func(t *testing.T) {
		// A new device of each reader pulls from 0 and ends up with the
		// same entries as the one that followed every step.
		for name, r := range readers {
			fresh := newReplica(name+" new device", r.c)
			fresh.sync(t)
			if !slices.Equal(slices.Sorted(maps.Keys(fresh.entries)), slices.Sorted(maps.Keys(r.entries))) {
				t.Errorf("%s: a new device holds %d entries, the old one %d", name, len(fresh.entries), len(r.entries))
			}
		}
	})
}

func mustEntryID(tb testing.TB, s string) syncengine.EntryID {
	tb.Helper()
	id, err := syncengine.ParseEntryID(s)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// pushEntries stores n entries for the device straight through the
// store, in pushes of at most study.MaxPushChanges.
func pushEntries(tb testing.TB, db *storetest.Store, dev *study.Identity, n int, shareSup bool, body string) []syncengine.EntryID {
	tb.Helper()
	clock := syncengine.NewClock(nil)
	var ids []syncengine.EntryID
	var batch []study.Incoming
	for range n {
		id := syncengine.NewEntryID()
		ids = append(ids, id)
		for _, c := range []syncengine.Change{{Field: syncengine.FieldTitle, Text: "entry " + fmt.Sprint(len(ids))}, {Field: syncengine.FieldBody, Text: body}, {Field: syncengine.FieldShareSupervisor, Flag: shareSup}} {
			c.Entry, c.Replica, c.Clock = id, dev.Replica, clock.Now()
			batch = append(batch, study.Incoming{Change: c})
		}
		if len(batch)+3 > study.MaxPushChanges {
			MustPush(tb, db, dev, batch)
			batch = nil
		}
	}
	if len(batch) > 0 {
		MustPush(tb, db, dev, batch)
	}
	return ids
}

// TestPull_Pages checks page sizes, the more flag and the remaining
// count, and cursors the server did not issue.
func TestPull_Pages(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	nav := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	sup := MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
	MustAssign(t, ts.DB, "SUP-1", "PN-A")
	const total = study.MaxPullPageSize + 150
	ids := pushEntries(t, ts.DB, nav.Identity, total, true, "short")
	navc, supc := ts.clients(bearer(nav.Token)), ts.clients(bearer(sup.Token))

	t.Run("OK", func(t *testing.T) {
		tests := []struct {
			name      string
			pageSize  uint32
			wantSize  int
			remaining uint64
		}{
			{"default", 0, study.DefaultPullPageSize, total - study.DefaultPullPageSize},
			{"small", 7, 7, total - 7},
			{"maximum", study.MaxPullPageSize, study.MaxPullPageSize, total - study.MaxPullPageSize},
			{"over the maximum", 5 * study.MaxPullPageSize, study.MaxPullPageSize, total - study.MaxPullPageSize},
			{"more than there is", total + 1, study.MaxPullPageSize, total - study.MaxPullPageSize},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := navc.sync.Pull(ctx, &diaryv1.PullRequest{PageSize: tt.pageSize})
				wantCode(t, err, 0)
				if len(resp.GetEntries()) != tt.wantSize || !resp.GetMore() || resp.GetRemaining() != tt.remaining {
					t.Fatalf("page of %d, more %v, remaining %d; want %d, true, %d", len(resp.GetEntries()), resp.GetMore(), resp.GetRemaining(), tt.wantSize, tt.remaining)
				}
				// Oldest changes first, in the order they were pushed.
				for i, e := range resp.GetEntries() {
					if e.GetId() != ids[i].String() {
						t.Fatalf("entry %d is %s, want %s", i, e.GetId(), ids[i])
					}
				}
			})
		}
	})

	t.Run("OKToTheEnd", func(t *testing.T) {
		var cursor uint64
		seen := 0
		for page := 0; ; page++ {
			resp, err := navc.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: 400})
			wantCode(t, err, 0)
			seen += len(resp.GetEntries())
			if want := uint64(total - seen); resp.GetRemaining() != want {
				t.Fatalf("page %d: remaining %d, want %d", page, resp.GetRemaining(), want)
			}
			cursor = resp.GetNextCursor()
			if !resp.GetMore() {
				break
			}
		}
		if seen != total {
			t.Fatalf("pulled %d entries, want %d", seen, total)
		}
		// At the head: an empty page that keeps the cursor.
		resp, err := navc.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor})
		wantCode(t, err, 0)
		if len(resp.GetEntries()) != 0 || resp.GetMore() || resp.GetRemaining() != 0 || resp.GetNextCursor() != cursor {
			t.Fatalf("pull at the head: %v", resp)
		}
	})

	t.Run("OKRemovalsCount", func(t *testing.T) {
		// Unshare 20 of the supervisor's entries: the removal notices
		// are paged and counted like entries.
		w := newWriter(nav)
		var changes []*diaryv1.Change
		for _, id := range ids[:20] {
			changes = append(changes, w.change(id, syncengine.Change{Field: syncengine.FieldShareSupervisor}))
		}
		mustPush(t, navc, changes...)
		p := pullAll(t, supc, 0)
		if len(p.entries) != total-20 || len(p.removals) != 20 {
			t.Fatalf("supervisor pulled %d entries and %d removals, want %d and 20", len(p.entries), len(p.removals), total-20)
		}
		resp, err := supc.sync.Pull(ctx, &diaryv1.PullRequest{PageSize: study.MaxPullPageSize})
		wantCode(t, err, 0)
		if n := len(resp.GetEntries()) + len(resp.GetRemovals()); n != study.MaxPullPageSize || resp.GetRemaining() != total-study.MaxPullPageSize {
			t.Fatalf("first page holds %d, remaining %d", n, resp.GetRemaining())
		}
	})

	t.Run("ErrCursorAhead", func(t *testing.T) {
		var head int64
		err := rawDB(ts.DB).QueryRowContext(ctx, `SELECT value FROM sequence`).Scan(&head)
		if err != nil {
			t.Fatal(err)
		}
		_, err = navc.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: uint64(head) + 1})
		wantCode(t, err, connect.CodeFailedPrecondition)
		if !strings.Contains(err.Error(), "sync again from the start") {
			t.Fatalf("message %q does not say what to do", err)
		}
		_, err = navc.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: 1 << 63})
		wantCode(t, err, connect.CodeInvalidArgument)
	})
}

// TestPull_LargeEntries checks that a page of large entries stops at
// about 4 MiB instead of growing with the page size.
func TestPull_LargeEntries(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{})
	nav := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	const n, bodySize = 40, 200 << 10
	body := strings.Repeat("Long reflection. ", bodySize/17)
	// A few at a time, as a request holds at most 4 MiB.
	for range n / 10 {
		pushEntries(t, ts.DB, nav.Identity, 10, false, body)
	}
	c := ts.clients(bearer(nav.Token))
	var cursor uint64
	got := 0
	for pages := 1; ; pages++ {
		resp, err := c.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: study.MaxPullPageSize})
		wantCode(t, err, 0)
		if size := proto.Size(resp); size > study.MaxPullPageBytes+2*bodySize {
			t.Fatalf("page %d is %d bytes", pages, size)
		}
		if len(resp.GetEntries()) == 0 {
			t.Fatalf("page %d is empty", pages)
		}
		got += len(resp.GetEntries())
		cursor = resp.GetNextCursor()
		if !resp.GetMore() {
			if pages < 2 {
				t.Fatalf("%d entries of %d KiB came in one page", n, bodySize>>10)
			}
			break
		}
		if want := uint64(n - got); resp.GetRemaining() != want {
			t.Fatalf("remaining %d, want %d", resp.GetRemaining(), want)
		}
	}
	if got != n {
		t.Fatalf("pulled %d entries, want %d", got, n)
	}
}
