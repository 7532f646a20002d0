package mobile

import (
	"context"
	"strings"
	"time"

	"github.com/diarysync/diarysync/client"
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
	if _, err := m.ctx(); err != nil {
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errClosed
	}
	ctx := m.syncCtx
	m.syncs.Add(1)
	m.mu.Unlock()
	defer m.syncs.Done()
	return wrap(m.c.Sync(ctx))
}

// Start starts background sync, for when the app comes to the
// foreground: it syncs at once, then after each write (a moment later,
// so that a burst goes in one push), whenever the server says there is
// something new, on a timer, and after a failure with growing waits.
// Starting what is started does nothing.
func (m *Client) Start() error {
	if _, err := m.ctx(); err != nil {
		return err
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
	m.syncStop()
	m.syncCtx, m.syncStop = context.WithCancel(context.Background())
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	m.syncs.Wait()
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
	Enrolled bool
	// Started says background sync is started.
	Started bool
	// Pending counts changes waiting to be pushed; Refused, changes the
	// server refused (see Refused).
	Pending int
	Refused int
	// Connectivity is Online, Offline, Syncing or Retrying; since when,
	// and, while Retrying, when the next attempt comes.
	Connectivity            string
	ConnectivitySinceMillis int64
	RetryAtMillis           int64
	LastContactMillis       int64
	// LastError is why the last attempt failed, for a person; empty once
	// one succeeds. NetworkError says the server could not be reached.
	LastError       string
	LastErrorMillis int64
	NetworkError    bool
	// LastSyncMillis is when the last sync that completed ended.
	LastSyncMillis int64
	// A sync in progress: its phase ("push" or "pull"), what it sent and
	// applied so far, and what the server said still waits.
	Syncing   bool
	Phase     string
	Pushed    int
	Pulled    int
	Remaining int64
	// ClockOffsetMillis is the correction applied to this phone's clock,
	// learnt from the server.
	ClockOffsetMillis int64
}

// Status returns the sync status.
func (m *Client) Status() (*Status, error) {
	ctx, err := m.ctx()
	if err != nil {
		return nil, err
	}
	s, err := m.c.Status(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	return m.statusOf(s), nil
}

func (m *Client) statusOf(s client.Status) *Status {
	c := s.Connectivity
	return &Status{
		Enrolled: s.Enrolled, Started: m.Started(), Pending: s.Pending, Refused: s.Refused,
		Connectivity: string(c.State), ConnectivitySinceMillis: millis(c.Since), RetryAtMillis: millis(c.RetryAt),
		LastContactMillis: millis(c.LastContact), LastError: c.LastError, LastErrorMillis: millis(c.LastErrorAt), NetworkError: c.NetworkError,
		LastSyncMillis: millis(s.LastSync), Syncing: s.Progress.Running, Phase: s.Progress.Phase, Pushed: s.Progress.Pushed,
		Pulled: s.Progress.Pulled, Remaining: int64(s.Progress.Remaining), ClockOffsetMillis: s.ClockOffset.Milliseconds(),
	}
}

// RefusedChange is a change the server refused, kept on this device so
// that the person who made it sees it, with what they wrote and why.
type RefusedChange struct {
	// Seq orders refused changes; DismissRefused takes it.
	Seq        int64
	EntryID    string
	FeedbackID string // for a feedback note's change; else empty
	// Field is what the change set: title, body, date, mood, tag,
	// share_supervisor, share_research, deleted, feedback_body or
	// feedback_deleted; Text, Number, Flag and Tag its value.
	Field  string
	Text   string
	Number int64
	Flag   bool
	Tag    string
	// Reason is why, as a stable code (not_permitted, invalid,
	// too_large, erased, ...); Message says it for a person.
	Reason          string
	Message         string
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
	ctx, err := m.ctx()
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rs, err := m.c.Refused(ctx, afterSeq, limit)
	if err != nil {
		return nil, wrap(err)
	}
	p := &RefusedPage{}
	for _, r := range rs {
		rc := &RefusedChange{Seq: r.Seq, EntryID: r.Change.Entry.String(), Field: r.Change.Field.String(), Text: r.Change.Text,
			Number: r.Change.Number, Flag: r.Change.Flag, Tag: r.Change.Tag, Reason: refusalCode(r.Reason.String()),
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

// refusalCode turns a refusal reason's name into a stable lowercase code:
// REFUSAL_REASON_NOT_PERMITTED is not_permitted.
func refusalCode(name string) string {
	return strings.ToLower(strings.TrimPrefix(name, "REFUSAL_REASON_"))
}

// DismissRefused forgets a refused change once its author has seen it.
func (m *Client) DismissRefused(seq int64) error {
	ctx, err := m.ctx()
	if err != nil {
		return err
	}
	return wrap(m.c.DismissRefused(ctx, seq))
}

// liveDelay is the debounce of watches.
func (m *Client) liveDelay() time.Duration {
	return duration(m.opts.LiveDelayMillis, 100*time.Millisecond)
}
