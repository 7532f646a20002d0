package mobile

import (
	"context"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/study"
)

// Connectivity states of Status.Connectivity.
const (
	Online   = string(client.Online)   // the server answered the last attempt
	Offline  = string(client.Offline)  // the server cannot be reached (or was not tried yet), and no retry is due
	Syncing  = string(client.Syncing)  // a sync is in flight
	Retrying = string(client.Retrying) // the last attempt failed; background sync tries again at RetryAtMillis
)

// SyncNow pushes what waits and pulls until caught up, and returns when
// done. It works whether or not background sync is started; Stop and
// Close cut it short (CodeCancelled), which loses nothing.
func (m *Client) SyncNow() error {
	ctx, done, err := m.begin()
	if err != nil {
		return err
	}
	defer done()
	return wrap(m.c.Sync(ctx))
}

// Start starts background sync, for when the app comes to the
// foreground: it syncs at once, then after each write (a moment later,
// so that a burst goes in one push), whenever the server says there is
// something new, on a timer, and after a failure with growing waits.
// Starting what is started does nothing.
func (m *Client) Start() error {
	if m.c == nil {
		return errNotOpen
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	if m.runCancel != nil {
		return nil
	}
	if _, ok := m.c.Profile(); !ok {
		return &Error{Code: CodeNotEnrolled, Message: "this device is not enrolled: enrol it with a one-time code first"}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	o := client.RunOptions{
		Interval:   duration(m.opts.SyncIntervalMillis, 0),
		Debounce:   duration(m.opts.PushDelayMillis, 0),
		MinBackoff: duration(m.opts.MinRetryMillis, 0),
		MaxBackoff: duration(m.opts.MaxRetryMillis, 0),
	}
	go func() {
		defer close(done)
		m.c.Run(ctx, o)
	}()
	m.runCancel, m.runDone = cancel, done
	return nil
}

// Stop stops background sync, for when the app goes to the background.
// It cuts a sync in flight (background or SyncNow) rather than finish
// it, and returns once no sync is running: the phone may suspend the app
// a moment later. Cutting loses nothing: every page a pull applied was
// written with its position in one transaction, and a change leaves the
// outbox only once the server's answer for it is written, so the next
// sync resends what had no answer (the server keeps one copy) and pulls
// from where the last page ended.
func (m *Client) Stop() {
	if m.c == nil {
		return
	}
	m.mu.Lock()
	cancel, done := m.runCancel, m.runDone
	m.runCancel, m.runDone = nil, nil
	calls := m.calls
	m.calls = newGeneration()
	m.mu.Unlock()
	calls.cancel()
	if cancel != nil {
		cancel()
		<-done
	}
	calls.wg.Wait()
}

// Started reports whether background sync is started.
func (m *Client) Started() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runCancel != nil
}

// NetworkChanged tells the library that the phone's network changed
// (from the platform's connectivity callback): connections made on the
// old network are dropped and background sync, if started, retries at
// once instead of waiting out its backoff.
func (m *Client) NetworkChanged() {
	if m.c != nil {
		m.c.NetworkChanged()
	}
}

// Status is what an app shows about sync.
type Status struct {
	// Enrolled says this device has enrolled, and was not revoked.
	Enrolled bool
	// DeviceState is DevicePending, DeviceActive or DeviceRevoked (then
	// RevokedBy, Revocation, RevokedMessage and LostChanges say how, and
	// the diary on this device has been wiped).
	DeviceState string
	// Revocation says how this device was revoked: self, user, admin,
	// reset, denied or deactivated; empty if it was not.
	Revocation string
	// RevokedBy is the study code of whoever revoked this device, or
	// "system".
	RevokedBy string
	// RevokedMessage is the server's words about the revocation, for a
	// person.
	RevokedMessage string
	// LostChanges counts the changes this device held that the server
	// never accepted when it was revoked: they are gone, and the person
	// is told how many.
	LostChanges int
	// AwaitingApproval counts this account's devices that wait for
	// approval, as of the last sync: Devices lists them, ApproveDevice
	// and DenyDevice answer them.
	AwaitingApproval int
	// Started says background sync is started.
	Started bool
	// Pending counts the changes waiting to be pushed.
	Pending int
	// Refused counts the changes the server refused (see Refused).
	Refused int
	// Connectivity is Online, Offline, Syncing or Retrying.
	Connectivity string
	// ConnectivitySinceMillis is when Connectivity began.
	ConnectivitySinceMillis int64
	// RetryAtMillis, while Retrying, is when the next attempt comes.
	RetryAtMillis int64
	// LastContactMillis is when the server last answered; 0: not since
	// the diary was opened.
	LastContactMillis int64
	// LastError is why the last attempt failed, for a person; empty once
	// one succeeds.
	LastError string
	// LastErrorMillis is when LastError happened.
	LastErrorMillis int64
	// NetworkError says the last attempt failed because the server could
	// not be reached, rather than because it answered with an error.
	NetworkError bool
	// LastSyncMillis is when the last sync that completed ended.
	LastSyncMillis int64
	// Syncing says a sync is in progress; Phase, Pushed, Pulled and
	// Remaining describe it.
	Syncing bool
	// Phase is the phase of the sync in progress, "push" or "pull".
	Phase string
	// Pushed counts the changes the sync in progress has sent so far.
	Pushed int
	// Pulled counts the entries and removals the sync in progress has
	// applied so far.
	Pulled int
	// Remaining is how many entries and removals still wait on the
	// server, as far as the sync in progress knows.
	Remaining int64
	// ClockOffsetMillis is the correction applied to this phone's clock,
	// learnt from the server.
	ClockOffsetMillis int64
}

// Status returns the sync status.
func (m *Client) Status() (*Status, error) {
	ctx, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	s, err := m.c.Status(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	return m.statusOf(s), nil
}

func (m *Client) statusOf(s client.Status) *Status {
	c := s.Connectivity
	out := &Status{
		Enrolled: s.Enrolled, DeviceState: deviceState(s.DeviceState), AwaitingApproval: s.AwaitingApprovalCount, Started: m.Started(), Pending: s.Pending, Refused: s.Refused,
		Connectivity: string(c.State), ConnectivitySinceMillis: millis(c.Since), RetryAtMillis: millis(c.RetryAt),
		LastContactMillis: millis(c.LastContact), LastError: c.LastError, LastErrorMillis: millis(c.LastErrorAt), NetworkError: c.NetworkError,
		LastSyncMillis: millis(s.LastSync), Syncing: s.Progress.Running, Phase: s.Progress.Phase, Pushed: s.Progress.Pushed,
		Pulled: s.Progress.Pulled, Remaining: int64(s.Progress.Remaining), ClockOffsetMillis: s.ClockOffset.Milliseconds(),
	}
	if r := s.Revoked; r != nil {
		out.Revocation, out.RevokedBy, out.RevokedMessage, out.LostChanges = r.Reason.String(), r.By, r.Message, r.LostChanges
	}
	return out
}

// RefusedChange is a change the server refused, kept on this device so
// that the person who made it sees it, with what they wrote and why.
type RefusedChange struct {
	// Seq orders refused changes; DismissRefused takes it.
	Seq int64
	// EntryID is the entry the change was for.
	EntryID string
	// FeedbackID is the feedback note the change was for, if it was for
	// one; else empty.
	FeedbackID string
	// Field is what the change set: title, body, date, mood, tag,
	// share_supervisor, share_research, deleted, feedback_body or
	// feedback_deleted.
	Field string
	// Text is the value of a title, body, date or feedback_body change.
	Text string
	// Number is the value of a mood change.
	Number int64
	// Flag is the value of a sharing or deleted change, or, for a tag,
	// whether it was added (true) or removed.
	Flag bool
	// Tag is the tag a tag change added or removed.
	Tag string
	// Reason is why, as a stable code: not_permitted, invalid,
	// too_large, erased and so on.
	Reason string
	// Message says why for a person.
	Message string
	// RefusedAtMillis is when the server's refusal reached this device.
	RefusedAtMillis int64
}

// RefusedPage is one page of refused changes, oldest first.
type RefusedPage struct {
	items []*RefusedChange
	// Next is the afterSeq of the next page; 0 on the last page.
	Next int64
}

// Len returns the number of refused changes on the page.
func (p *RefusedPage) Len() int { return len(p.items) }

// Get returns the i-th refused change, or nil when i is out of range.
func (p *RefusedPage) Get(i int) *RefusedChange {
	if i < 0 || i >= len(p.items) {
		return nil
	}
	return p.items[i]
}

// Refused returns a page of refused changes after afterSeq (0 for the
// first page), at most limit of them (default 100, at most 1000).
func (m *Client) Refused(afterSeq int64, limit int) (*RefusedPage, error) {
	ctx, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	rs, err := m.c.Refused(ctx, afterSeq, limit)
	if err != nil {
		return nil, wrap(err)
	}
	p := &RefusedPage{}
	for _, r := range rs {
		rc := &RefusedChange{Seq: r.Seq, EntryID: r.Change.Entry.String(), Field: r.Change.Field.String(), Text: r.Change.Text,
			Number: r.Change.Number, Flag: r.Change.Flag, Tag: r.Change.Tag, Reason: r.Reason.String(),
			Message: r.Message, RefusedAtMillis: millis(r.RefusedAt)}
		if r.Change.Field.IsFeedback() {
			rc.FeedbackID = r.Change.Feedback.String()
		}
		p.items = append(p.items, rc)
	}
	if len(rs) == limit {
		p.Next = rs[len(rs)-1].Seq
	}
	return p, nil
}

// DismissRefused forgets a refused change once its author has seen it.
func (m *Client) DismissRefused(seq int64) error {
	ctx, done, err := m.begin()
	if err != nil {
		return err
	}
	defer done()
	return wrap(m.c.DismissRefused(ctx, seq))
}

// liveDelay is the debounce of watches.
func (m *Client) liveDelay() time.Duration {
	return duration(m.opts.LiveDelayMillis, 100*time.Millisecond)
}

// deviceState names a device state; a device not enrolled has none.
func deviceState(s study.DeviceState) string {
	if s == 0 {
		return ""
	}
	return s.String()
}
