package console_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/console"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// testClock is a clock that moves only when told to.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// lockedBuffer collects log lines from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// env is a real server (API and console) on loopback over a real store
// (a SQLite file, or a PostgreSQL database with DIARYSYNC_TEST_STORE),
// with a clock the test moves.
type env struct {
	t    *testing.T
	db   *storetest.Store
	clk  *testClock
	url  string
	logs *lockedBuffer
}

const testPassphrase = "a quiet walk by the canal"

func newEnv(t *testing.T, cfg server.Config) *env {
	t.Helper()
	e := &env{t: t, clk: &testClock{t: time.Now()}, logs: &lockedBuffer{}}
	db := storetest.Open(t, storetest.Options{Synchronous: "NORMAL", Now: e.clk.Now})
	e.db = db
	cfg.Store = db
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Console.Hashing = console.HashParams{Memory: 64, Time: 1, Threads: 1}
	cfg.Console.Heartbeat = 50 * time.Millisecond
	s := server.New(cfg)
	ts := httptest.NewServer(s.Handler())
	e.url = ts.URL
	t.Cleanup(func() {
		s.Drain()
		ts.Close()
	})
	return e
}

// person creates a user if new and returns a fresh one-time code.
func (e *env) person(role study.Role, code string) string {
	e.t.Helper()
	ctx := context.Background()
	if _, err := e.db.UserByCode(ctx, code); err != nil {
		if _, err := e.db.CreateUser(ctx, code, role, "Person "+code); err != nil {
			e.t.Fatal(err)
		}
	}
	c, _, err := e.db.IssueEnrollmentCode(ctx, code, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// phoneDevice is an enrolled app device.
type phoneDevice struct {
	*study.Identity
	token string
}

// phone enrols an app device for the person.
func (e *env) phone(role study.Role, code string) *phoneDevice {
	e.t.Helper()
	ctx := context.Background()
	enr, err := e.db.Enroll(ctx, study.EnrollRequest{Code: e.person(role, code), DeviceName: "phone"})
	if err != nil {
		e.t.Fatal(err)
	}
	id, err := e.db.Authenticate(ctx, enr.Token)
	if err != nil {
		e.t.Fatal(err)
	}
	return &phoneDevice{Identity: id, token: enr.Token}
}

// approvedPhone enrols an app device for a person who is signed in to
// the console with b, which makes it wait for approval, and approves it
// from the console's device list, as the person would.
func (e *env) approvedPhone(b *browser, code string) *phoneDevice {
	e.t.Helper()
	u, err := e.db.UserByCode(context.Background(), code)
	if err != nil {
		e.t.Fatal(err)
	}
	p := e.phone(u.Role, code)
	if !p.Pending {
		e.t.Fatalf("a new phone of %s, who has a console session, does not wait for approval", code)
	}
	if page := b.get("/console/account"); !strings.Contains(page.body, "waiting for approval") {
		e.t.Fatalf("the device list does not show the phone waiting: %.1500s", page.body)
	}
	if r := b.submit("/console/account/devices/"+p.Device+"/approve", url.Values{}); r.status != http.StatusSeeOther || r.location != "/console/account?done=approve" {
		e.t.Fatalf("approving the phone: %d %q %.300s", r.status, r.location, r.body)
	}
	id, err := e.db.Authenticate(context.Background(), p.token)
	if err != nil || id.Pending {
		e.t.Fatalf("the phone after approval: %+v %v", id, err)
	}
	p.Identity = id
	return p
}

// pushAPI pushes changes to one entry through the API, as a phone does,
// so that the server wakes whom they concern.
func (e *env) pushAPI(p *phoneDevice, id syncengine.EntryID, clock *syncengine.Clock, changes ...syncengine.Change) {
	e.t.Helper()
	req := &diaryv1.PushRequest{}
	for _, c := range changes {
		c.Entry, c.Replica, c.Clock = id, p.Replica, clock.Now()
		req.Changes = append(req.Changes, wire.ChangeToProto(&c))
	}
	auth := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+p.token)
			return next(ctx, r)
		}
	})
	sc := diaryv1connect.NewSyncServiceClient(http.DefaultClient, e.url, connect.WithInterceptors(auth))
	resp, err := sc.Push(context.Background(), req)
	if err != nil {
		e.t.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
			e.t.Fatalf("change %d: %v %s", i, r.GetOutcome(), r.GetMessage())
		}
	}
}

// write pushes a new entry from a navigator's phone and returns its id.
func (e *env) write(nav *phoneDevice, clock *syncengine.Clock, title, body string, shared bool, tags ...string) syncengine.EntryID {
	e.t.Helper()
	id := syncengine.NewEntryID()
	mk := func(c syncengine.Change) study.Incoming {
		c.Entry, c.Replica, c.Clock = id, nav.Replica, clock.Now()
		return study.Incoming{Change: c}
	}
	in := []study.Incoming{
		mk(syncengine.Change{Field: syncengine.FieldTitle, Text: title}),
		mk(syncengine.Change{Field: syncengine.FieldBody, Text: body}),
		mk(syncengine.Change{Field: syncengine.FieldDate, Text: e.clk.Now().Format(time.DateOnly)}),
	}
	for _, t := range tags {
		in = append(in, mk(syncengine.Change{Field: syncengine.FieldTag, Tag: t, Flag: true}))
	}
	if shared {
		in = append(in, mk(syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))
	}
	e.push(nav.Identity, in...)
	return id
}

func (e *env) push(who *study.Identity, in ...study.Incoming) {
	e.t.Helper()
	results, _, err := e.db.Push(context.Background(), who, in)
	if err != nil {
		e.t.Fatal(err)
	}
	for i, r := range results {
		if r.Outcome != study.OutcomeApplied {
			e.t.Fatalf("change %d: %+v", i, r)
		}
	}
}

// browser is a cookie-keeping HTTP client that does not follow
// redirects, so tests see them.
type browser struct {
	t    *testing.T
	e    *env
	c    *http.Client
	last string // the body of the last page
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: e.t, e: e, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.last = string(body)
	return page{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location"), header: resp.Header}
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.e.url+path, nil)
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf returns the form token of the last page.
func (b *browser) csrf() string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(b.last)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page: %.300s", b.last)
	}
	return m[1]
}

// post posts a form as is (add "csrf" to send a token).
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.e.url+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// submit posts a form with the token of the last page.
func (b *browser) submit(path string, form url.Values) page {
	b.t.Helper()
	form.Set("csrf", b.csrf())
	return b.post(path, form)
}

// setup signs in for the first time with a one-time code.
func (b *browser) setup(code string) page {
	b.t.Helper()
	b.get("/console/setup")
	return b.submit("/console/setup", url.Values{"code": {code}, "passphrase": {testPassphrase}, "passphrase2": {testPassphrase}})
}

// signedIn returns a browser signed in as a new person of the role.
func (e *env) signedIn(role study.Role, code string) *browser {
	e.t.Helper()
	b := e.browser()
	if p := b.setup(e.person(role, code)); p.status != http.StatusSeeOther || p.location != "/console/" {
		e.t.Fatalf("setup: %d to %q: %.500s", p.status, p.location, p.body)
	}
	return b
}

func wantStatus(tb testing.TB, p page, want int) {
	tb.Helper()
	if p.status != want {
		tb.Fatalf("status %d, want %d: %.600s", p.status, want, p.body)
	}
}

// TestHeaders: every console response, page or not, carries the strict
// headers.
func TestHeaders(t *testing.T) {
	e := newEnv(t, server.Config{})
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	anon := e.browser()
	for name, p := range map[string]page{
		"signin":    anon.get("/console/signin"),
		"static":    anon.get("/console/static/console.css"),
		"notFound":  anon.get("/console/nothing/here"),
		"inbox":     sup.get("/console/inbox"),
		"redirect":  anon.get("/console/inbox"),
		"staticBad": anon.get("/console/static/console.go"),
	} {
		t.Run(name, func(t *testing.T) {
			h := p.header
			csp := h.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
				t.Errorf("CSP allows inline code: %q", csp)
			}
			for k, v := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"} {
				if h.Get(k) != v {
					t.Errorf("%s: %q, want %q", k, h.Get(k), v)
				}
			}
		})
	}
	// The pages hold no inline script or style for the CSP to block.
	for _, path := range []string{"/console/inbox", "/console/account"} {
		body := sup.get(path).body
		if regexp.MustCompile(`<script>|<script [^>]*>[^<]|\sstyle=|<style|\son[a-z]+=`).MatchString(body) {
			t.Errorf("%s holds inline script or style", path)
		}
	}
}

// TestSessionCookie: the session cookie is HttpOnly, SameSite=Strict,
// scoped to the console, Secure when the public URL is https, and the
// store keeps only a hash of its token.
func TestSessionCookie(t *testing.T) {
	for _, tc := range []struct {
		name, public string
		secure       bool
	}{{"HTTP", "", false}, {"PublicHTTPS", "https://diary.example.org", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, server.Config{PublicURL: tc.public})
			b := e.browser()
			b.get("/console/setup")
			form := url.Values{"code": {e.person(study.RoleSupervisor, "SUP-1")}, "passphrase": {testPassphrase}, "passphrase2": {testPassphrase}, "csrf": {b.csrf()}}
			req, _ := http.NewRequest(http.MethodPost, e.url+"/console/setup", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.public != "" {
				req.Header.Set("Origin", tc.public)
			}
			resp, err := b.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			var session *http.Cookie
			for _, c := range resp.Cookies() {
				if c.Name == "diarysync_console" {
					session = c
				}
			}
			if session == nil {
				t.Fatalf("no session cookie (status %d)", resp.StatusCode)
			}
			if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/console/" || session.Secure != tc.secure {
				t.Fatalf("cookie %+v", session)
			}
			if tc.secure && resp.Header.Get("Strict-Transport-Security") == "" {
				t.Error("no HSTS behind an https public URL")
			}
			s, err := e.db.Session(context.Background(), session.Value)
			if err != nil || s.StudyCode != "SUP-1" {
				t.Fatalf("Session = %+v, %v", s, err)
			}
		})
	}
}

// TestCSRF: a form posted without its token, with another session's
// token, or from another origin is refused and changes nothing.
func TestCSRF(t *testing.T) {
	e := newEnv(t, server.Config{})
	admin := e.signedIn(study.RoleAdmin, "ADMIN-1")
	other := e.signedIn(study.RoleAdmin, "ADMIN-2")
	other.get("/console/admin/users")
	otherToken := other.csrf()
	admin.get("/console/admin/users")
	form := url.Values{"study_code": {"PN-NEW"}, "role": {"1"}}
	wantStatus(t, admin.post("/console/admin/users", form), http.StatusForbidden)
	form.Set("csrf", otherToken)
	wantStatus(t, admin.post("/console/admin/users", form), http.StatusForbidden)
	form.Set("csrf", admin.csrf())
	req, _ := http.NewRequest(http.MethodPost, e.url+"/console/admin/users", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	wantStatus(t, admin.do(req), http.StatusForbidden)
	if _, err := e.db.UserByCode(context.Background(), "PN-NEW"); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
		t.Fatalf("a refused form created the user: %v", err)
	}
	// The sign-in forms are guarded too.
	anon := e.browser()
	wantStatus(t, anon.post("/console/signin", url.Values{"study_code": {"ADMIN-1"}, "passphrase": {testPassphrase}}), http.StatusForbidden)
	// With its token the form works.
	admin.get("/console/admin/users")
	p := admin.submit("/console/admin/users", form)
	wantStatus(t, p, http.StatusSeeOther)
	if _, err := e.db.UserByCode(context.Background(), "PN-NEW"); err != nil {
		t.Fatal(err)
	}
}

// TestNotFoundForOtherRoles: a page of another role, another navigator's
// entry, an entry not shared, and an unknown id all answer the same 404.
func TestNotFoundForOtherRoles(t *testing.T) {
	e := newEnv(t, server.Config{})
	clock := syncengine.NewClock(nil)
	navA := e.phone(study.RoleNavigator, "PN-A")
	navB := e.phone(study.RoleNavigator, "PN-B")
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	if _, _, err := e.db.Assign(context.Background(), "SUP-1", "PN-A"); err != nil {
		t.Fatal(err)
	}
	shared := e.write(navA, clock, "Shared", "words", true)
	private := e.write(navA, clock, "Private", "mine", false)
	othersNav := e.write(navB, clock, "Other navigator's", "theirs", true)
	res := e.signedIn(study.RoleResearcher, "RES-1")
	admin := e.signedIn(study.RoleAdmin, "ADMIN")

	wantStatus(t, sup.get("/console/entries/"+shared.String()), http.StatusOK)
	notFound := sup.get("/console/entries/" + syncengine.NewEntryID().String())
	wantStatus(t, notFound, http.StatusNotFound)
	for name, tc := range map[string]struct {
		b    *browser
		path string
	}{
		"OtherNavigatorsEntry": {sup, "/console/entries/" + othersNav.String()},
		"PrivateEntry":         {sup, "/console/entries/" + private.String()},
		"MalformedID":          {sup, "/console/entries/not-an-id"},
		"SupervisorAdmin":      {sup, "/console/admin/users"},
		"SupervisorExport":     {sup, "/console/export"},
		"ResearcherInbox":      {res, "/console/inbox"},
		"ResearcherEntry":      {res, "/console/entries/" + shared.String()},
		"ResearcherAdmin":      {res, "/console/admin/devices"},
		"AdminEntry":           {admin, "/console/entries/" + shared.String()},
		"AdminInbox":           {admin, "/console/inbox"},
		"AdminEvents":          {admin, "/console/events"},
		"AdminExport":          {admin, "/console/export"},
		"Unknown":              {admin, "/console/nowhere"},
	} {
		t.Run(name, func(t *testing.T) {
			p := tc.b.get(tc.path)
			wantStatus(t, p, http.StatusNotFound)
			if strings.Contains(p.body, "Shared") || strings.Contains(p.body, "theirs") || strings.Contains(p.body, "mine") {
				t.Fatal("the 404 page shows entry content")
			}
		})
	}
	// Posting to another role's form is the same 404, token or not.
	sup.get("/console/inbox")
	wantStatus(t, sup.submit("/console/admin/users", url.Values{"study_code": {"X"}, "role": {"1"}}), http.StatusNotFound)
	wantStatus(t, sup.submit("/console/entries/"+othersNav.String()+"/feedback", url.Values{"body": {"hello"}}), http.StatusNotFound)
}

// TestSessionEnds: an idle session, one past its lifetime, a revoked one
// and a signed-out one are refused at their next request, and the
// sign-in page says why.
func TestSessionEnds(t *testing.T) {
	e := newEnv(t, server.Config{Console: console.Config{IdleTimeout: 30 * time.Minute, Lifetime: 2 * time.Hour}})
	check := func(t *testing.T, b *browser, reason study.SessionEnd) {
		t.Helper()
		p := b.get("/console/inbox")
		if p.status != http.StatusSeeOther || p.location != "/console/signin?ended="+string(reason) {
			t.Fatalf("after the session ended: %d to %q, want the sign-in page saying %q", p.status, p.location, reason)
		}
		signin := b.get(p.location)
		if !strings.Contains(signin.body, upper(study.SessionEndMessage(reason))) {
			t.Fatalf("the sign-in page does not say why: %.400s", signin.body)
		}
		// The cookie was cleared, and the token no longer works even if
		// kept.
		wantStatus(t, b.get("/console/inbox"), http.StatusSeeOther)
	}
	t.Run("Idle", func(t *testing.T) {
		b := e.signedIn(study.RoleSupervisor, "SUP-IDLE")
		e.clk.Advance(29 * time.Minute)
		wantStatus(t, b.get("/console/inbox"), http.StatusOK)
		e.clk.Advance(29 * time.Minute) // used 29 minutes ago: still fine
		wantStatus(t, b.get("/console/inbox"), http.StatusOK)
		e.clk.Advance(30 * time.Minute)
		check(t, b, study.EndIdle)
	})
	t.Run("Lifetime", func(t *testing.T) {
		b := e.signedIn(study.RoleSupervisor, "SUP-LIFE")
		for range 4 {
			e.clk.Advance(29 * time.Minute)
			wantStatus(t, b.get("/console/inbox"), http.StatusOK)
		}
		e.clk.Advance(5 * time.Minute)
		check(t, b, study.EndLifetime)
	})
	t.Run("Revoked", func(t *testing.T) {
		b := e.signedIn(study.RoleSupervisor, "SUP-REV")
		devices, _, err := e.db.ListDevices(context.Background(), 0, "", "SUP-REV")
		if err != nil || len(devices) != 1 || devices[0].Kind != study.KindBrowser {
			t.Fatalf("devices %+v, %v", devices, err)
		}
		if _, err := e.db.RevokeDevice(context.Background(), devices[0].PublicID); err != nil {
			t.Fatal(err)
		}
		check(t, b, study.EndRevoked)
	})
	t.Run("SignOut", func(t *testing.T) {
		b := e.signedIn(study.RoleResearcher, "RES-OUT")
		b.get("/console/export")
		var kept string
		u, _ := url.Parse(e.url + "/console/")
		for _, c := range b.c.Jar.Cookies(u) {
			if c.Name == "diarysync_console" {
				kept = c.Value
			}
		}
		p := b.submit("/console/signout", url.Values{})
		if p.status != http.StatusSeeOther || p.location != "/console/signin?signedout=1" {
			t.Fatalf("sign-out: %d %q", p.status, p.location)
		}
		// A copy of the cookie kept from before does not bring it back.
		replay := e.browser()
		replay.c.Jar.SetCookies(u, []*http.Cookie{{Name: "diarysync_console", Value: kept, Path: "/console/"}})
		check(t, replay, study.EndSignOut)
	})
}

func upper(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// TestSignIn: study code and passphrase start a session; wrong
// passphrases are slowed per account, and the wait holds even for the
// right passphrase until it is over.
func TestSignIn(t *testing.T) {
	e := newEnv(t, server.Config{})
	e.signedIn(study.RoleSupervisor, "SUP-1")
	b := e.browser()
	signin := func(code, pass string) page {
		b.get("/console/signin")
		return b.submit("/console/signin", url.Values{"study_code": {code}, "passphrase": {pass}})
	}
	p := signin("sup-1", testPassphrase)
	if p.status != http.StatusSeeOther || p.location != "/console/" {
		t.Fatalf("sign-in: %d %q %.300s", p.status, p.location, p.body)
	}
	wantStatus(t, b.get("/console/inbox"), http.StatusOK)

	b = e.browser()
	wrong := signin("SUP-1", "not the passphrase at all")
	wantStatus(t, wrong, http.StatusUnauthorized)
	unknown := signin("NOBODY", "not the passphrase at all")
	wantStatus(t, unknown, http.StatusUnauthorized)
	if !strings.Contains(wrong.body, "study code or the passphrase is wrong") || !strings.Contains(unknown.body, "study code or the passphrase is wrong") {
		t.Fatal("a wrong passphrase and an unknown study code are not told the same")
	}
	for range study.LoginFreeAccount - 1 {
		wantStatus(t, signin("SUP-1", "not the passphrase at all"), http.StatusUnauthorized)
	}
	slowed := signin("SUP-1", testPassphrase)
	wantStatus(t, slowed, http.StatusTooManyRequests)
	if !strings.Contains(slowed.body, "try again in") {
		t.Fatalf("no wait given: %.400s", slowed.body)
	}
	e.clk.Advance(time.Second)
	p = signin("SUP-1", testPassphrase)
	if p.status != http.StatusSeeOther {
		t.Fatalf("after the wait: %d %.300s", p.status, p.body)
	}
	// Success forgot the account's failures.
	b = e.browser()
	wantStatus(t, signin("SUP-1", "not the passphrase at all"), http.StatusUnauthorized)
}

// TestSetup: the first sign-in needs a valid code and an acceptable
// passphrase typed twice; a navigator's code is refused and kept for
// their phone; a used or expired code is told as such.
func TestSetup(t *testing.T) {
	e := newEnv(t, server.Config{})
	b := e.browser()
	try := func(code, pass, pass2 string) page {
		b.get("/console/setup")
		return b.submit("/console/setup", url.Values{"code": {code}, "passphrase": {pass}, "passphrase2": {pass2}})
	}
	code := e.person(study.RoleSupervisor, "SUP-1")
	for name, tc := range map[string]struct {
		code, pass, pass2, want string
		status                  int
	}{
		"ShortPassphrase": {code, "too short", "too short", "at least 12 characters", http.StatusBadRequest},
		"Mismatch":        {code, testPassphrase, testPassphrase + "!", "not the same", http.StatusBadRequest},
		"BadCode":         {"nonsense", testPassphrase, testPassphrase, "enrolment code is not valid", http.StatusUnauthorized},
		"UnknownCode":     {"AAAAA-AAAAA", testPassphrase, testPassphrase, "enrolment code is not valid", http.StatusUnauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			p := try(tc.code, tc.pass, tc.pass2)
			if p.status != tc.status || !strings.Contains(p.body, tc.want) {
				t.Fatalf("%d, want %d with %q: %.500s", p.status, tc.status, tc.want, p.body)
			}
			if strings.Contains(p.body, tc.pass) && tc.pass != "" {
				t.Fatal("the page shows the passphrase back")
			}
		})
	}
	t.Run("Navigator", func(t *testing.T) {
		nav := e.person(study.RoleNavigator, "PN-A")
		p := try(nav, testPassphrase, testPassphrase)
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "navigators use the diary app") {
			t.Fatalf("%d %.400s", p.status, p.body)
		}
		if _, err := e.db.Enroll(context.Background(), study.EnrollRequest{Code: nav, DeviceName: "phone"}); err != nil {
			t.Fatalf("the navigator's code was spent: %v", err)
		}
	})
	wantStatus(t, try(code, testPassphrase, testPassphrase), http.StatusSeeOther)
	t.Run("Used", func(t *testing.T) {
		p := e.browser().setup(code)
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "already used") {
			t.Fatalf("%d %.400s", p.status, p.body)
		}
	})
	t.Run("Expired", func(t *testing.T) {
		c := e.person(study.RoleResearcher, "RES-1")
		e.clk.Advance(study.DefaultCodeTTL)
		p := e.browser().setup(c)
		if p.status != http.StatusUnauthorized || !strings.Contains(p.body, "expired") {
			t.Fatalf("%d %.400s", p.status, p.body)
		}
	})
}

// TestShuttingDown: while the server drains, pages say so.
func TestShuttingDown(t *testing.T) {
	e := newEnv(t, server.Config{})
	b := e.browser()
	s := server.New(server.Config{Store: e.db, Console: console.Config{Hashing: console.HashParams{Memory: 64, Time: 1, Threads: 1}}})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	s.Drain()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/console/signin", nil)
	p := b.do(req)
	if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "shutting down") {
		t.Fatalf("%d %.300s", p.status, p.body)
	}
}

// events opens the live inbox stream and returns a channel of its event
// names.
func (b *browser) events(ctx context.Context) <-chan string {
	b.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.e.url+"/console/events", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b.t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan string, 16)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				ch <- name
			}
		}
	}()
	return ch
}

func nextEvent(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatalf("the stream ended before %q", want)
			}
			if got == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %q event", want)
		}
	}
}

// TestLiveInbox: the open inbox's stream says when an entry is shared
// or unshared, and ends when the session is revoked.
func TestLiveInbox(t *testing.T) {
	e := newEnv(t, server.Config{})
	clock := syncengine.NewClock(nil)
	nav := e.phone(study.RoleNavigator, "PN-A")
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	if _, _, err := e.db.Assign(context.Background(), "SUP-1", "PN-A"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := sup.events(ctx)
	nextEvent(t, ch, "ready")

	// Through the API, as a phone does: the wake-up comes from the hub.
	id := syncengine.NewEntryID()
	e.pushAPI(nav, id, clock, syncengine.Change{Field: syncengine.FieldTitle, Text: "Shared now"}, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true})
	nextEvent(t, ch, "inbox")
	e.pushAPI(nav, id, clock, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: false})
	nextEvent(t, ch, "inbox")

	devices, _, _ := e.db.ListDevices(context.Background(), 0, "", "SUP-1")
	if _, err := e.db.RevokeDevice(context.Background(), devices[0].PublicID); err != nil {
		t.Fatal(err)
	}
	// The heartbeat checks the session.
	nextEvent(t, ch, "ended")

	t.Run("Capped", func(t *testing.T) {
		b := e.signedIn(study.RoleSupervisor, "SUP-2")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for range 4 {
			nextEvent(t, b.events(ctx), "ready")
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/console/events", nil)
		p := b.do(req)
		wantStatus(t, p, http.StatusTooManyRequests)
	})
}
