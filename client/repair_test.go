package client

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// damagePages overwrites 8 KiB of path with random bytes, starting at a
// page of the named table (from SQLite's dbstat), as a failing flash
// chip or a bad copy would.
func damagePages(tb testing.TB, path, table string) {
	tb.Helper()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		tb.Fatal(err)
	}
	var pageSize int64
	var pages []int64
	if err := raw.QueryRow(`PRAGMA page_size`).Scan(&pageSize); err != nil {
		tb.Fatal(err)
	}
	rows, err := raw.Query(`SELECT pageno FROM dbstat WHERE name = ? ORDER BY pageno`, table)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var p int64
		rows.Scan(&p)
		pages = append(pages, p)
	}
	rows.Close()
	raw.Close()
	if len(pages) < 4 {
		tb.Fatalf("table %s has only %d pages", table, len(pages))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	junk := make([]byte, 8<<10)
	rand.Read(junk)
	if _, err := f.WriteAt(junk, (pages[len(pages)/2]-1)*pageSize); err != nil {
		tb.Fatal(err)
	}
	f.Close()
}

// TestRepair reproduces a replica with 8 KiB overwritten: it is found
// damaged when it is opened (not reported as in sync), and Repair rebuilds
// it from the server keeping every unsynced change, which then reaches
// the server.
func TestRepair(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	opts := Options{Synchronous: "NORMAL"}
	path := t.TempDir() + "/replica.db"
	nav, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nav.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		mustCreate(t, nav, Draft{Title: "synced", Body: strings.Repeat("a long day of work ", 50+i%7)})
	}
	mustSync(t, nav)
	var unsynced []syncengine.EntryID
	for range 5 {
		unsynced = append(unsynced, mustCreate(t, nav, Draft{Title: "written offline", Body: "not on the server yet"}))
	}
	before, _ := nav.Status(ctx)
	nav.Close()
	damagePages(t, path, "entries")

	_, err = Open(ctx, path, opts)
	var de *DamagedError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "diary repair") {
		t.Fatalf("opening the damaged replica: %v", err)
	}

	report, err := Repair(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if report.Kept != before.Pending || report.Unreadable != 0 {
		t.Fatalf("repair kept %d of %d unsynced changes (%d unreadable)", report.Kept, before.Pending, report.Unreadable)
	}
	if _, err := os.Stat(report.DamagedCopy); err != nil {
		t.Fatalf("the damaged copy is not where the report says: %v", err)
	}
	fixed, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	st, _ := fixed.Status(ctx)
	if st.Pending != before.Pending {
		t.Fatalf("after repair %d changes pending, want %d", st.Pending, before.Pending)
	}
	mustSync(t, fixed)
	for _, id := range unsynced {
		if e, err := fixed.Get(ctx, id); err != nil || e.Pending != 0 || e.Title != "written offline" {
			t.Fatalf("unsynced entry after repair and sync: %+v, %v", e, err)
		}
	}
	assertConverged(t, fixed)
	if page, err := fixed.List(ctx, ListOptions{Limit: 1000}); err != nil || len(page.Entries) != 305 {
		t.Fatalf("the repaired replica lists %d entries (%v)", len(page.Entries), err)
	}
}

// TestRepair_DamagedOutbox: when the damage is in the unsynced changes
// themselves, Repair keeps those it can read and says how many it could
// not.
func TestRepair_DamagedOutbox(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	opts := Options{Synchronous: "NORMAL"}
	path := t.TempDir() + "/replica.db"
	nav, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nav.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
		t.Fatal(err)
	}
	for range 300 {
		mustCreate(t, nav, Draft{Title: "offline", Body: strings.Repeat("never synced ", 80)})
	}
	before, _ := nav.Status(ctx)
	nav.Close()
	damagePages(t, path, "outbox")
	report, err := Repair(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if report.Kept == 0 || report.Kept+report.Unreadable > before.Pending || report.Kept >= before.Pending {
		t.Fatalf("repair kept %d and lost %d of %d unsynced changes", report.Kept, report.Unreadable, before.Pending)
	}
	fixed, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	mustSync(t, fixed)
	assertConverged(t, fixed)
	t.Logf("kept %d, could not read %d of %d unsynced changes", report.Kept, report.Unreadable, before.Pending)
}

// TestDamagedWhileOpen: a replica damaged while it is open is found out by
// the first read that meets the damage, and from then on every call says
// so instead of answering from a broken file.
func TestDamagedWhileOpen(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	path := t.TempDir() + "/replica.db"
	c, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
		t.Fatal(err)
	}
	for range 300 {
		mustCreate(t, c, Draft{Title: "entry", Body: strings.Repeat("a long day of work ", 60)})
	}
	mustSync(t, c)
	if _, err := c.db.Write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	damagePages(t, path, "entries")
	var de *DamagedError
	for tok := ""; ; {
		page, err := c.List(ctx, ListOptions{PageToken: tok, Limit: 50})
		if errors.As(err, &de) {
			break
		}
		if err != nil {
			t.Fatalf("listing a damaged replica: %v, want a DamagedError", err)
		}
		if tok = page.Next; tok == "" {
			t.Skip("the damaged pages were served from SQLite's page cache; nothing to find")
		}
	}
	if err := c.Sync(ctx); !errors.As(err, &de) {
		t.Fatalf("sync of a damaged replica: %v", err)
	}
	if _, err := c.Status(ctx); !errors.As(err, &de) {
		t.Fatalf("status of a damaged replica: %v", err)
	}
}

// TestDeviceFull: a write that does not fit on the device says its
// storage is full and leaves nothing half-written.
func TestDeviceFull(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/replica.db"
	c, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var pages int
	c.db.Read.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages)
	c.Close()
	c, err = Open(ctx, path, Options{MaxPageCount: pages + 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ts := startServer(t)
	if _, err := c.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("a hundred 50 KiB entries fit in 80 KiB")
		}
		before, _ := c.Status(ctx)
		_, err := c.Create(ctx, Draft{Title: "long", Body: strings.Repeat("x", 50<<10)})
		if err == nil {
			continue
		}
		if syncengine.ErrorCode(err) != syncengine.ENOSPACE || !strings.Contains(err.Error(), "this device's storage is full") {
			t.Fatalf("a write on a full device: %v", err)
		}
		after, _ := c.Status(ctx)
		if after.Entries != before.Entries || after.Pending != before.Pending {
			t.Fatalf("a refused write left %d entries and %d changes, was %d and %d", after.Entries, after.Pending, before.Entries, before.Pending)
		}
		break
	}
}

// TestRepair_ReadMarks: a supervisor's read mark made offline is an
// unsynced change like any other: Repair keeps it, the next sync sends it
// before pulling, and the entry comes back read, on the server too.
func TestRepair_ReadMarks(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	opts := Options{Synchronous: "NORMAL"}
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.assign(t, "SUP-1", "PN-A")
	var first syncengine.EntryID
	for i := range 300 {
		id := mustCreate(t, nav, Draft{Title: "shared", Body: strings.Repeat("a long day of work ", 50+i%7), ShareSupervisor: true})
		if i == 0 {
			first = id
		}
	}
	mustSync(t, nav)

	path := t.TempDir() + "/replica.db"
	sup, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Enroll(ctx, ts.URL, ts.code(t, study.RoleSupervisor, "SUP-1"), "laptop"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, sup)
	if err := sup.MarkRead(ctx, first, true); err != nil {
		t.Fatal(err)
	}
	sup.Close()
	damagePages(t, path, "entries")

	report, err := Repair(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if report.ReadsKept != 1 {
		t.Fatalf("repair kept %d read marks, want 1", report.ReadsKept)
	}
	fixed, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	if st, _ := fixed.Status(ctx); st.ReadsQueued != 1 {
		t.Fatalf("read marks queued after repair: %d, want 1", st.ReadsQueued)
	}
	mustSync(t, fixed)
	if !mustRead(t, fixed, first) {
		t.Fatal("the entry marked read before the damage is unread after repair and sync")
	}
	u, err := ts.DB.UserByCode(ctx, "SUP-1")
	if err != nil {
		t.Fatal(err)
	}
	it, err := ts.DB.InboxEntry(ctx, &study.Identity{UserID: u.ID, StudyCode: "SUP-1", Role: study.RoleSupervisor}, first)
	if err != nil || !it.Read {
		t.Fatalf("the server holds read=%v (%v), want the mark made before the damage", it != nil && it.Read, err)
	}
}
