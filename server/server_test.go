package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// protocols are the wire protocols every RPC is tested over: phones speak
// Connect, and gRPC tools (grpcurl, other languages' stubs) speak gRPC.
var protocols = []struct {
	name string
	opts []connect.ClientOption
}{
	{"Connect", nil},
	{"gRPC", []connect.ClientOption{connect.WithGRPC()}},
}

// testServer is the server on loopback over TLS with HTTP/2, the way
// connect-go's own tests run it, so that gRPC works too.
type testServer struct {
	DB     *storetest.Store
	Server *Server
	URL    string
	http   *httptest.Server

	mu     sync.Mutex
	protos map[string]string // request path → protocol of its last request
}

// newTestServer starts a server for cfg (on a fresh store of the engine
// under test if cfg.Store is nil) and stops it when the test ends.
func newTestServer(tb testing.TB, cfg Config) *testServer {
	tb.Helper()
	if cfg.Store == nil {
		cfg.Store = MustOpenDB(tb)
	}
	db, _ := cfg.Store.(*storetest.Store)
	if db != nil {
		// The server sees the engine's own store, and so what else it
		// implements (study.CommitWatcher).
		cfg.Store = db.Store
	}
	s := New(cfg)
	ts := &testServer{DB: db, Server: s, protos: map[string]string{}}
	ts.http = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.protos[r.URL.Path] = r.Proto
		ts.mu.Unlock()
		s.Handler().ServeHTTP(w, r)
	}))
	ts.http.EnableHTTP2 = true
	ts.http.StartTLS()
	ts.URL = ts.http.URL
	tb.Cleanup(func() {
		// Streams end only when drained; Close waits for them.
		s.Close()
		ts.http.Close()
	})
	return ts
}

// proto returns the HTTP protocol ("HTTP/2.0", "HTTP/1.1") of the last
// request for the procedure.
func (ts *testServer) proto(procedure string) string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.protos[procedure]
}

// http1Client returns an HTTP client that trusts the test server but
// speaks only HTTP/1.1, as some proxies and older phones do.
func (ts *testServer) http1Client() *http.Client {
	tr := ts.http.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig = tr.TLSClientConfig.Clone()
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP1(true)
	return &http.Client{Transport: tr}
}

// clients are the generated clients of every service, all sending one
// Authorization header.
type clients struct {
	sync     diaryv1connect.SyncServiceClient
	device   diaryv1connect.DeviceServiceClient
	admin    diaryv1connect.AdminServiceClient
	research diaryv1connect.ResearchServiceClient
}

// clients returns clients that send auth as the Authorization header
// ("" for none) over HTTP/2.
func (ts *testServer) clients(auth string, opts ...connect.ClientOption) *clients {
	return ts.clientsOver(ts.http.Client(), auth, opts...)
}

func (ts *testServer) clientsOver(hc *http.Client, auth string, opts ...connect.ClientOption) *clients {
	opts = append([]connect.ClientOption{connect.WithInterceptors(authHeader(auth))}, opts...)
	return &clients{
		sync:     diaryv1connect.NewSyncServiceClient(hc, ts.URL, opts...),
		device:   diaryv1connect.NewDeviceServiceClient(hc, ts.URL, opts...),
		admin:    diaryv1connect.NewAdminServiceClient(hc, ts.URL, opts...),
		research: diaryv1connect.NewResearchServiceClient(hc, ts.URL, opts...),
	}
}

// bearer returns the Authorization header value for a device token.
func bearer(token string) string { return "Bearer " + token }

// authHeader is a client interceptor that sets the Authorization header
// on every call, unary or streaming.
type authHeader string

func (a authHeader) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if a != "" {
			req.Header().Set("Authorization", string(a))
		}
		return next(ctx, req)
	}
}

func (a authHeader) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if a != "" {
			conn.RequestHeader().Set("Authorization", string(a))
		}
		return conn
	}
}

func (a authHeader) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// wantCode fails the test unless err carries the Connect code want (0 for
// no error).
func wantCode(tb testing.TB, err error, want connect.Code) {
	tb.Helper()
	if want == 0 {
		if err != nil {
			tb.Fatalf("got error %v, want success", err)
		}
		return
	}
	if got := connect.CodeOf(err); err == nil || got != want {
		tb.Fatalf("got %v (code %v), want code %v", err, connect.CodeOf(err), want)
	}
}

// writer makes changes as one device, stamped by the device's own clock.
type writer struct {
	TestDevice
	clock *syncengine.Clock
}

func newWriter(dev TestDevice) *writer {
	return &writer{TestDevice: dev, clock: syncengine.NewClock(nil)}
}

// change stamps c for entry as made on this device now.
func (w *writer) change(entry syncengine.EntryID, c syncengine.Change) *diaryv1.Change {
	c.Entry, c.Replica, c.Clock = entry, w.Replica, w.clock.Now()
	return wire.ChangeToProto(&c)
}

// newEntry returns a new entry id and the changes that create it with a
// title and body and the given sharing.
func (w *writer) newEntry(title, body string, shareSup, shareRes bool) (syncengine.EntryID, []*diaryv1.Change) {
	id := syncengine.NewEntryID()
	out := []*diaryv1.Change{
		w.change(id, syncengine.Change{Field: syncengine.FieldTitle, Text: title}),
		w.change(id, syncengine.Change{Field: syncengine.FieldBody, Text: body}),
	}
	if shareSup {
		out = append(out, w.change(id, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}))
	}
	if shareRes {
		out = append(out, w.change(id, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: true}))
	}
	return id, out
}

// mustPush pushes changes through the API and fails unless every one
// was applied.
func mustPush(tb testing.TB, c *clients, changes ...*diaryv1.Change) {
	tb.Helper()
	resp, err := c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: changes})
	if err != nil {
		tb.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
			tb.Fatalf("change %d: %v %v %q, want applied", i, r.GetOutcome(), r.GetReason(), r.GetMessage())
		}
	}
}

// pulled is what a reader learnt from pulling every page after a cursor.
type pulled struct {
	entries  map[string]*diaryv1.Entry
	removals map[string]diaryv1.RemovalReason
	cursor   uint64
}

// pullAll pulls every page after cursor. Each entry appears at most once
// after any cursor, so the last word on an id is the only one.
func pullAll(tb testing.TB, c *clients, cursor uint64) *pulled {
	tb.Helper()
	p := &pulled{entries: map[string]*diaryv1.Entry{}, removals: map[string]diaryv1.RemovalReason{}, cursor: cursor}
	for {
		resp, err := c.sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: p.cursor, PageSize: 1000})
		if err != nil {
			tb.Fatal(err)
		}
		for _, e := range resp.GetEntries() {
			if _, dup := p.entries[e.GetId()]; dup {
				tb.Fatalf("entry %s pulled twice after one cursor", e.GetId())
			}
			p.entries[e.GetId()] = e
		}
		for _, r := range resp.GetRemovals() {
			if _, dup := p.removals[r.GetEntryId()]; dup {
				tb.Fatalf("removal of %s pulled twice after one cursor", r.GetEntryId())
			}
			p.removals[r.GetEntryId()] = r.GetReason()
		}
		if resp.GetNextCursor() < p.cursor {
			tb.Fatalf("cursor went back from %d to %d", p.cursor, resp.GetNextCursor())
		}
		p.cursor = resp.GetNextCursor()
		if !resp.GetMore() {
			if resp.GetRemaining() != 0 {
				tb.Fatalf("last page says %d remaining", resp.GetRemaining())
			}
			return p
		}
	}
}

// TestServer_EveryRPC runs the life of a small study through every RPC of
// every service, over each protocol, and checks what each one answers.
func TestServer_EveryRPC(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			ctx := context.Background()
			ts := newTestServer(t, Config{Heartbeat: time.Hour})
			code, created, err := ts.DB.EnsureAdmin(ctx)
			if err != nil || !created {
				t.Fatalf("EnsureAdmin: %v, created %v", err, created)
			}
			anon := ts.clients("", proto.opts...)

			// Enroll (no token needed) the administrator's device.
			enr, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: strings.ToLower(code), DeviceName: "admin laptop"})
			wantCode(t, err, 0)
			if enr.GetRole() != diaryv1.Role_ROLE_ADMIN || enr.GetStudyCode() != "ADMIN" || enr.GetServerTime() == nil {
				t.Fatalf("Enroll: %v", enr)
			}
			if _, err := syncengine.ParseReplicaID(enr.GetReplicaId()); err != nil {
				t.Fatalf("Enroll replica id: %v", err)
			}
			admin := ts.clients(bearer(enr.GetToken()), proto.opts...)

			// CreateUser, ListUsers (two pages).
			for _, u := range []struct {
				code string
				role diaryv1.Role
			}{{"PN-A", diaryv1.Role_ROLE_NAVIGATOR}, {"SUP-1", diaryv1.Role_ROLE_SUPERVISOR}, {"RES-1", diaryv1.Role_ROLE_RESEARCHER}} {
				resp, err := admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: u.code, Role: u.role, DisplayName: "Name of " + u.code})
				wantCode(t, err, 0)
				if got := resp.GetUser(); got.GetStudyCode() != u.code || got.GetRole() != u.role || !got.GetActive() || got.GetDisplayName() != "Name of "+u.code {
					t.Fatalf("CreateUser %s: %v", u.code, got)
				}
			}
			_, err = admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "pn-a", Role: diaryv1.Role_ROLE_NAVIGATOR})
			wantCode(t, err, connect.CodeAlreadyExists)
			var codes []string
			for tok := ""; ; {
				resp, err := admin.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageSize: 3, PageToken: tok})
				wantCode(t, err, 0)
				for _, u := range resp.GetUsers() {
					codes = append(codes, u.GetStudyCode())
				}
				if tok = resp.GetNextPageToken(); tok == "" {
					break
				}
			}
			if got := strings.Join(codes, " "); got != "ADMIN PN-A RES-1 SUP-1" {
				t.Fatalf("ListUsers: %s", got)
			}

			// AssignNavigator, ListAssignments.
			as, err := admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"})
			wantCode(t, err, 0)
			if !as.GetCreated() {
				t.Fatal("AssignNavigator: not created")
			}
			as, err = admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"})
			wantCode(t, err, 0)
			if as.GetCreated() {
				t.Fatal("AssignNavigator again: created a second time")
			}
			_, err = admin.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "PN-A", NavigatorCode: "SUP-1"})
			wantCode(t, err, connect.CodeInvalidArgument)
			la, err := admin.admin.ListAssignments(ctx, &diaryv1.ListAssignmentsRequest{SupervisorCode: "SUP-1"})
			wantCode(t, err, 0)
			if len(la.GetAssignments()) != 1 || la.GetAssignments()[0].GetNavigatorCode() != "PN-A" || la.GetAssignments()[0].GetSupervisorCode() != "SUP-1" {
				t.Fatalf("ListAssignments: %v", la)
			}

			// IssueEnrollmentCode and Enroll for each person.
			tokens := map[string]string{}
			replicas := map[string]string{}
			for _, who := range []string{"PN-A", "SUP-1", "RES-1"} {
				ic, err := admin.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: who})
				wantCode(t, err, 0)
				if d := time.Until(ic.GetExpiresAt().AsTime()); d < 23*time.Hour || d > 25*time.Hour {
					t.Fatalf("IssueEnrollmentCode: expires in %v, want 24 h", d)
				}
				e, err := anon.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode(), DeviceName: who + " phone"})
				wantCode(t, err, 0)
				if e.GetStudyCode() != who || e.GetDisplayName() != "Name of "+who {
					t.Fatalf("Enroll %s: %v", who, e)
				}
				tokens[who], replicas[who] = e.GetToken(), e.GetReplicaId()
			}
			nav := ts.clients(bearer(tokens["PN-A"]), proto.opts...)
			sup := ts.clients(bearer(tokens["SUP-1"]), proto.opts...)
			res := ts.clients(bearer(tokens["RES-1"]), proto.opts...)

			// CreateWave, UpdateWave, ListWaves (admin and research).
			cw, err := admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: "Baseline", StartDate: "2026-01-01", EndDate: "2026-03-31"}})
			wantCode(t, err, 0)
			if cw.GetWave().GetLabel() != "Baseline" {
				t.Fatalf("CreateWave: %v", cw)
			}
			_, err = admin.admin.CreateWave(ctx, &diaryv1.CreateWaveRequest{Wave: &diaryv1.Wave{Number: 2, Label: "Overlap", StartDate: "2026-03-01", EndDate: "2026-06-30"}})
			wantCode(t, err, connect.CodeFailedPrecondition)
			uw, err := admin.admin.UpdateWave(ctx, &diaryv1.UpdateWaveRequest{Wave: &diaryv1.Wave{Number: 1, Label: "Start", StartDate: "2026-01-01", EndDate: "2026-02-28"}})
			wantCode(t, err, 0)
			if uw.GetWave().GetLabel() != "Start" || uw.GetWave().GetEndDate() != "2026-02-28" {
				t.Fatalf("UpdateWave: %v", uw)
			}
			lw, err := admin.admin.ListWaves(ctx, &diaryv1.ListWavesRequest{})
			wantCode(t, err, 0)
			rw, err := res.research.ListWaves(ctx, &diaryv1.ResearchServiceListWavesRequest{})
			wantCode(t, err, 0)
			if len(lw.GetWaves()) != 1 || lw.GetWaves()[0].GetLabel() != "Start" || len(rw.GetWaves()) != 1 || rw.GetWaves()[0].GetEndDate() != "2026-02-28" {
				t.Fatalf("ListWaves: admin %v, research %v", lw, rw)
			}

			// Subscribe (supervisor), Push (navigator), then the stream wakes.
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := sup.sync.Subscribe(sctx, &diaryv1.SubscribeRequest{})
			wantCode(t, err, 0)
			if !stream.Receive() || !stream.Msg().GetHeartbeat() {
				t.Fatalf("Subscribe: no first heartbeat: %v", stream.Err())
			}
			w := newWriter(TestDevice{Token: tokens["PN-A"], Identity: &study.Identity{Replica: mustReplica(t, replicas["PN-A"])}})
			id, changes := w.newEntry("First shift", "Met J. at the hostel.", true, true)
			push, err := nav.sync.Push(ctx, &diaryv1.PushRequest{Changes: changes})
			wantCode(t, err, 0)
			if len(push.GetResults()) != len(changes) || push.GetServerTime() == nil {
				t.Fatalf("Push: %v", push)
			}
			for i, r := range push.GetResults() {
				if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
					t.Fatalf("Push change %d: %v", i, r)
				}
			}
			if !stream.Receive() || stream.Msg().GetHeartbeat() || stream.Msg().GetCursor() == 0 {
				t.Fatalf("Subscribe: no wake-up after the push: %v %v", stream.Msg(), stream.Err())
			}
			cancel()

			// Pull and GetStateHash for each reader.
			for _, r := range []struct {
				who    string
				c      *clients
				author string
			}{{"PN-A", nav, "PN-A"}, {"SUP-1", sup, "PN-A"}, {"RES-1", res, "PN-A"}} {
				p := pullAll(t, r.c, 0)
				e := p.entries[id.String()]
				if len(p.entries) != 1 || e.GetTitle().GetValue() != "First shift" || e.GetAuthor() != r.author {
					t.Fatalf("Pull as %s: %v", r.who, p.entries)
				}
				sh, err := r.c.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{})
				wantCode(t, err, 0)
				if sh.GetEntries() != 1 || sh.GetCursor() != p.cursor || string(sh.GetStateHash()) != string(stateHashOf(t, p)) {
					t.Fatalf("GetStateHash as %s: %v (pulled up to %d)", r.who, sh, p.cursor)
				}
			}

			// ExportWave: the manifest first, then the file in chunks;
			// the file holds as many lines as the manifest counts.
			ex, err := res.research.ExportWave(ctx, &diaryv1.ExportWaveRequest{Format: diaryv1.ExportFormat_EXPORT_FORMAT_JSONL})
			wantCode(t, err, 0)
			var manifest *diaryv1.ExportManifest
			var file []byte
			for ex.Receive() {
				if m := ex.Msg().GetManifest(); m != nil {
					if manifest != nil || file != nil {
						t.Fatal("ExportWave sent a second or late manifest")
					}
					manifest = m
				}
				file = append(file, ex.Msg().GetChunk()...)
			}
			wantCode(t, ex.Err(), 0)
			if manifest == nil || manifest.GetPosition() == 0 || len(manifest.GetWaves()) != 1 ||
				uint64(bytes.Count(file, []byte("\n"))) != manifest.GetEntries() || manifest.GetEntries()+manifest.GetExcludedNoWave() != 1 {
				t.Fatalf("ExportWave: manifest %v, file %q", manifest, file)
			}

			// ListDevices shows the navigator's sync; RevokeDevice.
			ld, err := admin.admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{StudyCode: "PN-A"})
			wantCode(t, err, 0)
			if len(ld.GetDevices()) != 1 || ld.GetDevices()[0].GetName() != "PN-A phone" || ld.GetDevices()[0].GetLastSyncAt() == nil || ld.GetDevices()[0].GetRevokedAt() != nil {
				t.Fatalf("ListDevices: %v", ld)
			}
			rd, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: ld.GetDevices()[0].GetDeviceId()})
			wantCode(t, err, 0)
			if rd.GetDevice().GetRevokedAt() == nil {
				t.Fatalf("RevokeDevice: %v", rd)
			}
			_, err = nav.sync.Pull(ctx, &diaryv1.PullRequest{})
			wantCode(t, err, connect.CodeUnauthenticated)

			// UnassignNavigator: the supervisor's next pull removes the entry.
			ua, err := admin.admin.UnassignNavigator(ctx, &diaryv1.UnassignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"})
			wantCode(t, err, 0)
			if !ua.GetRemoved() {
				t.Fatal("UnassignNavigator: not removed")
			}
			p := pullAll(t, sup, 0)
			if len(p.entries) != 0 || p.removals[id.String()] != diaryv1.RemovalReason_REMOVAL_REASON_UNASSIGNED {
				t.Fatalf("Pull after unassign: entries %v removals %v", p.entries, p.removals)
			}

			// DeactivateUser revokes the researcher's device.
			du, err := admin.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: "RES-1"})
			wantCode(t, err, 0)
			if du.GetDevicesRevoked() != 1 || du.GetUser().GetActive() {
				t.Fatalf("DeactivateUser: %v", du)
			}
			_, err = res.research.ListWaves(ctx, &diaryv1.ResearchServiceListWavesRequest{})
			wantCode(t, err, connect.CodeUnauthenticated)
		})
	}
}

func mustReplica(tb testing.TB, s string) syncengine.ReplicaID {
	tb.Helper()
	r, err := syncengine.ParseReplicaID(s)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// stateHashOf computes, the way a device does, the state hash of what it
// pulled.
func stateHashOf(tb testing.TB, p *pulled) []byte {
	tb.Helper()
	entries := make([]*syncengine.Entry, 0, len(p.entries))
	for _, pe := range p.entries {
		e, err := wire.EntryFromProto(pe)
		if err != nil {
			tb.Fatal(err)
		}
		entries = append(entries, e)
	}
	sum := syncengine.StateHash(entries)
	return sum[:]
}

// TestServer_ErrInternalHidden checks that a broken store reaches the
// caller as "internal error", never as the Go error text.
func TestServer_ErrInternalHidden(t *testing.T) {
	ts := newTestServer(t, Config{})
	nav := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	c := ts.clients(bearer(nav.Token))
	if _, err := rawDB(ts.DB).Exec(`DROP TABLE history`); err != nil {
		t.Fatal(err)
	}
	w := newWriter(nav)
	_, changes := w.newEntry("t", "b", true, false)
	_, err := c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: changes})
	wantCode(t, err, connect.CodeInternal)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Message() != "internal error" {
		t.Fatalf("message %q, want %q", ce.Message(), "internal error")
	}
}
