package client

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// liveResults collects what a live query delivers.
type liveResults struct {
	ch chan []string
}

func newLiveResults() *liveResults { return &liveResults{ch: make(chan []string, 100)} }

func (r *liveResults) deliver(p *ListPage, err error) {
	if err != nil {
		r.ch <- []string{"error: " + err.Error()}
		return
	}
	titles := []string{}
	for _, e := range p.Entries {
		titles = append(titles, e.Title)
	}
	r.ch <- titles
}

// next waits for the next delivery.
func (r *liveResults) next(t *testing.T) []string {
	t.Helper()
	select {
	case got := <-r.ch:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("the live query delivered nothing")
		return nil
	}
}

func TestWatchList(t *testing.T) {
	ts := startServer(t)
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	tablet := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mustCreate(t, phone, Draft{Title: "court 1", Date: "2026-11-01", Tags: []string{"court"}})
	r := newLiveResults()
	live, err := phone.WatchList(ListOptions{Tag: "court"}, LiveOptions{Debounce: 20 * time.Millisecond}, r.deliver)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Stop()

	if got := r.next(t); !slices.Equal(got, []string{"court 1"}) {
		t.Fatalf("first result %v", got)
	}
	// A write the query does not select changes nothing it shows; the
	// next result is the one after the write it selects.
	mustCreate(t, phone, Draft{Title: "housing", Date: "2026-11-05", Tags: []string{"housing"}})
	mustCreate(t, phone, Draft{Title: "court 2", Date: "2026-11-02", Tags: []string{"court"}})
	if got := r.next(t); !slices.Equal(got, []string{"court 2", "court 1"}) {
		t.Fatalf("after a local write %v", got)
	}
	// A pull changes it too: the tablet's entry arrives on the phone.
	mustCreate(t, tablet, Draft{Title: "court 3", Date: "2026-11-03", Tags: []string{"court"}})
	mustSync(t, tablet)
	mustSync(t, phone)
	// The push may show first, as the same titles with nothing pending.
	got := r.next(t)
	if slices.Equal(got, []string{"court 2", "court 1"}) {
		got = r.next(t)
	}
	if !slices.Equal(got, []string{"court 3", "court 2", "court 1"}) {
		t.Fatalf("after a pull %v", got)
	}
	live.Stop()
	<-live.Done()
	mustCreate(t, phone, Draft{Title: "court 4", Tags: []string{"court"}})
	select {
	case got := <-r.ch:
		t.Fatalf("delivered after Stop: %v", got)
	default:
	}

	t.Run("ErrInvalid", func(t *testing.T) {
		if _, err := phone.WatchList(ListOptions{PageToken: "garbage"}, LiveOptions{}, r.deliver); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("bad token: %v", err)
		}
		if _, err := phone.WatchSearch(SearchOptions{Query: "?"}, LiveOptions{}, func(*SearchPage, error) {}); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("bad search: %v", err)
		}
	})
}

// TestWatchListCoalesces: changes made while a delivery is running give
// one new result, with all of them, not one result per change.
func TestWatchListCoalesces(t *testing.T) {
	ts := startServer(t)
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	release := make(chan struct{})
	r := newLiveResults()
	first := true
	live, err := nav.WatchList(ListOptions{Limit: 100}, LiveOptions{Debounce: time.Millisecond}, func(p *ListPage, err error) {
		r.deliver(p, err)
		if first {
			first = false
			<-release // a slow app: the first delivery takes a while
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Stop()
	if got := r.next(t); len(got) != 0 {
		t.Fatalf("first result %v", got)
	}
	for i := range 20 {
		mustCreate(t, nav, Draft{Title: fmt.Sprint(i)})
	}
	close(release)
	if got := r.next(t); len(got) != 20 {
		t.Fatalf("after 20 writes during a delivery: a result of %d entries, want all 20 at once", len(got))
	}
	mustCreate(t, nav, Draft{Title: "one more"})
	if got := r.next(t); len(got) != 21 {
		t.Fatalf("the next result holds %d entries, want 21: a result came in between", len(got))
	}
}

// TestWatchSearch: a live search follows writes as a live list does.
func TestWatchSearch(t *testing.T) {
	ts := startServer(t)
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ctx := context.Background()
	id := mustCreate(t, nav, Draft{Title: "day", Body: "met the outreach team"})
	results := make(chan []string, 10)
	live, err := nav.WatchSearch(SearchOptions{Query: "outreach"}, LiveOptions{Debounce: time.Millisecond}, func(p *SearchPage, err error) {
		var s []string
		for _, h := range p.Hits {
			s = append(s, h.Snippet)
		}
		results <- s
	})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Stop()
	if got := <-results; !slices.Equal(got, []string{"met the [outreach] team"}) {
		t.Fatalf("first result %q", got)
	}
	if err := nav.Update(ctx, id, Edit{Body: ptr("met nobody")}); err != nil {
		t.Fatal(err)
	}
	if got := <-results; len(got) != 0 {
		t.Fatalf("after the edit %q", got)
	}
}

// TestCloseEndsLiveQueries: Close ends every live query, a Stop from
// within a delivery does not wait for itself, and a closed client starts
// none.
func TestCloseEndsLiveQueries(t *testing.T) {
	ts := startServer(t)
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	var self *Live
	ready := make(chan struct{})
	stopped := make(chan struct{})
	self, err := nav.WatchList(ListOptions{}, LiveOptions{}, func(*ListPage, error) {
		<-ready
		self.Stop()
		close(stopped)
	})
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	<-stopped
	<-self.Done()
	other, err := nav.WatchList(ListOptions{}, LiveOptions{}, func(*ListPage, error) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := nav.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-other.Done():
	default:
		t.Fatal("a live query outlived Close")
	}
	if _, err := nav.WatchList(ListOptions{}, LiveOptions{}, func(*ListPage, error) {}); err == nil {
		t.Fatal("a closed client started a live query")
	}
}
