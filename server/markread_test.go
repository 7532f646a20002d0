package server

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// TestServer_MarkRead: over each protocol, a supervisor's read mark is
// kept, answered per mark, and brings the entry with its read state into
// the supervisor's next pull on another device; a browser session's
// token is no bearer token, and device lists say each device's kind.
func TestServer_MarkRead(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto.name, func(t *testing.T) {
			ctx := context.Background()
			ts := newTestServer(t, Config{Heartbeat: time.Hour})
			nav := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
			phone := MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
			laptop := MustEnrollDevice(t, ts.DB, study.RoleSupervisor, "SUP-1")
			MustAssign(t, ts.DB, "SUP-1", "PN-A")
			id, changes := nav.newEntry("Shared", "words", true, false)
			mustPush(t, ts.clients(bearer(nav.Token), proto.opts...), changes...)
			phoneC := ts.clients(bearer(phone.Token), proto.opts...)
			laptopC := ts.clients(bearer(laptop.Token), proto.opts...)
			cursor := pullAll(t, laptopC, 0).cursor

			clock := uint64(syncengine.TimestampAt(time.Now()))
			resp, err := phoneC.sync.MarkRead(ctx, &diaryv1.MarkReadRequest{Marks: []*diaryv1.ReadMark{
				{EntryId: id.String(), Read: true, Clock: clock},
				{EntryId: "not an id", Read: true, Clock: clock},
				{EntryId: syncengine.NewEntryID().String(), Read: true, Clock: clock},
			}})
			if err != nil {
				t.Fatal(err)
			}
			r := resp.GetResults()
			if len(r) != 3 || r[0].GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED ||
				r[1].GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_INVALID || r[2].GetReason() != diaryv1.RefusalReason_REFUSAL_REASON_NOT_PERMITTED {
				t.Fatalf("results %v", r)
			}
			page, err := laptopC.sync.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.GetEntries()) != 1 || len(page.GetReads()) != 1 || page.GetReads()[0].GetEntryId() != id.String() || !page.GetReads()[0].GetRead() || page.GetReads()[0].GetClock() != clock {
				t.Fatalf("the laptop's pull: %d entries, reads %v", len(page.GetEntries()), page.GetReads())
			}
			_, err = phoneC.sync.MarkRead(ctx, &diaryv1.MarkReadRequest{Marks: make([]*diaryv1.ReadMark, study.MaxReadMarks+1)})
			wantCode(t, err, connect.CodeResourceExhausted)

			enr, err := ts.DB.EnrollBrowser(ctx, mustCodeFor(t, ts, "SUP-1"), "$argon2id$x", "browser", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ts.clients(bearer(enr.Token), proto.opts...).sync.Pull(ctx, &diaryv1.PullRequest{})
			wantCode(t, err, connect.CodeUnauthenticated)

			admin := MustEnrollDevice(t, ts.DB, study.RoleAdmin, "ADMIN")
			list, err := ts.clients(bearer(admin.Token), proto.opts...).admin.ListDevices(ctx, &diaryv1.ListDevicesRequest{StudyCode: "SUP-1"})
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[diaryv1.DeviceKind]int{}
			for _, d := range list.GetDevices() {
				kinds[d.GetKind()]++
			}
			if kinds[diaryv1.DeviceKind_DEVICE_KIND_APP] != 2 || kinds[diaryv1.DeviceKind_DEVICE_KIND_BROWSER] != 1 {
				t.Fatalf("device kinds %v", kinds)
			}
		})
	}
}

func mustCodeFor(t *testing.T, ts *testServer, code string) string {
	t.Helper()
	c, _, err := ts.DB.IssueEnrollmentCode(context.Background(), code, 0)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
