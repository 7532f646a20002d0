package client

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// assertConverged checks that every replica holds exactly what the server
// says their user may see.
func assertConverged(t *testing.T, clients ...*Client) {
	t.Helper()
	ctx := context.Background()
	for i, c := range clients {
		local, n, err := c.StateHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		remote, m, _, err := c.ServerStateHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if local != remote || n != m {
			t.Fatalf("replica %d holds %d entries (hash %x); the server's view has %d (hash %x)", i, n, local[:6], m, remote[:6])
		}
	}
}

func TestWriteReadLocal(t *testing.T) {
	ts := startServer(t)
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		id := mustCreate(t, nav, Draft{Title: "Tuesday", Body: "Met J.", Date: "2026-11-24", Mood: 6, Tags: []string{"housing", "court"}, ShareSupervisor: true})
		if err := nav.Update(ctx, id, Edit{Title: ptr("Tuesday, hostel"), AddTags: []string{"family"}, RemoveTags: []string{"court"}}); err != nil {
			t.Fatal(err)
		}
		e, err := nav.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Title != "Tuesday, hostel" || e.Body != "Met J." || e.Date != "2026-11-24" || e.Mood != 6 ||
			!slices.Equal(e.Tags, []string{"family", "housing"}) || !e.ShareSupervisor || e.ShareResearch || e.Author != "PN-A" || e.Pending != 10 {
			t.Fatalf("entry %+v", e)
		}
		if e.CreatedAt.IsZero() || e.UpdatedAt.Before(e.CreatedAt) {
			t.Fatalf("times %v %v", e.CreatedAt, e.UpdatedAt)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		_, err := nav.Create(ctx, Draft{Title: "a\nb"})
		if syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("err %v", err)
		}
		_, err = nav.Create(ctx, Draft{Body: strings.Repeat("x", syncengine.MaxBodyBytes+1)})
		if !errors.Is(err, syncengine.ErrTooLarge) {
			t.Fatalf("err %v", err)
		}
		st, _ := nav.Status(ctx)
		if st.Pending != 10 {
			t.Fatalf("a refused write left %d pending changes, want 10", st.Pending)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		err := nav.Update(ctx, syncengine.NewEntryID(), Edit{Title: ptr("x")})
		if syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
			t.Fatalf("err %v", err)
		}
	})
}

func TestListFiltersAndPages(t *testing.T) {
	ts := startServer(t)
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ctx := context.Background()
	for i := range 25 {
		d := Draft{Title: fmt.Sprint(i), Date: fmt.Sprintf("2026-11-%02d", i+1)}
		if i%2 == 0 {
			d.Tags = []string{"even"}
		}
		if i%5 == 0 {
			d.ShareResearch = true
		}
		id := mustCreate(t, nav, d)
		if i == 24 {
			if err := nav.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(o ListOptions) (n int, dates []string) {
		t.Helper()
		for {
			p, err := nav.List(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Entries {
				dates = append(dates, e.Date)
			}
			n += len(p.Entries)
			if p.Next == "" {
				return n, dates
			}
			o.PageToken = p.Next
		}
	}
	n, dates := count(ListOptions{Limit: 7})
	if n != 24 || !slices.IsSortedFunc(dates, func(a, b string) int { return strings.Compare(b, a) }) {
		t.Fatalf("all: %d entries, dates %v", n, dates)
	}
	for _, tc := range []struct {
		name string
		o    ListOptions
		want int
	}{
		{"Tag", ListOptions{Tag: "even"}, 12},
		{"Range", ListOptions{From: "2026-11-05", To: "2026-11-10"}, 6},
		{"Research", ListOptions{Sharing: SharedResearch}, 5},
		{"Private", ListOptions{Sharing: SharedWithNoone}, 19},
		{"OnlyDeleted", ListOptions{Deleted: OnlyDeleted}, 1},
		{"WithDeleted", ListOptions{Deleted: WithDeleted, Limit: 3}, 25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n, _ := count(tc.o); n != tc.want {
				t.Fatalf("%d entries, want %d", n, tc.want)
			}
		})
	}
	if _, err := nav.List(ctx, ListOptions{PageToken: "garbage"}); syncengine.ErrorCode(err) != syncengine.EINVALID {
		t.Fatalf("bad token: %v", err)
	}
}

// TestTwoDevicesConverge: two devices of one navigator edit the same entry
// offline (different fields, the same field, tags on both) and sync in
// every order; both devices and the server end with one state.
func TestTwoDevicesConverge(t *testing.T) {
	for _, order := range [][]int{{0, 1, 0}, {1, 0, 1}, {0, 0, 1, 0}, {1, 1, 0, 1}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			ts := startServer(t)
			ctx := context.Background()
			enrolling := time.Now()
			a := ts.device(t, study.RoleNavigator, "PN-A", Options{})
			b := ts.device(t, study.RoleNavigator, "PN-A", Options{})
			// Each device's clock offset is learnt from its enrolment's
			// round trip, so the two may differ by up to the time the
			// enrolments took: B's edit must come later than that for its
			// clock to be the later one.
			skew := time.Since(enrolling)
			id := mustCreate(t, a, Draft{Title: "draft", Body: "first", Tags: []string{"housing", "court"}})
			mustSync(t, a)
			mustSync(t, b)
			// Offline on both: A edits the title and tags, B the body, the
			// title (later) and tags.
			if err := a.Update(ctx, id, Edit{Title: ptr("from A"), AddTags: []string{"family"}, RemoveTags: []string{"court"}}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(skew + 2*time.Millisecond)
			if err := b.Update(ctx, id, Edit{Body: ptr("body from B"), Title: ptr("from B"), AddTags: []string{"benefits"}, RemoveTags: []string{"housing"}}); err != nil {
				t.Fatal(err)
			}
			devices := []*Client{a, b}
			for _, i := range order {
				mustSync(t, devices[i])
			}
			mustSync(t, a)
			mustSync(t, b)
			assertConverged(t, a, b)
			e, err := a.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if e.Title != "from B" || e.Body != "body from B" || !slices.Equal(e.Tags, []string{"benefits", "family"}) {
				t.Fatalf("merged entry: title %q body %q tags %v", e.Title, e.Body, e.Tags)
			}
		})
	}
}

func TestSupervisorSeesSharedOnly(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	other := ts.device(t, study.RoleNavigator, "PN-B", Options{})
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})

	shared := mustCreate(t, nav, Draft{Title: "shared", ShareSupervisor: true})
	mustCreate(t, nav, Draft{Title: "private"})
	mustCreate(t, nav, Draft{Title: "research only", ShareResearch: true})
	mustCreate(t, other, Draft{Title: "other navigator's", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, other)
	mustSync(t, sup)
	titles := func() []string {
		p, err := sup.List(ctx, ListOptions{Deleted: WithDeleted})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range p.Entries {
			out = append(out, e.Title)
		}
		return out
	}
	if got := titles(); !slices.Equal(got, []string{"shared"}) {
		t.Fatalf("supervisor holds %v", got)
	}
	assertConverged(t, sup, nav)

	// Un-sharing removes it on the supervisor's next sync.
	if err := nav.SetSharing(ctx, shared, false, false); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	mustSync(t, sup)
	if got := titles(); len(got) != 0 {
		t.Fatalf("after un-sharing, supervisor holds %v", got)
	}
	assertConverged(t, sup)

	// A supervisor cannot edit what they see.
	if err := nav.SetSharing(ctx, shared, true, false); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	mustSync(t, sup)
	if err := sup.Update(ctx, shared, Edit{Title: ptr("edited")}); syncengine.ErrorCode(err) != syncengine.EPERMISSION {
		t.Fatalf("supervisor edit: %v", err)
	}
}

// flakyHandler wraps the server: while down is set it answers every
// request with 503, and failPulls makes the next n Pull calls fail after
// the server did the work.
type flakyHandler struct {
	next  http.Handler
	down  atomic.Bool
	pulls atomic.Int64 // Pull requests that reached the server
	// loseAfter, when positive, is the Pull number after which the server
	// goes down (its response still delivered).
	loseAfter atomic.Int64
	// dropPushResponse makes the next Push commit on the server while the
	// client gets a network error.
	dropPushResponse atomic.Bool
}

func (f *flakyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if strings.HasSuffix(r.URL.Path, "/Pull") {
		n := f.pulls.Add(1)
		if la := f.loseAfter.Load(); la > 0 && n >= la {
			f.down.Store(true)
		}
	}
	if strings.HasSuffix(r.URL.Path, "/Push") && f.dropPushResponse.CompareAndSwap(true, false) {
		rec := httptest.NewRecorder()
		f.next.ServeHTTP(rec, r) // committed on the server...
		hj, ok := w.(http.Hijacker)
		if !ok {
			panic("no hijacker")
		}
		conn, _, _ := hj.Hijack()
		conn.Close() // ...but the answer never arrives
		return
	}
	f.next.ServeHTTP(w, r)
}

func startFlakyServer(t *testing.T) (*testServer, *flakyHandler) {
	ts := startServer(t)
	f := &flakyHandler{next: ts.srv.Config.Handler}
	ts.srv.Config.Handler = f
	return ts, f
}

// TestPullResumes: a sync cut off mid-pull (the server stops) keeps the
// pages it applied, and the next sync continues from there.
func TestPullResumes(t *testing.T) {
	ts, f := startFlakyServer(t)
	ctx := context.Background()
	entries, page := 1000, 100 // ten pages
	if raceEnabled {
		entries, page = 200, 20
	}
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	for i := range entries {
		mustCreate(t, nav, Draft{Title: fmt.Sprint(i)})
	}
	mustSync(t, nav)
	reader := ts.device(t, study.RoleNavigator, "PN-A", Options{PullPageSize: uint32(page)})
	f.pulls.Store(0)
	f.loseAfter.Store(4) // the 4th page arrives, then the server is gone
	err := reader.Sync(ctx)
	var ne *NetworkError
	var se *ServerError
	if !errors.As(err, &ne) && !errors.As(err, &se) {
		t.Fatalf("sync with the server gone: %v", err)
	}
	st, _ := reader.Status(ctx)
	p, _ := reader.List(ctx, ListOptions{Limit: 1000})
	if len(p.Entries) != 4*page || st.LastError == "" {
		t.Fatalf("after the cut: %d entries, status %+v", len(p.Entries), st)
	}
	cut := st.Cursor
	f.loseAfter.Store(0)
	f.down.Store(false)
	f.pulls.Store(0)
	mustSync(t, reader)
	if n := f.pulls.Load(); n != 6 {
		t.Fatalf("resumed with %d pulls, want the 6 pages not yet applied", n)
	}
	st, _ = reader.Status(ctx)
	if st.Cursor <= cut || st.LastError != "" {
		t.Fatalf("status after resume %+v", st)
	}
	assertConverged(t, reader, nav)
}

// TestOfflineBacklog: 10,000 entries written offline reach the server
// exactly once, even when a push's answer is lost.
func TestOfflineBacklog(t *testing.T) {
	n := 10000
	if testing.Short() || raceEnabled {
		n = 500
	}
	ts, f := startFlakyServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	f.down.Store(true)
	for i := range n {
		mustCreate(t, nav, Draft{Title: fmt.Sprint(i), Body: "offline"})
	}
	if err := nav.Sync(ctx); err == nil {
		t.Fatal("sync with the server down succeeded")
	}
	st, _ := nav.Status(ctx)
	if st.Pending != 3*n {
		t.Fatalf("pending %d, want %d", st.Pending, 3*n)
	}
	f.down.Store(false)
	f.dropPushResponse.Store(true)
	if err := nav.Sync(ctx); err == nil {
		t.Fatal("sync with a lost answer succeeded")
	}
	mustSync(t, nav)
	mustSync(t, nav)
	st, _ = nav.Status(ctx)
	if st.Pending != 0 || st.Refused != 0 {
		t.Fatalf("status %+v", st)
	}
	var history, entries int
	if err := serverCount(ts, `SELECT count(*) FROM history`, &history); err != nil {
		t.Fatal(err)
	}
	if err := serverCount(ts, `SELECT count(*) FROM entries`, &entries); err != nil {
		t.Fatal(err)
	}
	if history != 3*n || entries != n {
		t.Fatalf("server holds %d changes in %d entries; want %d in %d", history, entries, 3*n, n)
	}
	assertConverged(t, nav)
}

// serverCount reads a count straight from the server's database file.
func serverCount(ts *testServer, query string, n *int) error {
	db, err := sql.Open("sqlite", "file:"+ts.DB.Path()+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.QueryRow(query).Scan(n)
}

// TestRefusedDoesNotBlock: a change the server refuses moves to the
// refused list with its reason, and the changes behind it go through.
func TestRefusedDoesNotBlock(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	a := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	b := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	id := mustCreate(t, a, Draft{Title: "tags"})
	mustSync(t, a)
	mustSync(t, b)
	// Each device adds 30 tags offline: fine on each, 60 together is over
	// the limit of 50.
	var ta, tb []string
	for i := range 30 {
		ta, tb = append(ta, fmt.Sprintf("a%02d", i)), append(tb, fmt.Sprintf("b%02d", i))
	}
	if err := a.Update(ctx, id, Edit{AddTags: ta}); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, id, Edit{AddTags: tb}); err != nil {
		t.Fatal(err)
	}
	if err := b.Update(ctx, id, Edit{Title: ptr("after the tags")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	mustSync(t, b)
	st, _ := b.Status(ctx)
	if st.Pending != 0 || st.Refused != 10 {
		t.Fatalf("status %+v, want 0 pending and 10 refused", st)
	}
	refused, err := b.Refused(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range refused {
		if r.Reason != study.RefusedTooLarge || !strings.Contains(r.Message, "limit is 50") || r.Change.Tag == "" {
			t.Fatalf("refused %+v", r)
		}
	}
	e, _ := b.Get(ctx, id)
	if e.Title != "after the tags" || len(e.Tags) != 50 || e.Pending != 0 {
		t.Fatalf("entry: %q, %d tags, %d pending", e.Title, len(e.Tags), e.Pending)
	}
	mustSync(t, a)
	assertConverged(t, a, b)
	if err := b.DismissRefused(ctx, refused[0].Seq); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.Status(ctx); st.Refused != 9 {
		t.Fatalf("after dismiss: %d refused", st.Refused)
	}
}

// TestFeedbackAfterUnshareIsRefused: a supervisor's feedback written
// offline on an entry that is un-shared before it arrives is refused and
// shown, not lost silently.
func TestFeedbackAfterUnshareIsRefused(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	id := mustCreate(t, nav, Draft{Title: "shared", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, sup)
	if _, err := sup.WriteFeedback(ctx, id, "Well noticed."); err != nil {
		t.Fatal(err)
	}
	if err := nav.SetSharing(ctx, id, false, false); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	mustSync(t, sup)
	refused, _ := sup.Refused(ctx, 0, 10)
	if len(refused) != 1 || refused[0].Reason != study.RefusedNotPermitted || refused[0].Change.Text != "Well noticed." {
		t.Fatalf("refused %+v", refused)
	}
	if _, err := sup.Get(ctx, id); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
		t.Fatalf("supervisor still holds the un-shared entry: %v", err)
	}
	assertConverged(t, sup, nav)
}

// TestClockAhead: a device whose clock jumps a day ahead has its changes
// refused, corrects its offset, stamps them again in order, and does not
// win later merges against a device with a correct clock.
func TestClockAhead(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	var skew atomic.Int64
	fast := ts.device(t, study.RoleNavigator, "PN-A", Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	good := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	skew.Store(int64(24 * time.Hour)) // the phone's clock is set a day ahead after enrolling
	id := mustCreate(t, fast, Draft{Title: "first", Body: "written on the fast phone"})
	if err := fast.Update(ctx, id, Edit{Title: ptr("second")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, fast)
	st, _ := fast.Status(ctx)
	if st.Pending != 0 || st.Refused != 0 || st.ClockOffset > -23*time.Hour {
		t.Fatalf("status %+v", st)
	}
	e, _ := fast.Get(ctx, id)
	if e.Title != "second" {
		t.Fatalf("own order not kept: title %q", e.Title)
	}
	if d := time.Until(e.UpdatedAt); d > time.Minute {
		t.Fatalf("entry stamped %v in the future", d)
	}
	mustSync(t, good)
	if err := good.Update(ctx, id, Edit{Title: ptr("from the good phone")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, good)
	mustSync(t, fast)
	if e, _ := fast.Get(ctx, id); e.Title != "from the good phone" {
		t.Fatalf("the fast phone's stale title won: %q", e.Title)
	}
	assertConverged(t, fast, good)
}

// TestRevokeAndReenrol: a revoked device learns it at its next sync,
// wipes its replica and says how many of its changes were lost with it;
// it can enrol again only as the same person, and a code for someone
// else is refused before it is spent.
func TestRevokeAndReenrol(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	synced := mustCreate(t, nav, Draft{Title: "synced before", Body: "kept on the server"})
	mustSync(t, nav)
	p, _ := nav.Profile()
	if _, err := ts.DB.RevokeDevice(study.NewContext(ctx, &study.Identity{StudyCode: "ADMIN"}), p.DeviceID); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, nav, Draft{Title: "written after revocation"})
	err := nav.Sync(ctx)
	var re *RevokedError
	if !errors.As(err, &re) || re.Reason != study.RevokedByAdmin || re.By != "ADMIN" || re.LostChanges == 0 {
		t.Fatalf("sync of a revoked device: %v", err)
	}
	if !strings.Contains(err.Error(), "revoked by an administrator (ADMIN)") || !strings.Contains(err.Error(), "change(s) the server never received") {
		t.Fatalf("the error does not say who revoked it and what was lost: %v", err)
	}
	st, err := nav.Status(ctx)
	if err != nil || st.DeviceState != study.DeviceRevoked || st.Revoked == nil || st.Revoked.LostChanges != re.LostChanges || st.Entries != 0 || st.Pending != 0 {
		t.Fatalf("status after revocation: %+v, %v", st, err)
	}
	if page, err := nav.List(ctx, ListOptions{Deleted: WithDeleted}); err != nil || len(page.Entries) != 0 {
		t.Fatalf("a revoked replica still lists %d entries (%v)", len(page.Entries), err)
	}
	if _, err := nav.Create(ctx, Draft{Title: "more"}); !errors.As(err, &re) {
		t.Fatalf("a revoked replica took a new entry: %v", err)
	}
	// Nothing of the diary is left in the file.
	for _, f := range []string{nav.db.Path, nav.db.Path + "-wal"} {
		raw, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("kept on the server")) || bytes.Contains(raw, []byte("written after revocation")) {
			t.Fatalf("the wiped replica's %s still holds diary text", f)
		}
	}

	// A code for someone else is refused, and still works for them.
	otherCode := ts.code(t, study.RoleNavigator, "PN-B")
	if _, err := nav.Enroll(ctx, ts.URL, otherCode, "x"); !isServerCode(err, syncengine.ECONFLICT) {
		t.Fatalf("enrolling PN-A's replica as PN-B: %v", err)
	}
	if _, err := MustOpen(t, Options{}).Enroll(ctx, ts.URL, otherCode, "x"); err != nil {
		t.Fatalf("the refused code was spent: %v", err)
	}
	// PN-A has had a device: a plain code enrols a device that waits. An
	// administrator's reset lets the next one through.
	reset, err := ts.DB.ResetUser(ctx, "PN-A", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nav.Enroll(ctx, ts.URL, reset.Code, "same phone"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	if e, err := nav.Get(ctx, synced); err != nil || e.Pending != 0 {
		t.Fatalf("entry %+v %v", e, err)
	}
	assertConverged(t, nav)
}

func isServerCode(err error, code syncengine.Code) bool {
	var se *ServerError
	return errors.As(err, &se) && se.Code == code
}

// TestRunFollowsServer: with Run going on both, a navigator's shared
// entry reaches the supervisor's replica without anyone calling Sync.
func TestRunFollowsServer(t *testing.T) {
	ts := startServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	events, stop := sup.Watch()
	defer stop()
	opts := RunOptions{Debounce: 10 * time.Millisecond, Interval: time.Hour}
	errc := make(chan error, 2)
	go func() { errc <- nav.Run(ctx, opts) }()
	go func() { errc <- sup.Run(ctx, opts) }()
	id := mustCreate(t, nav, Draft{Title: "live", ShareSupervisor: true})
	deadline := time.After(10 * time.Second)
	for {
		if e, err := sup.Get(ctx, id); err == nil && e.Title == "live" {
			break
		}
		select {
		case <-events:
		case <-deadline:
			t.Fatal("the supervisor's replica did not receive the entry")
		}
	}
	cancel()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestCloseStopsEverything: Close ends Run and leaves no goroutine of the
// client running.
func TestCloseStopsEverything(t *testing.T) {
	ts := startServer(t)
	before := runtime.NumGoroutine()
	c := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background(), RunOptions{}) }()
	mustCreate(t, c, Draft{Title: "x"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := c.Status(context.Background())
		if st.Pending == 0 && !st.LastSync.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not sync")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ts.srv.CloseClientConnections()
	var after int
	for range 100 {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("%d goroutines before, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
}

func TestRemainingAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before uint64
		page   uint64
		resp   *diaryv1.PullResponse
		want   uint64
	}{
		{"OKExact", 0, 500, &diaryv1.PullResponse{More: true, Remaining: 123456, RemainingExact: true}, 123456},
		{"OKCountsDown", 20000, 500, &diaryv1.PullResponse{More: true, Remaining: 10000}, 19500},
		{"OKLowerBoundWins", 9000, 500, &diaryv1.PullResponse{More: true, Remaining: 10000}, 10000},
		{"OKDone", 600, 500, &diaryv1.PullResponse{}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := remainingAfter(tc.before, tc.page, tc.resp); got != tc.want {
				t.Fatalf("got %d, want %d", got, tc.want)
			}
		})
	}
}
