package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
)

// TestInstances_WakeAcross runs two servers on one store, as two diaryd
// processes on one PostgreSQL database: a supervisor's Subscribe stream
// on the second wakes for an entry pushed through the first, keeps
// waking after the second's listening connection is cut, and ends when
// the first revokes the supervisor's device.
func TestInstances_WakeAcross(t *testing.T) {
	ctx := context.Background()
	db1 := MustOpenDB(t)
	if _, ok := db1.Store.(study.CommitWatcher); !ok {
		t.Skipf("the %s store is one process's: it has no commits of other processes to report", db1.Engine)
	}
	db2 := storetest.Reopen(t, db1, storetest.Options{})
	ts1 := newTestServer(t, Config{Store: db1})
	ts2 := newTestServer(t, Config{Store: db2})
	nav := newWriter(MustEnrollDevice(t, db1, study.RoleNavigator, "PN-A"))
	supDev := MustEnrollDevice(t, db1, study.RoleSupervisor, "SUP-1")
	admin := ts1.clients(bearer(MustEnrollDevice(t, db1, study.RoleAdmin, "ADMIN").Token))
	MustAssign(t, db1, "SUP-1", "PN-A")
	navc, supc := ts1.clients(bearer(nav.Token)), ts2.clients(bearer(supDev.Token))

	stream := subscribe(t, supc, 0)
	if m := stream.next(t, 10*time.Second); !m.msg.GetHeartbeat() {
		t.Fatalf("first message %v, want the opening heartbeat", m.msg)
	}
	var cursor uint64
	t.Run("OKWokenAcross", func(t *testing.T) {
		id, changes := nav.newEntry("shared through the first", "body", true, false)
		mustPush(t, navc, changes...)
		m := stream.nextWakeUp(t, 10*time.Second)
		p := pullAll(t, supc, cursor)
		if _, ok := p.entries[id.String()]; !ok || m.msg.GetCursor() != p.cursor {
			t.Fatalf("woken at %d; pulled %d entries up to %d, want the new one", m.msg.GetCursor(), len(p.entries), p.cursor)
		}
		cursor = p.cursor
	})

	t.Run("OKAfterListenerCut", func(t *testing.T) {
		// Cut every listening connection to the database, and commit at
		// once, before they are back: the notification is lost, and the
		// reconnection must wake the stream all the same.
		var cut int
		if err := rawDB(db1).QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'diaryd-listen'`).Scan(&cut); err != nil || cut != 2 {
			t.Fatalf("cut %d listening connections (%v), want both", cut, err)
		}
		id, changes := nav.newEntry("shared while nobody listened", "body", true, false)
		mustPush(t, navc, changes...)
		stream.nextWakeUp(t, 10*time.Second)
		p := pullAll(t, supc, cursor)
		if _, ok := p.entries[id.String()]; !ok {
			t.Fatalf("pulled %d entries, not the one committed while the listener was cut", len(p.entries))
		}
		cursor = p.cursor
		// And notifications flow again once it is back.
		waitFor(t, func() bool {
			var n int
			rawDB(db1).QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'diaryd-listen'`).Scan(&n)
			return n == 2
		})
		stream.quiet(t, 200*time.Millisecond) // the reconnection's own wake-up finds nothing new
		id, changes = nav.newEntry("shared after the reconnection", "body", true, false)
		mustPush(t, navc, changes...)
		if m := stream.nextWakeUp(t, 10*time.Second); m.msg.GetCursor() <= cursor {
			t.Fatalf("woken at %d, not past %d", m.msg.GetCursor(), cursor)
		}
		if p := pullAll(t, supc, cursor); p.entries[id.String()] == nil {
			t.Fatal("the entry pushed after the reconnection did not arrive")
		}
	})

	t.Run("OKRevokedAcross", func(t *testing.T) {
		if _, err := admin.admin.RevokeDevice(ctx, &diaryv1.RevokeDeviceRequest{DeviceId: supDev.Device}); err != nil {
			t.Fatal(err)
		}
		deadline := time.After(10 * time.Second)
		for {
			select {
			case <-stream.msgs:
				continue
			case err := <-stream.done:
				wantCode(t, err, connect.CodeUnauthenticated)
				return
			case <-deadline:
				t.Fatal("the stream on the other server outlived the revocation")
			}
		}
	})
}

// waitFor polls cond every 20 ms for up to 10 s.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestInstances_EnrollLimit sends wrong enrolment codes in parallel from
// one address to two servers sharing a store: together they must let
// through exactly as many guesses as the limit allows, however the
// guesses interleave.
func TestInstances_EnrollLimit(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	limit := study.AttemptLimit{Burst: 10, Refill: time.Hour}
	db1 := MustOpenDBWith(t, storetest.Options{Now: clock.Now, EnrollLimit: limit})
	db2 := storetest.Reopen(t, db1, storetest.Options{Now: clock.Now, EnrollLimit: limit})
	servers := []*testServer{newTestServer(t, Config{Store: db1}), newTestServer(t, Config{Store: db2})}
	const guesses = 40
	codes := make(chan connect.Code, guesses)
	var wg sync.WaitGroup
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := servers[i%2].clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: "AAAAA-AAAAA"})
			codes <- connect.CodeOf(err)
		}()
	}
	wg.Wait()
	close(codes)
	count := map[connect.Code]int{}
	for c := range codes {
		count[c]++
	}
	if count[connect.CodeUnauthenticated] != limit.Burst || count[connect.CodeResourceExhausted] != guesses-limit.Burst {
		t.Fatalf("answers %v: want %d wrong-code answers and the rest rate-limited", count, limit.Burst)
	}
	// A good code from the same address waits too, then works.
	MustEnroll(t, db1, study.RoleNavigator, "PN-A")
	good, _, err := db1.IssueEnrollmentCode(ctx, "PN-A", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = servers[1].clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: good})
	wantCode(t, err, connect.CodeResourceExhausted)
	clock.Advance(time.Hour)
	_, err = servers[0].clients("").device.Enroll(ctx, &diaryv1.EnrollRequest{Code: good})
	wantCode(t, err, 0)
}
