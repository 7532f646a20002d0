package client

import (
	"context"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// TestRepair_TextEdits: a body edit still in the outbox when the replica
// is damaged is kept by Repair as a text edit (never stamped again), the
// repaired replica still knows the server merges text, and after a sync
// the edit is in the body on the server and on another device.
func TestRepair_TextEdits(t *testing.T) {
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
	body := strings.Repeat("a long day of work ", 50)
	id := mustCreate(t, nav, Draft{Title: "edited offline", Body: body})
	for range 300 {
		mustCreate(t, nav, Draft{Title: "synced", Body: body})
	}
	mustSync(t, nav)
	edited := "Met J. at the day centre. " + body + "Bring the form."
	if err := nav.Update(ctx, id, Edit{Body: &edited}); err != nil {
		t.Fatal(err)
	}
	var edits int
	if err := nav.db.Read.QueryRow(`SELECT count(*) FROM outbox WHERE text = 1`).Scan(&edits); err != nil || edits != 1 {
		t.Fatalf("%d text edits queued (%v), want 1", edits, err)
	}
	nav.Close()
	damagePages(t, path, "entries")

	if _, err := Repair(ctx, path, opts); err != nil {
		t.Fatal(err)
	}
	fixed, err := Open(ctx, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	var kept, merged int
	if err := fixed.db.Read.QueryRow(`SELECT count(*) FROM outbox WHERE text = 1`).Scan(&kept); err != nil || kept != 1 {
		t.Fatalf("%d text edits kept by the repair (%v), want 1", kept, err)
	}
	if err := fixed.db.Read.QueryRow(`SELECT merged_text FROM profile WHERE id = 1`).Scan(&merged); err != nil || merged != 1 {
		t.Fatalf("the repaired profile says the server merges text: %d (%v), want 1", merged, err)
	}
	mustSync(t, fixed)
	if e, err := fixed.Get(ctx, id); err != nil || e.Body != edited || e.Pending != 0 {
		t.Fatalf("the edited entry after repair and sync: %+v, %v", e, err)
	}
	other := MustOpen(t, Options{})
	enr, err := other.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "tablet")
	if err != nil {
		t.Fatal(err)
	}
	// A second device of the account waits for the first to approve it.
	if _, err := fixed.ApproveDevice(ctx, enr.DeviceID); err != nil {
		t.Fatal(err)
	}
	mustSync(t, other)
	if e, err := other.Get(ctx, id); err != nil || e.Body != edited {
		t.Fatalf("the edited entry on another device: %q, %v", e.Body, err)
	}
	assertConverged(t, fixed, other)
}
