package main

import (
	"archive/zip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/diarysync/diarysync/client"
	goqr "github.com/piglig/go-qr"
)

// The console's browser tests drive a real Chromium (Debian's package:
// apt-get install chromium) against a real diaryd. They skip, saying so,
// when Chromium is absent; the accessibility checks need axe-core
// (npm install axe-core@4.14.1), found through $DIARYSYNC_AXE, and skip
// without it. With DIARYSYNC_REQUIRE_BROWSER=1, as .ci/run sets, either
// missing fails the tests instead.
var consoleScreenshots = flag.Bool("console.screenshots", false, "write screenshots of the console's main pages to docs/console/")

func requireBrowser() bool { return os.Getenv("DIARYSYNC_REQUIRE_BROWSER") == "1" }

// chromiumPath finds Chromium: $DIARYSYNC_CHROMIUM, or the usual names.
func chromiumPath() string {
	if p := os.Getenv("DIARYSYNC_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// chrome is one headless Chromium; each person gets a browser context
// of their own in it (their own cookies), as if on their own computer.
type chrome struct {
	t    *testing.T
	root context.Context
	axe  string // axe-core's source, "" when absent

	mu      sync.Mutex
	checked map[string]bool // pages the accessibility check passed
}

func startChrome(t *testing.T) *chrome {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		if requireBrowser() {
			t.Fatal("Chromium is not installed (apt-get install chromium), and DIARYSYNC_REQUIRE_BROWSER=1")
		}
		t.Skip("Chromium is not installed (apt-get install chromium): the console's browser tests skip")
	}
	c := &chrome{t: t, checked: map[string]bool{}}
	if p := os.Getenv("DIARYSYNC_AXE"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("DIARYSYNC_AXE: %v", err)
		}
		c.axe = string(b)
	} else if requireBrowser() {
		t.Fatal("DIARYSYNC_AXE does not name axe-core's axe.min.js, and DIARYSYNC_REQUIRE_BROWSER=1")
	} else {
		t.Log("DIARYSYNC_AXE is not set (npm install axe-core@4.14.1; point it at node_modules/axe-core/axe.min.js): the accessibility checks skip")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelRoot(); cancelAlloc() })
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("cannot start Chromium (%s): %v", path, err)
	}
	c.root = root
	return c
}

// tab is one person's browser window.
type tab struct {
	t    *testing.T
	c    *chrome
	ctx  context.Context
	base string
	dir  string // where downloads go
}

func (c *chrome) person(t *testing.T, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(c.root, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, c: c, ctx: ctx, base: base, dir: t.TempDir()}
	// The first run opens the tab, which lives as long as the context of
	// that run: it gets no timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("cannot open a tab: %v", err)
	}
	tb.do(desktop)
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: tb.dir, BrowserContextID: chromedp.FromContext(ctx).BrowserContextID,
	}); err != nil {
		t.Fatalf("cannot allow downloads: %v", err)
	}
	return tb
}

// desktop is the viewport of a laptop screen, which screenshots use.
var desktop = chromedp.EmulateViewport(1280, 900)

// do runs actions in the tab, failing the test on an error.
func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("in the browser: %v\nthe page says: %.600s", err, tb.textNoFail())
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string, opts ...chromedp.EvaluateOption) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		tb.t.Fatalf("in the browser, %.80s: %v\nthe page says: %.600s", expr, err, tb.textNoFail())
	}
	return v
}

func (tb *tab) textNoFail() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

// open goes to a path of the console, waits for the page and checks
// its accessibility.
func (tb *tab) open(path string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(tb.base+path), chromedp.WaitReady(chromedp.CSS("main")))
	tb.a11y()
}

// submit clicks a button (or link) and waits for the next page.
func (tb *tab) submit(button string) {
	tb.t.Helper()
	tb.markPage()
	tb.do(chromedp.Click(chromedp.CSS(button)))
	tb.waitNewPage()
	tb.a11y()
}

// markPage marks the document, so that waitNewPage sees it replaced.
func (tb *tab) markPage() {
	tb.t.Helper()
	eval[string](tb, `document.documentElement.dataset.old = "1"`)
}

// waitNewPage waits until the marked document was replaced by a loaded
// one. Evaluating while a navigation destroys the old document fails;
// that is retried.
func (tb *tab) waitNewPage() {
	tb.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ready, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.dataset.old === undefined && document.readyState === "complete" && !!document.querySelector("main")`))
		cancel()
		if err == nil && ready {
			return
		}
	}
	tb.t.Fatalf("no new page after 60 s; the page says: %.600s", tb.textNoFail())
}

func (tb *tab) fill(sel, value string) {
	tb.t.Helper()
	q, _ := json.Marshal(sel)
	eval[bool](tb, `(document.querySelector(`+string(q)+`).value = "") === ""`)
	tb.do(chromedp.SendKeys(chromedp.CSS(sel), value))
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		tb.t.Fatalf("in the browser, the text of %s: %v", sel, err)
	}
	return s
}

func (tb *tab) path() string {
	tb.t.Helper()
	return eval[string](tb, `location.pathname + location.search`)
}

// wantText fails unless the page's main content holds every want.
func (tb *tab) wantText(want ...string) {
	tb.t.Helper()
	got := tb.text("main")
	for _, w := range want {
		if !strings.Contains(got, w) {
			tb.t.Fatalf("the page (%s) does not say %q:\n%.1500s", tb.path(), w, got)
		}
	}
}

func (tb *tab) wantNoText(not ...string) {
	tb.t.Helper()
	got := tb.text("main")
	for _, w := range not {
		if strings.Contains(got, w) {
			tb.t.Fatalf("the page (%s) shows %q:\n%.1500s", tb.path(), w, got)
		}
	}
}

// axeResult is what the check keeps of axe-core's answer.
type axeResult struct {
	Violations []struct {
		ID     string `json:"id"`
		Impact string `json:"impact"`
		Help   string `json:"help"`
		Nodes  []struct {
			Target []any  `json:"target"`
			HTML   string `json:"html"`
		} `json:"nodes"`
	} `json:"violations"`
}

var idsInPath = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// a11y runs axe-core on the page and fails on any serious or critical
// violation. Each page (its path, ids left out, and its heading) is
// checked once.
func (tb *tab) a11y() {
	tb.t.Helper()
	if tb.c.axe == "" {
		return
	}
	key := eval[string](tb, `location.pathname + " " + (document.querySelector("h1") ? document.querySelector("h1").innerText : "")`)
	key = idsInPath.ReplaceAllString(key, "ID")
	tb.c.mu.Lock()
	done := tb.c.checked[key]
	tb.c.mu.Unlock()
	if done {
		return
	}
	if !eval[bool](tb, `typeof axe !== "undefined"`) {
		eval[bool](tb, tb.c.axe+"\n;true")
	}
	res := eval[axeResult](tb, `axe.run(document, {resultTypes: ["violations"]}).then(r => ({violations: r.violations}))`, chromedp.EvalAwaitPromise)
	var bad []string
	for _, v := range res.Violations {
		if v.Impact != "serious" && v.Impact != "critical" {
			continue
		}
		for _, n := range v.Nodes {
			bad = append(bad, fmt.Sprintf("%s (%s): %s — %v %s", v.ID, v.Impact, v.Help, n.Target, n.HTML))
		}
	}
	if len(bad) > 0 {
		tb.t.Fatalf("accessibility of %s: %d serious or critical violations:\n%s", key, len(bad), strings.Join(bad, "\n"))
	}
	tb.c.mu.Lock()
	tb.c.checked[key] = true
	tb.c.mu.Unlock()
}

// shot saves a screenshot under docs/console/ when -console.screenshots
// is given.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	if !*consoleScreenshots {
		return
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// demo is a diaryd serving the demo study, and its one-time codes.
type demo struct {
	*process
	codes map[string]string
}

var demoCodeLine = regexp.MustCompile(`(?m)^\s+([A-Z0-9-]+)\s+(?:navigator|supervisor|researcher)\s+([A-Z0-9]{5}-[A-Z0-9]{5})\s*$`)

func startDemo(t *testing.T, extra ...string) *demo {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	p := startDiaryd(t, data, append([]string{"--demo"}, extra...)...)
	d := &demo{process: p, codes: map[string]string{"ADMIN": readAdminCode(t, data)}}
	// Standard output arrives through a pipe of its own: wait for it.
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ms := demoCodeLine.FindAllStringSubmatch(p.stdout.String(), -1); len(ms) == 5 {
			for _, m := range ms {
				d.codes[m[1]] = m[2]
			}
			return d
		}
	}
	t.Fatalf("diaryd --demo did not print five codes:\n%s", p.stdout.String())
	return nil
}

// phone is a navigator's (or anyone's) replica enrolled with the demo.
func (d *demo) phone(t *testing.T, code string) *client.Client {
	t.Helper()
	c, err := client.Open(context.Background(), filepath.Join(t.TempDir(), "replica.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Enroll(context.Background(), d.url, code, "phone"); err != nil {
		t.Fatal(err)
	}
	return c
}

func mustSync(t *testing.T, c *client.Client) {
	t.Helper()
	if err := c.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

const (
	supPassphrase = "tea at four on thursdays"
	resPassphrase = "waves of interviews all year"
	admPassphrase = "the study runs on paper too"
)

// setup signs in for the first time with a code.
func (tb *tab) setup(code, passphrase string) {
	tb.t.Helper()
	tb.open("/console/setup")
	tb.fill("#code", code)
	tb.fill("#passphrase", passphrase)
	tb.fill("#passphrase2", passphrase)
	tb.submit(`form[action="/console/setup"] button[type=submit]`)
}

// TestConsoleInBrowser runs the console's scenarios in Chromium against
// a diaryd serving the demo study.
func TestConsoleInBrowser(t *testing.T) {
	ch := startChrome(t)
	d := startDemo(t)
	ctx := context.Background()

	// PN-A writes on their phone: one entry shared with the supervisor
	// (and research), one private.
	pnA := d.phone(t, d.codes["PN-A"])
	shared, err := pnA.Create(ctx, client.Draft{Title: "First shift at the day centre", Body: "Met J. outside the hostel.\n\nWe called the council together.", Tags: []string{"housing"}, ShareSupervisor: true, ShareResearch: true})
	if err != nil {
		t.Fatal(err)
	}
	private, err := pnA.Create(ctx, client.Draft{Title: "Something just for me", Body: "Not for anyone else."})
	if err != nil {
		t.Fatal(err)
	}
	pnB := d.phone(t, d.codes["PN-B"])
	if _, err := pnB.Create(ctx, client.Draft{Title: "Court with K.", Body: "A long wait, then ten minutes.", Tags: []string{"court"}, ShareSupervisor: true}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, pnA)
	mustSync(t, pnB)

	admin := ch.person(t, d.url)
	var pnD *client.Client
	var pnDEntry string
	t.Run("AdministratorIssuesAScannableCode", func(t *testing.T) {
		admin.t = t
		admin.setup(d.codes["ADMIN"], admPassphrase)
		if got := admin.path(); got != "/console/admin/users" {
			t.Fatalf("after the first sign-in: %s", got)
		}
		admin.fill("#u-code", "PN-D")
		eval[bool](admin, `(document.querySelector("#u-role").value = "1") === "1"`)
		admin.fill("#u-name", "Navigator D")
		admin.submit(`form[action="/console/admin/users"] button[type=submit]`)
		admin.wantText("Created PN-D", "PN-D")
		admin.shot("admin-users")

		admin.open("/console/admin/codes?user=PN-D")
		admin.submit(`form[action="/console/admin/codes"] button[type=submit]`)
		code := strings.TrimSpace(admin.text("#issued-code"))
		svg, err := chromedp.Run(admin.ctx, chromedp.OuterHTML(chromedp.CSS("svg.qr")))
		if err != nil {
			t.Fatal(err)
		}
		link := decodeQR(t, svg)
		server, linkCode, err := client.ParseEnrolLink(link)
		if err != nil || server != d.url || linkCode != code {
			t.Fatalf("the QR code holds %q: server %q code %q (%v); the page shows %q", link, server, linkCode, err, code)
		}
		admin.shot("admin-codes")
		admin.phoneLayout(func() { admin.open("/console/admin/users") })

		// A phone profile enrols with what it scanned.
		pnD = d.phone(t, linkCode)
		p, _ := pnD.Profile()
		if p.StudyCode != "PN-D" {
			t.Fatalf("the phone enrolled as %q", p.StudyCode)
		}
		id, err := pnD.Create(ctx, client.Draft{Title: "Not SUP-1's to read", Body: "PN-D is not assigned to SUP-1.", ShareSupervisor: true})
		if err != nil {
			t.Fatal(err)
		}
		mustSync(t, pnD)
		pnDEntry = id.String()
		admin.open("/console/admin/devices?user=PN-D")
		admin.wantText("PN-D", "app", "phone")
		for _, p := range []string{"/console/admin/assignments", "/console/admin/waves", "/console/admin/waves/2/edit", "/console/admin/erase",
			"/console/admin/audit", "/console/admin/audit?action=device.", "/console/account", "/console/admin/users/PN-D/deactivate", "/console/admin/users/RES-1/reset"} {
			admin.open(p)
		}
		// The confirmation step of an erasure, left without erasing.
		admin.open("/console/admin/erase")
		admin.fill("#e-nav", "PN-D")
		admin.submit(`form:has(#e-nav) button[type=submit]`)
		admin.wantText("Erase every entry of PN-D?", "Type PN-D to confirm")
		admin.submit(`a[href="/console/admin/erase"]:not(nav a)`)
	})

	sup := ch.person(t, d.url)
	t.Run("SupervisorReadsAndLeavesFeedback", func(t *testing.T) {
		sup.t = t
		sup.setup(d.codes["SUP-1"], supPassphrase)
		if got := sup.path(); got != "/console/inbox" {
			t.Fatalf("after the first sign-in: %s", got)
		}
		sup.wantText("First shift at the day centre", "Court with K.")
		sup.wantNoText("Something just for me")

		sup.submit(`form.signout button`)
		sup.wantText("You signed out")
		sup.signInByKeyboard("SUP-1", supPassphrase)
		if got := sup.path(); got != "/console/inbox" {
			t.Fatalf("after signing in again: %s", got)
		}
		sup.shot("inbox")
		sup.phoneLayout(func() { sup.open("/console/inbox") })

		sup.open("/console/entries/" + shared.String())
		sup.wantText("Met J. outside the hostel.", "We called the council together.", "PN-A", "housing")
		sup.fill("#fb-body", "Thank you for writing this up. Let's talk about the council call on Thursday.")
		sup.submit(`form[action$="/feedback"] button[type=submit]`)
		sup.wantText("Your feedback was saved", "Let's talk about the council call on Thursday.")
		sup.shot("entry")
		sup.submit(`a[href$="/edit"]`)
		sup.wantText("Edit your feedback")
		sup.submit(`a[href$="#feedback"]`)

		// The navigator's phone receives it on its next sync.
		mustSync(t, pnA)
		e, err := pnA.Get(ctx, shared)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Feedback) != 1 || e.Feedback[0].Author != "SUP-1" || !strings.Contains(e.Feedback[0].Body, "council call on Thursday") {
			t.Fatalf("the navigator's phone has feedback %+v", e.Feedback)
		}

		// Another navigator's entry, or a private one, by URL: 404.
		for _, id := range []string{pnDEntry, private.String()} {
			resp, err := chromedp.Run(sup.ctx, chromedp.NavigateResponse(d.url+"/console/entries/"+id))
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != 404 {
				t.Fatalf("another navigator's or a private entry by URL: status %d", resp.Status)
			}
			sup.wantText("no such page")
			sup.wantNoText("Not SUP-1's to read", "Something just for me")
			sup.a11y()
		}
	})

	t.Run("UnsharedEntryLeavesTheOpenInbox", func(t *testing.T) {
		sup.t = t
		sup.open("/console/inbox")
		sup.poll(`document.getElementById("live-status").textContent.indexOf("Live") >= 0`)
		eval[bool](sup, `window.stillTheSamePage = true`)
		if err := pnA.SetSharing(ctx, shared, false, true); err != nil {
			t.Fatal(err)
		}
		mustSync(t, pnA)
		sup.poll(`!document.getElementById("inbox-list").innerText.includes("First shift at the day centre")`)
		if !eval[bool](sup, `window.stillTheSamePage === true`) {
			t.Fatal("the page was reloaded")
		}
		sup.wantText("Court with K.")
		// And it comes back when shared again.
		if err := pnA.SetSharing(ctx, shared, true, true); err != nil {
			t.Fatal(err)
		}
		mustSync(t, pnA)
		sup.poll(`document.getElementById("inbox-list").innerText.includes("First shift at the day centre")`)
	})

	t.Run("FormWithoutTokenIsRefused", func(t *testing.T) {
		sup.t = t
		sup.open("/console/entries/" + shared.String())
		eval[bool](sup, `document.querySelector('form[action$="/feedback"] input[name=csrf]').remove(); true`)
		sup.fill("#fb-body", "Posted without a token")
		sup.submit(`form[action$="/feedback"] button[type=submit]`)
		sup.wantText("did not come from this console")
		mustSync(t, pnA)
		if e, _ := pnA.Get(ctx, shared); len(e.Feedback) != 1 {
			t.Fatalf("a form without its token wrote feedback: %+v", e.Feedback)
		}
	})

	t.Run("ANewBrowserWaitsForApproval", func(t *testing.T) {
		// SUP-1 has a console session, so a first sign-in with a code an
		// administrator issued waits for SUP-1's approval.
		sup.t, admin.t = t, t
		admin.open("/console/admin/codes?user=SUP-1")
		admin.submit(`form[action="/console/admin/codes"] button[type=submit]`)
		code := strings.TrimSpace(admin.text("#issued-code"))
		laptop := ch.person(t, d.url)
		laptop.setup(code, supPassphrase)
		laptop.wantText("Waiting for approval", "diary device approve")
		laptop.wantNoText("First shift at the day centre")
		sup.open("/console/account")
		sup.wantText("waiting for approval")
		sup.submit(`form[action$="/approve"] button[type=submit]`)
		sup.wantText("The device was approved")
		laptop.open("/console/inbox")
		laptop.wantText("First shift at the day centre")
		laptop.submit(`form.signout button`)
		laptop.wantText("You signed out")
	})

	t.Run("RevokedSessionEndsAtItsNextRequest", func(t *testing.T) {
		sup.t, admin.t = t, t
		admin.open("/console/admin/devices?user=SUP-1")
		admin.wantText("browser")
		admin.submit(`a[href$="/revoke"]`)
		admin.wantText("Revoke device")
		admin.submit(`form[action$="/revoke"] button[type=submit]`)
		admin.wantText("Revoked device")
		sup.open("/console/inbox")
		if got := sup.path(); got != "/console/signin?ended=revoked" {
			t.Fatalf("the revoked session went to %s", got)
		}
		sup.wantText("revoked from the device list")
	})

	t.Run("WrongPassphrasesAreSlowed", func(t *testing.T) {
		sup.t = t
		for i := range 5 {
			sup.open("/console/signin")
			sup.fill("#study_code", "SUP-1")
			sup.fill("#passphrase", "not my passphrase "+strconv.Itoa(i))
			sup.submit(`form[action="/console/signin"] button[type=submit]`)
			sup.wantText("study code or the passphrase is wrong")
		}
		// Past the free attempts each wrong one doubles the wait (from a
		// second); a page in a slow browser can take longer than the
		// first waits, so wrong passphrases go on until one is slowed,
		// which must happen while the wait is still short.
		slowed := false
		for i := 5; i < 12 && !slowed; i++ {
			sup.open("/console/signin")
			sup.fill("#study_code", "SUP-1")
			sup.fill("#passphrase", "not my passphrase "+strconv.Itoa(i))
			sup.submit(`form[action="/console/signin"] button[type=submit]`)
			slowed = strings.Contains(sup.textNoFail(), "oo many wrong attempts: try again in")
		}
		if !slowed {
			t.Fatal("twelve wrong passphrases in a row were never slowed")
		}
		// That the right passphrase waits as well is checked with a clock
		// the test moves, in server/console (TestSignIn).
	})

	res := ch.person(t, d.url)
	t.Cleanup(func() {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if len(ch.checked) > 0 {
			var pages []string
			for p := range ch.checked {
				pages = append(pages, p)
			}
			slices.Sort(pages)
			t.Logf("the accessibility check passed on %d pages:\n%s", len(pages), strings.Join(pages, "\n"))
		}
	})
	t.Run("ResearcherDownloadsAValidProject", func(t *testing.T) {
		res.t = t
		res.setup(d.codes["RES-1"], resPassphrase)
		if got := res.path(); got != "/console/export" {
			t.Fatalf("after the first sign-in: %s", got)
		}
		res.do(chromedp.Click(chromedp.CSS("#wave-2")), chromedp.Click(chromedp.CSS("#format-3")))
		res.submit(`form[action="/console/export/preview"] button[type=submit]:not([formaction])`)
		if n := strings.TrimSpace(res.text("#preview-entries")); n != "1" {
			t.Fatalf("the preview holds %s entries, want 1", n)
		}
		res.wantText("not shared for research")
		res.shot("export")
		res.do(chromedp.Click(chromedp.CSS("#download")))
		file := res.waitDownload(".qdpx")
		validateQDPX(t, file)
		res.open("/console/export")
		res.wantText("Earlier exports", "RES-1", "qdpx")
	})
}

// signInByKeyboard signs in without the mouse: Tab to each field, type,
// Enter; and checks that focus is visible on the way.
func (tb *tab) signInByKeyboard(code, passphrase string) {
	tb.t.Helper()
	tb.open("/console/signin")
	tb.do(chromedp.KeyEvent(kb.Tab))
	if first := eval[string](tb, `document.activeElement.className`); first != "skip" {
		tb.t.Fatalf("the first Tab reaches %q, not the skip link", first)
	}
	if outline := eval[string](tb, `getComputedStyle(document.activeElement).outlineStyle`); outline == "none" || outline == "" {
		tb.t.Fatal("the focused skip link has no visible outline")
	}
	for i := 0; ; i++ {
		tb.do(chromedp.KeyEvent(kb.Tab))
		if eval[string](tb, `document.activeElement.id`) == "study_code" {
			break
		}
		if i > 5 {
			tb.t.Fatal("Tab never reaches the study code field")
		}
	}
	tb.do(chromedp.KeyEvent(code), chromedp.KeyEvent(kb.Tab))
	if next := eval[string](tb, `document.activeElement.id`); next != "passphrase" {
		tb.t.Fatalf("Tab after the study code reaches %q", next)
	}
	tb.markPage()
	tb.do(chromedp.KeyEvent(passphrase), chromedp.KeyEvent(kb.Enter))
	tb.waitNewPage()
	tb.a11y()
}

// poll waits until a JavaScript condition holds on the page.
func (tb *tab) poll(cond string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		tb.t.Fatalf("waiting for %s: %v\nthe page says: %.800s", cond, err, tb.textNoFail())
	}
}

// phoneLayout shows a page as on a phone (390 px wide) and checks it
// needs no sideways scrolling.
func (tb *tab) phoneLayout(show func()) {
	tb.t.Helper()
	tb.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(3), chromedp.EmulateMobile))
	defer tb.do(desktop)
	show()
	if eval[bool](tb, `document.documentElement.scrollWidth > window.innerWidth + 1`) {
		tb.t.Fatalf("%s is wider than a phone's screen", tb.path())
	}
}

// waitDownload waits for a finished download with the extension.
func (tb *tab) waitDownload(ext string) string {
	tb.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(tb.dir, "*"+ext))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
				return f
			}
		}
	}
	files, _ := os.ReadDir(tb.dir)
	tb.t.Fatalf("no %s download; the directory holds %v", ext, files)
	return ""
}

// validateQDPX checks project.qde of a downloaded project against the
// REFI-QDA schema with xmllint.
func validateQDPX(t *testing.T, file string) {
	t.Helper()
	zr, err := zip.OpenReader(file)
	if err != nil {
		t.Fatalf("the download is not a .qdpx (zip): %v", err)
	}
	defer zr.Close()
	qde := filepath.Join(t.TempDir(), "project.qde")
	found := false
	for _, f := range zr.File {
		if f.Name != "project.qde" {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(qde)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := out.ReadFrom(rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
		out.Close()
		found = true
	}
	if !found {
		t.Fatal("the .qdpx holds no project.qde")
	}
	schema := os.Getenv("DIARYSYNC_REFIQDA_XSD")
	if schema == "" {
		schema = filepath.Join("..", "..", "..", "shared", "refi-qda", "Project.xsd")
	}
	xmllint, err := exec.LookPath("xmllint")
	_, serr := os.Stat(schema)
	if err != nil || serr != nil {
		if requireBrowser() {
			t.Fatalf("xmllint (%v) or the REFI-QDA schema %s (%v) is missing", err, schema, serr)
		}
		t.Skipf("xmllint or the REFI-QDA schema (%s) is missing: the downloaded project is not validated", schema)
	}
	if out, err := exec.Command(xmllint, "--noout", "--schema", schema, qde).CombinedOutput(); err != nil {
		t.Fatalf("the downloaded project.qde does not validate: %v\n%s", err, out)
	}
}

var (
	viewBox = regexp.MustCompile(`viewBox="0 0 (\d+) (\d+)"`)
	pathD   = regexp.MustCompile(` d="([^"]*)"`)
	qrRun   = regexp.MustCompile(`M(\d+) (\d+)h(\d+)v1h-\d+z`)
)

// decodeQR reads the QR code of the codes page as a phone's camera
// would: the SVG's squares drawn as pixels, then decoded.
func decodeQR(t *testing.T, svg string) string {
	t.Helper()
	vb := viewBox.FindStringSubmatch(svg)
	d := pathD.FindStringSubmatch(svg)
	if vb == nil || d == nil {
		t.Fatalf("not a QR code SVG: %.300s", svg)
	}
	n, _ := strconv.Atoi(vb[1])
	const scale = 4
	img := image.NewGray(image.Rect(0, 0, n*scale, n*scale))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for _, m := range qrRun.FindAllStringSubmatch(d[1], -1) {
		x, _ := strconv.Atoi(m[1])
		y, _ := strconv.Atoi(m[2])
		w, _ := strconv.Atoi(m[3])
		for py := y * scale; py < (y+1)*scale; py++ {
			for px := x * scale; px < (x+w)*scale; px++ {
				img.SetGray(px, py, color.Gray{})
			}
		}
	}
	text, err := goqr.Decode(img)
	if err != nil {
		t.Fatalf("the QR code does not decode: %v", err)
	}
	return text
}

// TestConsoleIdleInBrowser: a session left alone past the idle timeout
// is signed out, and the sign-in page says why.
func TestConsoleIdleInBrowser(t *testing.T) {
	ch := startChrome(t)
	d := startDemo(t, "--console-idle-timeout", "2s")
	sup := ch.person(t, d.url)
	sup.setup(d.codes["SUP-1"], supPassphrase)
	sup.wantText("Inbox")
	time.Sleep(3 * time.Second) // the idle timeout is a wall-clock time in a separate process
	sup.open("/console/entries/00000000-0000-7000-8000-000000000000")
	if got := sup.path(); got != "/console/signin?ended=idle" {
		t.Fatalf("after the idle timeout: %s", got)
	}
	sup.wantText("signed out after a while without using the console")
}
