package client

import (
	"testing"

	"github.com/diarysync/diarysync/study"
)

// TestWatchKeepsLastEventOfEachKind: a watcher that reads nothing while a
// sync runs still finds, afterwards, an event of every kind the sync
// sent. A sync that pulls one entry sends Status, Status, Entries,
// Status; a watcher that could hold only the first two would never learn
// that entries changed.
func TestWatchKeepsLastEventOfEachKind(t *testing.T) {
	ts := startServer(t)
	a := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	b := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	mustCreate(t, a, Draft{Title: "from the other phone"})
	mustSync(t, a)

	events, stop := b.Watch()
	defer stop()
	mustSync(t, b) // nobody reads events meanwhile
	got := map[Event]int{}
	for done := false; !done; {
		select {
		case e := <-events:
			got[e]++
		default:
			done = true
		}
	}
	if got[EventEntries] != 1 || got[EventStatus] != 1 {
		t.Fatalf("after a sync that pulled an entry, the watcher holds %v; want one Entries and one Status event", got)
	}

	// Events that wait are not repeated: a second burst adds nothing
	// the watcher has not been told, and a read frees the place.
	b.watchers.notify(EventStatus)
	b.watchers.notify(EventEntries)
	b.watchers.notify(EventStatus)
	first := <-events
	b.watchers.notify(first)
	n := 0
	for done := false; !done; {
		select {
		case <-events:
			n++
		default:
			done = true
		}
	}
	if n != 2 {
		t.Fatalf("the watcher holds %d events after a read and a repeat; want 2 (one of each kind)", n)
	}
}
