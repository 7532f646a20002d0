package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// streamMsg is one message of a Subscribe stream and when it arrived.
type streamMsg struct {
	msg *diaryv1.SubscribeResponse
	at  time.Time
}

// subscription reads a Subscribe stream in the background.
type subscription struct {
	msgs   chan streamMsg
	done   chan error // the stream's error once it ends
	cancel context.CancelFunc
}

func subscribe(tb testing.TB, c *clients, cursor uint64) *subscription {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.sync.Subscribe(ctx, &diaryv1.SubscribeRequest{Cursor: cursor})
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	s := &subscription{msgs: make(chan streamMsg, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		for stream.Receive() {
			s.msgs <- streamMsg{stream.Msg(), time.Now()}
		}
		s.done <- stream.Err()
		stream.Close()
	}()
	tb.Cleanup(cancel)
	return s
}

// next returns the next message, failing the test if none comes within
// wait.
func (s *subscription) next(tb testing.TB, wait time.Duration) streamMsg {
	tb.Helper()
	select {
	case m := <-s.msgs:
		return m
	case err := <-s.done:
		tb.Fatalf("stream ended: %v", err)
	case <-time.After(wait):
		tb.Fatalf("no message within %v", wait)
	}
	return streamMsg{}
}

// nextWakeUp skips heartbeats and returns the next wake-up.
func (s *subscription) nextWakeUp(tb testing.TB, wait time.Duration) streamMsg {
	tb.Helper()
	deadline := time.Now().Add(wait)
	for {
		m := s.next(tb, time.Until(deadline))
		if !m.msg.GetHeartbeat() {
			return m
		}
	}
}

// quiet fails the test if a wake-up arrives within wait.
func (s *subscription) quiet(tb testing.TB, wait time.Duration) {
	tb.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-s.msgs:
			if !m.msg.GetHeartbeat() {
				tb.Fatalf("unexpected wake-up to cursor %d", m.msg.GetCursor())
			}
		case err := <-s.done:
			tb.Fatalf("stream ended: %v", err)
		case <-deadline:
			return
		}
	}
}

// TestSubscribe_WakeUp checks that a supervisor's stream learns of each
// shared entry a navigator pushes, and that the wake-up leads to the
// entry, over HTTP/2 (Connect and gRPC) and over HTTP/1.1 (Connect). How
// soon it learns is measured by diaryload (wake_latency_ms), not here: a
// busy machine would fail any bound.
func TestSubscribe_WakeUp(t *testing.T) {
	ts := newTestServer(t, Config{Heartbeat: time.Hour})
	nav := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	sup := MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
	MustAssign(t, ts.DB, "SUP-1", "PN-A")
	navc := ts.clients(bearer(nav.Token))
	transports := []struct {
		name      string
		c         *clients
		wantProto string
	}{
		{"Connect/HTTP2", ts.clients(bearer(sup.Token)), "HTTP/2.0"},
		{"gRPC/HTTP2", ts.clients(bearer(sup.Token), connect.WithGRPC()), "HTTP/2.0"},
		{"Connect/HTTP1", ts.clientsOver(ts.http1Client(), bearer(sup.Token)), "HTTP/1.1"},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			head, err := ts.DB.Head(context.Background(), sup.Identity)
			if err != nil {
				t.Fatal(err)
			}
			s := subscribe(t, tr.c, uint64(head))
			// Up to date: the first message is the opening heartbeat.
			if m := s.next(t, time.Second); !m.msg.GetHeartbeat() || m.msg.GetCursor() != uint64(head) || m.msg.GetServerTime() == nil {
				t.Fatalf("first message %v, want a heartbeat at cursor %d", m.msg, head)
			}
			if got := ts.proto(diaryv1connect.SyncServiceSubscribeProcedure); got != tr.wantProto {
				t.Fatalf("stream went over %s, want %s", got, tr.wantProto)
			}
			for range 5 {
				id, changes := nav.newEntry("Shared", "for supervision", true, false)
				mustPush(t, navc, changes...)
				m := s.nextWakeUp(t, 30*time.Second)
				// The wake-up leads to the entry.
				resp, err := tr.c.sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: uint64(head)})
				wantCode(t, err, 0)
				if len(resp.GetEntries()) != 1 || resp.GetEntries()[0].GetId() != id.String() || resp.GetNextCursor() != m.msg.GetCursor() {
					t.Fatalf("after a wake-up to %d, pull gave %v", m.msg.GetCursor(), resp)
				}
				head = int64(m.msg.GetCursor())
			}
		})
	}
}

// TestSubscribe checks heartbeats, whose streams wake for what, and that
// draining the server ends streams with Unavailable.
func TestSubscribe(t *testing.T) {
	const beat = 50 * time.Millisecond
	ts := newTestServer(t, Config{Heartbeat: beat})
	db := ts.DB
	a := newWriter(MustEnrollDevice(t, db, study.RoleNavigator, "PN-A"))
	aOther := MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	b := newWriter(MustEnrollDevice(t, db, study.RoleNavigator, "PN-B"))
	sup1 := MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-1")
	sup2 := MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-2")
	res := MustEnrollDevice(t, db, study.RoleResearcher, "RES-1")
	MustAssign(t, db, "SUP-1", "PN-A")
	MustAssign(t, db, "SUP-2", "PN-B")
	ac, bc := ts.clients(bearer(a.Token)), ts.clients(bearer(b.Token))

	t.Run("OKHeartbeat", func(t *testing.T) {
		// The first heartbeat comes at once, then one per tick of the
		// server's ticker, which starts after the stream opened: a load
		// may delay a heartbeat (and bring the next one close behind),
		// but none can come early.
		opened := time.Now()
		s := subscribe(t, ts.clients(bearer(sup1.Token)), 0)
		for i := range 4 {
			m := s.next(t, 20*beat)
			if !m.msg.GetHeartbeat() || m.msg.GetCursor() != 0 || m.msg.GetServerTime() == nil {
				t.Fatalf("message %d: %v, want a heartbeat", i, m.msg)
			}
			if early := m.at.Sub(opened); early < time.Duration(i)*beat {
				t.Fatalf("heartbeat %d came %v after the stream opened, before %v", i, early, time.Duration(i)*beat)
			}
		}
	})

	t.Run("OKWhoWakes", func(t *testing.T) {
		own := subscribe(t, ts.clients(bearer(aOther.Token)), 0)
		s1 := subscribe(t, ts.clients(bearer(sup1.Token)), 0)
		s2 := subscribe(t, ts.clients(bearer(sup2.Token)), 0)
		r := subscribe(t, ts.clients(bearer(res.Token)), 0)

		// A private entry: only the navigator's other device wakes.
		id, changes := a.newEntry("Private", "mine", false, false)
		mustPush(t, ac, changes...)
		if m := own.nextWakeUp(t, time.Second); m.msg.GetCursor() == 0 {
			t.Fatalf("own stream woke to cursor 0")
		}
		s1.quiet(t, 4*beat)
		s2.quiet(t, 0)
		r.quiet(t, 0)

		// Shared with supervisors and research: SUP-1 and research wake,
		// SUP-2 (not assigned to PN-A) does not.
		mustPush(t, ac, a.change(id, syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: true}), a.change(id, syncengine.Change{Field: syncengine.FieldShareResearch, Flag: true}))
		s1.nextWakeUp(t, time.Second)
		r.nextWakeUp(t, time.Second)
		own.nextWakeUp(t, time.Second)
		s2.quiet(t, 4*beat)

		// Unassigning and assigning are changes for the supervisor too.
		admin := ts.clients(bearer(MustEnrollDevice(t, db, study.RoleAdmin, "ADMIN").Token))
		_, err := admin.admin.UnassignNavigator(context.Background(), &diaryv1.UnassignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"})
		wantCode(t, err, 0)
		s1.nextWakeUp(t, time.Second)
		_, err = admin.admin.AssignNavigator(context.Background(), &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"})
		wantCode(t, err, 0)
		s1.nextWakeUp(t, time.Second)
		s2.quiet(t, 4*beat)

		// B's shared entry wakes SUP-2 only.
		_, changes = b.newEntry("B", "shared", true, false)
		mustPush(t, bc, changes...)
		s2.nextWakeUp(t, time.Second)
		s1.quiet(t, 4*beat)
	})

	t.Run("OKWaitingAtOnce", func(t *testing.T) {
		// A stream opened behind the head says so in its first message.
		s := subscribe(t, ts.clients(bearer(sup1.Token)), 0)
		if m := s.next(t, time.Second); m.msg.GetHeartbeat() || m.msg.GetCursor() == 0 {
			t.Fatalf("first message %v, want a wake-up", m.msg)
		}
	})

	t.Run("ErrRevokedMeanwhile", func(t *testing.T) {
		// Revoked in the store, with no wake-up: the next heartbeat ends
		// the stream.
		dev := MustEnrollDevice(t, db, study.RoleSupervisor, "SUP-1")
		s := subscribe(t, ts.clients(bearer(dev.Token)), 0)
		s.next(t, time.Second)
		if _, err := db.RevokeDevice(context.Background(), dev.Device); err != nil {
			t.Fatal(err)
		}
		for {
			select {
			case <-s.msgs:
				continue
			case err := <-s.done:
				wantCode(t, err, connect.CodeUnauthenticated)
			case <-time.After(20 * beat):
				t.Fatal("the stream of a revoked device is still open")
			}
			break
		}
	})

	t.Run("ErrDrained", func(t *testing.T) {
		s := subscribe(t, ts.clients(bearer(sup1.Token)), 0)
		s.next(t, time.Second)
		ts.Server.Drain()
		select {
		case err := <-s.done:
			wantCode(t, err, connect.CodeUnavailable)
		case <-time.After(5 * time.Second):
			t.Fatal("stream still open after draining")
		}
	})
}

// TestMetrics checks that /metrics counts calls and changes, open
// streams and the Go runtime's heap, in the Prometheus text format.
func TestMetrics(t *testing.T) {
	ts := newTestServer(t, Config{Heartbeat: time.Hour})
	nav := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	c := ts.clients(bearer(nav.Token))
	_, changes := nav.newEntry("t", "b", false, false)
	mustPush(t, c, changes...)
	_, err := c.sync.Push(context.Background(), &diaryv1.PushRequest{Changes: changes})
	wantCode(t, err, 0)
	_, err = c.admin.ListUsers(context.Background(), &diaryv1.ListUsersRequest{})
	wantCode(t, err, connect.CodePermissionDenied)
	s := subscribe(t, c, 0)
	s.next(t, time.Second)

	resp, err := ts.http.Client().Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	values, err := parseMetrics(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		`diarysync_rpc_requests_total{code="ok",procedure="/diary.v1.SyncService/Push"}`:                      2,
		`diarysync_rpc_requests_total{code="permission_denied",procedure="/diary.v1.AdminService/ListUsers"}`: 1,
		`diarysync_rpc_errors_total{procedure="/diary.v1.AdminService/ListUsers"}`:                            1,
		`diarysync_rpc_duration_seconds_count{procedure="/diary.v1.SyncService/Push"}`:                        2,
		`diarysync_changes_total{outcome="applied"}`:                                                          2,
		`diarysync_changes_total{outcome="duplicate"}`:                                                        2,
		`diarysync_changes_total{outcome="refused"}`:                                                          0,
		`diarysync_subscribe_streams_active`:                                                                  1,
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	for _, name := range []string{"diarysync_go_heap_inuse_bytes", "diarysync_go_goroutines"} {
		if values[name] <= 0 {
			t.Errorf("%s = %v, want a positive value", name, values[name])
		}
	}
}

// parseMetrics reads the Prometheus text format into series → value.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}
