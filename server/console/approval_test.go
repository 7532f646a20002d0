package console_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/study"
)

// browserDevice returns the public id of the person's newest console
// session.
func (e *env) browserDevice(code string) string {
	e.t.Helper()
	devices, _, err := e.db.ListDevices(context.Background(), 0, "", code)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, d := range devices { // newest first
		if d.Kind == study.KindBrowser {
			return d.PublicID
		}
	}
	e.t.Fatalf("%s has no console session", code)
	return ""
}

// TestFirstSetupNeedsApproval: a person who already has a phone and
// sets up the console with a code an administrator issued gets a session
// that waits for the phone's approval, as a new phone would, and sees
// nothing until then; approved, it works; denied, it ends. A later
// sign-in with the passphrase needs no approval, and neither does a
// setup with the code of an account reset.
func TestFirstSetupNeedsApproval(t *testing.T) {
	e := newEnv(t, server.Config{})
	ctx := context.Background()
	phone := e.phone(study.RoleSupervisor, "SUP-1")
	if phone.Pending {
		t.Fatal("a first device waits for approval")
	}

	desk := e.browser()
	if p := desk.setup(e.person(study.RoleSupervisor, "SUP-1")); p.status != http.StatusSeeOther {
		t.Fatalf("setup: %d %.300s", p.status, p.body)
	}
	session := e.browserDevice("SUP-1")
	t.Run("ErrWaiting", func(t *testing.T) {
		p := desk.get("/console/inbox")
		wantStatus(t, p, http.StatusForbidden)
		if !strings.Contains(p.body, "Waiting for approval") || !strings.Contains(p.body, "diary device approve "+session) {
			t.Fatalf("the waiting page: %.1500s", p.body)
		}
		if strings.Contains(p.body, `href="/console/inbox"`) {
			t.Fatal("a waiting session is offered the inbox")
		}
		wantStatus(t, desk.get("/console/account"), http.StatusForbidden)
		wantStatus(t, desk.get("/console/events"), http.StatusForbidden)
		desk.get("/console/inbox")
		wantStatus(t, desk.submit("/console/account/devices/"+phone.Device+"/revoke", url.Values{}), http.StatusForbidden)
		if _, err := e.db.Authenticate(ctx, phone.token); err != nil {
			t.Fatalf("a waiting session revoked the phone: %v", err)
		}
		// The phone sees the request at its next sync.
		waiting, n, err := e.db.DevicesAwaitingApproval(ctx, phone.UserID, 10)
		if err != nil || n != 1 || waiting[0].PublicID != session || waiting[0].Kind != study.KindBrowser {
			t.Fatalf("awaiting approval: %v (%d) %v", waiting, n, err)
		}
	})
	t.Run("OKApproved", func(t *testing.T) {
		if _, _, err := e.db.ApproveDevice(ctx, phone.Identity, session); err != nil {
			t.Fatal(err)
		}
		wantStatus(t, desk.get("/console/inbox"), http.StatusOK)
	})
	t.Run("OKPassphraseNeedsNoApproval", func(t *testing.T) {
		other := e.browser()
		other.get("/console/signin")
		p := other.submit("/console/signin", url.Values{"study_code": {"SUP-1"}, "passphrase": {testPassphrase}})
		if p.status != http.StatusSeeOther || p.location != "/console/" {
			t.Fatalf("sign-in: %d %q", p.status, p.location)
		}
		wantStatus(t, other.get("/console/inbox"), http.StatusOK)
	})
	t.Run("OKDenied", func(t *testing.T) {
		stranger := e.browser()
		stranger.setup(e.person(study.RoleSupervisor, "SUP-1"))
		id := e.browserDevice("SUP-1")
		if _, err := e.db.DenyDevice(ctx, phone.Identity, id); err != nil {
			t.Fatal(err)
		}
		if p := stranger.get("/console/inbox"); p.location != "/console/signin?ended=revoked" {
			t.Fatalf("a denied session: %d %q", p.status, p.location)
		}
	})
	t.Run("OKApprovedFromTheConsole", func(t *testing.T) {
		// The person approves a new browser from a browser of theirs.
		laptop := e.browser()
		laptop.setup(e.person(study.RoleSupervisor, "SUP-1"))
		id := e.browserDevice("SUP-1")
		desk.get("/console/account")
		if r := desk.submit("/console/account/devices/"+id+"/approve", url.Values{}); r.status != http.StatusSeeOther {
			t.Fatalf("approve: %d %.300s", r.status, r.body)
		}
		wantStatus(t, laptop.get("/console/inbox"), http.StatusOK)
		// Someone else's device is not found.
		nav := e.phone(study.RoleNavigator, "PN-A")
		desk.get("/console/account")
		wantStatus(t, desk.submit("/console/account/devices/"+nav.Device+"/revoke", url.Values{}), http.StatusNotFound)
	})
	t.Run("OKResetCode", func(t *testing.T) {
		admin := study.NewContext(ctx, &study.Identity{StudyCode: "ADMIN", Role: study.RoleAdmin})
		res, err := e.db.ResetUser(admin, "SUP-1", 0)
		if err != nil {
			t.Fatal(err)
		}
		fresh := e.browser()
		fresh.setup(res.Code)
		wantStatus(t, fresh.get("/console/inbox"), http.StatusOK)
	})
}

// TestSetupCountsAgainstTheEnrolmentLimit: a wrong code typed into the
// console's first sign-in is a wrong enrolment code, counted against the
// same limit per client address as the API's Enroll; behind a trusted
// proxy the address is the one it forwards, from anyone else the header
// is ignored.
func TestSetupCountsAgainstTheEnrolmentLimit(t *testing.T) {
	e := newEnv(t, server.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	ctx := context.Background()
	wrong := func(b *browser, from string) page {
		t.Helper()
		b.get("/console/setup")
		form := url.Values{"code": {"AAAAA-AAAAA"}, "passphrase": {testPassphrase}, "passphrase2": {testPassphrase}, "csrf": {b.csrf()}}
		req, _ := http.NewRequest(http.MethodPost, e.url+"/console/setup", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		return b.do(req)
	}
	b := e.browser()
	for i := range study.DefaultEnrollLimit.Burst {
		if p := wrong(b, "203.0.113.7"); p.status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d %.300s", i+1, p.status, p.body)
		}
	}
	p := wrong(b, "203.0.113.7")
	wantStatus(t, p, http.StatusTooManyRequests)
	// The API's Enroll from the same address is out of attempts too.
	_, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, e.url, connect.WithInterceptors(forwardedFor("203.0.113.7"))).
		Enroll(ctx, &diaryv1.EnrollRequest{Code: e.person(study.RoleNavigator, "PN-B"), DeviceName: "phone"})
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("Enroll from the address the console slowed: %v, want resource_exhausted", err)
	}
	// Another client behind the proxy is not slowed.
	if p := wrong(b, "198.51.100.9"); p.status != http.StatusUnauthorized {
		t.Fatalf("a wrong code from another address: %d", p.status)
	}
}

// forwardedFor sets X-Forwarded-For on every request, as a reverse proxy
// in front of the server would.
func forwardedFor(addr string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("X-Forwarded-For", addr)
			return next(ctx, req)
		}
	}
}

// TestLiveInboxSharesTheStreamCaps: a console's live inbox takes a slot
// of the server's cap on long-lived streams, beside the phones'
// Subscribe streams, so that neither kind can crowd out the server.
func TestLiveInboxSharesTheStreamCaps(t *testing.T) {
	e := newEnv(t, server.Config{MaxStreams: 1})
	sup := e.signedIn(study.RoleSupervisor, "SUP-1")
	phone := e.approvedPhone(sup, "SUP-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nextEvent(t, sup.events(ctx), "ready")
	hc := &http.Client{Transport: bearerTransport(phone.token)}
	stream, err := diaryv1connect.NewSyncServiceClient(hc, e.url).Subscribe(ctx, &diaryv1.SubscribeRequest{})
	if err == nil {
		for stream.Receive() {
			t.Fatal("the phone's stream was opened beside the live inbox on a server that takes one")
		}
		err = stream.Err()
	}
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("Subscribe while the live inbox holds the only slot: %v, want resource_exhausted", err)
	}
}

// bearerTransport sends every request with the device token.
type bearerTransport string

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+string(b))
	return http.DefaultTransport.RoundTrip(r)
}
