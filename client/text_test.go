package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// TestBodiesMerge: two devices of one navigator edit a body offline, one
// appending a paragraph, the other changing a word of the first line;
// after syncing both devices and the supervisor hold both edits, and the
// navigator's devices say the body was edited on two devices.
func TestBodiesMerge(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.code(t, study.RoleNavigator, "PN-A")
	ts.assign(t, "SUP-1", "PN-A")
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	tablet := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	first := "Went to the hostel with J.\n"
	id := mustCreate(t, phone, Draft{Title: "Tuesday", Body: first, ShareSupervisor: true})
	mustSync(t, phone)
	mustSync(t, tablet)

	if err := phone.Update(ctx, id, Edit{Body: ptr(first + "\nShe found a room for Friday.\n")}); err != nil {
		t.Fatal(err)
	}
	if err := tablet.Update(ctx, id, Edit{Body: ptr("Went to the day centre with J.\n")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, tablet)
	mustSync(t, phone)
	mustSync(t, tablet)
	mustSync(t, sup)
	want := "Went to the day centre with J.\n\nShe found a room for Friday.\n"
	for name, c := range map[string]*Client{"phone": phone, "tablet": tablet, "supervisor": sup} {
		e, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Body != want {
			t.Fatalf("%s holds %q, want %q", name, e.Body, want)
		}
		if name != "supervisor" && !e.BodyConcurrent {
			t.Fatalf("%s does not say the body was edited on two devices", name)
		}
	}
	assertConverged(t, phone, tablet)
	assertConverged(t, sup)

	// Setting the body to the text it has queues nothing; an edit on top
	// of both ends the concurrency.
	if err := phone.Update(ctx, id, Edit{Body: ptr(want)}); err != nil {
		t.Fatal(err)
	}
	if st, _ := phone.Status(ctx); st.Pending != 0 {
		t.Fatalf("an unchanged body queued %d changes", st.Pending)
	}
	if err := phone.Update(ctx, id, Edit{Body: ptr(want + "Tired.")}); err != nil {
		t.Fatal(err)
	}
	if e, _ := phone.Get(ctx, id); e.BodyConcurrent {
		t.Fatal("an edit made on both edits still shows as concurrent")
	}
}

func TestSpliceBody(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	other := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	id := mustCreate(t, nav, Draft{Title: "t", Body: "🙂 it"})
	// "🙂" is one code point and two UTF-16 code units.
	if err := nav.SpliceBodyUTF16(ctx, id, 3, 0, "do "); err != nil {
		t.Fatal(err)
	}
	if err := nav.SpliceBody(ctx, id, 0, 1, "I"); err != nil {
		t.Fatal(err)
	}
	e, _ := nav.Get(ctx, id)
	if e.Body != "I do it" {
		t.Fatalf("after splices: %q", e.Body)
	}
	if err := nav.SpliceBodyUTF16(ctx, id, 0, 0, "🙂"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"InsideSurrogatePair", func() error { return nav.SpliceBodyUTF16(ctx, id, 1, 0, "x") }},
		{"PastTheEnd", func() error { return nav.SpliceBody(ctx, id, 100, 0, "x") }},
		{"NegativeDelete", func() error { return nav.SpliceBody(ctx, id, 0, -1, "x") }},
		{"ControlCharacter", func() error { return nav.SpliceBody(ctx, id, 0, 0, "\x00") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Fatalf("got %v, want %s", err, syncengine.EINVALID)
			}
		})
	}
	if err := nav.SpliceBody(ctx, syncengine.NewEntryID(), 0, 0, "x"); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
		t.Fatalf("splicing an unknown entry: %v", err)
	}
	mustSync(t, nav)
	mustSync(t, other)
	if e, _ := other.Get(ctx, id); e.Body != "🙂I do it" {
		t.Fatalf("the other device holds %q", e.Body)
	}
	assertConverged(t, nav, other)
}

func TestFeedbackMerges(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.code(t, study.RoleNavigator, "PN-A")
	ts.assign(t, "SUP-1", "PN-A")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	one := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	two := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	id := mustCreate(t, nav, Draft{Title: "t", Body: "b", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, one)
	fb, err := one.WriteFeedback(ctx, id, "Thanks for writing this.")
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, one)
	mustSync(t, two)
	if err := one.EditFeedback(ctx, id, fb, "Thanks for writing this. Let's talk on Friday."); err != nil {
		t.Fatal(err)
	}
	if err := two.EditFeedback(ctx, id, fb, "Thank you for writing this."); err != nil {
		t.Fatal(err)
	}
	mustSync(t, two)
	mustSync(t, one)
	mustSync(t, two)
	mustSync(t, nav)
	want := "Thank you for writing this. Let's talk on Friday."
	for name, c := range map[string]*Client{"one": one, "two": two, "navigator": nav} {
		e, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Feedback) != 1 || e.Feedback[0].Body != want {
			t.Fatalf("%s holds %+v", name, e.Feedback)
		}
		if c != nav && !e.Feedback[0].BodyConcurrent {
			t.Fatalf("%s does not say the note was edited on two devices", name)
		}
	}
	assertConverged(t, one, two)
	assertConverged(t, nav)
}

// TestFeedbackEditedWhileDeleted: a supervisor edits a note on one
// device while their other device deletes it. The note stays deleted,
// and the device that edited it holds no copy of it after its sync.
func TestFeedbackEditedWhileDeleted(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.code(t, study.RoleNavigator, "PN-A")
	ts.assign(t, "SUP-1", "PN-A")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	one := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	two := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	id := mustCreate(t, nav, Draft{Title: "t", Body: "b", ShareSupervisor: true})
	mustSync(t, nav)
	mustSync(t, one)
	fb, err := one.WriteFeedback(ctx, id, "A first thought.")
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, one)
	mustSync(t, two)
	if err := two.EditFeedback(ctx, id, fb, "A first thought, and a second."); err != nil {
		t.Fatal(err)
	}
	if err := one.DeleteFeedback(ctx, id, fb); err != nil {
		t.Fatal(err)
	}
	mustSync(t, one)
	mustSync(t, two)
	mustSync(t, one)
	mustSync(t, nav)
	for name, c := range map[string]*Client{"one": one, "two": two, "navigator": nav} {
		e, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Feedback) != 0 {
			t.Fatalf("%s holds %+v; the note was deleted", name, e.Feedback)
		}
		if st, _ := c.Status(ctx); st.Pending != 0 || st.Refused != 0 {
			t.Fatalf("%s: %d pending, %d refused", name, st.Pending, st.Refused)
		}
	}
	assertConverged(t, one, two)
}

// TestTextEditAheadOfTheServer: text edits stamped by a clock the server
// refuses are not stamped again; the whole text is queued and made an
// edit of the server's text after the pull, in the same sync, and nothing
// is lost.
func TestTextEditAheadOfTheServer(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	skew := 10 * time.Minute
	fast := ts.device(t, study.RoleNavigator, "PN-A", Options{Now: func() time.Time { return time.Now().Add(skew) }})
	slow := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	// Enrolment learnt the offset; the clock jumps after it.
	skew = 20 * time.Minute
	id := mustCreate(t, fast, Draft{Title: "t", Body: "one"})
	if err := fast.SpliceBody(ctx, id, 3, 0, " two"); err != nil {
		t.Fatal(err)
	}
	if err := fast.Update(ctx, id, Edit{Body: ptr("one two three")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, fast)
	st, _ := fast.Status(ctx)
	if st.Pending != 0 || st.Refused != 0 {
		t.Fatalf("after the sync: %d pending, %d refused", st.Pending, st.Refused)
	}
	mustSync(t, slow)
	if e, _ := slow.Get(ctx, id); e == nil || e.Body != "one two three" {
		t.Fatalf("the other device holds %+v", e)
	}
	assertConverged(t, fast, slow)
}

// TestTextEditRefusedForGood: an edit the server refuses for good (the
// merged body would be too large) is listed with the whole text, with
// the words of the edits made on it, and the body goes back to what the
// server holds.
func TestTextEditRefusedForGood(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	a := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	b := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	id := mustCreate(t, a, Draft{Title: "t", Body: "start"})
	mustSync(t, a)
	mustSync(t, b)
	half := strings.Repeat("words ", syncengine.MaxBodyBytes/12+10)
	if err := a.Update(ctx, id, Edit{Body: ptr("start" + half)}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	if err := b.Update(ctx, id, Edit{Body: ptr(half + "start")}); err != nil {
		t.Fatal(err)
	}
	if err := b.SpliceBody(ctx, id, 0, 0, "Later words. "); err != nil {
		t.Fatal(err)
	}
	mustSync(t, b)
	refused, err := b.Refused(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	// The text listed is what the body held on the device: its edits,
	// merged with what it pulled before pushing them.
	if len(refused) != 1 || refused[0].Reason != study.RefusedTooLarge ||
		!strings.HasPrefix(refused[0].Change.Text, "Later words. ") || !strings.Contains(refused[0].Change.Text, half+"start") {
		t.Fatalf("refused: %d changes, the first %v", len(refused), refused[0].Reason)
	}
	if e, _ := b.Get(ctx, id); e.Body != "start"+half {
		t.Fatalf("after the refusal the body is %d bytes, not the server's", len(e.Body))
	}
	if st, _ := b.Status(ctx); st.Pending != 0 {
		t.Fatalf("%d changes still pending", st.Pending)
	}
	assertConverged(t, a, b)
}

// TestTextEditOnAHistoryTheServerLacks: a device that edits a body
// written before merged text seeds it from the text it pulled; if the
// server's text is another (a device wrote it before the server was
// upgraded), the edit is refused, and the device makes it again on the
// server's text after the pull, in the same sync.
func TestTextEditOnAHistoryTheServerLacks(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{Logger: testLogger(t)})
	id := syncengine.NewEntryID()
	// The entry as the server stored it before merged text: a register
	// body, and then another one written while this device was away.
	user, err := ts.DB.UserByCode(ctx, "PN-A")
	if err != nil {
		t.Fatal(err)
	}
	stored := func(body string, n int, seq int) {
		e := &syncengine.Entry{}
		for _, c := range []syncengine.Change{
			{Field: syncengine.FieldTitle, Text: "Old"},
			{Field: syncengine.FieldBody, Text: body},
		} {
			c.Entry, c.Author = id, "PN-A"
			c.Stamp = syncengine.Stamp{Clock: syncengine.TimestampAt(time.Now().Add(-time.Hour)) + syncengine.Timestamp(n), Replica: syncengine.ReplicaID{15: 9}}
			e.Apply(&c)
		}
		raw := rawServerDB(t, ts)
		if _, err := raw.ExecContext(ctx, `INSERT INTO entries (id, owner_id, seq, state) VALUES (?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, state = excluded.state`, id[:], user.ID, seq, syncengine.EncodeEntry(e)); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.ExecContext(ctx, `UPDATE sequence SET value = max(value, ?)`, seq); err != nil {
			t.Fatal(err)
		}
	}
	stored("Met J.", 1, 1000)
	mustSync(t, nav)
	stored("Met J. and K.", 2, 1001) // the cursor moved past it
	if _, err := rawServerDB(t, ts).ExecContext(ctx, `UPDATE sequence SET value = 1001`); err != nil {
		t.Fatal(err)
	}
	if err := nav.Update(ctx, id, Edit{Body: ptr("Met J. at the hostel.")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	// Both the other device's words and this one's stay.
	e, _ := nav.Get(ctx, id)
	if e.Body != "Met J. and K. at the hostel." {
		t.Fatalf("after the sync the device holds %q", e.Body)
	}
	if st, _ := nav.Status(ctx); st.Pending != 0 || st.Refused != 0 {
		t.Fatalf("after the sync: %d pending, %d refused", st.Pending, st.Refused)
	}
	assertConverged(t, nav)
}

// rawServerDB opens the test server's SQLite file on a connection of its
// own.
func rawServerDB(t *testing.T, ts *testServer) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+ts.DB.Path()+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// oldServer plays a server from before merged text in front of a real
// one: it announces no capability, drops the requests' merged_text, and
// fails the test if it is sent a text change. It can be switched to the
// new server and back, as an upgrade and a downgrade would.
type oldServer struct {
	t    *testing.T
	next http.Handler
	old  atomic.Bool
}

func startOldServer(t *testing.T) (*testServer, *oldServer) {
	t.Helper()
	ts := &testServer{first: map[string]*Client{}}
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "server.db"), sqlite.Options{Synchronous: "NORMAL", Now: ts.clock})
	if err != nil {
		t.Fatal(err)
	}
	o := &oldServer{t: t, next: server.New(server.Config{Store: db, Heartbeat: 200 * time.Millisecond}).Handler()}
	o.old.Store(true)
	ts.DB = db
	ts.srv = httptest.NewServer(o)
	ts.URL = ts.srv.URL
	t.Cleanup(func() {
		ts.srv.CloseClientConnections()
		ts.srv.Close()
		db.Close()
	})
	return ts, o
}

func (o *oldServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := path.Base(r.URL.Path)
	if !o.old.Load() || (method != "Push" && method != "Pull" && method != "Enroll" && method != "GetStateHash") {
		o.next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err == nil {
			body, err = io.ReadAll(zr)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	var req, resp proto.Message
	switch method {
	case "Push":
		req, resp = &diaryv1.PushRequest{}, &diaryv1.PushResponse{}
	case "Pull":
		req, resp = &diaryv1.PullRequest{}, &diaryv1.PullResponse{}
	case "GetStateHash":
		req, resp = &diaryv1.GetStateHashRequest{}, &diaryv1.GetStateHashResponse{}
	default:
		req, resp = &diaryv1.EnrollRequest{}, &diaryv1.EnrollResponse{}
	}
	if err := proto.Unmarshal(body, req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch m := req.(type) {
	case *diaryv1.PushRequest:
		for _, c := range m.GetChanges() {
			if c.GetTextChange() != nil {
				o.t.Errorf("a server from before merged text was sent a text change for %s", c.GetEntryId())
			}
		}
	case *diaryv1.PullRequest:
		m.MergedText = false
	case *diaryv1.GetStateHashRequest:
		m.MergedText = false
	}
	body, _ = proto.Marshal(req)
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	r2.Header.Del("Content-Encoding")
	r2.Header.Del("Accept-Encoding")
	rec := httptest.NewRecorder()
	o.next.ServeHTTP(rec, r2)
	out := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		if err := proto.Unmarshal(out, resp); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		switch m := resp.(type) {
		case *diaryv1.PushResponse:
			m.Capabilities = nil
		case *diaryv1.PullResponse:
			m.Capabilities = nil
		case *diaryv1.EnrollResponse:
			m.Capabilities = nil
		}
		out, _ = proto.Marshal(resp)
	}
	for k, v := range rec.Header() {
		if k != "Content-Length" && k != "Content-Encoding" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	w.Write(out)
}

// TestServerThatDoesNotMergeText: with a server from before merged text
// the client sends whole bodies and converges with it; when the server is
// upgraded it sends text edits, and when it is put back, the text edits
// waiting are sent as whole texts.
func TestServerThatDoesNotMergeText(t *testing.T) {
	ts, old := startOldServer(t)
	ctx := context.Background()
	a := ts.device(t, study.RoleNavigator, "PN-A", Options{Logger: testLogger(t)})
	b := ts.device(t, study.RoleNavigator, "PN-A", Options{Logger: testLogger(t)})
	id := mustCreate(t, a, Draft{Title: "t", Body: "on an old server"})
	if err := a.SpliceBody(ctx, id, 0, 0, "Written "); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	mustSync(t, b)
	if e, _ := b.Get(ctx, id); e.Body != "Written on an old server" {
		t.Fatalf("the other device holds %q", e.Body)
	}
	assertConverged(t, a, b)

	// A body set to the text it has queues nothing, with a whole text
	// still waiting too.
	if err := a.Update(ctx, id, Edit{Body: ptr("Written on an old server, twice")}); err != nil {
		t.Fatal(err)
	}
	before, _ := a.Status(ctx)
	if err := a.Update(ctx, id, Edit{Body: ptr("Written on an old server, twice"), Mood: ptr(4)}); err != nil {
		t.Fatal(err)
	}
	if after, _ := a.Status(ctx); after.Pending != before.Pending+1 {
		t.Fatalf("setting the body it has queued %d changes, want 1 (the mood)", after.Pending-before.Pending)
	}
	if err := a.Update(ctx, id, Edit{Body: ptr("Written on an old server")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	mustSync(t, b)
	assertConverged(t, a, b)

	// Upgraded: the next answer says the server merges text.
	old.old.Store(false)
	mustSync(t, a)
	mustSync(t, b)
	if err := a.Update(ctx, id, Edit{Body: ptr("Written on an old server, then a new one.")}); err != nil {
		t.Fatal(err)
	}
	if err := b.SpliceBody(ctx, id, 0, 7, "Typed"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, a)
	mustSync(t, b)
	mustSync(t, a)
	if e, _ := a.Get(ctx, id); e.Body != "Typed on an old server, then a new one." {
		t.Fatalf("after the upgrade: %q", e.Body)
	}
	assertConverged(t, a, b)

	// Put back while b had text edits waiting: they go as whole texts.
	if err := b.Update(ctx, id, Edit{Body: ptr("Typed on an old server, then a new one, then an old one.")}); err != nil {
		t.Fatal(err)
	}
	old.old.Store(true)
	mustSync(t, b)
	mustSync(t, a)
	if e, _ := a.Get(ctx, id); e.Body != "Typed on an old server, then a new one, then an old one." {
		t.Fatalf("after the downgrade: %q", e.Body)
	}
	assertConverged(t, a, b)
}

// testLogger returns a logger that writes to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestEditFromTheTextShown: an app that hands over a text field's
// content after a sync merged in another device's edit keeps that edit
// when it says what it showed.
func TestEditFromTheTextShown(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	tablet := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	id := mustCreate(t, phone, Draft{Title: "t", Body: "Went to the hostel."})
	mustSync(t, phone)
	mustSync(t, tablet)
	shown, _ := phone.Get(ctx, id)
	// While the phone's text field is open, the tablet's edit arrives.
	if err := tablet.Update(ctx, id, Edit{Body: ptr("Went to the hostel. J. was there.")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, tablet)
	mustSync(t, phone)
	if err := phone.Update(ctx, id, Edit{Body: ptr("Went to the day centre."), BodyBase: &shown.Body}); err != nil {
		t.Fatal(err)
	}
	if e, _ := phone.Get(ctx, id); e.Body != "Went to the day centre. J. was there." {
		t.Fatalf("the phone holds %q", e.Body)
	}
	mustSync(t, phone)
	mustSync(t, tablet)
	assertConverged(t, phone, tablet)
}
