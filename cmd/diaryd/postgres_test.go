package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	_ "github.com/jackc/pgx/v5/stdlib"
)

var printedCode = regexp.MustCompile(`(?m)^\s+([ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}-[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5})\s*$`)

// openRaw opens a database/sql connection to a PostgreSQL database.
func openRaw(tb testing.TB, url string) *sql.DB {
	tb.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// adminClients enrols an administrator with code through url and
// returns an admin client and a device client.
func adminClients(tb testing.TB, url, code string) diaryv1connect.AdminServiceClient {
	tb.Helper()
	enr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, url).Enroll(context.Background(), &diaryv1.EnrollRequest{Code: code, DeviceName: "admin"})
	if err != nil {
		tb.Fatal(err)
	}
	return diaryv1connect.NewAdminServiceClient(http.DefaultClient, url, connect.WithInterceptors(authHeader(enr.GetToken())))
}

// issue creates the user if needed and returns a one-time code for them.
func issue(tb testing.TB, admin diaryv1connect.AdminServiceClient, code string, role diaryv1.Role) string {
	tb.Helper()
	ctx := context.Background()
	_, err := admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: code, Role: role})
	if err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		tb.Fatal(err)
	}
	ic, err := admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: code})
	if err != nil {
		tb.Fatal(err)
	}
	return ic.GetCode()
}

// TestDiaryd_TwoProcesses runs two diaryd processes on one PostgreSQL
// database, started at the same moment on an empty database: exactly one
// creates the administrator and prints its code. A navigator pushes
// through the first while a supervisor subscribed through the second is
// woken and pulls the entry. Then the navigator, offline for weeks, syncs
// a backlog of 10,000 entries through a front that sends it to the first
// process, which is killed with SIGKILL part way through; the device
// carries on through the second, and in the end the server holds every
// change exactly once and the supervisor pulls every entry exactly once.
func TestDiaryd_TwoProcesses(t *testing.T) {
	url := storetest.NewDatabase(t)
	ctx := context.Background()
	raw := openRaw(t, url)

	procs := make([]*process, 2)
	var wg sync.WaitGroup
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i] = startDiaryd(t, filepath.Join(t.TempDir(), "data"), "--database", url)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	p1, p2 := procs[0], procs[1]
	var adminCode string
	for _, p := range procs {
		if m := printedCode.FindStringSubmatch(p.stdout.String()); m != nil {
			if adminCode != "" {
				t.Fatal("both processes created an administrator")
			}
			adminCode = m[1]
		}
	}
	if adminCode == "" {
		t.Fatalf("neither process printed the administrator's code:\n%s\n%s", p1.stdout.String(), p2.stdout.String())
	}
	admin := adminClients(t, p2.url, adminCode)
	supEnr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p2.url).Enroll(ctx, &diaryv1.EnrollRequest{Code: issue(t, admin, "SUP-1", diaryv1.Role_ROLE_SUPERVISOR)})
	if err != nil {
		t.Fatal(err)
	}
	navCode := issue(t, admin, "PN-A", diaryv1.Role_ROLE_NAVIGATOR)
	if _, err := admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: "SUP-1", NavigatorCode: "PN-A"}); err != nil {
		t.Fatal(err)
	}

	front := newForwarder(t, p1.url)
	phone, err := client.Open(ctx, filepath.Join(t.TempDir(), "phone.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer phone.Close()
	prof, err := phone.Enroll(ctx, front.url(), navCode, "phone")
	if err != nil {
		t.Fatal(err)
	}
	sup := diaryv1connect.NewSyncServiceClient(h2c, p2.url, connect.WithInterceptors(authHeader(supEnr.GetToken())))

	var supCursor uint64
	supSeen := map[string]bool{}
	pullSup := func(t *testing.T) int {
		t.Helper()
		n := 0
		for {
			resp, err := sup.Pull(ctx, &diaryv1.PullRequest{Cursor: supCursor, PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range resp.GetEntries() {
				if supSeen[e.GetId()] {
					t.Fatalf("the supervisor pulled entry %s twice", e.GetId())
				}
				supSeen[e.GetId()] = true
				n++
			}
			supCursor = resp.GetNextCursor()
			if !resp.GetMore() {
				return n
			}
		}
	}

	t.Run("OKWokenThroughTheOther", func(t *testing.T) {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := sup.Subscribe(sctx, &diaryv1.SubscribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		if !stream.Receive() || !stream.Msg().GetHeartbeat() {
			t.Fatalf("no opening heartbeat: %v", stream.Err())
		}
		if _, err := phone.Create(ctx, client.Draft{Title: "Shared through the first", Body: "Met J.", ShareSupervisor: true}); err != nil {
			t.Fatal(err)
		}
		if err := phone.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		woken := make(chan uint64, 1)
		go func() {
			for stream.Receive() {
				if !stream.Msg().GetHeartbeat() {
					woken <- stream.Msg().GetCursor()
					return
				}
			}
		}()
		select {
		case c := <-woken:
			if c == 0 {
				t.Fatal("woken at cursor 0")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("the supervisor's stream on the second process was not woken")
		}
		if n := pullSup(t); n != 1 {
			t.Fatalf("the supervisor pulled %d entries, want 1", n)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("OKKilledMidBacklog", func(t *testing.T) {
		const backlog = 10_000
		for i := range backlog {
			if _, err := phone.Create(ctx, client.Draft{Title: fmt.Sprintf("offline entry %d", i), Body: strings.Repeat("words on a long day ", 10), ShareSupervisor: true}); err != nil {
				t.Fatal(err)
			}
		}
		st, err := phone.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pending := st.Pending
		var device int64
		if err := raw.QueryRow(`SELECT id FROM devices WHERE public_id = $1`, prof.DeviceID).Scan(&device); err != nil {
			t.Fatal(err)
		}
		var before int
		raw.QueryRow(`SELECT count(*) FROM history WHERE device_id = $1`, device).Scan(&before)

		syncErr := make(chan error, 1)
		go func() { syncErr <- phone.Sync(ctx) }()
		// Kill the first process once part of the backlog is in: at a
		// random point, mostly in the middle of a push.
		seed := time.Now().UnixNano()
		threshold := 500 + rand.New(rand.NewPCG(uint64(seed), 0)).IntN(pending*3/4)
		t.Logf("seed %d: kill after %d changes", seed, threshold)
		for {
			var n int
			raw.QueryRow(`SELECT count(*) FROM history WHERE device_id = $1`, device).Scan(&n)
			if n-before >= threshold {
				break
			}
			select {
			case err := <-syncErr:
				t.Fatalf("the sync ended before the kill (%v): the backlog is too small to kill it part way", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p1.wait(t)
		if err := <-syncErr; err == nil {
			t.Fatal("the sync through the killed process succeeded")
		}
		var stored int
		raw.QueryRow(`SELECT count(*) FROM history WHERE device_id = $1`, device).Scan(&stored)
		t.Logf("%d of %d changes stored when the first process was killed", stored-before, pending)

		// The device carries on through the second process.
		front.point(p2.url)
		for attempt := 1; ; attempt++ {
			err := phone.Sync(ctx)
			if err == nil {
				break
			}
			if attempt == 5 {
				t.Fatalf("the sync through the second process keeps failing: %v", err)
			}
		}
		if st, err := phone.Status(ctx); err != nil || st.Pending != 0 {
			t.Fatalf("pending after the sync: %d (%v)", st.Pending, err)
		}
		var total, distinct int
		if err := raw.QueryRow(`SELECT count(*), count(DISTINCT clock) FROM history WHERE device_id = $1`, device).Scan(&total, &distinct); err != nil {
			t.Fatal(err)
		}
		if total != before+pending || distinct != total {
			t.Fatalf("the server holds %d changes of the device (%d distinct), want %d", total, distinct, before+pending)
		}
		local, n, err := phone.StateHash(ctx)
		if err != nil {
			t.Fatal(err)
		}
		remote, m, _, err := phone.ServerStateHash(ctx)
		if err != nil || local != remote || n != m || n != backlog+1 {
			t.Fatalf("phone holds %d entries, server %d (%v); hashes equal %v", n, m, err, local == remote)
		}
		if got := pullSup(t); got != backlog {
			t.Fatalf("the supervisor pulled %d new entries, want %d", got, backlog)
		}
	})

	t.Run("OKAdminCode", func(t *testing.T) {
		out, err := exec.Command(diarydBinary(t), "admin-code", "--database", url).Output()
		if err != nil {
			t.Fatal(err)
		}
		code := strings.TrimSpace(string(out))
		if !codeFormat.MatchString(code) {
			t.Fatalf("admin-code printed %q", code)
		}
		adminClients(t, p2.url, code)
	})
}
