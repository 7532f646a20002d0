package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/client/operator"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	_ "github.com/jackc/pgx/v5/stdlib"
)

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// diarydBinary builds diaryd once per test run.
func diarydBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "diaryload-test-"); buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "diaryd")
		args := []string{"build", "-o", binary}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "../diaryd")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("cannot build diaryd: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binary
}

// runLoad runs diaryload in-process and returns its error, standard
// output and standard error.
func runLoad(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustLoad runs diaryload with --json and decodes its report.
func mustLoad(t *testing.T, args ...string) *report {
	t.Helper()
	out, errOut, err := runLoad(t, append(args, "--json")...)
	if err != nil {
		t.Fatalf("diaryload %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, errOut)
	}
	if errOut != "" {
		t.Errorf("diaryload wrote to stderr, which is no terminal: %q", errOut)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	var r report
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("cannot decode the report: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", out)
	}
	return &r
}

// checkLatency checks that a latency distribution is there, counts n
// samples and has ordered percentiles.
func checkLatency(t *testing.T, name string, l *latency, n int) {
	t.Helper()
	switch {
	case l == nil:
		t.Errorf("%s: missing", name)
	case l.Count != n:
		t.Errorf("%s: %d samples, want %d", name, l.Count, n)
	case l.P50 < 0 || l.P50 > l.P95 || l.P95 > l.P99 || l.P99 > l.Max:
		t.Errorf("%s: percentiles out of order: %+v", name, *l)
	}
}

func checkNoErrors(t *testing.T, r *report) {
	t.Helper()
	if len(r.Errors) != 0 || len(r.Refused) != 0 || r.ServerLogErrors != 0 {
		t.Errorf("errors %v, refused %v, server log errors %d; want none", r.Errors, r.Refused, r.ServerLogErrors)
	}
}

// TestRun_Database: with --database, diaryload starts diaryd on that
// PostgreSQL database, and --cleanup erases what the run wrote there.
func TestRun_Database(t *testing.T) {
	url := storetest.NewDatabase(t)
	r := mustLoad(t, "--diaryd", diarydBinary(t), "--database", url, "--devices", "3", "--supervisors", "1", "--pushes", "3", "--entries", "5", "--cleanup")
	if !r.StartedServer || r.Store != "postgres" || r.Synchronous != "" {
		t.Errorf("started %v, store %q, synchronous %q; want a started server on postgres", r.StartedServer, r.Store, r.Synchronous)
	}
	if r.Pushes != 9 || r.Entries != 45 || r.Wakes != 9 || r.SupervisorEntries != 45 {
		t.Errorf("pushes %d, entries %d, wakes %d, supervisor entries %d; want 9, 45, 9, 45", r.Pushes, r.Entries, r.Wakes, r.SupervisorEntries)
	}
	checkNoErrors(t, r)
	checkLatency(t, "push", r.PushLatency, 9)
	if r.ServerRSSMaxBytes == nil || *r.ServerRSSMaxBytes == 0 {
		t.Errorf("server RSS %v", r.ServerRSSMaxBytes)
	}
	checkCPU(t, r, "/proc of the diaryd process")
	checkGroups(t, r)
	if c := r.Cleanup; c == nil || c.NavigatorsErased != 3 || c.EntriesErased != 45 || c.UsersDeactivated != 4 {
		t.Errorf("cleanup: %+v; want 45 entries of 3 navigators erased and 4 users deactivated", c)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var users, live int
	if err := db.QueryRow(`SELECT count(*) FILTER (WHERE study_code LIKE 'LOAD-%'), count(*) FILTER (WHERE study_code LIKE 'LOAD-%' AND active) FROM users`).Scan(&users, &live); err != nil {
		t.Fatal(err)
	}
	if users != 4 || live != 0 {
		t.Errorf("the database holds %d LOAD- users, %d active; want the run's 4, none active", users, live)
	}
}

// TestRun_StartsDiaryd runs a small load against the diaryd that
// diaryload starts: 3 devices, 1 supervisor, 3 pushes of 5 entries.
func TestRun_StartsDiaryd(t *testing.T) {
	r := mustLoad(t, "--diaryd", diarydBinary(t), "--devices", "3", "--supervisors", "1", "--pushes", "3", "--entries", "5")
	if !r.StartedServer || !strings.HasPrefix(r.Server, "http://127.0.0.1:") || r.Synchronous != "FULL" {
		t.Errorf("server %q, started %v, synchronous %q", r.Server, r.StartedServer, r.Synchronous)
	}
	// Each device sends its cursor and its count of changes, so the
	// server leaves its own entries out of its pulls: none comes back.
	if r.Devices != 3 || r.Supervisors != 1 || r.Pushes != 9 || r.Entries != 45 || r.EntriesPulled != 0 {
		t.Errorf("devices %d, supervisors %d, pushes %d, entries %d, pulled back %d; want 3, 1, 9, 45, 0",
			r.Devices, r.Supervisors, r.Pushes, r.Entries, r.EntriesPulled)
	}
	if r.PullBytes <= 0 || r.PullBytesPerPull <= 0 {
		t.Errorf("pull bytes %d, %v a pull; want the answers counted", r.PullBytes, r.PullBytesPerPull)
	}
	checkNoErrors(t, r)
	if r.StoppedEarly || r.Interrupted {
		t.Errorf("stopped early %v, interrupted %v", r.StoppedEarly, r.Interrupted)
	}
	if r.PushesPerSecond <= 0 || r.Seconds <= 0 {
		t.Errorf("pushes per second %v in %v s", r.PushesPerSecond, r.Seconds)
	}
	checkLatency(t, "push", r.PushLatency, 9)
	// One page holds a push's 5 entries, so each push is followed by one
	// pull.
	checkLatency(t, "pull", r.PullLatency, 9)
	// The supervisor supervises all three navigators and every entry is
	// shared: each push wakes it once.
	checkLatency(t, "wake", r.WakeLatency, 9)
	if r.Wakes != 9 || r.WakesMissed != 0 {
		t.Errorf("wakes %d, missed %d; want 9, 0", r.Wakes, r.WakesMissed)
	}
	if r.SupervisorEntries != 45 || r.SupervisorEntriesExpected != 45 {
		t.Errorf("supervisor pulled %d entries, expected %d; want 45", r.SupervisorEntries, r.SupervisorEntriesExpected)
	}
	if r.SupervisorPullLatency == nil || r.SupervisorPullLatency.Count == 0 {
		t.Errorf("supervisor pull latency: %+v", r.SupervisorPullLatency)
	}
	if r.ServerRSSMaxBytes == nil || *r.ServerRSSMaxBytes == 0 || r.ServerRSSSource == "" {
		t.Errorf("server RSS %v (%q)", r.ServerRSSMaxBytes, r.ServerRSSSource)
	}
	if r.ServerGoHeapMaxBytes == nil || *r.ServerGoHeapMaxBytes == 0 {
		t.Errorf("server Go heap %v", r.ServerGoHeapMaxBytes)
	}
	checkCPU(t, r, "/proc of the diaryd process")
	checkGroups(t, r)
	if r.Preload != nil || r.FullPull != nil || r.Cleanup != nil {
		t.Errorf("preload %v, full pull %v, cleanup %v: none was asked for", r.Preload, r.FullPull, r.Cleanup)
	}
}

// TestRun_PreloadAndFullPull preloads more entries than one push and one
// page hold, and times a fresh device's pull of them.
func TestRun_PreloadAndFullPull(t *testing.T) {
	r := mustLoad(t, "--diaryd", diarydBinary(t), "--devices", "1", "--pushes", "2", "--entries", "1", "--share=false", "--preload", "1200", "--full-pull")
	p := r.Preload
	if p == nil || p.Entries != 1200 || p.Pushes != 3 || p.Retries != 0 || p.EntriesPerSecond <= 0 {
		t.Fatalf("preload: %+v; want 1200 entries in 3 pushes", p)
	}
	checkLatency(t, "preload push", p.PushLatency, 3)
	f := r.FullPull
	if f == nil || f.StudyCode != p.StudyCode || f.Expected != 1200 || f.Entries != 1200 || f.Removals != 0 || f.Pages != 2 || f.PageSize != 1000 {
		t.Fatalf("full pull: %+v; want 1200 entries of %s in 2 pages", f, p.StudyCode)
	}
	checkLatency(t, "full-pull page", f.PageLatency, 2)
	if r.Pushes != 2 || r.EntriesPulled != 0 || r.Shared {
		t.Errorf("pushes %d, pulled %d, shared %v", r.Pushes, r.EntriesPulled, r.Shared)
	}
	if r.WakeLatency != nil || r.Wakes != 0 {
		t.Errorf("wake latency %+v without supervisors", r.WakeLatency)
	}
	checkNoErrors(t, r)

	// Without a preload, the full pull is the first navigator's.
	r = mustLoad(t, "--diaryd", diarydBinary(t), "--devices", "2", "--pushes", "3", "--entries", "4", "--full-pull")
	if f := r.FullPull; f == nil || f.StudyCode != navigatorCode(r.RunID, 0) || f.Expected != 12 || f.Entries != 12 || f.Pages != 1 {
		t.Fatalf("full pull: %+v; want the 12 entries of %s", f, navigatorCode(r.RunID, 0))
	}
}

// TestRun_Table checks the table printed without --json.
func TestRun_Table(t *testing.T) {
	out, errOut, err := runLoad(t, "--diaryd", diarydBinary(t), "--devices", "2", "--supervisors", "1", "--pushes", "2", "--entries", "1")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, want := range []string{
		"load: 2 devices, 1 supervisor; 2 pushes of 1 entry each (shared with supervisors)",
		"pushes: 4 acknowledged in ",
		"entries: 4 pushed, 0 pulled back (",
		" bytes a pull); supervisors pulled 4 of 4 shared",
		"wake-ups: 4 measured, 0 missed",
		"errors: none\n",
		"refused changes: none\n",
		"server resident memory: max ",
		"group commits while pushing: ",
		"the writer busy ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	for _, row := range []string{"latency (ms)", "push", "pull", "wake", "supervisor pull"} {
		found := false
		for line := range strings.Lines(out) {
			// A row is its name and five columns: count and percentiles.
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), row+" ")
			found = found || (ok && len(strings.Fields(rest)) == 5)
		}
		if !found {
			t.Errorf("no %q row in:\n%s", row, out)
		}
	}
}

// TestRun_DurationCap checks that --duration ends the load early: no
// server takes 100,000 pushes, each committed durably, in a second.
func TestRun_DurationCap(t *testing.T) {
	r := mustLoad(t, "--diaryd", diarydBinary(t), "--devices", "1", "--pushes", "100000", "--entries", "1", "--duration", "1s")
	if !r.StoppedEarly || r.Pushes == 0 || r.Pushes >= 100000 {
		t.Errorf("stopped early %v after %d pushes", r.StoppedEarly, r.Pushes)
	}
	checkNoErrors(t, r)
	checkLatency(t, "push", r.PushLatency, r.Pushes)
}

// diaryd is a diaryd process that a test started.
type diaryd struct {
	url  string
	data string
	cmd  *exec.Cmd
	done chan struct{}
}

// startServer starts diaryd on a new study, as a deployer's server that
// diaryload did not start.
func startServer(t *testing.T) *diaryd {
	t.Helper()
	d := &diaryd{data: filepath.Join(t.TempDir(), "data"), done: make(chan struct{})}
	d.cmd = exec.Command(diarydBinary(t), "serve", "--data", d.data, "--addr", "127.0.0.1:0", "--synchronous", "NORMAL")
	d.cmd.Env = childEnv()
	d.cmd.Stdout = io.Discard
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		defer close(d.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, URL string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				urls <- line.URL
			}
		}
		d.cmd.Wait()
	}()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	})
	select {
	case d.url = <-urls:
	case <-d.done:
		t.Fatal("diaryd exited before serving")
	case <-time.After(time.Minute):
		t.Fatal("diaryd did not serve within a minute")
	}
	return d
}

// enrolProfile enrols a diary profile in a new directory with code, as
// "diary enrol" does, and returns the directory.
func enrolProfile(t *testing.T, url, code string) string {
	t.Helper()
	home := t.TempDir()
	c, err := client.Open(context.Background(), filepath.Join(home, "replica.db"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Enroll(context.Background(), url, code, "test"); err != nil {
		t.Fatal(err)
	}
	return home
}

// withAdmin opens the profile in home and calls fn with its admin client.
func withAdmin(t *testing.T, home string, fn func(admin diaryv1connect.AdminServiceClient)) {
	t.Helper()
	c, err := client.Open(context.Background(), filepath.Join(home, "replica.db"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	admin, err := operator.Admin(c)
	if err != nil {
		t.Fatal(err)
	}
	fn(admin)
}

// users lists every user by study code.
func users(t *testing.T, admin diaryv1connect.AdminServiceClient) map[string]*diaryv1.User {
	t.Helper()
	out := map[string]*diaryv1.User{}
	token := ""
	for {
		resp, err := admin.ListUsers(context.Background(), &diaryv1.ListUsersRequest{PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range resp.GetUsers() {
			out[u.GetStudyCode()] = u
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// erasures returns, by study code, the entries counted by each
// navigator.erase event of the audit log.
func erasures(t *testing.T, admin diaryv1connect.AdminServiceClient) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	token := ""
	for {
		resp, err := admin.ListAuditEvents(context.Background(), &diaryv1.ListAuditEventsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetEvents() {
			if e.GetAction() == "navigator.erase" {
				out[e.GetSubject()] = append(out[e.GetSubject()], e.GetDetails()["entries"])
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// checkCleanedUp checks that the users of run are all inactive and that
// each navigator's entries were erased once, entries of them.
func checkCleanedUp(t *testing.T, admin diaryv1connect.AdminServiceClient, run string, navigators, supervisors int, entries string) {
	t.Helper()
	all := users(t, admin)
	erased := erasures(t, admin)
	for i := range navigators {
		code := navigatorCode(run, i)
		if u := all[code]; u == nil || u.GetActive() {
			t.Errorf("%s: %v, want an inactive user", code, u)
		}
		if got := erased[code]; len(got) != 1 || got[0] != entries {
			t.Errorf("%s: erasures %q, want one of %s entries", code, got, entries)
		}
	}
	for j := range supervisors {
		if u := all[supervisorCode(run, j)]; u == nil || u.GetActive() {
			t.Errorf("%s: %v, want an inactive user", supervisorCode(run, j), u)
		}
	}
	n := 0
	for code := range all {
		if strings.HasPrefix(code, codePrefix+run+"-") {
			n++
		}
	}
	if n != navigators+supervisors {
		t.Errorf("%d users of run %s, want %d", n, run, navigators+supervisors)
	}
}

// TestRun_Server loads a server that diaryload did not start, through an
// administrator's diary profile, and cleans up after itself.
func TestRun_Server(t *testing.T) {
	srv := startServer(t)
	code, err := os.ReadFile(filepath.Join(srv.data, "admin-code"))
	if err != nil {
		t.Fatal(err)
	}
	home := enrolProfile(t, srv.url, strings.TrimSpace(string(code)))
	var navCode string
	withAdmin(t, home, func(admin diaryv1connect.AdminServiceClient) {
		// A user of the study itself, which no cleanup may touch.
		if _, err := admin.CreateUser(context.Background(), &diaryv1.CreateUserRequest{StudyCode: "PN-A", Role: diaryv1.Role_ROLE_NAVIGATOR}); err != nil {
			t.Fatal(err)
		}
		ic, err := admin.IssueEnrollmentCode(context.Background(), &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
		if err != nil {
			t.Fatal(err)
		}
		navCode = ic.GetCode()
	})

	t.Run("Cleanup", func(t *testing.T) {
		r := mustLoad(t, "--server", srv.url, "--admin-home", home, "--metrics", srv.url+"/metrics",
			"--devices", "2", "--supervisors", "1", "--pushes", "2", "--entries", "3", "--cleanup")
		if r.StartedServer || r.Server != srv.url || r.Pushes != 4 || r.Entries != 12 || r.Wakes != 4 || r.SupervisorEntries != 12 {
			t.Errorf("server %q (started %v), pushes %d, entries %d, wakes %d, supervisor entries %d",
				r.Server, r.StartedServer, r.Pushes, r.Entries, r.Wakes, r.SupervisorEntries)
		}
		checkNoErrors(t, r)
		checkLatency(t, "push", r.PushLatency, 4)
		checkLatency(t, "wake", r.WakeLatency, 4)
		// diaryd's metrics expose its Go heap and, through the process
		// collector, its resident memory.
		if r.ServerRSSMaxBytes == nil || *r.ServerRSSMaxBytes == 0 || r.ServerGoHeapMaxBytes == nil || *r.ServerGoHeapMaxBytes == 0 {
			t.Errorf("server RSS %v, Go heap %v: want both", r.ServerRSSMaxBytes, r.ServerGoHeapMaxBytes)
		}
		checkCPU(t, r, metricCPU+" from metrics")
		checkGroups(t, r)
		if c := r.Cleanup; c == nil || c.NavigatorsErased != 2 || c.EntriesErased != 12 || c.UsersDeactivated != 3 {
			t.Errorf("cleanup: %+v; want 12 entries of 2 navigators erased and 3 users deactivated", c)
		}
		withAdmin(t, home, func(admin diaryv1connect.AdminServiceClient) {
			checkCleanedUp(t, admin, r.RunID, 2, 1, "6")
			if u := users(t, admin)["PN-A"]; u == nil || !u.GetActive() {
				t.Errorf("PN-A: %v, want it untouched", u)
			}
		})
	})

	t.Run("CleanupOnly", func(t *testing.T) {
		r := mustLoad(t, "--server", srv.url, "--admin-home", home, "--devices", "1", "--pushes", "1", "--entries", "2")
		if r.Cleanup != nil || r.ServerRSSMaxBytes != nil || r.ServerGoHeapMaxBytes != nil {
			t.Errorf("cleanup %v, RSS %v, heap %v: none was asked for", r.Cleanup, r.ServerRSSMaxBytes, r.ServerGoHeapMaxBytes)
		}
		if r.CPU != nil && r.CPU.ServerSeconds != nil {
			t.Errorf("server CPU %v s from %q without metrics", *r.CPU.ServerSeconds, r.CPU.ServerSource)
		}
		withAdmin(t, home, func(admin diaryv1connect.AdminServiceClient) {
			if u := users(t, admin)[navigatorCode(r.RunID, 0)]; u == nil || !u.GetActive() {
				t.Fatalf("%s: %v, want it still active without --cleanup", navigatorCode(r.RunID, 0), u)
			}
		})
		out, errOut, err := runLoad(t, "--server", srv.url, "--admin-home", home, "--cleanup-only", strings.ToLower(r.RunID), "--json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var got struct {
			Prefix           string `json:"prefix"`
			Users            int    `json:"users"`
			NavigatorsErased int    `json:"navigators_erased"`
			EntriesErased    uint64 `json:"entries_erased"`
			UsersDeactivated int    `json:"users_deactivated"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got.Prefix != "LOAD-"+r.RunID+"-" || got.Users != 1 || got.NavigatorsErased != 1 || got.EntriesErased != 2 || got.UsersDeactivated != 1 {
			t.Errorf("cleanup-only: %+v", got)
		}
		withAdmin(t, home, func(admin diaryv1connect.AdminServiceClient) {
			checkCleanedUp(t, admin, r.RunID, 1, 0, "2")
		})

		// Every LOAD- user is inactive by now: "all" erases again
		// (nothing is left) and deactivates nobody.
		out, errOut, err = runLoad(t, "--server", srv.url, "--admin-home", home, "--cleanup-only", "all", "--json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if got.Prefix != "LOAD-" || got.Users != 4 || got.NavigatorsErased != 3 || got.EntriesErased != 0 || got.UsersDeactivated != 0 {
			t.Errorf("cleanup-only all: %+v", got)
		}
		withAdmin(t, home, func(admin diaryv1connect.AdminServiceClient) {
			if u := users(t, admin)["PN-A"]; u == nil || !u.GetActive() {
				t.Errorf("PN-A: %v, want it untouched", u)
			}
		})
	})

	t.Run("WrongProfile", func(t *testing.T) {
		nav := enrolProfile(t, srv.url, navCode)
		for _, tc := range []struct {
			name string
			args []string
			want string
		}{
			{"NotAdmin", []string{"--server", srv.url, "--admin-home", nav}, "belongs to PN-A, a navigator"},
			{"OtherServer", []string{"--server", "http://127.0.0.1:1", "--admin-home", home}, "is enrolled with " + srv.url},
			{"NoProfile", []string{"--server", srv.url, "--admin-home", t.TempDir()}, "no diary profile in"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, _, err := runLoad(t, append(tc.args, "--devices", "1", "--pushes", "1")...)
				if err == nil || exitStatus(err) != 1 || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v (exit %d), want %q", err, exitStatus(err), tc.want)
				}
			})
		}
	})
}

func TestRun_BadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--devices", "0"}, "--devices 0: must be from 1 to 10000"},
		{[]string{"--devices", "many"}, `invalid value "many" for flag -devices`},
		{[]string{"--pushes", "-1"}, "--pushes -1: must be from 0"},
		{[]string{"--entries", "334"}, "--entries 334: must be from 1 to 333"},
		{[]string{"--entries", "500", "--share=false"}, ""},
		{[]string{"--entries", "501", "--share=false"}, "--entries 501: must be from 1 to 500"},
		{[]string{"--supervisors", "3", "--devices", "2"}, "must not exceed --devices 2"},
		{[]string{"--devices", "10000", "--pushes", "1000"}, "at most 2000000 in one run"},
		{[]string{"--preload", "-5"}, "--preload -5"},
		{[]string{"--duration", "0s"}, "--duration 0s: must be a positive duration"},
		{[]string{"--timeout", "soon"}, `invalid value "soon" for flag -timeout`},
		{[]string{"--synchronous", "OFF"}, `--synchronous "OFF": use FULL or NORMAL`},
		{[]string{"--server", "http://127.0.0.1:8080"}, "--server needs --admin-home"},
		{[]string{"--admin-home", "/tmp/x"}, "--admin-home needs --server"},
		{[]string{"--metrics", "http://127.0.0.1:8080/metrics"}, "--metrics needs --server"},
		{[]string{"--cleanup"}, "--cleanup needs --server, --data or --database"},
		{[]string{"--database", "postgres:///x", "--cleanup"}, ""},
		{[]string{"--database", "postgres:///x", "--synchronous", "NORMAL"}, "--synchronous is for a diaryd on SQLite"},
		{[]string{"--database", "postgres:///x", "--data", "/tmp/x"}, "--data is for a diaryd on SQLite"},
		{[]string{"--server", "http://127.0.0.1:8080", "--admin-home", "/tmp/x", "--database", "postgres:///x"}, "--database is for the diaryd that diaryload starts"},
		{[]string{"--cleanup-only", "ABC"}, "--cleanup-only needs --server"},
		{[]string{"--server", "127.0.0.1:8080", "--admin-home", "/tmp/x"}, `--server "127.0.0.1:8080": want a URL`},
		{[]string{"--server", "http://127.0.0.1:8080", "--admin-home", "/tmp/x", "--diaryd", "/bin/true"}, "--diaryd is for the diaryd that diaryload starts"},
		{[]string{"--server", "http://127.0.0.1:8080", "--admin-home", "/tmp/x", "--cleanup-only", "a b"}, `--cleanup-only "A B"`},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want no error, got %v", err)
				}
				return
			}
			if exitStatus(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v (exit %d), want exit 2 and %q", err, exitStatus(err), tc.want)
			}
		})
	}

	t.Run("run", func(t *testing.T) {
		out, errOut, err := runLoad(t, "--devices", "0")
		if exitStatus(err) != 2 || out != "" || errOut != "" {
			t.Errorf("error %v, stdout %q, stderr %q: want a usage error and no output", err, out, errOut)
		}
	})

	t.Run("help", func(t *testing.T) {
		out, _, err := runLoad(t, "--help")
		if err != nil || !strings.HasPrefix(out, "usage: diaryload") || !strings.Contains(out, "--admin-home DIR") {
			t.Errorf("--help: error %v, output:\n%s", err, out)
		}
	})
}

// TestWriteReport_LeftUsers checks that a table for a server diaryload
// did not start says how to remove the users left on it.
func TestWriteReport_LeftUsers(t *testing.T) {
	r := &report{RunID: "ABC123", Server: "http://127.0.0.1:8080", Errors: map[string]int{"unavailable": 2, "internal": 1}, Refused: map[string]int{}}
	var b strings.Builder
	if err := writeReport(&b, &config{}, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"the users LOAD-ABC123-* are still on the server: --cleanup-only ABC123",
		"errors: unavailable 2, internal 1\n",
		"server resident memory: not known",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("no %q in:\n%s", want, b.String())
		}
	}
	r.Cleanup = &cleanupReport{NavigatorsErased: 2, EntriesErased: 7, UsersDeactivated: 3}
	b.Reset()
	writeReport(&b, &config{}, r)
	if !strings.Contains(b.String(), "cleanup: erased 7 entries of 2 navigators, deactivated 3 users") || strings.Contains(b.String(), "still on the server") {
		t.Errorf("after cleanup:\n%s", b.String())
	}
	heap := uint64(3 << 20)
	r.ServerGoHeapMaxBytes, r.ServerGoHeapSource = &heap, "diarysync_go_heap_inuse_bytes from metrics"
	b.Reset()
	writeReport(&b, &config{}, r)
	if !strings.Contains(b.String(), "server resident memory: not in the server's metrics\nserver Go heap in use: max 3.0 MiB") {
		t.Errorf("with metrics:\n%s", b.String())
	}
}

func TestSummarize(t *testing.T) {
	if summarize(nil) != nil {
		t.Error("summarize(nil) is not nil")
	}
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // 100 ms down to 1 ms: order must not matter
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := *summarize(ds)
	want := latency{Count: 100, P50: 50, P95: 95, P99: 99, Max: 100}
	if got != want {
		t.Errorf("summarize(1..100 ms) = %+v, want %+v", got, want)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("summarize sorted its argument")
	}
	if got := *summarize([]time.Duration{1500 * time.Microsecond}); got != (latency{Count: 1, P50: 1.5, P95: 1.5, P99: 1.5, Max: 1.5}) {
		t.Errorf("summarize(1.5 ms) = %+v", got)
	}
}

func TestParseSamples(t *testing.T) {
	text := `# HELP diarysync_go_heap_inuse_bytes Bytes.
# TYPE diarysync_go_heap_inuse_bytes gauge
diarysync_go_heap_inuse_bytes 4.194304e+06
diarysync_rpc_requests_total{procedure="/x",code="ok"} 3
process_resident_memory_bytes 33554432 1700000000000
`
	got, err := parseSamples(strings.NewReader(text), metricHeap, metricRSS)
	if err != nil || got[metricHeap] != 4194304 || got[metricRSS] != 33554432 || len(got) != 2 {
		t.Errorf("parseSamples = %v, %v", got, err)
	}
	if _, err := parseSamples(strings.NewReader("diarysync_go_heap_inuse_bytes lots\n"), metricHeap); err == nil {
		t.Error("a bad value parsed")
	}
}

func TestRefusalName(t *testing.T) {
	for r, want := range map[diaryv1.RefusalReason]string{
		diaryv1.RefusalReason_REFUSAL_REASON_CLOCK_AHEAD:   "clock_ahead",
		diaryv1.RefusalReason_REFUSAL_REASON_WRONG_REPLICA: "wrong_replica",
		diaryv1.RefusalReason(99):                          "reason_99",
	} {
		if got := refusalName(r); got != want {
			t.Errorf("refusalName(%d) = %q, want %q", r, got, want)
		}
	}
}

// checkCPU checks the CPU a run reports: the server's from source, and
// on Linux diaryload's and the machine's. Linux counts CPU time in ticks
// of 10 ms, which a small test load may not fill: a figure may be 0.
func checkCPU(t *testing.T, r *report, source string) {
	t.Helper()
	c := r.CPU
	if _, err := os.Stat("/proc/stat"); err != nil {
		t.Logf("no /proc/stat (%v): the CPU figures are not checked", err)
		return
	}
	if c == nil {
		t.Fatal("no CPU figures")
	}
	if c.ServerSeconds == nil || *c.ServerSeconds < 0 || c.ServerSource != source || c.ServerMsPerPush == nil {
		t.Errorf("server CPU %v s from %q, %v ms a push; want them, from %q", c.ServerSeconds, c.ServerSource, c.ServerMsPerPush, source)
	} else if want := math.Round(*c.ServerSeconds*1000/float64(r.Pushes)*1000) / 1000; math.Abs(*c.ServerMsPerPush-want) > 0.002 {
		t.Errorf("server CPU %v ms a push, want %v s over %d pushes", *c.ServerMsPerPush, *c.ServerSeconds, r.Pushes)
	}
	if c.LoadSeconds == nil || *c.LoadSeconds < 0 {
		t.Errorf("diaryload CPU %v s", c.LoadSeconds)
	}
	if c.MachineCores < 1 || c.MachineBusy == nil || *c.MachineBusy < 0 || *c.MachineBusy > 1 || c.MachineSteal == nil || *c.MachineSteal < 0 || *c.MachineSteal > 1 {
		t.Errorf("machine: %d cores, busy %v, steal %v", c.MachineCores, c.MachineBusy, c.MachineSteal)
	}
}

// checkGroups checks the report of the server's group commits: every
// push of the load in one of them, the writer busy for some of the push
// phase and never more than all of it.
func checkGroups(t *testing.T, r *report) {
	t.Helper()
	g := r.GroupCommit
	if g == nil {
		t.Fatal("no group commit figures")
	}
	if g.Commits < 1 || g.Commits > int64(r.Pushes) || g.PushesPerCommit == nil {
		t.Fatalf("%d group commits (%v pushes each) for %d pushes", g.Commits, g.PushesPerCommit, r.Pushes)
	}
	if want := math.Round(float64(r.Pushes)/float64(g.Commits)*1000) / 1000; *g.PushesPerCommit != want {
		t.Errorf("%v pushes a commit, want %d pushes over %d commits", *g.PushesPerCommit, r.Pushes, g.Commits)
	}
	if g.WriterBusy == nil || *g.WriterBusy <= 0 || *g.WriterBusy > 1 {
		t.Errorf("writer busy %v of the push phase", g.WriterBusy)
	}
}
