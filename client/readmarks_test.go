package client

import (
	"context"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// queuedMark returns the read mark of an entry waiting in c's queue.
func queuedMark(tb testing.TB, c *Client, id syncengine.EntryID) study.ReadMark {
	tb.Helper()
	m := study.ReadMark{Entry: id}
	var clock int64
	if err := c.db.Read.QueryRow(`SELECT read, clock FROM read_outbox WHERE entry = ?`, id[:]).Scan(&m.Read, &clock); err != nil {
		tb.Fatal(err)
	}
	m.Clock = syncengine.Timestamp(clock)
	return m
}

func mustRead(tb testing.TB, c *Client, id syncengine.EntryID) bool {
	tb.Helper()
	e, err := c.Get(context.Background(), id)
	if err != nil {
		tb.Fatal(err)
	}
	return !e.ReadAt.IsZero()
}

// TestReadMarksFollowTheSupervisor: an entry marked read on one of a
// supervisor's devices, offline, is read on their other device after
// both sync; marking it unread travels back; the later mark wins.
func TestReadMarksFollowTheSupervisor(t *testing.T) {
	ts, f := startFlakyServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.assign(t, "SUP-1", "PN-A")
	phone := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	laptop := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	id := mustCreate(t, nav, Draft{Title: "shared", ShareSupervisor: true})
	other := mustCreate(t, nav, Draft{Title: "also shared", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, phone)
	mustSync(t, laptop)

	f.down.Store(true)
	if err := phone.MarkRead(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if !mustRead(t, phone, id) {
		t.Fatal("not read on the phone right after marking it, offline")
	}
	if st, _ := phone.Status(ctx); st.ReadsQueued != 1 {
		t.Fatalf("queued read marks %d, want 1", st.ReadsQueued)
	}
	if err := phone.Sync(ctx); err == nil {
		t.Fatal("sync with the server down succeeded")
	}
	f.down.Store(false)
	mustSync(t, phone)
	if st, _ := phone.Status(ctx); st.ReadsQueued != 0 {
		t.Fatalf("queued read marks after sync %d, want 0", st.ReadsQueued)
	}
	mustSync(t, laptop)
	if !mustRead(t, laptop, id) || mustRead(t, laptop, other) {
		t.Fatal("the laptop does not show what the phone read")
	}
	page, err := laptop.List(ctx, ListOptions{Unread: true})
	if err != nil || len(page.Entries) != 1 || page.Entries[0].ID != other {
		t.Fatalf("laptop's unread list: %+v, %v", page, err)
	}

	// Marked unread on the laptop, then read again on the phone before
	// either syncs: the mark with the later clock wins on both. (Which
	// one that is depends on each device's clock correction, which is
	// only as exact as a round trip: it is read from the replicas.)
	if err := laptop.MarkRead(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	if err := phone.MarkRead(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	want := queuedMark(t, phone, id)
	if l := queuedMark(t, laptop, id); l.Newer(want) {
		want = l
	}
	mustSync(t, phone)
	mustSync(t, laptop)
	mustSync(t, phone)
	if mustRead(t, phone, id) != want.Read || mustRead(t, laptop, id) != want.Read {
		t.Fatalf("the later mark (read=%v) did not win on both devices", want.Read)
	}
	if err := laptop.MarkRead(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	mustSync(t, laptop)
	mustSync(t, phone)
	if mustRead(t, phone, id) || mustRead(t, laptop, id) {
		t.Fatal("marking unread did not travel")
	}
	assertConverged(t, phone, laptop)
}

// TestReadMarkOfUnsharedEntry: a mark made offline on an entry that is
// unshared meanwhile is refused by the server and leaves the queue, so
// it does not hold back the marks behind it.
func TestReadMarkOfUnsharedEntry(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	a := mustCreate(t, nav, Draft{Title: "to be unshared", ShareSupervisor: true})
	b := mustCreate(t, nav, Draft{Title: "stays", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, sup)
	if err := sup.MarkRead(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	if err := sup.MarkRead(ctx, b, true); err != nil {
		t.Fatal(err)
	}
	if err := nav.SetSharing(ctx, a, false, false); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	mustSync(t, sup)
	if st, _ := sup.Status(ctx); st.ReadsQueued != 0 {
		t.Fatalf("queued read marks %d, want 0", st.ReadsQueued)
	}
	if _, err := sup.Get(ctx, a); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
		t.Fatalf("the unshared entry is still there: %v", err)
	}
	// The other mark reached the server.
	sup2 := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	mustSync(t, sup2)
	if !mustRead(t, sup2, b) {
		t.Fatal("the mark behind the refused one did not reach the server")
	}
	if err := nav.MarkRead(ctx, b, true); syncengine.ErrorCode(err) != syncengine.EPERMISSION {
		t.Fatalf("a navigator marking read: %v, want EPERMISSION", err)
	}
}

// TestReadMarkFromServer: a mark the server got from elsewhere (the web
// console marks through the store) reaches the device on its next pull,
// but does not overwrite a newer mark still queued on the device.
func TestReadMarkFromServer(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	id := mustCreate(t, nav, Draft{Title: "shared", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, sup)
	u, err := ts.DB.UserByCode(ctx, "SUP-1")
	if err != nil {
		t.Fatal(err)
	}
	who := &study.Identity{UserID: u.ID, StudyCode: "SUP-1", Role: study.RoleSupervisor}
	mark := func(read bool, at time.Time) {
		t.Helper()
		r, _, err := ts.DB.MarkRead(ctx, who, []study.ReadMark{{Entry: id, Read: read, Clock: syncengine.TimestampAt(at)}})
		if err != nil || r[0].Outcome != study.OutcomeApplied {
			t.Fatalf("MarkRead = %+v, %v", r, err)
		}
	}
	mark(true, time.Now().Add(-2*time.Hour))
	mustSync(t, sup)
	if !mustRead(t, sup, id) {
		t.Fatal("a mark made on the server did not reach the device")
	}
	// A newer unread mark made here, offline, wins over a server mark
	// made meanwhile with an older clock, here and on the server.
	if err := sup.MarkRead(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	mark(true, time.Now().Add(-time.Hour))
	mustSync(t, sup)
	if mustRead(t, sup, id) {
		t.Fatal("an older server mark overwrote a newer local one")
	}
	it, err := ts.DB.InboxEntry(ctx, who, id)
	if err != nil || it.Read {
		t.Fatalf("the server holds read=%v (%v), want the device's later unread", it != nil && it.Read, err)
	}
}
