package sim

import (
	"context"
	"testing"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/syncengine"
)

// The scenarios below are failures the random schedule found, written
// out step by step so that each stays covered whatever the seeds do.

// scripted builds a world with the cast enrolled and no random phase;
// the test drives it and then runs the quiet phase and every check.
func scripted(t *testing.T) (*world, context.Context) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	tmpl, err := makeTemplates(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWorld(ctx, 1, 0, dir, tmpl, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.close() })
	return w, ctx
}

func (w *world) mustSync(t *testing.T, ctx context.Context, d *device) {
	t.Helper()
	if err := w.sync(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// TestRetryAfterUnshare: a supervisor's feedback is applied but the
// answer is lost; the navigator then stops sharing the entry. The retry
// must be answered as the duplicate it is, not refused: the server holds
// the feedback, and the supervisor's device must not list it as refused.
func TestRetryAfterUnshare(t *testing.T) {
	w, ctx := scripted(t)
	nav, sup := w.byCode["PN-A"].devices[0], w.byCode["SUP-1"].devices[0]
	var id syncengine.EntryID
	if err := w.write(ctx, nav, "create", func() ([]syncengine.Change, error) {
		dr := client.Draft{Title: "shared", Body: "words", Date: "2026-03-01", ShareSupervisor: true}
		eid, err := nav.c.Create(ctx, dr)
		id = eid
		return dr.Changes(eid), err
	}); err != nil {
		t.Fatal(err)
	}
	w.mustSync(t, ctx, nav)
	w.mustSync(t, ctx, sup)
	body := "feedback on a shared entry"
	if err := w.write(ctx, sup, "feedback", func() ([]syncengine.Change, error) {
		fid, err := sup.c.WriteFeedback(ctx, id, body)
		return []syncengine.Change{{Entry: id, Field: syncengine.FieldFeedbackBody, Feedback: fid, Text: body}}, err
	}); err != nil {
		t.Fatal(err)
	}
	// The sync pulls first (to hear that the server merges text before
	// it sends the note as a text edit), then pushes: the push's answer
	// is lost.
	sup.script = []fault{noFault, lostResponse}
	w.mustSync(t, ctx, sup)
	if w.stats["sync.failed_by_fault"] != 1 {
		t.Fatalf("the supervisor's push should have lost its answer: %v", w.stats)
	}
	if err := w.update(ctx, nav, "share_supervisor", id, client.Edit{ShareSupervisor: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	w.mustSync(t, ctx, nav)
	if err := w.run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w.stats["push.CHANGE_OUTCOME_DUPLICATE"]; n != 1 {
		t.Fatalf("the retried feedback was answered as a duplicate %d times, want 1", n)
	}
}

// TestSupervisorWritesAndDeletesFeedback: feedback written and deleted
// before a sync leaves the supervisor's view of the entry as it was, so
// no new view comes back in the pull; the supervisor's replica must still
// end with the server's view, not with the deleted item in it.
func TestSupervisorWritesAndDeletesFeedback(t *testing.T) {
	w, ctx := scripted(t)
	nav, sup := w.byCode["PN-A"].devices[0], w.byCode["SUP-1"].devices[0]
	var id syncengine.EntryID
	if err := w.write(ctx, nav, "create", func() ([]syncengine.Change, error) {
		dr := client.Draft{Title: "shared", Body: "words", Date: "2026-03-01", ShareSupervisor: true}
		eid, err := nav.c.Create(ctx, dr)
		id = eid
		return dr.Changes(eid), err
	}); err != nil {
		t.Fatal(err)
	}
	w.mustSync(t, ctx, nav)
	w.mustSync(t, ctx, sup)
	body := "second thoughts"
	var fid syncengine.FeedbackID
	if err := w.write(ctx, sup, "feedback", func() ([]syncengine.Change, error) {
		f, err := sup.c.WriteFeedback(ctx, id, body)
		fid = f
		return []syncengine.Change{{Entry: id, Field: syncengine.FieldFeedbackBody, Feedback: f, Text: body}}, err
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.write(ctx, sup, "delete_feedback", func() ([]syncengine.Change, error) {
		return []syncengine.Change{{Entry: id, Field: syncengine.FieldFeedbackDeleted, Feedback: fid, Flag: true}}, sup.c.DeleteFeedback(ctx, id, fid)
	}); err != nil {
		t.Fatal(err)
	}
	// w.sync checks, after the clean sync, that the replica holds the
	// server's view of every entry, byte for byte.
	w.mustSync(t, ctx, sup)
	if err := w.run(ctx); err != nil {
		t.Fatal(err)
	}
}
