package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
)

// TestPendingDeviceTextAfterApproval: a device waiting for approval
// writes a body, and its push is lost; it is approved, and another device
// of the person, whose clock runs three hours behind, adds a word to the
// body; then the first device edits the body again and syncs. Both
// edits survive: the waiting device's edits go to the server as edits of
// its text, never as whole texts, which the server would merge as
// written after every character stamped before them (the late clock's
// word among them) and so remove the word.
func TestPendingDeviceTextAfterApproval(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t)
	var failPush atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failPush.Load() && strings.HasSuffix(r.URL.Path, "/"+strings.TrimPrefix(diaryv1connect.SyncServicePushProcedure, "/")) {
			http.Error(w, "no network", http.StatusServiceUnavailable)
			return
		}
		ts.Server.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	var skew atomic.Int64
	phoneClock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{Now: phoneClock})
	mustSync(t, phone)
	tablet := MustOpen(t, Options{})
	p, err := tablet.Enroll(ctx, front.URL, ts.code(t, study.RoleNavigator, "PN-A"), "tablet")
	if err != nil {
		t.Fatal(err)
	}

	// Waiting for approval, the tablet writes an entry, and then edits
	// its body; the push of the edit is lost.
	id := mustCreate(t, tablet, Draft{Title: "Tuesday", Body: "Went to the hostel."})
	mustSync(t, tablet)
	time.Sleep(20 * time.Millisecond) // the edit's clock is after the entry's, and after what the phone stamps next
	if err := tablet.Update(ctx, id, Edit{Body: ptr("We went to the hostel.")}); err != nil {
		t.Fatal(err)
	}
	failPush.Store(true)
	if err := tablet.Sync(ctx); err == nil {
		t.Fatal("a sync whose push was lost succeeded")
	}
	failPush.Store(false)

	// Approved, its entry reaches the phone, whose clock is then put
	// three hours back and which adds a word; then the tablet syncs.
	if _, err := phone.ApproveDevice(ctx, p.DeviceID); err != nil {
		t.Fatal(err)
	}
	mustSync(t, phone)
	skew.Store(int64(-3 * time.Hour)) // the phone's clock is put back, and it has not synced since
	if err := phone.Update(ctx, id, Edit{Body: ptr("Went to the hostel. Raining.")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, phone)
	mustSync(t, tablet)
	mustSync(t, phone)
	for name, c := range map[string]*Client{"phone": phone, "tablet": tablet} {
		e, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(e.Body, "Raining") || !strings.HasPrefix(e.Body, "We went") {
			t.Fatalf("the %s holds %q: an edit was lost", name, e.Body)
		}
	}
}
