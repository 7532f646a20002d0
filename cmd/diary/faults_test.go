package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/internal/faultproxy"
	"github.com/diarysync/diarysync/syncengine"
	_ "modernc.org/sqlite"
)

// These tests run the real diary and diaryd binaries: through a proxy
// that breaks connections (TestFaults_Network), and with diary killed by
// SIGKILL in the middle of a large sync (TestFaults_KilledSync). Each
// logs its seed; DIARYSYNC_FAULT_SEED=<seed> runs the same choices again
// (the timing of processes still varies).

// faultSeed returns the seed of a test's random choices and logs it.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DIARYSYNC_FAULT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("DIARYSYNC_FAULT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (rerun with DIARYSYNC_FAULT_SEED=%d)", seed, seed)
	return seed
}

// tools are the real binaries, built into one directory for one test;
// startDiaryd (walkthrough_test.go) runs diaryd from there.
type tools struct {
	dir, diary string
	t          *testing.T
	firstHome  map[string]string // study code → the profile of its first device, which approves the others
}

func buildTools(t *testing.T) *tools {
	t.Helper()
	dir := t.TempDir()
	for _, cmd := range []string{"diary", "diaryd"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "../"+cmd).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", cmd, err, out)
		}
	}
	return &tools{dir: dir, diary: filepath.Join(dir, "diary"), t: t}
}

// result is how one diary process ended.
type result struct {
	code           int
	stdout, stderr string
}

// run runs diary on a profile and waits for it. A process that does not
// end within a minute is a hang, which the tests exist to catch.
func (b *tools) run(home string, args ...string) result {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.diary, append([]string{"--home", home}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		b.t.Fatalf("diary %v hung: still running after a minute\nstderr: %s", args, errOut.String())
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return result{exit.ExitCode(), out.String(), errOut.String()}
	case err != nil:
		b.t.Fatalf("diary %v: %v", args, err)
	}
	return result{0, out.String(), errOut.String()}
}

// must runs diary and fails the test unless it succeeds.
func (b *tools) must(home string, args ...string) string {
	b.t.Helper()
	r := b.run(home, args...)
	if r.code != 0 {
		b.t.Fatalf("diary %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// enrolAs creates the user if needed (as the admin profile), issues a
// code and enrols a new profile for them through serverURL.
func (b *tools) enrolAs(admin, home, role, study, serverURL string, created map[string]bool) {
	b.t.Helper()
	if !created[study] {
		b.must(admin, "admin", "user", "add", "--role", role, "--code", study)
		created[study] = true
	}
	code := strings.TrimSpace(b.must(admin, "admin", "code", "--user", study))
	b.must(home, "enrol", "--server", serverURL, "--code", code, "--name", filepath.Base(home))
	if first := b.firstHome[study]; first != "" {
		// A second device waits for approval: the first one gives it.
		var st struct {
			DeviceID string `json:"device_id"`
		}
		if err := json.Unmarshal([]byte(b.must(home, "status", "--json")), &st); err != nil {
			b.t.Fatal(err)
		}
		b.must(first, "device", "approve", st.DeviceID)
	} else {
		if b.firstHome == nil {
			b.firstHome = map[string]string{}
		}
		b.firstHome[study] = home
	}
}

// listed is one line of "diary list --json".
type listed struct {
	ID     string `json:"id"`
	Author string `json:"author"`
	Title  string `json:"title"`
	Body   string `json:"body"`
}

func (b *tools) list(home string) map[string]listed {
	b.t.Helper()
	out := map[string]listed{}
	for _, line := range strings.Split(strings.TrimSpace(b.must(home, "list", "--json")), "\n") {
		if line == "" {
			continue
		}
		var e listed
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			b.t.Fatalf("list --json printed %q: %v", line, err)
		}
		out[e.ID] = e
	}
	return out
}

// syncStatus is what "diary status --json" says about sync.
type syncStatus struct {
	Pending int               `json:"pending"`
	Refused []json.RawMessage `json:"refused"`
	Cursor  uint64            `json:"cursor"`
}

func (b *tools) status(home string) syncStatus {
	b.t.Helper()
	var st syncStatus
	if err := json.Unmarshal([]byte(b.must(home, "status", "--json")), &st); err != nil {
		b.t.Fatalf("status --json: %v", err)
	}
	return st
}

// profile is one device's profile directory and what was written on it.
type profile struct {
	name, home, study string
	// mine maps each entry written on this device to its latest title.
	mine   map[string]string
	shared map[string]bool // entries of mine shared with supervisors
}

func newProfile(root, name, study string) *profile {
	return &profile{name: name, home: filepath.Join(root, name), study: study, mine: map[string]string{}, shared: map[string]bool{}}
}

// addrs matches loopback addresses, which differ in every failure.
var addrs = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// syncFailure is the one line a sync that a network fault broke may
// print: which step failed and that the network is to blame, with the
// transport's words only in brackets.
var syncFailure = regexp.MustCompile(`^diary: cannot (push|pull) changes: the server cannot be reached \(.+\)\n$`)

// checkLocal checks that nothing written on the device is lost or half
// applied: every entry it wrote is listed with its latest title and
// body, only its own navigator's entries are there, and nothing was
// refused (faults in the network are never a reason to refuse a change).
func (b *tools) checkLocal(p *profile) syncStatus {
	b.t.Helper()
	got := b.list(p.home)
	for id, title := range p.mine {
		e, ok := got[id]
		if !ok {
			b.t.Fatalf("%s: entry %s (%q) written here is gone", p.name, id, title)
		}
		if e.Title != title || e.Body != "body of "+title {
			b.t.Fatalf("%s: entry %s is %q / %q, want %q", p.name, id, e.Title, e.Body, title)
		}
	}
	for id, e := range got {
		if e.Author != p.study {
			b.t.Fatalf("%s: holds entry %s of %s", p.name, id, e.Author)
		}
	}
	st := b.status(p.home)
	if len(st.Refused) != 0 {
		b.t.Fatalf("%s: the server refused changes: %s", p.name, st.Refused)
	}
	return st
}

// write writes an entry on the device with the CLI and records it; now
// and then it also edits one written before, so that syncs carry edits.
func (b *tools) write(p *profile, rng *rand.Rand, share bool) string {
	b.t.Helper()
	title := fmt.Sprintf("%s entry %d", p.name, rng.IntN(1e9))
	args := []string{"write", "--title", title, "--body", "body of " + title}
	if share {
		args = append(args, "--share", "supervisor")
	}
	id := strings.TrimSpace(b.must(p.home, args...))
	p.mine[id], p.shared[id] = title, share
	if len(p.mine) > 1 && rng.IntN(3) == 0 {
		ids := slices.Sorted(maps.Keys(p.mine))
		old := ids[rng.IntN(len(ids))]
		title := p.mine[old] + " (edited)"
		b.must(p.home, "edit", old, "--title", title, "--body", "body of "+title)
		p.mine[old] = title
	}
	return id
}

// replica opens a profile's replica with the client library, which a
// finished diary process leaves closed.
func replica(t *testing.T, home string) *client.Client {
	t.Helper()
	c, err := client.Open(context.Background(), filepath.Join(home, "replica.db"), client.Options{})
	if err != nil {
		t.Fatalf("cannot open the replica in %s: %v", home, err)
	}
	return c
}

// assertConverged checks that the replica, with nothing pending, holds
// exactly the server's view for its user, at the server's position.
func assertConverged(t *testing.T, home string) int {
	t.Helper()
	ctx := context.Background()
	c := replica(t, home)
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	local, n, err := c.StateHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	remote, m, cursor, err := c.ServerStateHash(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 0 || st.Refused != 0 || local != remote || n != m || st.Cursor != cursor {
		t.Fatalf("%s: %d pending, %d refused, %d entries at cursor %d (hash %x); the server's view: %d entries at %d (hash %x)",
			filepath.Base(home), st.Pending, st.Refused, n, st.Cursor, local[:6], m, cursor, remote[:6])
	}
	return n
}

// replicaHas reports whether the replica file holds the entry; it reads
// the file while the process that owns it runs.
func replicaHas(t *testing.T, db *sql.DB, id string) bool {
	t.Helper()
	eid, err := syncengine.ParseEntryID(id)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM entries WHERE id = ?`, eid[:]).Scan(&n); err != nil {
		t.Fatalf("cannot read the watching replica: %v", err)
	}
	return n > 0
}

// waitFor polls cond every 50 ms until it holds or limit passes, and
// returns how long it took.
func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// randomFaults returns a policy that gives each new connection a fault
// at random: about a third pass untouched (some with a delay), the rest
// are cut, reset or left half-open after a random number of bytes;
// half-open ones are reset after hold, as a NAT eventually does.
func randomFaults(rng *rand.Rand, hold time.Duration) faultproxy.Policy {
	var mu sync.Mutex
	return func(int) faultproxy.Fault {
		mu.Lock()
		defer mu.Unlock()
		var f faultproxy.Fault
		if rng.IntN(3) == 0 {
			f.Kind = faultproxy.Pass
		} else {
			f.Kind = faultproxy.Kinds[rng.IntN(len(faultproxy.Kinds))]
			// A sync's requests and answers here are a few hundred
			// bytes each: strike anywhere in the first ones.
			f.After = rng.Int64N(1200)
			f.Hold = hold/2 + time.Duration(rng.Int64N(int64(hold/2)))
		}
		if rng.IntN(2) == 0 {
			f.Delay = time.Duration(rng.IntN(20)) * time.Millisecond
		}
		return f
	}
}

// watcher is a running "diary sync --watch" and the lines it printed.
type watcher struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

// watchLine is what "diary sync --watch" prints after each sync.
// It says once when the server cannot be reached and once when it can
// again.
var watchLine = regexp.MustCompile(`^\d\d:\d\d:\d\d  (in sync: \d+ pending, \d+ refused|offline: cannot (push changes|pull changes|listen for changes): the server cannot be reached \(.+\) \(retrying\)|back online)$`)

// startWatch starts "diary sync --watch" on a profile, giving up a
// silent connection after timeout ($DIARY_TIMEOUT).
func (b *tools) startWatch(home string, timeout time.Duration) *watcher {
	b.t.Helper()
	w := &watcher{cmd: exec.Command(b.diary, "--home", home, "sync", "--watch"), done: make(chan struct{})}
	w.cmd.Env = append(os.Environ(), "DIARY_TIMEOUT="+timeout.String())
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		b.t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			w.mu.Lock()
			w.lines = append(w.lines, sc.Text())
			w.mu.Unlock()
		}
	}()
	b.t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
	})
	return w
}

// stop interrupts the watch, as ^C does, and checks that it ends cleanly
// and printed nothing but sync results.
func (w *watcher) stop(t *testing.T) (synced, failed int) {
	t.Helper()
	w.cmd.Process.Signal(os.Interrupt)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Fatal("sync --watch did not stop within 30 s of an interrupt")
	}
	if err := w.cmd.Wait(); err != nil {
		t.Fatalf("sync --watch ended with %v:\n%s", err, strings.Join(w.lines, "\n"))
	}
	for _, l := range w.lines {
		if !watchLine.MatchString(l) {
			t.Fatalf("sync --watch printed %q", l)
		}
		switch {
		case strings.Contains(l, "in sync"):
			synced++
		case strings.Contains(l, "offline"):
			failed++
		}
	}
	return synced, failed
}

// TestFaults_Network runs navigators' "diary sync" and a supervisor's
// "diary sync --watch" through a proxy that cuts, resets, delays and
// stalls their connections at random. Every sync must either succeed or
// fail with a one-line reason, leaving every local write in place; once
// the faults stop, every replica must equal the server's view. Then the
// supervisor's Subscribe stream is reset and left half-open, and a
// shared entry must still reach the supervisor within a bound: the
// stream reconnects.
func TestFaults_Network(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	rounds := 48
	if raceEnabled {
		rounds = 24
	}
	// The supervisor's watch gives up a silent connection (its stream,
	// or a call waiting for an answer) after silence instead of 45 s.
	const silence = 3 * time.Second
	b := buildTools(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	addr := freeAddr(t)
	srv := startDiaryd(t, b.dir, data, addr)
	defer srv.stop(t)

	// Navigators reach the server through one proxy, the supervisor
	// through another, so that each side's faults can be turned off on
	// their own.
	navs, err := faultproxy.Start(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer navs.Close()
	sups, err := faultproxy.Start(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sups.Close()

	adminCode, err := os.ReadFile(filepath.Join(data, "admin-code"))
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(root, "admin")
	b.must(admin, "enrol", "--server", "http://"+addr, "--code", strings.TrimSpace(string(adminCode)), "--name", "admin")
	created := map[string]bool{}
	devices := []*profile{
		newProfile(root, "pn-a-phone", "PN-A"),
		newProfile(root, "pn-a-tablet", "PN-A"),
		newProfile(root, "pn-b", "PN-B"),
		newProfile(root, "pn-c", "PN-C"),
	}
	for _, p := range devices {
		b.enrolAs(admin, p.home, "navigator", p.study, navs.URL(), created)
	}
	sup := newProfile(root, "sup-1", "SUP-1")
	b.enrolAs(admin, sup.home, "supervisor", sup.study, sups.URL(), created)
	for _, n := range []string{"PN-A", "PN-B", "PN-C"} {
		b.must(admin, "admin", "assign", "--supervisor", "SUP-1", "--navigator", n)
	}

	// The faults start; the supervisor watches throughout.
	navs.SetPolicy(randomFaults(rand.New(rand.NewPCG(seed, 2)), time.Second))
	sups.SetPolicy(randomFaults(rand.New(rand.NewPCG(seed, 3)), time.Second))
	watch := b.startWatch(sup.home, silence)
	var ok, failed, watchStrikes int
	reasons := map[string]int{}
	for round := range rounds {
		if round < rounds/2 && rng.IntN(3) == 0 {
			// The watch keeps its connections open for long, so new
			// connections alone rarely meet a fault: break the open ones.
			watchStrikes += sups.Strike(faultproxy.Kinds[rng.IntN(len(faultproxy.Kinds))], time.Second)
		}
		if round == rounds/2 {
			// The supervisor's faults stop half way, so that its back-off
			// (which doubles with each failure) stays short enough to
			// wait for below.
			sups.SetPolicy(nil)
		}
		p := devices[rng.IntN(len(devices))]
		for range 1 + rng.IntN(2) {
			b.write(p, rng, rng.IntN(2) == 0)
		}
		before := b.status(p.home).Pending
		r := b.run(p.home, "sync")
		switch {
		case r.code == 0:
			ok++
		case r.code == 1 && syncFailure.MatchString(r.stderr):
			failed++
			reasons[addrs.ReplaceAllString(strings.TrimSpace(r.stderr), "ADDR")]++
		default:
			t.Fatalf("round %d: %s: sync ended with exit %d and stderr %q; want success or one line saying why", round, p.name, r.code, r.stderr)
		}
		st := b.checkLocal(p)
		if r.code == 0 && st.Pending != 0 || st.Pending > before {
			t.Fatalf("round %d: %s: %d changes pending after a sync (exit %d) that began with %d", round, p.name, st.Pending, r.code, before)
		}
	}
	navStats := navs.Stats()
	t.Logf("%d rounds: %d syncs succeeded, %d failed; navigators' proxy: %d connections, %d delayed, faults %v",
		rounds, ok, failed, navStats.Conns, navStats.Delayed, navStats.Struck)
	for r, n := range reasons {
		t.Logf("%dx %s", n, r)
	}
	if ok == 0 || failed == 0 || navStats.Total() < rounds/4 {
		t.Fatalf("the faults did not bite, or nothing got through: %d succeeded, %d failed, %d faults", ok, failed, navStats.Total())
	}

	// The faults stop: everything converges.
	navs.SetPolicy(nil)
	for range 2 { // the second round brings each device the others' entries
		for _, p := range devices {
			b.must(p.home, "sync")
		}
	}
	for _, p := range devices {
		b.checkLocal(p)
		assertConverged(t, p.home)
	}
	// Both of PN-A's devices hold the same entries, and each navigator
	// exactly the entries written on their devices.
	byStudy := map[string]map[string]bool{}
	var shared []string
	for _, p := range devices {
		if byStudy[p.study] == nil {
			byStudy[p.study] = map[string]bool{}
		}
		for id := range p.mine {
			byStudy[p.study][id] = true
			if p.shared[id] {
				shared = append(shared, id)
			}
		}
	}
	for _, p := range devices {
		got := b.list(p.home)
		if len(got) != len(byStudy[p.study]) {
			t.Fatalf("%s lists %d entries; %s wrote %d", p.name, len(got), p.study, len(byStudy[p.study]))
		}
		for id := range byStudy[p.study] {
			if _, ok := got[id]; !ok {
				t.Fatalf("%s lacks %s's entry %s", p.name, p.study, id)
			}
		}
	}

	// The watching supervisor catches up by itself.
	supDB, err := sql.Open("sqlite", "file:"+filepath.Join(sup.home, "replica.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer supDB.Close()
	took := waitFor(t, "the watching supervisor receives every shared entry", 40*time.Second, func() bool {
		return !slices.ContainsFunc(shared, func(id string) bool { return !replicaHas(t, supDB, id) })
	})
	t.Logf("the supervisor held all %d shared entries %v after the faults stopped", len(shared), took.Round(time.Millisecond))

	// Subscribe reconnects: after its connections are reset, and after
	// they are left half-open, a new shared entry still arrives.
	writer := devices[0]
	for _, strike := range []faultproxy.Kind{faultproxy.Reset, faultproxy.StallResponse} {
		n := sups.Strike(strike, 0)
		if n == 0 {
			t.Fatalf("%v: the watching supervisor had no open connection", strike)
		}
		id := b.write(writer, rng, true)
		b.must(writer.home, "sync")
		// The stream's watchdog notices a silent connection after
		// silence, and reconnects within a second; the pull it prompts
		// may first meet a pooled connection that is half-open too, give
		// it up after silence and retry within a second. The rest is
		// slack for a loaded machine.
		limit := 2*silence + 10*time.Second
		took := waitFor(t, fmt.Sprintf("after %v of %d connections, the supervisor receives a new shared entry", strike, n), limit, func() bool {
			return replicaHas(t, supDB, id)
		})
		t.Logf("after %v of %d connections, the new entry reached the supervisor in %v", strike, n, took.Round(time.Millisecond))
	}
	synced, watchFailed := watch.stop(t)
	t.Logf("sync --watch: %d syncs succeeded, %d failed; supervisor's proxy: %d connections, faults %v (%d struck into open connections)",
		synced, watchFailed, sups.Stats().Conns, sups.Stats().Struck, watchStrikes)
	b.must(sup.home, "sync")
	if n := assertConverged(t, sup.home); n != len(shared)+2 {
		t.Fatalf("the supervisor holds %d entries; %d were shared", n, len(shared)+2)
	}
}

// backlogDevice is a device that wrote a backlog offline, written with
// the client library straight into its replica.
type backlogDevice struct {
	name, home string
	device     string            // the server's id for the device
	titles     map[string]string // entry id → title, of entries written here
	changes    int               // changes written here
}

// writeBacklog enrols a profile through the CLI, then writes n entries
// into its replica while no diary process runs.
func (b *tools) writeBacklog(t *testing.T, admin, home, serverURL string, n int, created map[string]bool) *backlogDevice {
	t.Helper()
	ctx := context.Background()
	b.enrolAs(admin, home, "navigator", "PN-A", serverURL, created)
	c := replica(t, home)
	defer c.Close()
	d := &backlogDevice{name: filepath.Base(home), home: home, titles: map[string]string{}}
	p, _ := c.Profile()
	d.device = p.DeviceID
	for i := range n {
		title := fmt.Sprintf("%s backlog %d", d.name, i)
		id, err := c.Create(ctx, client.Draft{Title: title, Body: strings.Repeat("words of "+title+" ", 8), ShareSupervisor: i%3 == 0})
		if err != nil {
			t.Fatal(err)
		}
		d.titles[id.String()] = title
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d.changes = st.Pending
	return d
}

// inspect opens the replica a killed process left behind and checks it:
// it opens, its every stored state decodes, and every entry written here
// is present with its title. It returns the changes still pending and
// the cursor.
func (d *backlogDevice) inspect(t *testing.T) (pending int, cursor uint64) {
	t.Helper()
	ctx := context.Background()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(d.home, "replica.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var check string
	err = raw.QueryRow(`PRAGMA integrity_check`).Scan(&check)
	raw.Close()
	if err != nil || check != "ok" {
		t.Fatalf("%s: integrity check after SIGKILL: %q %v", d.name, check, err)
	}
	c := replica(t, d.home)
	defer c.Close()
	if _, _, err := c.StateHash(ctx); err != nil {
		t.Fatalf("%s: replica after SIGKILL: %v", d.name, err)
	}
	found := 0
	for tok := ""; ; {
		page, err := c.List(ctx, client.ListOptions{Limit: 1000, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Entries {
			if title, ok := d.titles[e.ID.String()]; ok {
				if e.Title != title {
					t.Fatalf("%s: entry %s is %q after SIGKILL, want %q", d.name, e.ID, e.Title, title)
				}
				found++
			}
		}
		if tok = page.Next; tok == "" {
			break
		}
	}
	if found != len(d.titles) {
		t.Fatalf("%s: %d of the %d entries written here are left after SIGKILL", d.name, found, len(d.titles))
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Refused != 0 {
		t.Fatalf("%s: %d changes refused", d.name, st.Refused)
	}
	return st.Pending, st.Cursor
}

// historyRows counts the changes the server recorded per device, read
// from its database file while it runs.
func historyRows(t *testing.T, dbPath string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT d.public_id, count(*) FROM history h JOIN devices d ON d.id = h.device_id GROUP BY d.public_id`)
	if err != nil {
		t.Fatalf("cannot count the server's history: %v", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var dev string
		var n int
		if err := rows.Scan(&dev, &n); err != nil {
			t.Fatal(err)
		}
		out[dev] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFaults_KilledSync kills "diary sync" with SIGKILL at random moments
// while it pushes and pulls a backlog of thousands of entries, and starts
// it again, a few times over, on two devices of one navigator. After
// every kill the replica must open, hold every entry written on it and
// never more changes pending than before; the server must never hold
// more changes from a device than it made (a resent change recorded
// twice would show); at the end both devices equal the server's view
// and the server holds each change exactly once.
func TestFaults_KilledSync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	seed := faultSeed(t)
	rng := rand.New(rand.NewPCG(seed, 4))
	// The race detector slows this process's own SQLite (writing the
	// backlog, checking replicas) many times over, not the binaries': it
	// gets a smaller backlog and a slower network instead, so that the
	// kills still land mid-sync.
	backlog, second, delay := 3000, 300, 10*time.Millisecond
	if raceEnabled {
		backlog, second, delay = 800, 150, 40*time.Millisecond
	}
	const kills = 5
	b := buildTools(t)
	root := t.TempDir()
	data := filepath.Join(root, "data")
	addr := freeAddr(t)
	srv := startDiaryd(t, b.dir, data, addr)
	defer srv.stop(t)
	// The devices reach the server through a proxy that only delays
	// (delay to 4×delay a chunk), so that a sync lasts long enough for
	// kills to land between its pages.
	delays := rand.New(rand.NewPCG(seed, 5))
	var delaysMu sync.Mutex
	slow, err := faultproxy.Start(addr, func(int) faultproxy.Fault {
		delaysMu.Lock()
		defer delaysMu.Unlock()
		return faultproxy.Fault{Delay: delay + time.Duration(delays.Int64N(int64(3*delay)))}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	url := slow.URL()
	adminCode, err := os.ReadFile(filepath.Join(data, "admin-code"))
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(root, "admin")
	b.must(admin, "enrol", "--server", "http://"+addr, "--code", strings.TrimSpace(string(adminCode)), "--name", "admin")
	created := map[string]bool{}
	// The phone pushes a large backlog; the tablet pushes a smaller one
	// and pulls the phone's.
	devices := []*backlogDevice{
		b.writeBacklog(t, admin, filepath.Join(root, "phone"), url, backlog, created),
		b.writeBacklog(t, admin, filepath.Join(root, "tablet"), url, second, created),
	}
	serverDB := filepath.Join(data, "diarysync.db")

	lostAnswers := 0
	// killLoop starts a sync on d and kills it after a random delay, up
	// to kills times or until a sync finishes before its kill.
	killLoop := func(d *backlogDevice, maxDelay time.Duration) (interrupted int) {
		pending, cursor := d.inspect(t)
		for k := range kills {
			cmd := exec.Command(b.diary, "--home", d.home, "sync")
			var errOut bytes.Buffer
			cmd.Stderr = &errOut
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			delay := 20*time.Millisecond + time.Duration(rng.Int64N(int64(maxDelay)))
			state := "killed"
			select {
			case err := <-exited:
				if err != nil {
					t.Fatalf("%s: sync %d failed without a kill: %v\n%s", d.name, k, err, errOut.String())
				}
				state = "finished before the kill"
			case <-time.After(delay):
				cmd.Process.Signal(syscall.SIGKILL)
				<-exited
				interrupted++
			}
			p, c := d.inspect(t)
			if p > pending || c < cursor {
				t.Fatalf("%s: after kill %d, %d changes pending (were %d) and cursor %d (was %d)", d.name, k, p, pending, c, cursor)
			}
			rows := historyRows(t, serverDB)
			for _, d := range devices {
				if rows[d.device] > d.changes {
					t.Fatalf("the server holds %d changes of %s, which made %d", rows[d.device], d.name, d.changes)
				}
			}
			if held := rows[d.device]; held > d.changes-p {
				// The kill came between the server's commit and the
				// device's record of it: the next sync sends those
				// changes again, and the server must know them.
				state += fmt.Sprintf(" (the server already held %d of its pending changes)", held-(d.changes-p))
				lostAnswers++
			}
			t.Logf("%s: sync %d %s after %v: %d changes pending, cursor %d", d.name, k, state, delay.Round(time.Millisecond), p, c)
			pending, cursor = p, c
			if !strings.HasPrefix(state, "killed") {
				break
			}
		}
		return interrupted
	}
	phone, tablet := devices[0], devices[1]
	defer func() {
		t.Logf("after %d kills the server already held changes the device had not recorded as sent: they went again", lostAnswers)
	}()
	// The phone is killed while it pushes its backlog, then finishes.
	if n := killLoop(phone, 600*time.Millisecond); n == 0 {
		t.Fatal("no sync of the phone was interrupted: the kills came too late to test anything")
	}
	b.must(phone.home, "sync")
	// The tablet is killed while it pushes its own and pulls the phone's
	// (pages of 1000 entries, each applied with its cursor), then the
	// phone while it pulls the tablet's.
	if n := killLoop(tablet, 400*time.Millisecond); n == 0 {
		t.Fatal("no sync of the tablet was interrupted: the kills came too late to test anything")
	}
	b.must(tablet.home, "sync")
	killLoop(phone, 300*time.Millisecond)

	// Restarted without interruption, everything converges.
	for _, d := range devices {
		b.must(d.home, "sync")
	}
	rows := historyRows(t, serverDB)
	for _, d := range devices {
		if rows[d.device] != d.changes {
			t.Fatalf("the server holds %d changes of %s, which made %d", rows[d.device], d.name, d.changes)
		}
		d.inspect(t)
		if n := assertConverged(t, d.home); n != backlog+second {
			t.Fatalf("%s holds %d entries; %d were written", d.name, n, backlog+second)
		}
	}
}
