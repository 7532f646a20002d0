package client

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ConnState is what this device knows of its connection to the server.
type ConnState string

// Connection states.
const (
	// Online: the last attempt to reach the server got its answer (which
	// may be an error the server gave: see LastError).
	Online ConnState = "online"
	// Offline: the server could not be reached, or has not been tried
	// yet in this process, and no attempt is scheduled (Run is not
	// running).
	Offline ConnState = "offline"
	// Syncing: a sync is in flight.
	Syncing ConnState = "syncing"
	// Retrying: the last attempt failed and Run tries again at RetryAt.
	Retrying ConnState = "retrying"
)

// Connectivity says whether the server can be reached, as this process
// has found since it opened the replica.
type Connectivity struct {
	State ConnState
	// Since is when State began.
	Since time.Time
	// RetryAt, while Retrying, is when Run next tries to sync or to open
	// its stream, whichever comes first.
	RetryAt time.Time
	// LastContact is when the server last answered (zero: not yet in
	// this process).
	LastContact time.Time
	// LastError is why the last attempt failed, for a person; empty once
	// one succeeds. NetworkError says the server could not be reached,
	// rather than answering with an error.
	LastError    string
	LastErrorAt  time.Time
	NetworkError bool
}

// connTracker follows the outcome of syncs and of Run's stream. Its
// notify is called (without its lock held) whenever the state it reports
// changes.
type connTracker struct {
	mu        sync.Mutex
	now       func() time.Time
	notify    func()
	syncing   bool
	running   bool      // Run is running
	failed    bool      // the last attempt failed
	network   bool      // ... because the server could not be reached
	lastErr   string    // its error
	lastErrAt time.Time // when
	contact   time.Time // the server's last answer
	retryAt   time.Time // Run's next attempt after a failure; zero if none
	nextRun   time.Time // when Run's timer next starts a sync
	state     ConnState
	since     time.Time
}

// derive returns the state the fields say; t.mu is held.
func (t *connTracker) derive() ConnState {
	switch {
	case t.syncing:
		return Syncing
	case t.failed && t.running && !t.retryAt.IsZero():
		return Retrying
	case t.failed && !t.network:
		return Online
	case t.failed || t.contact.IsZero():
		return Offline
	}
	return Online
}

// update applies f and calls notify if the state changed.
func (t *connTracker) update(f func()) {
	t.mu.Lock()
	before := Connectivity{State: t.state, RetryAt: t.retryAt, LastError: t.lastErr}
	f()
	if s := t.derive(); s != t.state {
		t.state, t.since = s, t.now()
	}
	changed := before != Connectivity{State: t.state, RetryAt: t.retryAt, LastError: t.lastErr}
	t.mu.Unlock()
	if changed && t.notify != nil {
		t.notify()
	}
}

func (t *connTracker) get() Connectivity {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.state == "" {
		t.state, t.since = t.derive(), t.now()
	}
	c := Connectivity{State: t.state, Since: t.since, LastContact: t.contact}
	if t.failed {
		c.LastError, c.LastErrorAt, c.NetworkError = t.lastErr, t.lastErrAt, t.network
	}
	if t.state == Retrying {
		c.RetryAt = t.retryAt
	}
	return c
}

func (t *connTracker) syncStarted() {
	t.update(func() { t.syncing, t.retryAt = true, time.Time{} })
}

// retryKey carries, in the context of a sync that Run starts, how long
// Run waits before it tries again if that sync fails.
type retryKey struct{}

// syncEnded records how a sync ended. A sync cut short by its caller
// (Stop, Close, a cancelled context) says nothing of the network and
// leaves what was known before. A failure while Run is running is
// retried: after the wait ctx carries for a sync Run started, and at
// Run's next sync otherwise.
func (t *connTracker) syncEnded(ctx context.Context, err error) {
	t.update(func() {
		t.syncing = false
		switch {
		case err == nil:
			t.failed, t.network, t.lastErr = false, false, ""
			t.contact = t.now()
		case errors.Is(err, context.Canceled):
		default:
			t.attemptFailed(err)
			if !t.running {
				break
			}
			if wait, ok := ctx.Value(retryKey{}).(time.Duration); ok {
				t.retryAt = t.lastErrAt.Add(wait)
			} else if t.nextRun.After(t.lastErrAt) {
				t.retryAt = t.nextRun
			}
		}
	})
}

// scheduled records when Run's timer next starts a sync.
func (t *connTracker) scheduled(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nextRun = at
}

// attemptFailed records a failed attempt; t.mu is held.
func (t *connTracker) attemptFailed(err error) {
	t.failed, t.lastErr, t.lastErrAt = true, err.Error(), t.now()
	var ne *NetworkError
	t.network = errors.As(err, &ne)
	if !t.network {
		t.contact = t.lastErrAt // the server answered, with an error
	}
}

// streamOpened records that Run's stream got the server's first message.
func (t *connTracker) streamOpened() {
	t.update(func() { t.contact = t.now() })
}

// streamFailed records that Run's stream could not be opened: the next
// attempt is at retry. Only a failure to reach the server counts: an
// error the server answered to a stream is for the next sync to report.
func (t *connTracker) streamFailed(err error, retry time.Time) {
	var ne *NetworkError
	if !errors.As(err, &ne) {
		return
	}
	t.update(func() {
		if t.syncing {
			return // the sync in flight will say
		}
		t.attemptFailed(err)
		// The sooner of the two next attempts, unless Run's is overdue
		// (its sync is about to start).
		if t.retryAt.IsZero() || retry.Before(t.retryAt) || !t.retryAt.After(t.lastErrAt) {
			t.retryAt = retry
		}
	})
}

func (t *connTracker) setRunning(running bool) {
	t.update(func() {
		t.running = running
		if !running {
			t.retryAt = time.Time{}
		}
	})
}

// needsContact reports whether the last attempt failed, so that a stream
// that opens should make Run sync at once.
func (t *connTracker) needsContact() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// Connectivity returns what this process knows of the connection to the
// server now.
func (c *Client) Connectivity() Connectivity { return c.conn.get() }

// netSignal is a broadcast: each NetworkChanged closes the current
// channel and makes a new one.
type netSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next NetworkChanged.
func (n *netSignal) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *netSignal) fire() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
	}
	n.ch = make(chan struct{})
}

// NetworkChanged tells the client that the device's network changed (the
// phone joined a Wi-Fi network, or came out of a tunnel): connections made
// on the old network are dropped, and Run, if it is running, stops
// backing off, syncs at once (after a sync in flight, if there is one)
// and opens its stream again.
func (c *Client) NetworkChanged() {
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
	c.network.fire()
}
