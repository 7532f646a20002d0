package client

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/diarysync/diarysync/study"
)

func mustReport(tb testing.TB, c *Client) Report {
	tb.Helper()
	r, err := c.SyncReport(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// sameReplicas fails unless the two replicas of one navigator hold the
// same entries, byte for byte (their state hashes).
func sameReplicas(tb testing.TB, what string, a, b *Client) {
	tb.Helper()
	ha, na, err := a.StateHash(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	hb, nb, err := b.StateHash(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	if ha != hb || na != nb {
		tb.Fatalf("%s: one replica holds %d entries (%x), the other %d (%x)", what, na, ha[:4], nb, hb[:4])
	}
}

// TestSyncLeavesOutEchoes: a sync does not pull back the entries it has
// just pushed, while what another device wrote still comes; and a replica
// restored from a backup, which lacks entries it had pushed since, gets
// them back in its next sync, then leaves out its echoes again.
func TestSyncLeavesOutEchoes(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	path := filepath.Join(t.TempDir(), "phone.db")
	phone, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
		t.Fatal(err)
	}
	ts.first["PN-A"] = phone
	mustSync(t, phone)
	tablet := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mustSync(t, tablet)

	mustCreate(t, phone, Draft{Title: "Tuesday", Body: "Went to the hostel with J.", Tags: []string{"housing"}})
	if r := mustReport(t, phone); r.Accepted == 0 || r.Received != 0 {
		t.Fatalf("the sync that pushed the entry: %+v, want it accepted and nothing received", r)
	}
	if r := mustReport(t, tablet); r.Received != 1 {
		t.Fatalf("the other device received %d entries, want 1", r.Received)
	}
	sameReplicas(t, "after one entry", phone, tablet)

	// An edit on the tablet reaches the phone.
	id := mustCreate(t, tablet, Draft{Title: "Wednesday", Body: "Day centre."})
	mustSync(t, tablet)
	if r := mustReport(t, phone); r.Received != 1 {
		t.Fatalf("the phone received %d entries of the tablet's, want 1", r.Received)
	}
	if err := phone.Update(ctx, id, Edit{Body: ptr("Day centre, then the council.")}); err != nil {
		t.Fatal(err)
	}
	if r := mustReport(t, phone); r.Received != 0 {
		t.Fatalf("the phone's edit came back: %+v", r)
	}
	mustSync(t, tablet)
	sameReplicas(t, "after edits on both", phone, tablet)

	// A backup of the phone's replica, then an entry it does not hold.
	if err := phone.Close(); err != nil {
		t.Fatal(err)
	}
	backup := t.TempDir()
	copyReplica(t, path, backup)
	if phone, err = Open(ctx, path, Options{Synchronous: "NORMAL"}); err != nil {
		t.Fatal(err)
	}
	lost := mustCreate(t, phone, Draft{Title: "Thursday", Body: "Outreach van."})
	mustSync(t, phone)
	if err := phone.Close(); err != nil {
		t.Fatal(err)
	}

	// Restored, the phone writes again and syncs: what it had pushed
	// since the backup comes back.
	copyReplica(t, backup, filepath.Dir(path))
	if phone, err = Open(ctx, path, Options{Synchronous: "NORMAL"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { phone.Close() })
	if _, err := phone.Get(ctx, lost); err == nil {
		t.Fatal("the restored replica holds the entry written after its backup")
	}
	mustCreate(t, phone, Draft{Title: "Friday", Body: "Court day."})
	if r := mustReport(t, phone); r.Received != 1 {
		t.Fatalf("the restored replica received %d entries, want the one it lost", r.Received)
	}
	if _, err := phone.Get(ctx, lost); err != nil {
		t.Fatalf("the restored replica does not hold the entry it lost: %v", err)
	}
	mustSync(t, tablet)
	sameReplicas(t, "after the restore", phone, tablet)
	mustCreate(t, phone, Draft{Title: "Saturday"})
	if r := mustReport(t, phone); r.Received != 0 {
		t.Fatalf("after the restored replica caught up, its echo came back: %+v", r)
	}
	mustSync(t, tablet)
	sameReplicas(t, "at the end", phone, tablet)
}

// copyReplica copies the replica file at path (closed) into dir, under
// the same name, with its log if it has one.
func copyReplica(tb testing.TB, path, dir string) {
	tb.Helper()
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "phone.db")
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		b, err := os.ReadFile(path + suffix)
		if os.IsNotExist(err) && suffix != "" {
			os.Remove(filepath.Join(dir, filepath.Base(path)+suffix))
			continue
		}
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)+suffix), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
}
