package mobile

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
)

// testServer is a real diarysync server on loopback. Its gate can make
// the server unreachable, or hold Push and Pull requests until the client
// gives up on them.
type testServer struct {
	URL  string
	DB   *sqlite.DB
	srv  *httptest.Server
	down atomic.Bool
	// hold, when set, names the RPC ("Push" or "Pull") the server holds:
	// it does the work (commit, if commit is set) and then answers
	// nothing until the client cancels.
	hold    atomic.Pointer[string]
	commit  atomic.Bool
	entered chan string
	mu      sync.Mutex
	first   map[string]*Client // the first device of each person
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{entered: make(chan string, 16), first: map[string]*Client{}}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "server.db"), sqlite.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	ts.DB = db
	h := server.New(server.Config{Store: db, Heartbeat: 200 * time.Millisecond}).Handler()
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ts.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if rpc := ts.hold.Load(); rpc != nil && strings.HasSuffix(r.URL.Path, "/"+*rpc) {
			if ts.commit.Load() {
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			// A request whose body is read to the end is one whose
			// context ends when the client hangs up.
			io.Copy(io.Discard, r.Body)
			ts.entered <- *rpc
			<-r.Context().Done()
			return
		}
		h.ServeHTTP(w, r)
	}))
	ts.URL = ts.srv.URL
	t.Cleanup(func() {
		ts.srv.CloseClientConnections()
		ts.srv.Close()
		db.Close()
	})
	return ts
}

// link creates the user if needed and returns an enrolment link for them.
func (ts *testServer) link(t *testing.T, role study.Role, code string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := ts.DB.UserByCode(ctx, code); err != nil {
		if _, err := ts.DB.CreateUser(ctx, code, role, "Test "+code); err != nil {
			t.Fatal(err)
		}
	}
	one, _, err := ts.DB.IssueEnrollmentCode(ctx, code, 0)
	if err != nil {
		t.Fatal(err)
	}
	return study.EnrolLink(ts.URL, one)
}

// device opens a diary in a temporary directory and enrols it.
func (ts *testServer) device(t *testing.T, role study.Role, code string) *Client {
	t.Helper()
	return ts.deviceWith(t, role, code, &Options{LiveDelayMillis: 10, PushDelayMillis: 10})
}

func (ts *testServer) deviceWith(t *testing.T, role study.Role, code string, o *Options) *Client {
	t.Helper()
	c, err := Open(filepath.Join(t.TempDir(), "diary.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	p, err := c.EnrolWithLink(ts.link(t, role, code), "test "+code)
	if err != nil {
		t.Fatal(err)
	}
	// A later device of a person waits for approval: their first device
	// gives it.
	ts.mu.Lock()
	first := ts.first[code]
	if first == nil {
		ts.first[code] = c
	}
	ts.mu.Unlock()
	if first != nil {
		if p.DeviceID == "" || c.Profile() == nil {
			t.Fatalf("enrolled without a device id: %+v", p)
		}
		if s := status(t, c); s.DeviceState != DevicePending {
			t.Fatalf("a second device's state: %q", s.DeviceState)
		}
		d, err := first.ApproveDevice(p.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != DeviceActive || d.ApprovedBy == "" {
			t.Fatalf("approved %+v", d)
		}
	}
	return c
}

// serverCount reads a count straight from the server's database file.
func (ts *testServer) count(t *testing.T, query string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+ts.DB.Path()+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// codeOf is what an app does with an exception: read the code back from
// its text.
func codeOf(err error) string {
	if err == nil {
		return ""
	}
	return ParseError(err.Error()).Code
}

// pages collects what an EntriesListener receives.
type pages struct {
	ch chan *EntryPage
}

func (p *pages) OnEntries(page *EntryPage, err *Error) {
	if err != nil {
		page = &EntryPage{Next: "error " + err.Error()}
	}
	p.ch <- page
}

func (p *pages) next(t *testing.T) *EntryPage {
	t.Helper()
	select {
	case page := <-p.ch:
		if strings.HasPrefix(page.Next, "error ") {
			t.Fatal(page.Next)
		}
		return page
	case <-time.After(10 * time.Second):
		t.Fatal("the watch delivered nothing")
		return nil
	}
}

func titles(p *EntryPage) []string {
	var out []string
	for i := range p.Len() {
		out = append(out, p.Get(i).Title)
	}
	return out
}

// queued returns how many changes f queued on c, which must not sync
// meanwhile.
func queued(t *testing.T, c *Client, f func()) int {
	t.Helper()
	before := status(t, c).Pending
	f()
	return status(t, c).Pending - before
}

func status(t *testing.T, c *Client) *Status {
	t.Helper()
	s, err := c.Status()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNavigatorsAndSupervisor drives the facade as two navigator devices
// and a supervisor's phone would: writes offline, syncs, a live list that
// sees a pulled entry, feedback, search, the inbox, refused changes and
// errors an app can read.
func TestNavigatorsAndSupervisor(t *testing.T) {
	ts := startServer(t)
	before := runtime.NumGoroutine()
	phone := ts.device(t, study.RoleNavigator, "PN-A")
	tablet := ts.device(t, study.RoleNavigator, "PN-A")
	ts.link(t, study.RoleSupervisor, "SUP-1")
	if _, _, err := ts.DB.Assign(context.Background(), "SUP-1", "PN-A"); err != nil {
		t.Fatal(err)
	}
	sup := ts.device(t, study.RoleSupervisor, "SUP-1")
	if p := phone.Profile(); p == nil || p.Role != "navigator" || p.StudyCode != "PN-A" || p.EnrolledAtMillis == 0 {
		t.Fatalf("profile %+v", p)
	}

	// On the street: no network.
	ts.down.Store(true)
	d := NewDraft()
	d.Title, d.Body, d.Date, d.Mood, d.ShareSupervisor = "Hostel", "Went to the hostel with J.", "2026-11-24", 6, true
	d.Tags.Add("housing")
	shared, err := phone.Create(d)
	must(t, err)
	private, err := phone.Create(&Draft{Title: "Private", Body: "Only mine."})
	must(t, err)
	e := NewEdit()
	e.SetBody("Went to the hostel with J.; the warden was kind.")
	e.AddTag("outreach")
	must(t, phone.Update(shared, e))
	if err := phone.SyncNow(); codeOf(err) != CodeNetwork {
		t.Fatalf("sync with no network: %v", err)
	}
	if s := status(t, phone); s.Pending == 0 || s.Connectivity != Offline || !s.NetworkError || s.LastError == "" {
		t.Fatalf("status offline %+v", s)
	}
	ts.down.Store(false)

	// The supervisor's inbox screen watches the list.
	inbox := &pages{ch: make(chan *EntryPage, 10)}
	sub, err := sup.WatchEntries(&Query{Unread: true}, inbox)
	must(t, err)
	if p := inbox.next(t); p.Len() != 0 {
		t.Fatalf("inbox before any sync: %v", titles(p))
	}
	must(t, phone.SyncNow())
	must(t, sup.SyncNow())
	if p := inbox.next(t); p.Len() != 1 || p.Get(0).ID != shared || p.Get(0).Tags.Len() != 2 || p.Get(0).Body != "Went to the hostel with J.; the warden was kind." {
		t.Fatalf("inbox after the pull: %v", titles(p))
	}
	if s := status(t, sup); s.Connectivity != Online || s.Pending != 0 || s.LastSyncMillis == 0 || s.LastContactMillis == 0 {
		t.Fatalf("supervisor's status %+v", s)
	}
	if n, err := sup.Count(&Query{Unread: true}); err != nil || n != 1 {
		t.Fatalf("unread badge %d %v", n, err)
	}
	must(t, sup.MarkRead(shared, true))
	if p := inbox.next(t); p.Len() != 0 {
		t.Fatalf("inbox after reading: %v", titles(p))
	}
	sub.Stop()

	// Feedback reaches both of the navigator's devices.
	fid, err := sup.WriteFeedback(shared, "That sounds like a good visit.")
	must(t, err)
	must(t, sup.SyncNow())
	for _, c := range []*Client{phone, tablet} {
		must(t, c.SyncNow())
		got, err := c.Get(shared)
		must(t, err)
		if got.FeedbackCount() != 1 || got.Feedback(0).ID != fid || got.Feedback(0).Author != "SUP-1" || got.Feedback(1) != nil {
			t.Fatalf("feedback on a navigator's device: %d notes", got.FeedbackCount())
		}
	}
	if p, err := tablet.List(nil); err != nil || p.Len() != 2 {
		t.Fatalf("the tablet's list: %v %v", p, err)
	}
	found, err := tablet.List(&Query{Text: "warden"})
	must(t, err)
	if found.Len() != 1 || !strings.Contains(found.Get(0).Snippet, "[warden]") {
		t.Fatalf("search on the tablet: %v", titles(found))
	}

	// The navigator withdraws sharing while the supervisor, offline,
	// writes another note: it is refused, and kept where they see it.
	ts.down.Store(true)
	_, err = sup.WriteFeedback(shared, "Shall we talk about the warden?")
	must(t, err)
	ts.down.Store(false)
	must(t, tablet.SetSharing(shared, false, false))
	must(t, tablet.SyncNow())
	must(t, sup.SyncNow())
	refused, err := sup.Refused(0, 10)
	must(t, err)
	if refused.Len() != 1 || refused.Next != 0 {
		t.Fatalf("%d refused changes", refused.Len())
	}
	r := refused.Get(0)
	if r.Reason != "not_permitted" || r.Field != "feedback_body" || r.Text != "Shall we talk about the warden?" || r.EntryID != shared || r.FeedbackID == "" || r.Message == "" {
		t.Fatalf("refused %+v", r)
	}
	if s := status(t, sup); s.Refused != 1 {
		t.Fatalf("status refused %d", s.Refused)
	}
	must(t, sup.DismissRefused(r.Seq))
	if err := sup.DismissRefused(r.Seq); codeOf(err) != CodeNotFound {
		t.Fatalf("dismissing twice: %v", err)
	}
	if _, err := sup.Get(shared); codeOf(err) != CodeNotFound {
		t.Fatalf("the supervisor still holds the un-shared entry: %v", err)
	}

	// Errors an app can tell apart.
	for name, tc := range map[string]struct {
		err  error
		code string
	}{
		"BadID":       {phone.Delete("not an id"), CodeInvalid},
		"NotFound":    {phone.Delete("0190b6d1-0000-7000-8000-000000000000"), CodeNotFound},
		"EmptyEdit":   {phone.Update(private, NewEdit()), CodeInvalid},
		"NotAuthor":   {func() error { e := NewEdit(); e.SetTitle("x"); return sup.Update(private, e) }(), CodePermission},
		"BadLink":     {func() error { _, err := ParseEnrolLink("https://example.org"); return err }(), CodeInvalid},
		"BadQuery":    {func() error { _, err := phone.List(&Query{Sharing: 9}); return err }(), CodeInvalid},
		"EmptySearch": {func() error { _, err := phone.List(&Query{Text: "?!"}); return err }(), CodeInvalid},
		"NoFeedback":  {sup.DeleteFeedback(shared, "not a note"), CodeInvalid},
	} {
		if got := codeOf(tc.err); got != tc.code {
			t.Errorf("%s: %v (code %q), want %q", name, tc.err, got, tc.code)
		}
	}
	// The navigator's devices, as the device list shows them.
	devs, err := phone.Devices("")
	must(t, err)
	this := 0
	for i := range devs.Len() {
		if d := devs.Get(i); d.State != DeviceActive || d.ID == "" {
			t.Fatalf("device %+v", d)
		} else if d.This {
			this++
		}
	}
	if devs.Len() != 2 || this != 1 || devs.Next != "" {
		t.Fatalf("%d devices, %d of them this one", devs.Len(), this)
	}

	// A splice where the person typed, counted in UTF-16 code units as a
	// text view counts them: the emoji before it is two.
	must(t, phone.Update(private, func() *Edit { e := NewEdit(); e.SetBody("😀 Only mine."); return e }()))
	must(t, phone.SpliceBody(private, 3, 4, "All"))
	if got, err := phone.Get(private); err != nil || got.Body != "😀 All mine." {
		t.Fatalf("after a splice: %q %v", got.Body, err)
	}
	if err := phone.SpliceBody(private, 1, 0, "x"); codeOf(err) != CodeInvalid {
		t.Fatalf("a splice inside the emoji: %v", err)
	}

	must(t, phone.Delete(private))
	must(t, phone.Restore(private))
	if got, err := phone.Get(private); err != nil || got.Deleted {
		t.Fatalf("restored %+v %v", got, err)
	}

	for _, c := range []*Client{phone, tablet, sup} {
		must(t, c.Close())
		if _, err := c.List(nil); codeOf(err) != CodeClosed {
			t.Fatalf("a closed client listed: %v", err)
		}
	}
	assertNoGoroutines(t, ts, before)
}

// assertNoGoroutines waits until the goroutines are back to before, once
// the server has dropped its connections.
func assertNoGoroutines(t *testing.T, ts *testServer, before int) {
	t.Helper()
	ts.srv.CloseClientConnections()
	var after int
	for range 200 {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines before, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
}

// TestStartStopCutsSyncInFlight: Stop, while a sync waits for the
// server's answer, cuts it and returns without that answer; nothing is
// lost or sent twice, and the next Start goes on from there.
func TestStartStopCutsSyncInFlight(t *testing.T) {
	ts := startServer(t)
	before := runtime.NumGoroutine()
	laptop := ts.device(t, study.RoleNavigator, "PN-A")
	for range 20 {
		_, err := laptop.Create(&Draft{Title: "from the laptop"})
		must(t, err)
	}
	fromLaptop := status(t, laptop).Pending
	must(t, laptop.SyncNow())
	phone := ts.device(t, study.RoleNavigator, "PN-A")
	ts.down.Store(true)
	for range 30 {
		_, err := phone.Create(&Draft{Title: "from the phone", Body: "written offline"})
		must(t, err)
	}
	ts.down.Store(false)
	pending := status(t, phone).Pending
	wait := func(rpc string) {
		t.Helper()
		select {
		case got := <-ts.entered:
			if got != rpc {
				t.Fatalf("the server held %s, want %s", got, rpc)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s reached the server", rpc)
		}
	}

	// 1. The push reaches the server, which commits it, and its answer
	// never comes: Stop cuts the sync; the changes stay queued.
	push, pull := "Push", "Pull"
	ts.hold.Store(&push)
	ts.commit.Store(true)
	must(t, phone.Start())
	wait(push)
	phone.Stop()
	if s := status(t, phone); s.Started || s.Syncing || s.Pending != pending {
		t.Fatalf("after Stop during a push: %+v (pending before %d)", s, pending)
	}

	// 2. The pull is held: Stop cuts it. (Whether the push went first
	// is the client's business; step 3 shows nothing was lost.)
	ts.hold.Store(&pull)
	ts.commit.Store(false)
	must(t, phone.Start())
	wait(pull)
	phone.Stop()
	if s := status(t, phone); s.Started || s.Syncing {
		t.Fatalf("after Stop during a pull: %+v", s)
	}
	// A SyncNow is cut the same way.
	done := make(chan error, 1)
	go func() { done <- phone.SyncNow() }()
	wait(pull)
	phone.Stop()
	if err := <-done; codeOf(err) != CodeCancelled {
		t.Fatalf("a SyncNow cut by Stop: %v", err)
	}

	// 3. A good network: the next Start catches up.
	ts.hold.Store(nil)
	must(t, phone.Start())
	must(t, phone.Start()) // started already: nothing more
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := phone.List(&Query{Limit: 100})
		must(t, err)
		if s := status(t, phone); p.Len() == 50 && s.Pending == 0 && s.Connectivity == Online {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the phone did not catch up: %d entries, %+v", p.Len(), status(t, phone))
		}
		time.Sleep(20 * time.Millisecond)
	}
	phone.Stop()
	// Every change queued on either device reached the server once.
	if n := ts.count(t, `SELECT count(*) FROM history`); n != fromLaptop+pending {
		t.Fatalf("the server holds %d changes, want %d", n, fromLaptop+pending)
	}
	must(t, phone.Close())
	must(t, laptop.Close())
	assertNoGoroutines(t, ts, before)
}

// slowList is an EntriesListener whose first call closes entered and
// then blocks until release is closed: a UI thread busy while a sync
// runs.
type slowList struct {
	entered chan struct{}
	release chan struct{}
	first   bool
	pages
}

func (s *slowList) OnEntries(page *EntryPage, err *Error) {
	if !s.first {
		s.first = true
		close(s.entered)
		<-s.release
	}
	s.pages.OnEntries(page, err)
}

// TestSlowListenerSeesPulledEntry: a watched list whose listener is busy
// while a sync pulls an entry still delivers that entry once the
// listener returns. A sync that pulls sends Status, Status, Entries; a
// watch that kept two events of any kind dropped Entries, and the list
// never changed again.
func TestSlowListenerSeesPulledEntry(t *testing.T) {
	ts := startServer(t)
	laptop := ts.device(t, study.RoleNavigator, "PN-A")
	phone := ts.device(t, study.RoleNavigator, "PN-A")
	id, err := laptop.Create(&Draft{Title: "from the laptop"})
	must(t, err)
	must(t, laptop.SyncNow())

	l := &slowList{entered: make(chan struct{}), release: make(chan struct{}), pages: pages{ch: make(chan *EntryPage, 10)}}
	sub, err := phone.WatchEntries(nil, l)
	must(t, err)
	defer sub.Stop()
	var once sync.Once
	release := func() { once.Do(func() { close(l.release) }) }
	t.Cleanup(release) // before Close, which waits for the listener, even when the test fails
	// The first query runs in the background: the sync must come after
	// it, while the listener is busy with its result.
	select {
	case <-l.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the watch never delivered its first result")
	}
	must(t, phone.SyncNow())
	if n, err := phone.Count(nil); err != nil || n != 1 {
		t.Fatalf("the phone pulled %d entries (%v)", n, err)
	}
	release()
	if p := l.next(t); p.Len() != 0 {
		t.Fatalf("the first result, from before the sync: %v", titles(p))
	}
	if p := l.next(t); p.Len() != 1 || p.Get(0).ID != id {
		t.Fatalf("the result after the pull: %v", titles(p))
	}
}

// statuses collects what a StatusListener receives.
type statuses struct{ ch chan *Status }

func (s statuses) OnStatus(st *Status) { s.ch <- st }

// until reads statuses until one satisfies ok.
func (s statuses) until(t *testing.T, what string, ok func(*Status) bool) *Status {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case st := <-s.ch:
			if ok(st) {
				return st
			}
		case <-timeout:
			t.Fatalf("no status said %s", what)
			return nil
		}
	}
}

// TestCloseEndsEverything: Close, with background sync started, a sync
// held in flight by the server, a watched list and a status watch open,
// returns; the sync it cut reports CodeCancelled, every call after it
// CodeClosed, and no goroutine of the library is left.
func TestCloseEndsEverything(t *testing.T) {
	ts := startServer(t)
	before := runtime.NumGoroutine()
	phone := ts.device(t, study.RoleNavigator, "PN-A")
	list := &pages{ch: make(chan *EntryPage, 100)}
	lsub, err := phone.WatchEntries(&Query{Text: "hostel"}, list)
	must(t, err)
	_ = lsub
	st := statuses{ch: make(chan *Status, 1000)}
	_, err = phone.WatchStatus(st)
	must(t, err)
	st.until(t, "offline", func(s *Status) bool { return s.Connectivity == Offline && s.Enrolled && !s.Started })
	list.next(t)

	_, err = phone.Create(&Draft{Title: "Hostel", Body: "the hostel"})
	must(t, err)
	if p := list.next(t); p.Len() != 1 || !strings.Contains(p.Get(0).Snippet, "[Hostel]") {
		t.Fatalf("the watched search after a write: %v", titles(p))
	}
	st.until(t, "changes pending", func(s *Status) bool { return s.Pending == 3 }) // title, body, date
	must(t, phone.Start())
	st.until(t, "online, nothing pending", func(s *Status) bool {
		return s.Started && s.Connectivity == Online && s.Pending == 0 && !s.Syncing
	})

	pull := "Pull"
	ts.hold.Store(&pull)
	done := make(chan error, 1)
	go func() { done <- phone.SyncNow() }()
	<-ts.entered
	st.until(t, "syncing", func(s *Status) bool { return s.Connectivity == Syncing })
	must(t, phone.Close())
	if err := <-done; codeOf(err) != CodeCancelled {
		t.Fatalf("the sync Close cut: %v", err)
	}
	for name, err := range map[string]error{
		"SyncNow": phone.SyncNow(),
		"Start":   phone.Start(),
		"Create":  func() error { _, err := phone.Create(NewDraft()); return err }(),
		"Watch":   func() error { _, err := phone.WatchEntries(nil, list); return err }(),
		"Status":  func() error { _, err := phone.Status(); return err }(),
	} {
		if codeOf(err) != CodeClosed {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	must(t, phone.Close())
	lsub.Stop() // after Close: does nothing more
	ts.hold.Store(nil)
	assertNoGoroutines(t, ts, before)
}

// TestStartStopCycles: a phone that comes to the foreground and goes to
// the background again and again, each time while a push or a pull is
// in flight and with new writes in between, ends with every entry on the
// server exactly once and both devices holding the same entries.
func TestStartStopCycles(t *testing.T) {
	ts := startServer(t)
	before := runtime.NumGoroutine()
	phone := ts.device(t, study.RoleNavigator, "PN-A")
	tablet := ts.device(t, study.RoleNavigator, "PN-A")
	push, pull := "Push", "Pull"
	written, changes := 0, 0 // entries, and the changes they were queued as
	for cycle := range 6 {
		for range 5 {
			changes += queued(t, phone, func() {
				_, err := phone.Create(&Draft{Title: fmt.Sprintf("cycle %d", cycle), Body: "written between syncs"})
				must(t, err)
			})
			written++
		}
		changes += queued(t, tablet, func() {
			_, err := tablet.Create(&Draft{Title: fmt.Sprintf("tablet %d", cycle)})
			must(t, err)
		})
		written++
		must(t, tablet.SyncNow())
		rpc := &push
		if cycle%2 == 1 {
			rpc = &pull
		}
		ts.hold.Store(rpc)
		ts.commit.Store(cycle%3 == 0) // sometimes the server commits a push whose answer is lost
		must(t, phone.Start())
		if got := <-ts.entered; got != *rpc {
			t.Fatalf("cycle %d: the server held %s, want %s", cycle, got, *rpc)
		}
		phone.Stop()
		if s := status(t, phone); s.Started || s.Syncing {
			t.Fatalf("cycle %d: after Stop %+v", cycle, s)
		}
		ts.hold.Store(nil)
	}
	must(t, phone.SyncNow())
	must(t, tablet.SyncNow())
	for _, c := range []*Client{phone, tablet} {
		if n, err := c.Count(nil); err != nil || n != written {
			t.Fatalf("a device holds %d entries (%v), want %d", n, err, written)
		}
		if s := status(t, c); s.Pending != 0 || s.Refused != 0 {
			t.Fatalf("a device's status at the end: %+v", s)
		}
	}
	// Every entry, and every change it was queued as, is held once.
	if n := ts.count(t, `SELECT count(DISTINCT entry) FROM history`); n != written {
		t.Fatalf("the server holds %d entries, want %d", n, written)
	}
	if n := ts.count(t, `SELECT count(*) FROM history`); n != changes {
		t.Fatalf("the server holds %d changes, want %d", n, changes)
	}
	must(t, phone.Close())
	must(t, tablet.Close())
	assertNoGoroutines(t, ts, before)
}

// TestNetworkChangedRetriesAtOnce: background sync that failed waits (here
// at least half an hour) before it tries again; NetworkChanged, when the
// phone's network comes back, makes it try at once. The status says
// retrying, with the time and a network error, while it waits, and
// online once it synced.
func TestNetworkChangedRetriesAtOnce(t *testing.T) {
	ts := startServer(t)
	hour := int64(time.Hour / time.Millisecond)
	phone := ts.deviceWith(t, study.RoleNavigator, "PN-A", &Options{LiveDelayMillis: 10, PushDelayMillis: 10, MinRetryMillis: hour, MaxRetryMillis: hour})
	changes := queued(t, phone, func() {
		_, err := phone.Create(&Draft{Title: "in the tunnel"})
		must(t, err)
	})
	st := statuses{ch: make(chan *Status, 1000)}
	sub, err := phone.WatchStatus(st)
	must(t, err)
	defer sub.Stop()
	ts.down.Store(true)
	must(t, phone.Start())
	waiting := st.until(t, "retrying in half an hour or more", func(s *Status) bool {
		return s.Connectivity == Retrying && s.RetryAtMillis-s.LastErrorMillis >= hour/2
	})
	if !waiting.NetworkError || waiting.LastError == "" || waiting.Pending == 0 || !waiting.Started {
		t.Fatalf("status while retrying: %+v", waiting)
	}
	ts.down.Store(false)
	phone.NetworkChanged()
	done := st.until(t, "online with nothing pending", func(s *Status) bool {
		return s.Connectivity == Online && s.Pending == 0 && !s.Syncing
	})
	if done.LastError != "" || done.NetworkError || done.LastSyncMillis == 0 {
		t.Fatalf("status once synced: %+v", done)
	}
	if n := ts.count(t, `SELECT count(*) FROM history`); n != changes {
		t.Fatalf("the server holds %d changes, want %d", n, changes)
	}
}
