package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// TestHelp runs every command and administration subcommand with --help:
// each prints its usage and every flag it defines to standard output,
// exits 0, and does nothing else (no profile is made, no server called).
func TestHelp(t *testing.T) {
	home := filepath.Join(t.TempDir(), "no-profile")
	for _, c := range commands {
		t.Run(c.path, func(t *testing.T) {
			var sets []*flag.FlagSet
			var out, errOut bytes.Buffer
			e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
				onFlags: func(fs *flag.FlagSet) { sets = append(sets, fs) }}
			args := append(append([]string{"--home", home}, strings.Fields(c.path)...), "--help")
			if code := exitStatus(dispatch(e, args), &errOut); code != 0 {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if len(sets) != 1 {
				t.Fatalf("the command made %d flag sets, want 1", len(sets))
			}
			help := out.String()
			if !strings.HasPrefix(help, "usage: diary "+c.path+" ") || !strings.Contains(help, c.summary) {
				t.Fatalf("help does not start with its usage and summary:\n%s", help)
			}
			sets[0].VisitAll(func(f *flag.Flag) {
				if !strings.Contains(help, "  -"+f.Name+" ") && !strings.Contains(help, "  -"+f.Name+"\n") {
					t.Errorf("help does not show -%s:\n%s", f.Name, help)
				}
			})
			if errOut.Len() > 0 {
				t.Errorf("help wrote to stderr: %s", errOut.String())
			}
			if _, err := os.Stat(home); !os.IsNotExist(err) {
				t.Fatalf("--help made the profile directory (%v)", err)
			}
		})
	}
	// Groups of subcommands list them.
	for _, group := range []string{"admin", "admin user", "admin device", "admin wave", "device"} {
		code, out, _ := diary(t, home, "", append(strings.Fields(group), "--help")...)
		if code != 0 || !strings.Contains(out, "usage: diary "+group+" SUBCOMMAND") {
			t.Errorf("diary %s --help: exit %d\n%s", group, code, out)
		}
		for _, c := range commands {
			if strings.HasPrefix(c.path, group+" ") && !strings.Contains(out, c.path) {
				t.Errorf("diary %s --help does not list %s", group, c.path)
			}
		}
	}
	// Top-level help lists every command.
	out := mustDiary(t, home, "", "help")
	for _, c := range commands {
		if !strings.Contains(out, "  "+c.path+" ") {
			t.Errorf("diary help does not list %s", c.path)
		}
	}
}

// TestCommandLineMistakes: every invalid flag value, unknown command or
// missing argument exits 2 with a message, before anything is done; a
// mistyped command suggests the nearest one.
func TestCommandLineMistakes(t *testing.T) {
	home := filepath.Join(t.TempDir(), "no-profile")
	for _, tc := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"wirte"}, `did you mean "write"?`},
		{[]string{"stauts"}, `did you mean "status"?`},
		{[]string{"admin", "usr", "list"}, `did you mean "user"?`},
		{[]string{"admin", "user", "lsit"}, `did you mean "list"?`},
		{[]string{"device", "aprove", "x"}, `did you mean "approve"?`},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"admin"}, "admin needs a subcommand"},
		{[]string{"write", "--mood", "11", "--body", "x"}, "--mood must be from 1 to 10"},
		{[]string{"write", "--mood", "-1", "--body", "x"}, "--mood must be from 1 to 10"},
		{[]string{"write", "--mood", "seven", "--body", "x"}, "invalid value"},
		{[]string{"write", "--date", "2026-02-30", "--body", "x"}, "YYYY-MM-DD"},
		{[]string{"write", "--tag", strings.Repeat("t", 65), "--body", "x"}, "--tag"},
		{[]string{"write", "--share", "everyone", "--body", "x"}, "--share must be"},
		{[]string{"write", "--title", strings.Repeat("t", 2000), "--body", "x"}, "limit is 1024 bytes"},
		{[]string{"edit", "abcd", "--mood", "12"}, "--mood must be"},
		{[]string{"list", "--from", "yesterday"}, "--from"},
		{[]string{"list", "--limit", "-3"}, "--limit must not be negative"},
		{[]string{"list", "--shared", "everyone"}, "--shared must be"},
		{[]string{"activity", "--limit", "-1"}, "--limit must not be negative"},
		{[]string{"enrol", "--server", "ftp://x", "--code", "ABCDE-FGHJK"}, "must start with http:// or https://"},
		{[]string{"enrol", "--server", "http://x", "--code", "not-a-code"}, "is not an enrolment code"},
		{[]string{"enrol", "--server", "http://x", "--code", "ABCDE-FGHJK", "--name", strings.Repeat("n", 65)}, "--name"},
		{[]string{"enrol", "--code", "ABCDE-FGHJK"}, "enrol needs --server"},
		{[]string{"export", "--wave", "0", "--format", "csv", "--out", "x"}, "--wave must be"},
		{[]string{"export", "--wave", "1", "--format", "docx", "--out", "x"}, "--format must be"},
		{[]string{"refused", "dismiss", "first"}, "refused dismiss needs the number"},
		{[]string{"show"}, "exactly one entry ID"},
		{[]string{"admin", "code", "--user", "PN-A", "--ttl", "1s"}, "--ttl"},
		{[]string{"admin", "code", "--user", "not a code"}, "--user"},
		{[]string{"admin", "user", "reset", "PN-A", "--ttl", "900h"}, "--ttl"},
		{[]string{"admin", "user", "add", "--role", "owner", "--code", "PN-X"}, "--role must be"},
		{[]string{"admin", "user", "add", "--role", "navigator", "--code", "PN X"}, "--code"},
		{[]string{"admin", "wave", "add", "--number", "1", "--label", "B", "--from", "2026-01-01", "--to", "2025-01-01"}, "wave"},
		{[]string{"admin", "erase", "--entry", "abc"}, "is not an entry id"},
		{[]string{"admin", "audit", "--limit", "-1"}, "--limit must not be negative"},
		{[]string{"version", "extra"}, "takes no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := diary(t, home, "", tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.stderr) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, out, errOut, tc.stderr)
			}
		})
	}
	t.Setenv("DIARY_TIMEOUT", "soon")
	if code, _, errOut := diary(t, home, "", "sync"); code != 2 || !strings.Contains(errOut, "DIARY_TIMEOUT") {
		t.Fatalf("a bad DIARY_TIMEOUT: exit %d, %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	out := mustDiary(t, t.TempDir(), "", "version")
	if !strings.HasPrefix(out, "diary ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version printed %q", out)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(mustDiary(t, t.TempDir(), "", "version", "--json")), &info); err != nil || info["module"] != "github.com/diarysync/diarysync" {
		t.Fatalf("version --json: %v, %v", info, err)
	}
}

// TestEnrolMistakes: a failed enrolment leaves no profile; an enrolled
// profile enrols again only with --replace; a profile is never enrolled
// as someone else, and such a code is refused before it is spent.
func TestEnrolMistakes(t *testing.T) {
	te := startServer(t)
	t.Run("FailedLeavesNoProfile", func(t *testing.T) {
		home := filepath.Join(t.TempDir(), "new")
		if code, _, errOut := diary(t, home, "", "enrol", "--server", te.url, "--code", "AAAAA-AAAAA"); code != 1 || !strings.Contains(errOut, "not valid") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if _, err := os.Stat(home); !os.IsNotExist(err) {
			t.Fatalf("a failed enrolment left %s (%v)", home, err)
		}
		// A directory that was there stays, without a replica in it.
		existing := t.TempDir()
		diary(t, existing, "", "enrol", "--server", te.url, "--code", "AAAAA-AAAAA")
		if entries, _ := os.ReadDir(existing); len(entries) != 0 {
			t.Fatalf("a failed enrolment left %v in an existing directory", entries)
		}
		if code, _, errOut := diary(t, home, "", "status"); code != 1 || !strings.Contains(errOut, "no profile") {
			t.Fatalf("status after a failed enrolment: exit %d, %q", code, errOut)
		}
	})
	t.Run("ErrEnrolledNeedsReplace", func(t *testing.T) {
		home := enrol(t, te, study.RoleNavigator, "PN-A")
		code := te.code(study.RoleNavigator, "PN-A")
		st, errOut := 0, ""
		if st, _, errOut = diary(t, home, "", "enrol", "--server", te.url, "--code", code); st != 1 || !strings.Contains(errOut, "--replace") {
			t.Fatalf("enrolling an enrolled profile: exit %d, %q", st, errOut)
		}
		// The code was not spent: it enrols another profile.
		mustDiary(t, filepath.Join(t.TempDir(), "other"), "", "enrol", "--server", te.url, "--code", code)
	})
	t.Run("ErrSomeoneElse", func(t *testing.T) {
		home := enrol(t, te, study.RoleNavigator, "PN-B")
		var status map[string]any
		json.Unmarshal([]byte(mustDiary(t, home, "", "status", "--json")), &status)
		if _, err := te.db.RevokeDevice(context.Background(), status["device_id"].(string)); err != nil {
			t.Fatal(err)
		}
		diary(t, home, "", "sync") // learns it was revoked
		code := te.code(study.RoleNavigator, "PN-C")
		if st, _, errOut := diary(t, home, "", "enrol", "--server", te.url, "--code", code); st != 1 || !strings.Contains(errOut, "not for PN-B") {
			t.Fatalf("enrolling PN-B's profile with PN-C's code: exit %d, %q", st, errOut)
		}
		mustDiary(t, filepath.Join(t.TempDir(), "pn-c"), "", "enrol", "--server", te.url, "--code", code)
	})
	t.Run("OKReplace", func(t *testing.T) {
		home := enrol(t, te, study.RoleNavigator, "PN-R")
		mustDiary(t, home, "", "write", "--title", "synced", "--body", "x")
		mustDiary(t, home, "", "sync")
		unsynced := strings.TrimSpace(mustDiary(t, home, "", "write", "--title", "not synced", "--body", "y"))
		var before, after map[string]any
		json.Unmarshal([]byte(mustDiary(t, home, "", "status", "--json")), &before)
		mustDiary(t, home, "", "enrol", "--replace", "--code", te.code(study.RoleNavigator, "PN-R"), "--name", "new phone")
		json.Unmarshal([]byte(mustDiary(t, home, "", "status", "--json")), &after)
		if after["device_id"] == before["device_id"] || after["pending"] != 0.0 || after["device_state"] != "active" {
			t.Fatalf("after --replace: %v (before %v)", after, before)
		}
		devices := mustDiary(t, home, "", "device", "list", "--json")
		var old map[string]any
		for _, line := range strings.Split(strings.TrimSpace(devices), "\n") {
			var d map[string]any
			json.Unmarshal([]byte(line), &d)
			if d["device_id"] == before["device_id"] {
				old = d
			}
		}
		if old["state"] != "revoked" || old["revocation"] != "self" {
			t.Fatalf("the old device after --replace: %v", old)
		}
		// What the old device had not synced is on the server.
		other := filepath.Join(t.TempDir(), "other")
		mustDiary(t, other, "", "enrol", "--server", te.url, "--code", te.code(study.RoleNavigator, "PN-R"))
		var st map[string]any
		json.Unmarshal([]byte(mustDiary(t, other, "", "status", "--json")), &st)
		mustDiary(t, home, "", "device", "approve", st["device_id"].(string)[:8])
		mustDiary(t, other, "", "sync")
		if out := mustDiary(t, other, "", "show", unsynced); !strings.Contains(out, "not synced") {
			t.Fatalf("the unsynced entry did not reach the server:\n%s", out)
		}
	})
}

// TestStatusAndSyncSummary: status counts entries and the changes waiting
// (and the entries they are to); sync ends with one line saying what went
// each way; the refused list prints one JSON object per line.
func TestStatusAndSyncSummary(t *testing.T) {
	te := startServer(t)
	nav := enrol(t, te, study.RoleNavigator, "PN-A")
	id := strings.TrimSpace(mustDiary(t, nav, "", "write", "--title", "one", "--body", "x", "--mood", "3"))
	mustDiary(t, nav, "", "write", "--title", "two", "--body", "y")
	mustDiary(t, nav, "", "edit", id, "--title", "one, again")
	out := mustDiary(t, nav, "", "status")
	if !strings.Contains(out, " 2 on this device") || !strings.Contains(out, " 8 change(s) to 2 entries not yet synced") {
		t.Fatalf("status:\n%s", out)
	}
	// The two entries this device pushed do not come back to it.
	code, stdout, stderr := diary(t, nav, "", "sync")
	if code != 0 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "Synced: sent 8 change(s) (8 accepted, 0 refused); received 0 entries and 0 removal(s); 0 pending.") {
		t.Fatalf("sync: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// Two changes to an entry erased meanwhile are refused, and listed
	// one JSON object per line.
	eid, err := syncengine.ParseEntryID(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := te.db.EraseEntry(context.Background(), eid); err != nil {
		t.Fatal(err)
	}
	mustDiary(t, nav, "", "edit", id, "--title", "after the erasure", "--mood", "4")
	if _, _, stderr = diary(t, nav, "", "sync"); !strings.Contains(stderr, "(0 accepted, 2 refused)") || !strings.Contains(stderr, "received 0 entries and 1 removal(s)") {
		t.Fatalf("sync with refusals: %q", stderr)
	}
	lines := strings.Split(strings.TrimSpace(mustDiary(t, nav, "", "refused", "--json")), "\n")
	if len(lines) != 2 {
		t.Fatalf("refused --json printed %d lines, want 2: %q", len(lines), lines)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["reason"] == nil || m["entry_id"] != id {
			t.Fatalf("refused --json line %q: %v", l, err)
		}
	}
}

// toggle is a server that can be made unreachable: while down, every
// connection is closed as soon as it is made.
type toggle struct {
	h    http.Handler
	down atomic.Bool
}

func (t *toggle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if t.down.Load() {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	t.h.ServeHTTP(w, r)
}

// TestInboxWatchOffline: "inbox --watch" says when the server cannot be
// reached and when it can again.
func TestInboxWatchOffline(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "server.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	tg := &toggle{h: server.New(server.Config{Store: db, Heartbeat: 200 * time.Millisecond}).Handler()}
	srv := httptest.NewServer(tg)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close(); db.Close() })
	te := &testEnv{t: t, url: srv.URL, db: db}
	sup := enrol(t, te, study.RoleSupervisor, "SUP-1")

	ctx, cancel := context.WithCancel(context.Background())
	var errOut lockedBuffer
	done := make(chan int, 1)
	go func() {
		e := &env{ctx: ctx, stdin: strings.NewReader(""), stdout: &lockedBuffer{}, stderr: &errOut}
		done <- exitStatus(dispatch(e, []string{"--home", sup, "inbox", "--watch"}), &errOut)
	}()
	waitFor := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if strings.Contains(errOut.String(), what) {
				return
			}
		}
		t.Fatalf("inbox --watch did not say %q within 30 s:\n%s", what, errOut.String())
	}
	time.Sleep(500 * time.Millisecond) // its first sync and stream
	tg.down.Store(true)
	srv.CloseClientConnections()
	waitFor("offline: cannot ")
	tg.down.Store(false)
	waitFor("back online")
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("inbox --watch exited %d:\n%s", code, errOut.String())
	}
	if n := strings.Count(errOut.String(), "offline:"); n != 1 {
		t.Fatalf("inbox --watch said offline %d times:\n%s", n, errOut.String())
	}
}
