// Package mobile is the diarysync client for phone apps, in the shape
// that gomobile bind turns into a Kotlin/Java and a Swift/Objective-C
// library: ids are strings, times are int64 Unix milliseconds, lists are
// small list types with Len and Get, listeners are interfaces the app
// implements, and every error is an *Error whose text is "code: message"
// (ParseError reads it back from an exception or NSError).
//
// Every method that reads or writes the replica or the network blocks
// until it is done: call it off the UI thread. Listeners are called on a
// thread of the library, one call at a time: hand what they get to the UI
// thread. See docs/MOBILE.md.
package mobile

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/diarysync/diarysync/client"
)

// Options configures Open. A nil *Options, or a zero field, takes the
// default.
type Options struct {
	// SyncIntervalMillis is how often background sync runs when nothing
	// prompts it (default 5 minutes); the server's stream prompts it as
	// soon as there is something new.
	SyncIntervalMillis int64
	// PushDelayMillis is how long background sync waits after a write
	// before it pushes, so that a burst of edits goes in one push
	// (default 500 ms).
	PushDelayMillis int64
	// MinRetryMillis is the wait after a first failure (default one
	// second); each failure after it doubles the wait, up to
	// MaxRetryMillis. NetworkChanged cuts a wait short.
	MinRetryMillis int64
	// MaxRetryMillis bounds the wait between attempts after failures
	// (default 5 minutes).
	MaxRetryMillis int64
	// LiveDelayMillis is how long a watched list lets changes gather
	// before it runs again (default 100 ms).
	LiveDelayMillis int64
}

// NewOptions returns options with every default.
func NewOptions() *Options { return &Options{} }

// Client is one person's diary on this device: the replica in one SQLite
// file, and its sync with the server. Its methods may be called from any
// thread.
type Client struct {
	c    *client.Client
	opts Options

	mu        sync.Mutex
	closed    bool
	runCancel context.CancelFunc // background sync, while started
	runDone   chan struct{}
	calls     *generation    // the calls Stop cuts next
	watchers  sync.WaitGroup // goroutines of WatchStatus
	subs      map[*Subscription]bool
}

// generation is the calls made between two Stops: Stop cancels their
// context and waits for them. Calls join the current generation under
// Client.mu and Stop replaces it under Client.mu before it waits, so
// every Add happens before the Wait.
type generation struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newGeneration() *generation {
	g := &generation{}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

// Open opens the diary in the SQLite file at path (in the app's private
// storage), creating it if needed. opts may be nil.
func Open(path string, opts *Options) (*Client, error) {
	if strings.TrimSpace(path) == "" {
		return nil, &Error{Code: CodeInvalid, Message: "the diary needs a file: the path is empty"}
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	for _, v := range []int64{o.SyncIntervalMillis, o.PushDelayMillis, o.MinRetryMillis, o.MaxRetryMillis, o.LiveDelayMillis} {
		if v < 0 {
			return nil, &Error{Code: CodeInvalid, Message: "durations in the options cannot be negative"}
		}
	}
	c, err := client.Open(context.Background(), path, client.Options{})
	if err != nil {
		return nil, wrap(err)
	}
	return &Client{c: c, opts: o, subs: map[*Subscription]bool{}, calls: newGeneration()}, nil
}

// Close stops background sync and every watch, cuts a sync in flight
// (which loses nothing: see Stop), and closes the diary. No goroutine of
// the library is left when it returns. Close may be called twice, but
// not from within a listener: it waits for the listeners to return.
func (m *Client) Close() error {
	if m.c == nil {
		return nil
	}
	// Closed first, so that no sync or watch starts while Close waits
	// for the ones running.
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	subs := make([]*Subscription, 0, len(m.subs))
	for s := range m.subs {
		subs = append(subs, s)
	}
	m.mu.Unlock()
	m.Stop()
	for _, s := range subs {
		s.Stop()
	}
	m.watchers.Wait()
	return wrap(m.c.Close())
}

// errNotOpen is what a Client made by its bare constructor (new Client()
// in Java) answers: only Open makes a working one.
var errNotOpen = &Error{Code: CodeClosed, Message: "this diary was not opened: open it with Mobile.open"}

// begin starts a call: it returns the call's context, which Stop and
// Close cancel, and done, which the call must run when it returns; or
// errClosed.
func (m *Client) begin() (ctx context.Context, done func(), err error) {
	if m.c == nil {
		return nil, nil, errNotOpen
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, nil, errClosed
	}
	g := m.calls
	g.wg.Add(1)
	return g.ctx, g.wg.Done, nil
}

// EnrolLink is what an enrolment QR code says: the server's address and
// a one-time code.
type EnrolLink struct {
	// ServerURL is the server's address, an http or https URL.
	ServerURL string
	// Code is the one-time enrolment code; whether it still works is
	// for the server to say.
	Code string
}

// ParseEnrolLink reads the text of a scanned enrolment QR code
// (diarysync:enrol?server=…&code=…).
func ParseEnrolLink(link string) (*EnrolLink, error) {
	server, code, err := client.ParseEnrolLink(link)
	if err != nil {
		return nil, wrap(err)
	}
	return &EnrolLink{ServerURL: server, Code: code}, nil
}

// Profile is who this diary belongs to and where it syncs.
type Profile struct {
	// ServerURL is the server this diary syncs with.
	ServerURL string
	// DeviceID is this device's id on the server, as the study's admin
	// sees it in the device list.
	DeviceID string
	// Role is navigator, supervisor, researcher or admin.
	Role string
	// StudyCode is the person's code in the study, e.g. PN-A.
	StudyCode string
	// DisplayName is the person's name as the study's admin entered it.
	DisplayName string
	// EnrolledAtMillis is when this device enrolled.
	EnrolledAtMillis int64
}

func profileOf(p client.Profile) *Profile {
	return &Profile{ServerURL: p.ServerURL, DeviceID: p.DeviceID, Role: p.Role.String(), StudyCode: p.StudyCode,
		DisplayName: p.DisplayName, EnrolledAtMillis: millis(p.EnrolledAt)}
}

// Enrol exchanges a one-time enrolment code for this device's
// credentials. deviceName is what the person and the study's admin see
// in the device list ("Ana's phone").
func (m *Client) Enrol(serverURL, code, deviceName string) (*Profile, error) {
	ctx, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	p, err := m.c.Enroll(ctx, serverURL, code, deviceName)
	if err != nil {
		return nil, wrap(err)
	}
	return profileOf(p), nil
}

// EnrolWithLink enrols with the text of a scanned enrolment QR code.
func (m *Client) EnrolWithLink(link, deviceName string) (*Profile, error) {
	l, err := ParseEnrolLink(link)
	if err != nil {
		return nil, err
	}
	return m.Enrol(l.ServerURL, l.Code, deviceName)
}

// Profile returns who this diary belongs to, or nil before it enrols.
func (m *Client) Profile() *Profile {
	if m.c == nil {
		return nil
	}
	p, ok := m.c.Profile()
	if !ok {
		return nil
	}
	return profileOf(p)
}

// millis is t in Unix milliseconds, and 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func duration(ms int64, def time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return time.Duration(ms) * time.Millisecond
}
