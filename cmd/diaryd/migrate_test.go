package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// feedReader pulls a reader's feed with its own cursor and fails on any
// entry it is given twice.
type feedReader struct {
	sync   diaryv1connect.SyncServiceClient
	cursor uint64
	seen   map[string]bool
}

func (r *feedReader) pull(tb testing.TB) (entries, removals []string) {
	tb.Helper()
	for {
		resp, err := r.sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: r.cursor, PageSize: 1000})
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range resp.GetEntries() {
			if r.seen[e.GetId()] {
				tb.Fatalf("entry %s (%q) pulled again", e.GetId(), e.GetTitle().GetValue())
			}
			r.seen[e.GetId()] = true
			entries = append(entries, e.GetTitle().GetValue())
		}
		for _, rm := range resp.GetRemovals() {
			removals = append(removals, rm.GetEntryId())
		}
		r.cursor = resp.GetNextCursor()
		if !resp.GetMore() {
			return entries, removals
		}
	}
}

func diaryd(tb testing.TB, args ...string) (string, error) {
	tb.Helper()
	out, err := exec.Command(diarydBinary(tb), args...).CombinedOutput()
	return string(out), err
}

// TestDiaryd_Migrate moves a study from SQLite to PostgreSQL with
// "diaryd migrate": it refuses while the SQLite server runs, copies the
// stopped study, refuses to copy into a database that holds one, and
// afterwards a navigator's real replica and a supervisor's feed, synced
// before the move, carry on through a diaryd on PostgreSQL with their
// old tokens and cursors: nothing missing, nothing repeated, the erased
// entry still refused, the audit log kept.
func TestDiaryd_Migrate(t *testing.T) {
	url := storetest.NewDatabase(t)
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	p := startDiaryd(t, data)
	admin := adminClients(t, p.url, readAdminCode(t, data))
	supEnr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p.url).Enroll(ctx, &diaryv1.EnrollRequest{Code: issue(t, admin, "SUP-1", diaryv1.Role_ROLE_SUPERVISOR)})
	if err != nil {
		t.Fatal(err)
	}
	navCode := issue(t, admin, "PN-A", diaryv1.Role_ROLE_NAVIGATOR)
	if _, err := admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"}); err != nil {
		t.Fatal(err)
	}
	front := newForwarder(t, p.url)
	phone, err := client.Open(ctx, filepath.Join(t.TempDir(), "phone.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	if _, err := phone.Enroll(ctx, front.url(), navCode, "phone"); err != nil {
		t.Fatal(err)
	}
	var erased, marked string
	var privateID syncengine.EntryID // an entry no reader sees, edited after the move
	for i := range 50 {
		id, err := phone.Create(ctx, client.Draft{Title: fmt.Sprintf("before %d", i), Body: "Met J.", ShareSupervisor: i%5 != 0, ShareResearch: i%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		switch i {
		case 1:
			erased = id.String()
		case 2:
			marked = id.String()
		}
		if i == 5 {
			privateID = id
		}
	}
	if err := phone.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: erased}); err != nil {
		t.Fatal(err)
	}
	if err := phone.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// A tablet of PN-A enrolled with a code the administrator issued:
	// it waits for the phone's approval, and what it writes is held back.
	tablet, err := client.Open(ctx, filepath.Join(t.TempDir(), "tablet.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer tablet.Close()
	tabletProf, err := tablet.Enroll(ctx, front.url(), issue(t, admin, "PN-A", diaryv1.Role_ROLE_NAVIGATOR), "tablet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tablet.Create(ctx, client.Draft{Title: "held by the tablet", Body: "Met L.", ShareSupervisor: true}); err != nil {
		t.Fatal(err)
	}
	if err := tablet.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := tablet.Status(ctx); err != nil || st.Pending != 0 {
		t.Fatalf("the pending tablet did not push its entry: %+v %v", st, err)
	}
	sup := &feedReader{sync: diaryv1connect.NewSyncServiceClient(http.DefaultClient, front.url(), connect.WithInterceptors(authHeader(supEnr.GetToken())))}
	sup.seen = map[string]bool{}
	// A read mark, and a web console session of the supervisor's, both
	// of which must survive the move.
	markClock := uint64(syncengine.TimestampAt(time.Now()))
	if resp, err := sup.sync.MarkRead(ctx, &diaryv1.MarkReadRequest{Marks: []*diaryv1.ReadMark{{EntryId: marked, Read: true, Clock: markClock}}}); err != nil ||
		resp.GetResults()[0].GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
		t.Fatalf("MarkRead before the move: %v %v", resp, err)
	}
	desk := newConsoleBrowser(t, front.url())
	desk.setup(t, issue(t, admin, "SUP-1", diaryv1.Role_ROLE_SUPERVISOR), "a quiet walk by the canal")
	// SUP-1 has a phone, so the console session waits for its approval.
	waiting := desk.get(t, "/console/inbox")
	m := regexp.MustCompile(`diary device approve ([0-9a-f-]{36})`).FindStringSubmatch(waiting.body)
	if waiting.status != http.StatusForbidden || m == nil {
		t.Fatalf("the console session of a person with a phone: %d %.300s", waiting.status, waiting.body)
	}
	supDevices := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, front.url(), connect.WithInterceptors(authHeader(supEnr.GetToken())))
	if _, err := supDevices.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: m[1]}); err != nil {
		t.Fatalf("approving the console session from the phone: %v", err)
	}
	if p := desk.get(t, "/console/inbox"); p.status != http.StatusOK || !strings.Contains(p.body, "before 2") {
		t.Fatalf("the console's inbox before the move: %d %.300s", p.status, p.body)
	}
	if got, _ := sup.pull(t); len(got) != 39 {
		t.Fatalf("the supervisor pulled %d entries before the move, want 39", len(got))
	}
	// The research settings and a first export, which a later export
	// on PostgreSQL compares itself with.
	if _, err := admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: "Baseline", StartDate: "2000-01-01", EndDate: "2000-12-31"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 1, NavigatorCode: "PN-A", StartDate: "2001-01-01", EndDate: "2099-12-31"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddRedactionTerm(ctx, &diaryv1.AddRedactionTermRequest{Term: &diaryv1.RedactionTerm{Term: "Jonah", Marker: "[name]"}}); err != nil {
		t.Fatal(err)
	}
	resEnr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p.url).Enroll(ctx, &diaryv1.EnrollRequest{Code: issue(t, admin, "RES-1", diaryv1.Role_ROLE_RESEARCHER)})
	if err != nil {
		t.Fatal(err)
	}
	research := func(url string) diaryv1connect.ResearchServiceClient {
		return diaryv1connect.NewResearchServiceClient(http.DefaultClient, url, connect.WithInterceptors(authHeader(resEnr.GetToken())))
	}
	first := exportManifest(t, research(p.url), &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV})
	if first.GetEntries() != 25 || first.GetExportId() == 0 {
		t.Fatalf("the export before the move holds %d entries (id %d), want 25", first.GetEntries(), first.GetExportId())
	}
	auditBefore, err := admin.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ErrServerRunning", func(t *testing.T) {
		out, err := diaryd(t, "migrate", "--from", data, "--database", url)
		if err == nil || !strings.Contains(out, "is using") || !strings.Contains(out, "stop it first") {
			t.Fatalf("migrate while the server runs: %v\n%s", err, out)
		}
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		out, err := diaryd(t, "migrate", "--from", data, "--database", url)
		if err != nil || !strings.Contains(out, "Copied") {
			t.Fatalf("migrate: %v\n%s", err, out)
		}
		// The bodies were written as text edits, which SQLite keeps as
		// blobs in history.value and PostgreSQL in history.text_change.
		lite, err := sql.Open("sqlite", dbFile(data))
		if err != nil {
			t.Fatal(err)
		}
		defer lite.Close()
		var edits, copied int
		if err := lite.QueryRow(`SELECT count(*) FROM history WHERE typeof(value) = 'blob'`).Scan(&edits); err != nil {
			t.Fatal(err)
		}
		if err := openRaw(t, url).QueryRow(`SELECT count(*) FROM history WHERE text_change IS NOT NULL AND text_value IS NULL AND int_value IS NULL`).Scan(&copied); err != nil {
			t.Fatal(err)
		}
		if edits == 0 || copied != edits {
			t.Fatalf("%d text edits in the SQLite history, %d copied as text edits", edits, copied)
		}
		// The copied tables have statistics of their size (-1 when
		// never analyzed).
		var entries int
		var tuples float64
		if err := lite.QueryRow(`SELECT count(*) FROM entries`).Scan(&entries); err != nil {
			t.Fatal(err)
		}
		if err := openRaw(t, url).QueryRow(`SELECT reltuples FROM pg_class WHERE oid = 'entries'::regclass`).Scan(&tuples); err != nil {
			t.Fatal(err)
		}
		if int(tuples) != entries {
			t.Fatalf("PostgreSQL's statistics count %v entries, the copy %d", tuples, entries)
		}
	})
	t.Run("ErrNotEmpty", func(t *testing.T) {
		out, err := diaryd(t, "migrate", "--from", data, "--database", url)
		if err == nil || !strings.Contains(out, "already holds a study") {
			t.Fatalf("second migrate: %v\n%s", err, out)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	pg := startDiaryd(t, filepath.Join(t.TempDir(), "unused"), "--database", url)
	if strings.Contains(pg.stdout.String(), "Created the administrator") {
		t.Fatal("the moved study got a new administrator")
	}
	front.point(pg.url)
	t.Run("OKCarriesOn", func(t *testing.T) {
		// A body moved from SQLite takes a text edit on PostgreSQL.
		body := "Met J. at the day centre."
		if err := phone.Update(ctx, privateID, client.Edit{Body: &body}); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if _, err := phone.Create(ctx, client.Draft{Title: fmt.Sprintf("after %d", i), Body: "Met K.", ShareSupervisor: true, ShareResearch: true}); err != nil {
				t.Fatal(err)
			}
		}
		if err := phone.Sync(ctx); err != nil {
			t.Fatalf("the phone's old token and cursor do not work on the moved study: %v", err)
		}
		if st, err := phone.Status(ctx); err != nil || st.Pending != 0 || st.Refused != 0 {
			t.Fatalf("after the move: %+v %v", st, err)
		}
		if e, err := phone.Get(ctx, privateID); err != nil || e.Body != body {
			t.Fatalf("the body edited after the move: %+v %v", e, err)
		}
		local, n, err := phone.StateHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		remote, m, _, err := phone.ServerStateHash(ctx)
		if err != nil || local != remote || n != 54 || m != 54 {
			t.Fatalf("phone %d entries, server %d (%v), hashes equal %v", n, m, err, local == remote)
		}
		got, removals := sup.pull(t)
		if len(got) != 5 || len(removals) != 0 {
			t.Fatalf("the supervisor pulled %v and removals %v after the move, want the five new entries only", got, removals)
		}
		for _, title := range got {
			if !strings.HasPrefix(title, "after ") {
				t.Fatalf("the supervisor pulled %q again", title)
			}
		}
	})
	t.Run("OKConsoleCarriesOn", func(t *testing.T) {
		// The session cookie works on the moved study, and the read mark
		// is there for the supervisor's other devices.
		p := desk.get(t, "/console/entries/"+marked)
		if p.status != http.StatusOK || !strings.Contains(p.body, "before 2") {
			t.Fatalf("the console session after the move: %d (to %q) %.300s", p.status, p.location, p.body)
		}
		page, err := sup.sync.Pull(ctx, &diaryv1.PullRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		reads := page.GetReads()
		if len(reads) != 1 || reads[0].GetEntryId() != marked || !reads[0].GetRead() || reads[0].GetClock() != markClock {
			t.Fatalf("read marks after the move: %v", reads)
		}
		// The passphrase was moved too: a new browser signs in with it.
		other := newConsoleBrowser(t, front.url())
		other.get(t, "/console/signin")
		if p := other.submit(t, "/console/signin", neturl.Values{"study_code": {"SUP-1"}, "passphrase": {"a quiet walk by the canal"}}); p.status != http.StatusSeeOther || p.location != "/console/" {
			t.Fatalf("signing in with the passphrase after the move: %d (to %q) %.300s", p.status, p.location, p.body)
		}
	})
	t.Run("OKResearchCarriesOn", func(t *testing.T) {
		admin2 := diaryv1connect.NewAdminServiceClient(http.DefaultClient, pg.url, connect.WithInterceptors(authHeader(adminToken(t, pg.url, url))))
		waves, err := admin2.ListWaves(ctx, &diaryv1.ListWavesRequest{PageSize: 100, IncludeNavigatorDates: true})
		if err != nil || len(waves.GetWaves()) != 2 || waves.GetWaves()[1].GetNavigatorCode() != "PN-A" {
			t.Fatalf("wave definitions after the move: %v %v", waves.GetWaves(), err)
		}
		terms, err := admin2.ListRedactionTerms(ctx, &diaryv1.ListRedactionTermsRequest{PageSize: 100})
		if err != nil || len(terms.GetTerms()) != 1 || terms.GetTerms()[0].GetMarker() != "[name]" {
			t.Fatalf("redaction terms after the move: %v %v", terms.GetTerms(), err)
		}
		list, err := research(pg.url).ListExports(ctx, &diaryv1.ListExportsRequest{PageSize: 10})
		if err != nil || len(list.GetExports()) != 1 || list.GetExports()[0].GetExportId() != first.GetExportId() {
			t.Fatalf("exports after the move: %v %v", list.GetExports(), err)
		}
		m := exportManifest(t, research(pg.url), &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_CSV, SinceExportId: first.GetExportId()})
		s := m.GetSince()
		if m.GetEntries() != 30 || m.GetExportId() <= first.GetExportId() || len(m.GetNavigatorWaves()) != 1 || m.GetRedactionTerms() != 1 ||
			s.GetAdded() != 5 || s.GetChanged() != 0 || s.GetWithdrawn() != 0 || s.GetErased() != 0 || s.GetOutside() != 0 {
			t.Fatalf("the export after the move: %d entries, id %d (first %d), %d navigator waves, %d terms, since %v; want 30 with 5 added",
				m.GetEntries(), m.GetExportId(), first.GetExportId(), len(m.GetNavigatorWaves()), m.GetRedactionTerms(), s)
		}
	})
	t.Run("OKApprovalCarriesOn", func(t *testing.T) {
		devices, _, err := phone.Devices(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		var waiting []string
		for _, d := range devices {
			if d.State == study.DevicePending {
				waiting = append(waiting, d.ID)
				if d.IssuedBy != "ADMIN" {
					t.Errorf("the tablet was issued by %q after the move, want ADMIN", d.IssuedBy)
				}
			}
		}
		if len(waiting) != 1 || waiting[0] != tabletProf.DeviceID {
			t.Fatalf("devices waiting after the move: %v, want the tablet %s", waiting, tabletProf.DeviceID)
		}
		activity, _, err := phone.Activity(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		enrolments := 0
		for _, a := range activity {
			if a.Action == "device.enrol" && a.Subject == tabletProf.DeviceID && a.Actor == "ADMIN" {
				enrolments++
			}
		}
		if enrolments != 1 {
			t.Fatalf("PN-A's activity after the move has %d enrolments of the tablet by ADMIN: %+v", enrolments, activity)
		}
		if _, err := phone.ApproveDevice(ctx, tabletProf.DeviceID); err != nil {
			t.Fatal(err)
		}
		got, _ := sup.pull(t)
		if len(got) != 1 || got[0] != "held by the tablet" {
			t.Fatalf("the supervisor pulled %v once the tablet was approved, want the entry it held", got)
		}
		if err := tablet.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, n, err := tablet.StateHash(ctx); err != nil || n != 55 {
			t.Fatalf("the approved tablet holds %d entries (%v), want PN-A's 55", n, err)
		}
	})
	t.Run("OKErasedStaysErased", func(t *testing.T) {
		var events int
		admin2 := diaryv1connect.NewAdminServiceClient(http.DefaultClient, pg.url, connect.WithInterceptors(authHeader(adminToken(t, pg.url, url))))
		resp, err := admin2.ListAuditEvents(ctx, &diaryv1.ListAuditEventsRequest{PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetEvents() {
			if e.GetAction() == "entry.erase" && e.GetSubject() == erased {
				events++
			}
		}
		if events != 1 || len(resp.GetEvents()) < len(auditBefore.GetEvents()) {
			t.Fatalf("audit log after the move: %d events (%d before), %d erasures of the entry", len(resp.GetEvents()), len(auditBefore.GetEvents()), events)
		}
		r, err := admin2.EraseEntry(ctx, &diaryv1.EraseEntryRequest{EntryId: erased})
		if err != nil || r.GetErased() {
			t.Fatalf("erasing the erased entry again: %v %v", r, err)
		}
	})
}

// consoleBrowser is a browser of the web console without a browser: a
// cookie jar and the last page's form token.
type consoleBrowser struct {
	base string
	c    *http.Client
	last string
}

type consolePage struct {
	status         int
	body, location string
}

func newConsoleBrowser(tb testing.TB, base string) *consoleBrowser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return &consoleBrowser{base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *consoleBrowser) do(tb testing.TB, req *http.Request) consolePage {
	tb.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.last = string(body)
	return consolePage{status: resp.StatusCode, body: b.last, location: resp.Header.Get("Location")}
}

func (b *consoleBrowser) get(tb testing.TB, path string) consolePage {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(tb, req)
}

var consoleCSRF = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// submit posts a form with the last page's CSRF token.
func (b *consoleBrowser) submit(tb testing.TB, path string, form neturl.Values) consolePage {
	tb.Helper()
	m := consoleCSRF.FindStringSubmatch(b.last)
	if m == nil {
		tb.Fatalf("no CSRF token on the page: %.300s", b.last)
	}
	form.Set("csrf", m[1])
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(tb, req)
}

// setup signs in for the first time with a one-time code and chooses the
// passphrase.
func (b *consoleBrowser) setup(tb testing.TB, code, passphrase string) {
	tb.Helper()
	b.get(tb, "/console/setup")
	p := b.submit(tb, "/console/setup", neturl.Values{"code": {code}, "passphrase": {passphrase}, "passphrase2": {passphrase}})
	if p.status != http.StatusSeeOther || p.location != "/console/" {
		tb.Fatalf("console setup: %d (to %q) %.300s", p.status, p.location, p.body)
	}
}

// exportManifest makes an export through rs and returns its manifest.
func exportManifest(tb testing.TB, rs diaryv1connect.ResearchServiceClient, req *diaryv1.ExportWaveRequest) *diaryv1.ExportManifest {
	tb.Helper()
	stream, err := rs.ExportWave(context.Background(), req)
	if err != nil {
		tb.Fatal(err)
	}
	var m *diaryv1.ExportManifest
	for stream.Receive() {
		if got := stream.Msg().GetManifest(); got != nil {
			m = got
		}
	}
	if err := stream.Err(); err != nil || m == nil {
		tb.Fatalf("export: manifest %v, %v", m, err)
	}
	return m
}

// adminToken enrols a new administrator device on the server at url with
// a code from "diaryd admin-code --database db".
func adminToken(tb testing.TB, url, db string) string {
	tb.Helper()
	out, err := diaryd(tb, "admin-code", "--database", db)
	if err != nil {
		tb.Fatalf("admin-code: %v\n%s", err, out)
	}
	enr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, url).Enroll(context.Background(), &diaryv1.EnrollRequest{Code: strings.TrimSpace(out), DeviceName: "admin 2"})
	if err != nil {
		tb.Fatal(err)
	}
	return enr.GetToken()
}

// TestDiaryd_Backup backs up a running SQLite study with "diaryd backup",
// writes more, and restores the backup as docs/RELIABILITY.md says: stop
// the server, put the backup in place of diarysync.db, start it. The
// restored study is the study at the backup, and a device whose cursor
// is past it is told to sync again from the start.
func TestDiaryd_Backup(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	p := startDiaryd(t, data)
	admin := adminClients(t, p.url, readAdminCode(t, data))
	enr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p.url).Enroll(ctx, &diaryv1.EnrollRequest{Code: issue(t, admin, "PN-A", diaryv1.Role_ROLE_NAVIGATOR)})
	if err != nil {
		t.Fatal(err)
	}
	phone, err := client.Open(ctx, filepath.Join(t.TempDir(), "phone.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	prof, err := phone.Enroll(ctx, p.url, issue(t, admin, "PN-A", diaryv1.Role_ROLE_NAVIGATOR), "phone")
	if err != nil {
		t.Fatal(err)
	}
	// PN-A's first device approves the phone, so that what it writes
	// reaches the first device's pulls.
	if _, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p.url, connect.WithInterceptors(authHeader(enr.GetToken()))).
		ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: prof.DeviceID}); err != nil {
		t.Fatal(err)
	}
	write := func(prefix string, n int) {
		for i := range n {
			if _, err := phone.Create(ctx, client.Draft{Title: fmt.Sprintf("%s %d", prefix, i), Body: "Met J."}); err != nil {
				t.Fatal(err)
			}
		}
		if err := phone.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	write("before", 30)
	file := filepath.Join(t.TempDir(), "backup.db")
	t.Run("OK", func(t *testing.T) {
		out, err := diaryd(t, "backup", "--data", data, "--to", file)
		if err != nil {
			t.Fatalf("backup: %v\n%s", err, out)
		}
		fi, err := os.Stat(file)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("backup file: %v %v", fi, err)
		}
	})
	t.Run("ErrExists", func(t *testing.T) {
		if out, err := diaryd(t, "backup", "--data", data, "--to", file); err == nil || !strings.Contains(out, "exists") {
			t.Fatalf("backup over a file: %v\n%s", err, out)
		}
	})
	write("after", 20)
	sync := diaryv1connect.NewSyncServiceClient(http.DefaultClient, p.url, connect.WithInterceptors(authHeader(enr.GetToken())))
	ahead := &feedReader{sync: sync, seen: map[string]bool{}}
	if got, _ := ahead.pull(t); len(got) != 50 {
		t.Fatalf("%d entries before the restore, want 50", len(got))
	}

	// Restore: stop, put the backup in place, start.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"diarysync.db-wal", "diarysync.db-shm"} {
		os.Remove(filepath.Join(data, f))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "diarysync.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	p = startDiaryd(t, data)
	sync = diaryv1connect.NewSyncServiceClient(http.DefaultClient, p.url, connect.WithInterceptors(authHeader(enr.GetToken())))
	t.Run("OKRestored", func(t *testing.T) {
		fresh := &feedReader{sync: sync, seen: map[string]bool{}}
		got, _ := fresh.pull(t)
		if len(got) != 30 {
			t.Fatalf("%d entries after the restore, want the 30 of the backup", len(got))
		}
		for _, title := range got {
			if !strings.HasPrefix(title, "before ") {
				t.Fatalf("%q is in the restored study", title)
			}
		}
		_, err := sync.Pull(ctx, &diaryv1.PullRequest{Cursor: ahead.cursor})
		if connect.CodeOf(err) != connect.CodeFailedPrecondition || !strings.Contains(err.Error(), "sync again from the start") {
			t.Fatalf("a cursor past the restored study: %v", err)
		}
		// The one conflict after which a device pulls everything again
		// is named as such.
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Meta().Get(wire.ErrorCodeHeader) != "conflict" || ce.Meta().Get(wire.ErrorReasonHeader) != wire.ReasonCursorAhead {
			t.Fatalf("a cursor past the restored study: headers %v", ce.Meta())
		}
	})
}

// TestCopyTables checks that "diaryd migrate" copies every column of
// every table of the SQLite schema, into columns the PostgreSQL schema
// has, and writes every column of the PostgreSQL schema (with
// DIARYSYNC_TEST_POSTGRES): a table or column added to either store and
// forgotten in copyTables fails it.
func TestCopyTables(t *testing.T) {
	ctx := context.Background()
	// Not copied: the guessing limits (enrolment codes, console
	// passphrases) only slow guessing for a while, and
	// each store keeps its own record of the migrations it applied.
	skipped := map[string]bool{"enroll_attempts": true, "login_failures": true, "schema_migrations": true}
	// The one-row tables copyStudy writes itself (their id is always 1).
	oneRow := map[string][]string{"sequence": {"id", "value", "changed_at"}, "redaction": {"id", "enabled", "patterns", "version"}}
	// PostgreSQL columns no SQLite study has: an export's lock is held
	// only while it is made, and a copied export is complete.
	pgOnly := map[string]bool{"exports.lock_key": true}

	from, to := map[string]map[string]bool{}, map[string]map[string]bool{}
	for _, ct := range copyTables {
		from[ct.name], to[ct.name] = map[string]bool{}, map[string]bool{}
		for _, c := range ct.columns {
			from[ct.name][c] = true
		}
		cols := ct.to
		if cols == nil {
			cols = ct.columns
		}
		for _, c := range cols {
			to[ct.name][c] = true
		}
	}
	for name, cols := range oneRow {
		from[name], to[name] = map[string]bool{}, map[string]bool{}
		for _, c := range cols {
			from[name][c], to[name][c] = true, true
		}
	}
	check := func(engine string, schema map[string][]string, copied map[string]map[string]bool) {
		t.Helper()
		for table, cols := range schema {
			if skipped[table] {
				continue
			}
			if copied[table] == nil {
				t.Errorf("%s table %s is not copied", engine, table)
				continue
			}
			for _, c := range cols {
				if !copied[table][c] && !(engine == "PostgreSQL" && pgOnly[table+"."+c]) {
					t.Errorf("%s column %s.%s is not copied", engine, table, c)
				}
			}
		}
		for table := range copied {
			if schema[table] == nil {
				t.Errorf("copyTables names %s, which the %s schema does not have", table, engine)
			}
		}
	}

	file := filepath.Join(t.TempDir(), "diarysync.db")
	lite, err := sqlite.Open(ctx, file, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lite.Close()
	src, err := sql.Open("sqlite", "file:"+file+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	liteSchema := map[string][]string{}
	rows, err := src.QueryContext(ctx, `SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, col string
		if err := rows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		liteSchema[table] = append(liteSchema[table], col)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if len(liteSchema) < 10 {
		t.Fatalf("the SQLite schema has only %v", liteSchema)
	}
	check("SQLite", liteSchema, from)

	if os.Getenv("DIARYSYNC_TEST_POSTGRES") == "" {
		t.Log("DIARYSYNC_TEST_POSTGRES is not set: the PostgreSQL schema is not checked")
		return
	}
	url := storetest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pgSchema := map[string][]string{}
	prows, err := conn.Query(ctx, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`)
	if err != nil {
		t.Fatal(err)
	}
	for prows.Next() {
		var table, col string
		if err := prows.Scan(&table, &col); err != nil {
			t.Fatal(err)
		}
		pgSchema[table] = append(pgSchema[table], col)
	}
	if err := prows.Err(); err != nil {
		t.Fatal(err)
	}
	check("PostgreSQL", pgSchema, to)
}
