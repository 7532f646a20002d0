package console_test

import (
	"context"
	"errors"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// ownerView returns the navigator's own view of an entry, as their next
// pull would bring it.
func (e *env) ownerView(nav *phoneDevice, id syncengine.EntryID) *syncengine.Entry {
	e.t.Helper()
	page, err := e.db.Pull(context.Background(), nav.Identity, study.PullRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, en := range page.Entries {
		if en.ID == id {
			return en
		}
	}
	e.t.Fatalf("entry %s not in the navigator's pull", id)
	return nil
}

var feedbackLink = regexp.MustCompile(`/console/entries/[0-9a-f-]+/feedback/([0-9a-f-]{36})/edit`)

// TestFeedback: a supervisor's feedback written, edited and deleted in
// the console goes through the write rules and reaches the navigator's
// pull; reading the entry marks it read on the server.
func TestFeedback(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	clock := syncengine.NewClock(nil)
	nav := e.phone(study.RoleNavigator, "PN-A")
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	if _, _, err := e.db.Assign(ctx, "SUP-1", "PN-A"); err != nil {
		t.Fatal(err)
	}
	id := e.write(nav, clock, "First shift", "Met J. at the hostel.", true)
	entryPath := "/console/entries/" + id.String()

	inbox := sup.get("/console/inbox")
	if !strings.Contains(inbox.body, "First shift") || !strings.Contains(inbox.body, `class="badge">Unread`) {
		t.Fatalf("inbox: %.800s", inbox.body)
	}
	p := sup.get(entryPath)
	wantStatus(t, p, http.StatusOK)
	if !strings.Contains(p.body, "Met J. at the hostel.") {
		t.Fatal("the entry page does not show the body")
	}
	supID := sessionIdentity(t, e, "SUP-1")
	if it, err := e.db.InboxEntry(ctx, supID, id); err != nil || !it.Read {
		t.Fatalf("opening the entry did not mark it read on the server: %+v %v", it, err)
	}
	if strings.Contains(sup.get("/console/inbox").body, `class="badge">Unread`) {
		t.Fatal("the inbox still shows it unread")
	}
	sup.get(entryPath)
	if p := sup.submit(entryPath+"/read", url.Values{"read": {"0"}}); p.status != http.StatusSeeOther || p.location != "/console/inbox" {
		t.Fatalf("mark unread: %d %q", p.status, p.location)
	}
	if it, _ := e.db.InboxEntry(ctx, supID, id); it.Read {
		t.Fatal("marking unread did not reach the server")
	}
	if !strings.Contains(sup.get("/console/inbox").body, `class="badge">Unread`) {
		t.Fatal("the inbox does not show it unread again")
	}
	sup.get(entryPath) // read again
	// A note over the limit is refused with the reason, and kept in the form.
	long := strings.Repeat("a", syncengine.MaxFeedbackBodyBytes+1)
	if p := sup.submit(entryPath+"/feedback", url.Values{"body": {long}}); p.status != http.StatusConflict || !strings.Contains(p.body, "was not saved") || !strings.Contains(p.body, long) {
		t.Fatalf("an over-long note: %d %.300s", p.status, p.body)
	}

	p = sup.submit(entryPath+"/feedback", url.Values{"body": {"Thanks for writing this up."}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, entryPath+"?done=feedback-saved") {
		t.Fatalf("write feedback: %d %q %.300s", p.status, p.location, p.body)
	}
	fb := e.ownerView(nav, id).Feedback
	if len(fb) != 1 || fb[0].Body.Value != "Thanks for writing this up." || fb[0].Author != "SUP-1" {
		t.Fatalf("navigator's pull: %+v", fb)
	}
	// The console's changes carry the session's own replica id.
	devices, _, _ := e.db.ListDevices(ctx, 0, "", "SUP-1")
	if len(devices) != 1 || devices[0].Kind != study.KindBrowser {
		t.Fatalf("devices %+v", devices)
	}
	// It was recorded as a change of the browser session, the device
	// with the session's own replica id.
	if c, err := e.db.DeviceClock(ctx, sessionOf(t, e, sup).DeviceID); err != nil || c != fb[0].Body.Clock {
		t.Fatalf("the browser session's last clock %v (%v), the feedback's %v", c, err, fb[0].Body.Clock)
	}

	page := sup.get(entryPath)
	m := feedbackLink.FindStringSubmatch(page.body)
	if m == nil {
		t.Fatalf("no edit link: %.800s", page.body)
	}
	fid := m[1]
	edit := sup.get(entryPath + "/feedback/" + fid + "/edit")
	wantStatus(t, edit, http.StatusOK)
	version := formValue(t, edit.body, "version")
	p = sup.submit(entryPath+"/feedback/"+fid, url.Values{"body": {"Thanks for writing this up so clearly."}, "version": {version}, "base": {"Thanks for writing this up."}})
	if p.status != http.StatusSeeOther || !strings.Contains(p.location, "done=feedback-saved") {
		t.Fatalf("edit: %d %q %.300s", p.status, p.location, p.body)
	}
	if got := e.ownerView(nav, id).Feedback[0].Body.Value; got != "Thanks for writing this up so clearly." {
		t.Fatalf("after the edit the navigator has %q", got)
	}

	sup.get(entryPath)
	p = sup.submit(entryPath+"/feedback/"+fid+"/delete", url.Values{})
	if p.status != http.StatusSeeOther || !strings.Contains(p.location, "done=feedback-deleted") {
		t.Fatalf("delete: %d %q", p.status, p.location)
	}
	if got := e.ownerView(nav, id).Feedback; len(got) != 0 {
		t.Fatalf("after deleting, the navigator still has %+v", got)
	}

	t.Run("ErrUnshared", func(t *testing.T) {
		sup.get(entryPath)
		token := sup.csrf()
		e.push(nav.Identity, study.Incoming{Change: syncengine.Change{Entry: id, Field: syncengine.FieldShareSupervisor, Flag: false, Stamp: syncengine.Stamp{Clock: clock.Now(), Replica: nav.Replica}}})
		p := sup.post(entryPath+"/feedback", url.Values{"body": {"Too late"}, "csrf": {token}})
		wantStatus(t, p, http.StatusNotFound)
		wantStatus(t, sup.get(entryPath), http.StatusNotFound)
	})
}

func formValue(t *testing.T, body, name string) string {
	t.Helper()
	m := regexp.MustCompile(`name="` + name + `" value="([^"]*)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s field", name)
	}
	return html.UnescapeString(m[1])
}

// sessionOf returns the store's session of a signed-in browser.
func sessionOf(t *testing.T, e *env, b *browser) *study.Session {
	t.Helper()
	u, _ := url.Parse(e.url + "/console/")
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "diarysync_console" {
			s, err := e.db.Session(context.Background(), c.Value)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatal("no session cookie")
	return nil
}

// sessionIdentity returns an identity of the user, for store reads.
func sessionIdentity(t *testing.T, e *env, code string) *study.Identity {
	t.Helper()
	u, err := e.db.UserByCode(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	return &study.Identity{UserID: u.ID, StudyCode: u.StudyCode, Role: u.Role}
}

// TestFeedbackEditMerges: an edit form rendered before the supervisor's
// phone changed the same note merges the two edits when they touch
// different words, and shows both when they touch the same ones.
func TestFeedbackEditMerges(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	clock := syncengine.NewClock(nil)
	nav := e.phone(study.RoleNavigator, "PN-A")
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	// The phone comes after the console session, so it waits for the
	// session's approval.
	phone := e.approvedPhone(sup, "SUP-1")
	phoneClock := syncengine.NewClock(nil)
	if _, _, err := e.db.Assign(ctx, "SUP-1", "PN-A"); err != nil {
		t.Fatal(err)
	}
	id := e.write(nav, clock, "Shift", "Words.", true)
	entryPath := "/console/entries/" + id.String()
	base := "You handled the move well. Let's talk on Thursday."
	sup.get(entryPath)
	sup.submit(entryPath+"/feedback", url.Values{"body": {base}})
	fid := feedbackLink.FindStringSubmatch(sup.get(entryPath).body)[1]
	fidParsed, _ := syncengine.ParseFeedbackID(fid)
	phoneEdit := func(text string) {
		e.push(phone.Identity, study.Incoming{Change: syncengine.Change{Entry: id, Field: syncengine.FieldFeedbackBody, Feedback: fidParsed, Text: text,
			Stamp: syncengine.Stamp{Clock: phoneClock.Now(), Replica: phone.Replica}}})
	}

	// The form is opened, then the phone edits the end of the note.
	edit := sup.get(entryPath + "/feedback/" + fid + "/edit")
	version, token := formValue(t, edit.body, "version"), sup.csrf()
	phoneEdit("You handled the move well. Let's talk on Friday instead.")
	p := sup.post(entryPath+"/feedback/"+fid, url.Values{"csrf": {token}, "version": {version}, "base": {base},
		"body": {"You handled the move calmly and well. Let's talk on Thursday."}})
	if p.status != http.StatusSeeOther || !strings.Contains(p.location, "done=feedback-merged") {
		t.Fatalf("merge: %d %q %.400s", p.status, p.location, p.body)
	}
	want := "You handled the move calmly and well. Let's talk on Friday instead."
	if got := e.ownerView(nav, id).Feedback[0].Body.Value; got != want {
		t.Fatalf("merged note %q, want %q", got, want)
	}
	if !strings.Contains(sup.get(p.location).body, "both changes were kept") {
		t.Fatal("the page does not say the edits were merged")
	}

	// Now both change the same word: nothing is saved, both are shown.
	edit = sup.get(entryPath + "/feedback/" + fid + "/edit")
	version, token = formValue(t, edit.body, "version"), sup.csrf()
	phoneEdit("You handled the move calmly and well. Let's talk on Monday instead.")
	p = sup.post(entryPath+"/feedback/"+fid, url.Values{"csrf": {token}, "version": {version}, "base": {want},
		"body": {"You handled the move calmly and well. Let's talk on Tuesday instead."}})
	wantStatus(t, p, http.StatusConflict)
	if !strings.Contains(p.body, "Let&#39;s talk on Monday instead.") || !strings.Contains(p.body, "Let&#39;s talk on Tuesday instead.") {
		t.Fatalf("the conflict page does not show both versions: %.1500s", p.body)
	}
	if got := e.ownerView(nav, id).Feedback[0].Body.Value; !strings.Contains(got, "Monday") {
		t.Fatalf("a conflicting edit overwrote the phone's: %q", got)
	}
	// Saving again from the conflict page (its version is the phone's)
	// is a plain edit.
	version, token = formValue(t, p.body, "version"), formValue(t, p.body, "csrf")
	p = sup.post(entryPath+"/feedback/"+fid, url.Values{"csrf": {token}, "version": {version}, "base": {formValue(t, p.body, "base")},
		"body": {"Let's talk on Tuesday, then."}})
	if p.status != http.StatusSeeOther || !strings.Contains(p.location, "done=feedback-saved") {
		t.Fatalf("save after the conflict: %d %q", p.status, p.location)
	}
}

// TestInboxFilters: the filters work, and a tag filter travels in a form
// post, never in a URL, and neither it nor any diary text reaches the
// log.
func TestInboxFilters(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	clock := syncengine.NewClock(nil)
	navA := e.phone(study.RoleNavigator, "PN-A")
	navB := e.phone(study.RoleNavigator, "PN-B")
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	for _, n := range []string{"PN-A", "PN-B"} {
		if _, _, err := e.db.Assign(ctx, "SUP-1", n); err != nil {
			t.Fatal(err)
		}
	}
	e.write(navA, clock, "Housing call", "A secret sentence about housing.", true, "housing-zebra")
	e.write(navB, clock, "Court day", "Another private line.", true, "court")
	e.write(navB, clock, "Just for me", "Not shared at all.", false, "housing-zebra")

	all := sup.get("/console/inbox")
	if !strings.Contains(all.body, "Housing call") || !strings.Contains(all.body, "Court day") || strings.Contains(all.body, "Just for me") {
		t.Fatalf("inbox: %.1000s", all.body)
	}
	byNav := sup.get("/console/inbox?navigator=PN-B")
	if strings.Contains(byNav.body, "Housing call") || !strings.Contains(byNav.body, "Court day") {
		t.Fatal("the navigator filter")
	}
	sup.get("/console/inbox")
	byTag := sup.submit("/console/inbox", url.Values{"tag": {"housing-zebra"}})
	wantStatus(t, byTag, http.StatusOK)
	if !strings.Contains(byTag.body, "Housing call") || strings.Contains(byTag.body, "Court day") || strings.Contains(byTag.body, "Just for me") {
		t.Fatalf("the tag filter: %.1000s", byTag.body)
	}
	// A tag in a URL is ignored: filters by tag are posted.
	if strings.Contains(sup.get("/console/inbox?tag=court").body, "No entries match") {
		t.Fatal("the inbox filtered by a tag given in the URL")
	}
	// The script's request for the list gets the list only.
	req, _ := http.NewRequest(http.MethodPost, e.url+"/console/inbox", strings.NewReader(url.Values{"csrf": {sup.csrf()}, "tag": {"court"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Console-Fragment", "inbox")
	frag := sup.do(req)
	if frag.status != http.StatusOK || !strings.HasPrefix(strings.TrimSpace(frag.body), `<section id="inbox-list"`) || !strings.Contains(frag.body, "Court day") {
		t.Fatalf("fragment: %d %.300s", frag.status, frag.body)
	}
	logs := e.logs.String()
	for _, secret := range []string{"housing-zebra", "secret sentence", "Housing call", "Court day"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("the log holds diary text %q", secret)
		}
	}
	if !strings.Contains(logs, `"route":"POST /console/inbox"`) {
		t.Fatalf("no log line of the inbox request: %.500s", logs)
	}
}

// TestExport: the preview shows the counts and records nothing; the
// download is the export, recorded in the audit log, and listed among
// earlier exports.
func TestExport(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	clock := syncengine.NewClock(nil)
	nav := e.phone(study.RoleNavigator, "PN-A")
	res := e.signedIn(study.RoleResearcher, "RES-1")
	today := e.clk.Now().Format("2006-01-02")
	if _, err := e.db.CreateWave(ctx, study.Wave{Number: 1, Label: "Baseline", Start: today, End: today}); err != nil {
		t.Fatal(err)
	}
	for i, shareRes := range []bool{true, true, false} {
		id := e.write(nav, clock, "Entry", "Body text", false)
		if shareRes {
			e.push(nav.Identity, study.Incoming{Change: syncengine.Change{Entry: id, Field: syncengine.FieldShareResearch, Flag: true, Stamp: syncengine.Stamp{Clock: clock.Now(), Replica: nav.Replica}}})
		}
		_ = i
	}
	res.get("/console/export")
	p := res.submit("/console/export/preview", url.Values{"wave": {"1"}, "format": {"1"}})
	wantStatus(t, p, http.StatusOK)
	res.last = p.body
	if !regexp.MustCompile(`id="preview-entries">2<`).MatchString(p.body) || !strings.Contains(p.body, "not shared for research</dt><dd>1<") {
		t.Fatalf("preview: %.2000s", p.body)
	}
	if events, _, _ := e.db.QueryAudit(ctx, study.AuditQuery{Action: "export"}); len(events) != 0 {
		t.Fatal("a preview was recorded as an export")
	}
	// The preview's own download form carries the same choice.
	hidden := func(name string) string {
		m := regexp.MustCompile(`type="hidden" name="` + name + `" value="([^"]*)"`).FindStringSubmatch(p.body)
		if m == nil {
			t.Fatalf("the preview has no download form with %s", name)
		}
		return m[1]
	}
	if w, f := hidden("wave"), hidden("format"); w != "1" || f != "1" {
		t.Fatalf("the preview's download form holds wave %q format %q", w, f)
	}
	d := res.submit("/console/export/download", url.Values{"wave": {hidden("wave")}, "format": {hidden("format")}})
	wantStatus(t, d, http.StatusOK)
	if cd := d.header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="diarysync-wave-1-`) || !strings.HasSuffix(cd, `.csv"`) {
		t.Fatalf("Content-Disposition %q", cd)
	}
	if n := strings.Count(strings.TrimSpace(d.body), "\n"); n != 2 || !strings.Contains(d.body, "PN-A") {
		t.Fatalf("the CSV has %d rows after the header: %.500s", n, d.body)
	}
	events, _, _ := e.db.QueryAudit(ctx, study.AuditQuery{Action: "export"})
	if len(events) != 1 || events[0].Actor != "RES-1" || events[0].Details["entries"] != "2" {
		t.Fatalf("audit %+v", events)
	}
	if page := res.get("/console/export"); !strings.Contains(page.body, "<td>RES-1</td>") {
		t.Fatal("the export is not among the earlier exports")
	}
	p = res.submit("/console/export/preview", url.Values{"wave": {"9"}, "format": {"1"}})
	if p.status != http.StatusNotFound || !strings.Contains(p.body, "here is no wave 9") {
		t.Fatalf("unknown wave: %d %.300s", p.status, p.body)
	}
}

var issuedLink = regexp.MustCompile(`<code id="issued-link">([^<]+)</code>`)

// TestAdmin: an administrator creates a navigator, issues a code shown
// with its QR code's link, which a phone enrols with; deactivates,
// resets console access and erases behind confirmation steps.
func TestAdmin(t *testing.T) {
	e := newEnv(t, server.Config{PublicURL: ""})
	ctx := context.Background()
	admin := e.signedIn(study.RoleAdmin, "ADMIN")
	admin.get("/console/admin/users")
	p := admin.submit("/console/admin/users", url.Values{"study_code": {"PN-D"}, "role": {"1"}, "display_name": {"Navigator D"}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("create user: %d %.300s", p.status, p.body)
	}
	if !strings.Contains(admin.get(p.location).body, "Created PN-D") {
		t.Fatal("no notice after creating")
	}
	dup := admin.submit("/console/admin/users", url.Values{"study_code": {"PN-D"}, "role": {"1"}})
	if dup.status != http.StatusConflict || !strings.Contains(dup.body, "already in use") {
		t.Fatalf("duplicate: %d", dup.status)
	}

	admin.get("/console/admin/codes?user=PN-D")
	p = admin.submit("/console/admin/codes", url.Values{"study_code": {"PN-D"}, "ttl": {"1h"}})
	wantStatus(t, p, http.StatusOK)
	m := issuedLink.FindStringSubmatch(p.body)
	if m == nil || !strings.Contains(p.body, `<svg xmlns="http://www.w3.org/2000/svg" class="qr" role="img"`) {
		t.Fatalf("codes page: %.1500s", p.body)
	}
	serverURL, code, err := client.ParseEnrolLink(html.UnescapeString(m[1]))
	if err != nil || serverURL != e.url {
		t.Fatalf("ParseEnrolLink = %q, %q, %v", serverURL, code, err)
	}
	if !strings.Contains(p.body, `id="issued-code">`+code+`<`) {
		t.Fatal("the code shown as text is not the one in the link")
	}
	phone, err := client.Open(ctx, filepath.Join(t.TempDir(), "phone.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	if prof, err := phone.Enroll(ctx, serverURL, code, "PN-D phone"); err != nil || prof.StudyCode != "PN-D" {
		t.Fatalf("enrol with the code from the page: %+v %v", prof, err)
	}

	t.Run("Devices", func(t *testing.T) {
		page := admin.get("/console/admin/devices?user=PN-D")
		if !strings.Contains(page.body, "PN-D phone") || !strings.Contains(page.body, "<td>app</td>") {
			t.Fatalf("devices: %.1500s", page.body)
		}
		page = admin.get("/console/admin/devices?user=ADMIN")
		if !strings.Contains(page.body, "<td>browser</td>") {
			t.Fatal("the administrator's own browser session is not listed")
		}
	})
	t.Run("Deactivate", func(t *testing.T) {
		e.person(study.RoleNavigator, "PN-E")
		wantStatus(t, admin.get("/console/admin/users/PN-E/deactivate"), http.StatusOK)
		p := admin.submit("/console/admin/users/PN-E/deactivate", url.Values{})
		wantStatus(t, p, http.StatusSeeOther)
		if u, _ := e.db.UserByCode(ctx, "PN-E"); u.Active {
			t.Fatal("not deactivated")
		}
		wantStatus(t, admin.get("/console/admin/users/NOBODY/deactivate"), http.StatusNotFound)
	})
	t.Run("Reset", func(t *testing.T) {
		// The console's reset is the account reset of a lost phone: the
		// supervisor's phone and browser session both end, each told
		// why, and the new code needs no approval.
		sup := e.signedIn(study.RoleSupervisor, "SUP-9")
		phone := e.approvedPhone(sup, "SUP-9")
		wantStatus(t, admin.get("/console/admin/users/NOBODY/reset"), http.StatusNotFound)
		wantStatus(t, admin.get("/console/admin/users/SUP-9/reset"), http.StatusOK)
		p := admin.submit("/console/admin/users/SUP-9/reset", url.Values{})
		wantStatus(t, p, http.StatusOK)
		if !strings.Contains(p.body, "2 device(s) and console session(s) revoked") || issuedLink.FindStringSubmatch(p.body) == nil {
			t.Fatalf("reset page: %.1000s", p.body)
		}
		if r := sup.get("/console/inbox"); r.location != "/console/signin?ended=reset" {
			t.Fatalf("the supervisor's session after the reset: %d %q", r.status, r.location)
		}
		var de *study.DeviceError
		if _, err := e.db.Authenticate(ctx, phone.token); !errors.As(err, &de) || de.Revocation != study.RevokedByReset || de.RevokedBy != "ADMIN" {
			t.Fatalf("the supervisor's phone after the reset: %v", err)
		}
		events, _, _ := e.db.QueryAudit(ctx, study.AuditQuery{Action: "user.reset"})
		if len(events) != 1 || events[0].Actor != "ADMIN" || events[0].Subject != "SUP-9" || events[0].Details["console_passphrase"] != "cleared" {
			t.Fatalf("audit %+v", events)
		}
		// The new code sets a new passphrase.
		_, newCode, _ := client.ParseEnrolLink(html.UnescapeString(issuedLink.FindStringSubmatch(p.body)[1]))
		again := e.browser()
		if p := again.setup(newCode); p.status != http.StatusSeeOther {
			t.Fatalf("setup with the new code: %d", p.status)
		}
		if p := again.get("/console/inbox"); p.status != http.StatusOK {
			t.Fatalf("the session set up with the reset's code waits for approval: %d %.300s", p.status, p.body)
		}
	})
	t.Run("Erase", func(t *testing.T) {
		clock := syncengine.NewClock(nil)
		nav := e.phone(study.RoleNavigator, "PN-F")
		id := e.write(nav, clock, "To erase", "Gone soon.", false)
		admin.get("/console/admin/erase")
		p := admin.submit("/console/admin/erase", url.Values{"entry": {id.String()}})
		wantStatus(t, p, http.StatusOK)
		if !strings.Contains(p.body, "Type <strong>"+id.String()+"</strong> to confirm") {
			t.Fatalf("no confirmation step: %.1000s", p.body)
		}
		wrong := admin.submit("/console/admin/erase/confirm", url.Values{"entry": {id.String()}, "typed": {"yes"}})
		wantStatus(t, wrong, http.StatusBadRequest)
		if len(e.ownerView(nav, id).Title.Value) == 0 {
			t.Fatal("erased without confirmation")
		}
		admin.get("/console/admin/erase")
		admin.submit("/console/admin/erase", url.Values{"entry": {id.String()}})
		done := admin.submit("/console/admin/erase/confirm", url.Values{"entry": {id.String()}, "typed": {id.String()}})
		if done.status != http.StatusOK || !strings.Contains(done.body, "Erased entry") {
			t.Fatalf("erase: %d %.300s", done.status, done.body)
		}
		page, _ := e.db.Pull(ctx, nav.Identity, study.PullRequest{})
		if len(page.Entries) != 0 || len(page.Removals) != 1 || page.Removals[0].Reason != study.ReasonErased {
			t.Fatalf("after erasure the navigator pulls %+v", page)
		}
	})
	t.Run("Audit", func(t *testing.T) {
		page := admin.get("/console/admin/audit?action=user.")
		if !strings.Contains(page.body, "<td>user.create</td>") || strings.Contains(page.body, "<td>code.issue</td>") {
			t.Fatalf("audit filter: %.1500s", page.body)
		}
		if p := admin.get("/console/admin/audit?since=yesterday"); !strings.Contains(p.body, "YYYY-MM-DD") {
			t.Fatal("a bad date is not explained")
		}
	})
	t.Run("Waves", func(t *testing.T) {
		wantStatus(t, admin.get("/console/admin/waves"), http.StatusOK)
		p := admin.submit("/console/admin/waves", url.Values{"number": {"1"}, "label": {"Baseline"}, "start": {"2026-01-01"}, "end": {"2026-03-31"}})
		wantStatus(t, p, http.StatusSeeOther)
		admin.get(p.location)
		p = admin.submit("/console/admin/waves", url.Values{"number": {"2"}, "label": {"Overlap"}, "start": {"2026-03-01"}, "end": {"2026-04-30"}})
		if p.status != http.StatusConflict || !strings.Contains(p.body, "overlaps wave 1") {
			t.Fatalf("overlap: %d", p.status)
		}
		admin.get("/console/admin/waves/1/edit")
		p = admin.submit("/console/admin/waves/1", url.Values{"label": {"Start"}, "start": {"2026-01-01"}, "end": {"2026-02-28"}})
		wantStatus(t, p, http.StatusSeeOther)
		if !strings.Contains(admin.get("/console/admin/waves").body, "<td>Start</td>") {
			t.Fatal("the wave was not updated")
		}
	})
	t.Run("Assignments", func(t *testing.T) {
		e.person(study.RoleSupervisor, "SUP-2")
		admin.get("/console/admin/assignments")
		wantStatus(t, admin.submit("/console/admin/assignments", url.Values{"supervisor": {"SUP-2"}, "navigator": {"PN-D"}}), http.StatusSeeOther)
		if !strings.Contains(admin.get("/console/admin/assignments?supervisor=SUP-2").body, "<td>PN-D</td>") {
			t.Fatal("the assignment is not listed")
		}
		wantStatus(t, admin.submit("/console/admin/assignments/remove", url.Values{"supervisor": {"SUP-2"}, "navigator": {"PN-D"}}), http.StatusSeeOther)
		if list, _, _ := e.db.ListAssignments(ctx, 0, "", "SUP-2"); len(list) != 0 {
			t.Fatal("not removed")
		}
	})
}
