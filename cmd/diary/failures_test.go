package main

import (
	"crypto/rand"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
)

// damageEntries overwrites 8 KiB of a replica, in its entries table.
func damageEntries(t *testing.T, path string) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	var pageSize, page int64
	err = raw.QueryRow(`PRAGMA page_size`).Scan(&pageSize)
	if err == nil {
		err = raw.QueryRow(`SELECT pageno FROM dbstat WHERE name = 'entries' ORDER BY pageno LIMIT 1 OFFSET 10`).Scan(&page)
	}
	raw.Close()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, 8<<10)
	rand.Read(junk)
	f.WriteAt(junk, (page-1)*pageSize)
	f.Close()
}

// TestDamagedReplica reproduces a replica with 8 KiB overwritten: status
// and sync say it is damaged and how to repair it, instead of reporting
// success, and "diary repair" rebuilds it from the server with the
// unsynced entries kept.
func TestDamagedReplica(t *testing.T) {
	te := startServer(t)
	nav := enrol(t, te, study.RoleNavigator, "PN-A")
	for range 60 {
		mustDiary(t, nav, "", "write", "--title", "synced", "--body", strings.Repeat("a long shift at the day centre ", 40))
	}
	mustDiary(t, nav, "", "sync")
	offline := strings.TrimSpace(mustDiary(t, nav, "", "write", "--title", "written offline", "--body", "not synced"))
	damageEntries(t, filepath.Join(nav, "replica.db"))

	for _, cmd := range [][]string{{"status"}, {"sync"}, {"list"}} {
		code, _, errOut := diary(t, nav, "", cmd...)
		if code != 1 || !strings.Contains(errOut, "is damaged") || !strings.Contains(errOut, "diary repair") {
			t.Fatalf("diary %s on a damaged replica: exit %d, %q", cmd[0], code, errOut)
		}
	}
	code, _, errOut := diary(t, nav, "", "repair")
	if code != 0 || !strings.Contains(errOut, "kept 3 unsynced change(s)") || !strings.Contains(errOut, "damaged file was kept as") {
		t.Fatalf("diary repair: exit %d, %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(mustDiary(t, nav, "", "list", "--json")), "\n")
	if len(lines) != 61 {
		t.Fatalf("after repair the replica lists %d entries, want 61", len(lines))
	}
	if out := mustDiary(t, nav, "", "show", offline); !strings.Contains(out, "written offline") || strings.Contains(out, "pending:") {
		t.Fatalf("the offline entry after repair:\n%s", out)
	}
}

// TestProfileTightened: a profile directory left open to others is made
// private before the replica is used.
func TestProfileTightened(t *testing.T) {
	te := startServer(t)
	nav := enrol(t, te, study.RoleNavigator, "PN-A")
	if err := os.Chmod(nav, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(nav, "replica.db"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustDiary(t, nav, "", "list")
	for path, want := range map[string]os.FileMode{nav: 0o700, filepath.Join(nav, "replica.db"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
}
