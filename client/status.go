package client

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// Event says what changed, so a UI knows what to refresh.
type Event int

// Events.
const (
	EventEntries Event = iota + 1 // entries were written, pulled or removed
	EventStatus                   // pending count, progress, last sync or last error changed
)

// eventKinds is how many kinds of Event there are: a Watch channel has
// room for one of each.
const eventKinds = 2

// watchers fans events out to Watch channels. Each channel holds at most
// one event of each kind waiting, so a slow UI sees the latest state, not
// a backlog, and never loses the last event of a kind: an event that
// finds its channel full joins the ones waiting unless one of its kind is
// among them already.
type watchers struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

func (w *watchers) notify(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- e:
			continue
		default:
		}
		// Full: take back what waits (the watcher may take some
		// meanwhile), keep one event of each kind in the order they came,
		// and put them back. Only notify sends, under w.mu, and there are
		// no more kinds than places, so they fit.
		var waiting [eventKinds + 1]Event
		n := 0
		seen := map[Event]bool{}
		for drained := false; !drained; {
			select {
			case old := <-ch:
				if !seen[old] {
					seen[old] = true
					waiting[n] = old
					n++
				}
			default:
				drained = true
			}
		}
		if !seen[e] {
			waiting[n] = e
			n++
		}
		for _, ev := range waiting[:n] {
			ch <- ev
		}
	}
}

func (w *watchers) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		close(ch)
	}
	w.subs = nil
}

// Watch returns a channel that receives an Event after entries or the
// status change, and a function to stop watching. The channel is closed
// when the client closes. Events of one kind that come while the watcher
// is busy wait as one, and the last event of each kind always arrives.
func (c *Client) Watch() (<-chan Event, func()) {
	ch := make(chan Event, eventKinds)
	c.watchers.mu.Lock()
	if c.watchers.subs == nil {
		c.watchers.subs = map[chan Event]struct{}{}
	}
	c.watchers.subs[ch] = struct{}{}
	c.watchers.mu.Unlock()
	return ch, func() {
		c.watchers.mu.Lock()
		defer c.watchers.mu.Unlock()
		if _, ok := c.watchers.subs[ch]; ok {
			delete(c.watchers.subs, ch)
			close(ch)
		}
	}
}

// Progress describes a sync in progress.
type Progress struct {
	Running     bool
	Phase       string // "push" or "pull"
	PagesPushed int
	Pushed      int // changes sent so far in this sync
	PagesPulled int
	Pulled      int    // entries and removals applied so far in this sync
	Remaining   uint64 // entries and removals still waiting on the server, as far as it is known

	Accepted       int // pushed changes the server applied or already held
	Refused        int // pushed changes the server refused
	PulledEntries  int // entries applied so far in this sync
	PulledRemovals int // removal notices applied so far in this sync
}

type statusTracker struct {
	mu       sync.Mutex
	progress Progress
}

func (t *statusTracker) set(f func(p *Progress)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&t.progress)
}

func (t *statusTracker) get() Progress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.progress
}

// Status is what an app shows about sync.
type Status struct {
	Enrolled bool
	// DeviceState is this device's standing: active, waiting for
	// approval by another of the person's devices, or revoked (then
	// Revoked says by whom, and the replica has been wiped).
	DeviceState study.DeviceState
	Revoked     *Revoked
	// AwaitingApproval lists devices of this account that wait for
	// approval, as of the last sync (at most 10; AwaitingApprovalCount
	// counts them all). The person approves or denies each.
	AwaitingApproval      []Device
	AwaitingApprovalCount int
	Entries               int       // entries held (deleted ones included)
	PendingEntries        int       // entries with changes waiting to be pushed
	Pending               int       // changes waiting to be pushed
	ReadsQueued           int       // a supervisor's read marks waiting to be sent
	Refused               int       // changes the server refused (see Refused)
	Cursor                uint64    // server position pulled up to
	LastSync              time.Time // end of the last sync that completed; zero if none
	LastError             string    // the last sync's error, if it failed
	LastErrorAt           time.Time
	// Offline says the last sync or Subscribe stream of this process
	// could not reach the server (a *NetworkError), rather than being
	// answered by it; OfflineReason says how.
	Offline       bool
	OfflineReason string
	ClockOffset   time.Duration // correction applied to this device's clock
	Progress      Progress
	// Connectivity says whether the server can be reached now.
	Connectivity Connectivity
}

// statusChecked is Status without the check for a damaged replica.
func (c *Client) statusChecked(ctx context.Context) (Status, error) {
	var s Status
	err := c.db.ReadTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM refused), (SELECT count(*) FROM entries), (SELECT count(*) FROM entries WHERE pending > 0), (SELECT count(*) FROM read_outbox)`).
			Scan(&s.Pending, &s.Refused, &s.Entries, &s.PendingEntries, &s.ReadsQueued); err != nil {
			return fmt.Errorf("cannot count changes: %w", err)
		}
		var (
			cursor      int64
			last, errAt sql.NullInt64
			offset      int64
			lastErr     string
		)
		err := tx.QueryRowContext(ctx, `SELECT cursor, last_sync_at, last_error, last_error_at, clock_offset, device_state, awaiting_count FROM profile WHERE id = 1`).
			Scan(&cursor, &last, &lastErr, &errAt, &offset, &s.DeviceState, &s.AwaitingApprovalCount)
		if err == sql.ErrNoRows {
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot read profile: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT device_id, name, enrolled_at, issued_by FROM awaiting_approval ORDER BY enrolled_at DESC, device_id`)
		if err != nil {
			return fmt.Errorf("cannot read devices waiting for approval: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			d := Device{State: study.DevicePending}
			var at int64
			if err := rows.Scan(&d.ID, &d.Name, &at, &d.IssuedBy); err != nil {
				return fmt.Errorf("cannot read devices waiting for approval: %w", err)
			}
			d.EnrolledAt = time.UnixMilli(at).UTC()
			s.AwaitingApproval = append(s.AwaitingApproval, d)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("cannot read devices waiting for approval: %w", err)
		}
		s.Enrolled = s.DeviceState != study.DeviceRevoked
		s.Cursor = uint64(cursor)
		if last.Valid {
			s.LastSync = time.UnixMilli(last.Int64).UTC()
		}
		s.LastError = lastErr
		if errAt.Valid {
			s.LastErrorAt = time.UnixMilli(errAt.Int64).UTC()
		}
		s.ClockOffset = time.Duration(offset) * time.Millisecond
		return nil
	})
	s.Progress = c.status.get()
	s.Connectivity = c.conn.get()
	if why := c.offline.Load(); why != nil {
		s.Offline, s.OfflineReason = true, *why
	}
	c.mu.Lock()
	if c.revoked != nil {
		r := *c.revoked
		s.Revoked = &r
	}
	c.mu.Unlock()
	return s, err
}

// RefusedChange is a change the server refused, kept so that the person
// who made it can see it, and what they wrote. For a text edit of a body
// or feedback note, Change.Text holds the whole text it had on this
// device when the edit was refused, beside the edit (Change.TextEdit):
// the edits made on the refused one could not be sent either, and their
// words are in that text too.
type RefusedChange struct {
	Seq       int64
	Change    syncengine.Change
	Reason    study.Refusal
	Message   string
	RefusedAt time.Time
}

// refusedChecked is Refused without the check for a damaged replica.
func (c *Client) refusedChecked(ctx context.Context, after int64, limit int) ([]RefusedChange, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := c.db.Read.QueryContext(ctx, `SELECT seq, change, reason, message, refused_at, text FROM refused WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("cannot list refused changes: %w", err)
	}
	defer rows.Close()
	var out []RefusedChange
	for rows.Next() {
		var (
			r    RefusedChange
			b    []byte
			at   int64
			text sql.NullString
		)
		if err := rows.Scan(&r.Seq, &b, &r.Reason, &r.Message, &at, &text); err != nil {
			return nil, fmt.Errorf("cannot list refused changes: %w", err)
		}
		var p diaryv1.Change
		if err := proto.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("stored refused change: %w", err)
		}
		if r.Change, err = wire.ChangeFromProto(&p); err != nil {
			return nil, fmt.Errorf("stored refused change: %w", err)
		}
		if text.Valid {
			r.Change.Text = text.String
		}
		r.RefusedAt = time.UnixMilli(at).UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// dismissRefusedChecked is DismissRefused without the check for a damaged replica.
func (c *Client) dismissRefusedChecked(ctx context.Context, seq int64) error {
	res, err := c.db.Write.ExecContext(ctx, `DELETE FROM refused WHERE seq = ?`, seq)
	if err != nil {
		return fmt.Errorf("cannot dismiss refused change: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return syncengine.Errorf(syncengine.ENOTFOUND, "no refused change %d", seq)
	}
	c.watchers.notify(EventStatus)
	return nil
}

// Status returns the sync status.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) Status(ctx context.Context) (Status, error) {
	if err := c.checkDamaged(); err != nil {
		return Status{}, err
	}
	r0, err := c.statusChecked(ctx)
	return r0, c.damage(err)
}

// Refused returns a page of refused changes, oldest first, after the
// given sequence number (0 for the first page).
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) Refused(ctx context.Context, after int64, limit int) ([]RefusedChange, error) {
	if err := c.checkDamaged(); err != nil {
		return nil, err
	}
	r0, err := c.refusedChecked(ctx, after, limit)
	return r0, c.damage(err)
}

// DismissRefused forgets a refused change once its author has seen it.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) DismissRefused(ctx context.Context, seq int64) error {
	if err := c.checkDamaged(); err != nil {
		return err
	}
	return c.damage(c.dismissRefusedChecked(ctx, seq))
}
