package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	_ "modernc.org/sqlite"
)

type testEnv struct {
	t   *testing.T
	url string
	db  *sqlite.DB
}

func startServer(t *testing.T) *testEnv {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "server.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Config{Store: db}).Handler())
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); db.Close() })
	return &testEnv{t: t, url: srv.URL, db: db}
}

func (te *testEnv) code(role study.Role, study string) string {
	te.t.Helper()
	ctx := context.Background()
	if _, err := te.db.UserByCode(ctx, study); err != nil {
		if _, err := te.db.CreateUser(ctx, study, role, ""); err != nil {
			te.t.Fatal(err)
		}
	}
	code, _, err := te.db.IssueEnrollmentCode(ctx, study, 0)
	if err != nil {
		te.t.Fatal(err)
	}
	return code
}

// diary runs the command line in-process and returns its exit status,
// standard output and standard error.
func diary(t *testing.T, home, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), append([]string{"--home", home}, args...), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustDiary(t *testing.T, home, stdin string, args ...string) string {
	t.Helper()
	code, out, errOut := diary(t, home, stdin, args...)
	if code != 0 {
		t.Fatalf("diary %v: exit %d: %s", args, code, errOut)
	}
	return out
}

func enrol(t *testing.T, te *testEnv, role study.Role, study string) string {
	home := filepath.Join(t.TempDir(), study)
	mustDiary(t, home, "", "enrol", "--server", te.url, "--code", te.code(role, study), "--name", "test")
	return home
}

func TestWriteListShow(t *testing.T) {
	te := startServer(t)
	nav := enrol(t, te, study.RoleNavigator, "PN-A")

	out := mustDiary(t, nav, "", "write", "--title", "Tuesday", "--date", "2026-11-24", "--tag", "housing", "--tag", "court", "--share", "supervisor", "--mood", "7", "--body", "Met J.")
	id := strings.TrimSpace(out)
	if len(id) != 36 || strings.Count(out, "\n") != 1 {
		t.Fatalf("write printed %q, want only the id", out)
	}
	// The body can come from standard input.
	id2 := strings.TrimSpace(mustDiary(t, nav, "line one\nline two\n", "write", "--title", "Piped"))

	var e map[string]any
	if err := json.Unmarshal([]byte(mustDiary(t, nav, "", "show", id, "--json")), &e); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "author", "title", "body", "date", "tags", "share_supervisor", "share_research", "deleted", "created_at", "updated_at"} {
		if _, ok := e[k]; !ok {
			t.Errorf("show --json lacks %q", k)
		}
	}
	if e["title"] != "Tuesday" || e["author"] != "PN-A" || e["share_supervisor"] != true || e["mood"] != 7.0 {
		t.Fatalf("show --json: %v", e)
	}
	var piped map[string]any
	json.Unmarshal([]byte(mustDiary(t, nav, "", "show", id2[len(id2)-8:], "--json")), &piped)
	if piped["body"] != "line one\nline two" {
		t.Fatalf("piped body %q", piped["body"])
	}

	mustDiary(t, nav, "", "edit", id[len(id)-8:], "--title", "Tuesday, hostel", "--add-tag", "family", "--remove-tag", "court")
	json.Unmarshal([]byte(mustDiary(t, nav, "", "show", id, "--json")), &e)
	if e["title"] != "Tuesday, hostel" || fmt.Sprint(e["tags"]) != "[family housing]" {
		t.Fatalf("after edit: %v", e)
	}

	mustDiary(t, nav, "", "delete", id2)
	lines := strings.Split(strings.TrimSpace(mustDiary(t, nav, "", "list", "--json")), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], id) {
		t.Fatalf("list --json after delete: %q", lines)
	}
	if out := mustDiary(t, nav, "", "list", "--deleted"); !strings.Contains(out, id2[len(id2)-8:]) {
		t.Fatalf("list --deleted: %q", out)
	}
	mustDiary(t, nav, "", "restore", id2)

	var st map[string]any
	json.Unmarshal([]byte(mustDiary(t, nav, "", "status", "--json")), &st)
	if st["pending"] != 15.0 || st["study_code"] != "PN-A" {
		t.Fatalf("status --json: %v", st)
	}
	mustDiary(t, nav, "", "sync")
	json.Unmarshal([]byte(mustDiary(t, nav, "", "status", "--json")), &st)
	if st["pending"] != 0.0 || st["last_sync"] == nil {
		t.Fatalf("status --json after sync: %v", st)
	}
}

func TestErrors(t *testing.T) {
	te := startServer(t)
	nav := enrol(t, te, study.RoleNavigator, "PN-A")
	for _, tc := range []struct {
		name   string
		home   string
		args   []string
		status int
		stderr string
	}{
		{"UnknownCommand", nav, []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"NoProfile", filepath.Join(t.TempDir(), "none"), []string{"list"}, 1, "enrol first"},
		{"UnknownEntry", nav, []string{"show", "abcd0193"}, 1, "no entry on this device has an id"},
		{"BadID", nav, []string{"show", "xyz"}, 1, "not an entry id or part of one"},
		{"BadDate", nav, []string{"write", "--date", "27/11/2026", "--body", "x"}, 2, "YYYY-MM-DD"},
		{"BadShare", nav, []string{"write", "--share", "everyone", "--body", "x"}, 2, "--share must be"},
		{"BadFlag", nav, []string{"list", "--colour"}, 2, "flag provided but not defined"},
		{"TitleTooLong", nav, []string{"write", "--title", strings.Repeat("t", 2000), "--body", "x"}, 2, "limit is 1024 bytes"},
		{"AdminAsNavigator", nav, []string{"admin", "user", "list"}, 1, "may not call"},
		{"InboxAsNavigator", nav, []string{"inbox"}, 1, "the inbox is for supervisors"},
		{"BadCode", filepath.Join(t.TempDir(), "x"), []string{"enrol", "--server", te.url, "--code", "AAAAA-AAAAA"}, 1, "enrolment code is not valid"},
		{"ServerDown", filepath.Join(t.TempDir(), "y"), []string{"enrol", "--server", "http://127.0.0.1:1", "--code", "AAAAA-AAAAA"}, 1, "cannot be reached"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out, errOut := diary(t, tc.home, "", tc.args...)
			if status != tc.status || !strings.Contains(errOut, tc.stderr) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", status, out, errOut, tc.status, tc.stderr)
			}
		})
	}
}

func TestAdminAndInbox(t *testing.T) {
	te := startServer(t)
	admin := enrol(t, te, study.RoleAdmin, "ADMIN")
	if out := mustDiary(t, admin, "", "admin", "user", "add", "--role", "navigator", "--code", "PN-D", "--name", "Dee"); out != "PN-D\n" {
		t.Fatalf("user add printed %q", out)
	}
	mustDiary(t, admin, "", "admin", "user", "add", "--role", "supervisor", "--code", "SUP-2")
	mustDiary(t, admin, "", "admin", "assign", "--supervisor", "SUP-2", "--navigator", "PN-D")
	code := strings.TrimSpace(mustDiary(t, admin, "", "admin", "code", "--user", "PN-D"))
	if len(code) != 11 || code[5] != '-' {
		t.Fatalf("admin code printed %q", code)
	}
	nav := filepath.Join(t.TempDir(), "pnd")
	mustDiary(t, nav, "", "enrol", "--server", te.url, "--code", code)
	sup := filepath.Join(t.TempDir(), "sup2")
	mustDiary(t, sup, "", "enrol", "--server", te.url, "--code", strings.TrimSpace(mustDiary(t, admin, "", "admin", "code", "--user", "SUP-2")))

	shared := strings.TrimSpace(mustDiary(t, nav, "", "write", "--title", "Shared one", "--share", "supervisor", "--body", "x"))
	mustDiary(t, nav, "", "write", "--title", "Private one", "--body", "y")
	mustDiary(t, nav, "", "sync")
	mustDiary(t, sup, "", "sync")
	inbox := mustDiary(t, sup, "", "inbox")
	if !strings.Contains(inbox, "Shared one") || strings.Contains(inbox, "Private one") || !strings.Contains(inbox, "new") {
		t.Fatalf("inbox:\n%s", inbox)
	}
	mustDiary(t, sup, "", "show", shared[len(shared)-8:])
	var e map[string]any
	json.Unmarshal([]byte(mustDiary(t, sup, "", "inbox", "--json")), &e)
	if e["read"] != true {
		t.Fatalf("after show, inbox --json says %v", e)
	}
	fid := strings.TrimSpace(mustDiary(t, sup, "", "feedback", shared[len(shared)-8:], "--body", "Thanks for this."))
	if len(fid) != 36 {
		t.Fatalf("feedback printed %q", fid)
	}
	mustDiary(t, sup, "", "sync")
	mustDiary(t, nav, "", "sync")
	if out := mustDiary(t, nav, "", "show", shared); !strings.Contains(out, "feedback from SUP-2") || !strings.Contains(out, "Thanks for this.") {
		t.Fatalf("navigator's show:\n%s", out)
	}

	devices := mustDiary(t, admin, "", "admin", "device", "list", "--json")
	var dev map[string]any
	for _, line := range strings.Split(strings.TrimSpace(devices), "\n") {
		json.Unmarshal([]byte(line), &dev)
		if dev["study_code"] == "PN-D" {
			break
		}
	}
	mustDiary(t, admin, "", "admin", "device", "revoke", dev["device_id"].(string))
	if status, _, errOut := diary(t, nav, "", "sync"); status != 1 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("sync after revoke: %d %q", status, errOut)
	}
	mustDiary(t, admin, "", "admin", "wave", "add", "--number", "1", "--label", "Baseline", "--from", "2026-01-01", "--to", "2026-03-31")
	if status, _, errOut := diary(t, admin, "", "admin", "wave", "add", "--number", "2", "--label", "Overlap", "--from", "2026-03-01", "--to", "2026-04-30"); status != 1 || !strings.Contains(errOut, "overlaps wave 1") {
		t.Fatalf("overlapping wave: %d %q", status, errOut)
	}
	if out := mustDiary(t, admin, "", "admin", "wave", "list"); !strings.Contains(out, "Baseline") {
		t.Fatalf("wave list:\n%s", out)
	}
}

// TestWriteSurvivesKill runs the real binary and kills it with SIGKILL
// the moment it has printed the new entry's id, before it can close the
// database: every write it reported is on disk.
func TestWriteSurvivesKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the diary binary")
	}
	te := startServer(t)
	home := enrol(t, te, study.RoleNavigator, "PN-A")
	bin := filepath.Join(t.TempDir(), "diary")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var ids []string
	for i := range 10 {
		cmd := exec.Command(bin, "--home", home, "write", "--title", fmt.Sprint("killed ", i), "--body", strings.Repeat("words ", 200))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if err != nil {
			t.Fatalf("write %d printed nothing: %v", i, err)
		}
		ids = append(ids, strings.TrimSpace(line))
	}
	// Read the replica file directly, as the next process would.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(home, "replica.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var entries, outbox int
	if err := db.QueryRow(`SELECT count(*) FROM entries`).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	db.QueryRow(`SELECT count(*) FROM outbox`).Scan(&outbox)
	if entries != 10 || outbox != 30 {
		t.Fatalf("after 10 killed writes: %d entries, %d changes queued; want 10 and 30", entries, outbox)
	}
	for _, id := range ids {
		if out := mustDiary(t, home, "", "show", id); !strings.Contains(out, "killed") {
			t.Fatalf("entry %s: %q", id, out)
		}
	}
	mustDiary(t, home, "", "sync")
	var st map[string]any
	json.Unmarshal([]byte(mustDiary(t, home, "", "status", "--json")), &st)
	if st["pending"] != 0.0 {
		t.Fatalf("status after sync: %v", st)
	}
}
