package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/faultproxy"
	"github.com/diarysync/diarysync/study"
)

// statusLog records every status a client reports while a test runs, and
// checks each against what its state promises.
type statusLog struct {
	mu   sync.Mutex
	seen map[ConnState]int
	bad  []string
}

func (l *statusLog) check(s Status) {
	c := s.Connectivity
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen[c.State]++
	var problem string
	switch c.State {
	case Retrying:
		if c.RetryAt.IsZero() || c.LastError == "" || c.RetryAt.Before(c.LastErrorAt) {
			problem = "retrying with no time to retry at, or no error"
		}
	case Online:
		if c.NetworkError || c.LastContact.IsZero() {
			problem = "online without contact, or with a network error"
		}
	case Offline:
		if !c.RetryAt.IsZero() {
			problem = "offline with a retry scheduled"
		}
	case Syncing:
	default:
		problem = "unknown state"
	}
	if problem != "" {
		l.bad = append(l.bad, fmt.Sprintf("%s: %+v", problem, c))
	}
}

func (l *statusLog) count(s ConnState) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[s]
}

// waitStatus waits until c's status satisfies ok, logging every status
// it sees on the way.
func waitStatus(t *testing.T, c *Client, log *statusLog, what string, ok func(Status) bool) Status {
	t.Helper()
	events, stop := c.Watch()
	defer stop()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond) // RetryAt passing is not an event
	defer tick.Stop()
	for {
		st, err := c.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		log.check(st)
		if ok(st) {
			return st
		}
		select {
		case <-events:
		case <-tick.C:
		case <-deadline:
			t.Fatalf("waiting for %s; the status is %+v", what, st)
		}
	}
}

// TestConnectivityOfflineFlakyOnline takes a running client from no
// network, through a flaky one, to a good one, without restarting it: at
// each stage the status says what is true, and at the end every change
// made on either side has reached the other.
func TestConnectivityOfflineFlakyOnline(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	proxy, err := faultproxy.Start(strings.TrimPrefix(ts.URL, "http://"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	laptop := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	phone := MustOpen(t, Options{})
	p, err := phone.Enroll(ctx, proxy.URL(), ts.code(t, study.RoleNavigator, "PN-A"), "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := laptop.ApproveDevice(ctx, p.DeviceID); err != nil {
		t.Fatal(err)
	}
	log := &statusLog{seen: map[ConnState]int{}}
	if c := phone.Connectivity(); c.State != Offline || !c.LastContact.IsZero() {
		t.Fatalf("before any sync: %+v", c)
	}

	// No network: every connection is reset, the open ones too.
	proxy.SetPolicy(func(int) faultproxy.Fault { return faultproxy.Fault{Kind: faultproxy.Reset} })
	proxy.Strike(faultproxy.Reset, 0)
	err = phone.Sync(ctx)
	var ne *NetworkError
	if !errors.As(err, &ne) {
		t.Fatalf("sync with no network: %v", err)
	}
	if c := phone.Connectivity(); c.State != Offline || !c.NetworkError || !strings.Contains(c.LastError, "cannot be reached") {
		t.Fatalf("after a failed sync, not running: %+v", c)
	}
	for i := range 10 {
		mustCreate(t, phone, Draft{Title: fmt.Sprint("offline ", i)})
	}
	queued, err := phone.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runDone := make(chan error, 1)
	go func() {
		runDone <- phone.Run(runCtx, RunOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Debounce: 5 * time.Millisecond, Interval: time.Hour, StreamTimeout: 2 * time.Second})
	}()
	st := waitStatus(t, phone, log, "retrying with no network", func(s Status) bool { return s.Connectivity.State == Retrying })
	if st.Pending != queued.Pending || st.Pending == 0 || !st.Connectivity.NetworkError {
		t.Fatalf("retrying with no network: %+v", st)
	}

	// A flaky network: every other connection is reset as it opens, and
	// every open one is cut now and then.
	proxy.SetPolicy(func(n int) faultproxy.Fault {
		if n%2 == 0 {
			return faultproxy.Fault{Kind: faultproxy.Reset}
		}
		return faultproxy.Fault{Kind: faultproxy.Drop, After: int64(4000 + 997*n%8000)}
	})
	strikes := make(chan struct{})
	var strikers sync.WaitGroup
	strikers.Add(1)
	go func() {
		defer strikers.Done()
		for {
			select {
			case <-strikes:
				return
			case <-time.After(30 * time.Millisecond):
				proxy.Strike(faultproxy.Reset, 0)
			}
		}
	}()
	retryingBefore := log.count(Retrying)
	for i := range 10 {
		mustCreate(t, phone, Draft{Title: fmt.Sprint("flaky ", i)})
		mustCreate(t, laptop, Draft{Title: fmt.Sprint("from the laptop ", i)})
	}
	mustSync(t, laptop)
	waitStatus(t, phone, log, "the flaky network to carry every change", func(s Status) bool {
		return s.Pending == 0 && log.count(Retrying) > retryingBefore
	})
	close(strikes)
	strikers.Wait()

	// A good network again: the phone is told, and catches up at once.
	proxy.SetPolicy(nil)
	back := time.Now()
	phone.NetworkChanged()
	for i := range 5 {
		mustCreate(t, laptop, Draft{Title: fmt.Sprint("later from the laptop ", i)})
	}
	mustSync(t, laptop)
	waitStatus(t, phone, log, "online and caught up", func(s Status) bool {
		c := s.Connectivity
		if c.State != Online || c.LastError != "" || s.Pending != 0 || c.LastContact.Before(back) {
			return false
		}
		p, err := phone.List(ctx, ListOptions{Limit: 100})
		return err == nil && len(p.Entries) == 35
	})
	stopRun()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	if c := phone.Connectivity(); c.State != Online || !c.RetryAt.IsZero() {
		t.Fatalf("after Run stopped: %+v", c)
	}
	mustSync(t, laptop)
	assertConverged(t, phone, laptop)
	if len(log.bad) > 0 {
		t.Fatalf("statuses that said something untrue:\n%s", strings.Join(log.bad, "\n"))
	}
	if proxy.Stats().Total() == 0 {
		t.Fatal("no fault struck")
	}
	t.Logf("states seen: %v; faults: %v", log.seen, proxy.Stats().Struck)
}
