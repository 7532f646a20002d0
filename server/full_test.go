package server

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
)

// TestFullDisk reproduces a full disk (SQLite's max_page_count caps the
// file): a push that does not fit answers ResourceExhausted "the
// server's storage is full", not "internal error", and leaves every table
// as it was; enrolments and administration fail the same way; once there
// is room again, the same push goes through.
func TestFullDisk(t *testing.T) {
	if storetest.Engine() != storetest.SQLite {
		t.Skip("a full disk is made with SQLite's max_page_count; PostgreSQL's disk-full errors are tested in server/postgres")
	}
	ctx := context.Background()
	db := MustOpenDB(t)
	navDev := MustEnrollDevice(t, db, study.RoleNavigator, "PN-A")
	adminDev := MustEnrollDevice(t, db, study.RoleAdmin, "ADMIN")
	var pages int
	if err := rawDB(db).QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	db.Close()
	// Room for a few more pages: about 40 KiB.
	full := storetest.Reopen(t, db, storetest.Options{MaxPageCount: pages + 10})
	ts := newTestServer(t, Config{Store: full})
	nav := ts.clients(bearer(navDev.Token))
	admin := ts.clients(bearer(adminDev.Token))
	w := newWriter(navDev)

	// Pushes of 60 KiB each until the disk is full.
	var refused *diaryv1.PushRequest
	for i := 0; refused == nil; i++ {
		if i == 20 {
			t.Fatal("twenty pushes of 60 KiB fit in about 40 KiB")
		}
		_, changes := w.newEntry("An entry", strings.Repeat("words ", 10<<10), false, false)
		req := &diaryv1.PushRequest{Changes: changes}
		before := snapshot(t, full)
		_, err := nav.sync.Push(ctx, req)
		if err == nil {
			continue
		}
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), "the server's storage is full") {
			t.Fatalf("message %q does not say the storage is full", err)
		}
		if changed := changedTables(before, snapshot(t, full)); len(changed) > 0 {
			t.Fatalf("a push refused for a full disk changed %v", changed)
		}
		refused = req
	}

	t.Run("ErrAdministration", func(t *testing.T) {
		before := snapshot(t, full)
		_, err := admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-" + strings.Repeat("X", 20), Role: diaryv1.Role_ROLE_NAVIGATOR, DisplayName: strings.Repeat("n", 100)})
		for i := 0; err == nil && i < 500; i++ {
			before = snapshot(t, full)
			_, err = admin.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-" + strings.Repeat("Y", 10) + string(rune('A'+i%26)) + strings.Repeat("Z", i/26), Role: diaryv1.Role_ROLE_NAVIGATOR, DisplayName: strings.Repeat("n", 100)})
		}
		wantCode(t, err, connect.CodeResourceExhausted)
		if changed := changedTables(before, snapshot(t, full)); len(changed) > 0 {
			t.Fatalf("a refused call changed %v", changed)
		}
	})

	t.Run("OKRoomAgain", func(t *testing.T) {
		full.Close()
		roomy := storetest.Reopen(t, db, storetest.Options{})
		results, _, err := roomy.Push(ctx, navDev.Identity, incomingOf(t, refused))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if r.Outcome != study.OutcomeApplied {
				t.Fatalf("after the disk had room again: %+v (the refused push left a trace)", r)
			}
		}
	})
}

// incomingOf decodes a push request as the handler would.
func incomingOf(tb testing.TB, req *diaryv1.PushRequest) []study.Incoming {
	tb.Helper()
	out := make([]study.Incoming, len(req.GetChanges()))
	for i, p := range req.GetChanges() {
		out[i].Change, out[i].Invalid = wire.ChangeFromProto(p)
	}
	return out
}
