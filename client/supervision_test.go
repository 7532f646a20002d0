package client

import (
	"context"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// TestErasureWithOfflineDevice: an entry erased while a device that holds
// it is offline (and has edited it) is dropped from that device on its
// next sync, its edit is refused and shown, and nothing brings it back.
func TestErasureWithOfflineDevice(t *testing.T) {
	ts, f := startFlakyServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	tablet := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	id := mustCreate(t, phone, Draft{Title: "to be erased", Body: "words", ShareSupervisor: true})
	other := mustCreate(t, phone, Draft{Title: "stays"})
	mustSync(t, phone)
	mustSync(t, tablet)
	mustSync(t, sup)

	// The tablet goes offline and edits the entry.
	f.down.Store(true)
	if err := tablet.Update(ctx, id, Edit{Body: ptr("edited offline")}); err != nil {
		t.Fatal(err)
	}
	f.down.Store(false)
	if _, _, err := ts.DB.EraseEntry(ctx, id); err != nil {
		t.Fatal(err)
	}
	mustSync(t, tablet)
	if _, err := tablet.Get(ctx, id); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
		t.Fatalf("the erased entry is still on the tablet: %v", err)
	}
	refused, _ := tablet.Refused(ctx, 0, 10)
	if len(refused) != 1 || refused[0].Reason != study.RefusedErased || refused[0].Change.Text != "edited offline" {
		t.Fatalf("refused on the tablet: %+v", refused)
	}
	for _, c := range []*Client{phone, sup} {
		mustSync(t, c)
		if _, err := c.Get(ctx, id); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
			t.Fatalf("the erased entry is still on a replica: %v", err)
		}
	}
	// Nothing resurrects it: the server holds no state for it.
	for _, c := range []*Client{phone, tablet} {
		mustSync(t, c)
	}
	assertConverged(t, phone, tablet, sup)
	if _, err := phone.Get(ctx, other); err != nil {
		t.Fatalf("the other entry went too: %v", err)
	}
}

// TestFeedbackOffline: a supervisor writes feedback with no network; it
// reaches the navigator's devices and the navigator's other supervisor,
// and never research.
func TestFeedbackOffline(t *testing.T) {
	ts, f := startFlakyServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	ts.code(t, study.RoleSupervisor, "SUP-2")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.assign(t, "SUP-1", "PN-A")
	ts.assign(t, "SUP-2", "PN-A")
	sup1 := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	sup2 := ts.device(t, study.RoleSupervisor, "SUP-2", Options{})
	res := ts.device(t, study.RoleResearcher, "RES-1", Options{})
	id := mustCreate(t, nav, Draft{Title: "hard day", Body: "...", ShareSupervisor: true, ShareResearch: true})
	mustSync(t, nav)
	mustSync(t, sup1)

	f.down.Store(true)
	fid, err := sup1.WriteFeedback(ctx, id, "That sounds hard. Let's talk on Thursday.")
	if err != nil {
		t.Fatal(err)
	}
	// Meanwhile the navigator edits the entry offline too.
	if err := nav.Update(ctx, id, Edit{Body: ptr("... and then it got better")}); err != nil {
		t.Fatal(err)
	}
	if e, _ := sup1.Get(ctx, id); len(e.Feedback) != 1 || e.Feedback[0].ID != syncengine.FeedbackID(fid) {
		t.Fatalf("the supervisor's own replica lacks the feedback: %+v", e.Feedback)
	}
	f.down.Store(false)
	mustSync(t, sup1)
	mustSync(t, nav)
	for _, c := range []*Client{nav, sup1, sup2} {
		mustSync(t, c)
		e, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Feedback) != 1 || e.Feedback[0].Body != "That sounds hard. Let's talk on Thursday." || e.Feedback[0].Author != "SUP-1" || e.Body != "... and then it got better" {
			t.Fatalf("entry on a replica: body %q, feedback %+v", e.Body, e.Feedback)
		}
	}
	mustSync(t, res)
	if e, err := res.Get(ctx, id); err != nil || len(e.Feedback) != 0 {
		t.Fatalf("research sees feedback: %+v %v", e, err)
	}
	// Only its author may change it.
	if err := sup2.EditFeedback(ctx, id, fid, "overwritten"); syncengine.ErrorCode(err) != syncengine.EPERMISSION {
		t.Fatalf("another supervisor edited the feedback: %v", err)
	}
	if err := sup1.EditFeedback(ctx, id, fid, "Talk on Thursday?"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, sup1)
	mustSync(t, nav)
	if e, _ := nav.Get(ctx, id); e.Feedback[0].Body != "Talk on Thursday?" {
		t.Fatalf("edited feedback: %+v", e.Feedback)
	}
	mustSync(t, sup2)
	mustSync(t, res)
	assertConverged(t, nav, sup1, sup2, res)
}
