package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// preloadPerPush is how many entries a preloading push carries: title
// and body each, so 1000 changes, the most one push may carry.
const preloadPerPush = maxPushChanges / 2

// entryTitle and entryBody are what every entry holds: a title and a
// body of about 400 bytes, the size of a typical reflection.
const (
	entryTitle = "Outreach at the day centre"
	entryBody  = "Spent the morning at the day centre with R. He had slept in the car park again and his phone was stolen, so we called the housing team from the office and waited on hold for forty minutes. He stayed, which he would not have done a month ago. I felt the old pull to promise him more than I can; I said what I could do by Friday instead. Need to bring it to supervision."
)

// newEntries returns the changes that create n new entries on d: title
// and body, and the sharing flag when shared. Each entry has a new UUIDv7
// and each change a new clock from the device's hybrid logical clock.
func (d *device) newEntries(n int, shared bool) []*diaryv1.Change {
	fields := []syncengine.Change{
		{Field: syncengine.FieldTitle, Text: entryTitle},
		{Field: syncengine.FieldBody, Text: entryBody},
		{Field: syncengine.FieldShareSupervisor, Flag: true},
	}
	if !shared {
		fields = fields[:2]
	}
	out := make([]*diaryv1.Change, 0, n*len(fields))
	for range n {
		id := syncengine.NewEntryID()
		for _, c := range fields {
			c.Entry, c.Replica, c.Clock = id, d.replica, d.clock.Now()
			if c.Field == syncengine.FieldBody && d.merged {
				// As the client library writes a body for a server
				// that merges text: the edit that makes it.
				e := &syncengine.Entry{ID: id}
				if err := e.EditText(&c, func(doc *syncengine.TextDoc) (*syncengine.TextChange, error) { return doc.SetText(c.Stamp, c.Text) }); err == nil && c.TextEdit != nil {
					c.Text = ""
				}
			}
			out = append(out, wire.ChangeToProto(&c))
		}
	}
	return out
}

// counted adds the changes the server acknowledged, applied or
// duplicate, to the device's count of its changes the server holds.
func (d *device) counted(results []*diaryv1.ChangeResult) {
	if d.own == nil {
		return
	}
	for _, r := range results {
		switch r.GetOutcome() {
		case diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED, diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE:
			*d.own++
		}
	}
}

// pulledLast takes the server's count of the device's changes from a
// last page.
func (d *device) pulledLast(page *diaryv1.PullResponse) {
	if !page.GetMore() && page.OwnChanges != nil {
		d.own = proto.Uint64(page.GetOwnChanges())
	}
}

// tally counts errors by Connect code and refused changes by reason.
type tally struct {
	errors  map[string]int
	refused map[string]int
}

func newTally() tally { return tally{errors: map[string]int{}, refused: map[string]int{}} }

func (t tally) add(o tally) {
	for k, v := range o.errors {
		t.errors[k] += v
	}
	for k, v := range o.refused {
		t.refused[k] += v
	}
}

// errorCode names an error by its Connect code ("unavailable",
// "deadline_exceeded"); an error that is not a Connect error is
// "unknown".
func errorCode(err error) string { return connect.CodeOf(err).String() }

// countResults counts every change that was not applied: refused ones by
// reason, duplicates (which a run of new entries should never see) as
// "duplicate". It returns whether all were applied.
func (t tally) countResults(results []*diaryv1.ChangeResult, sent int) bool {
	ok := len(results) == sent
	if !ok {
		t.errors["wrong_result_count"]++
	}
	for _, r := range results {
		switch r.GetOutcome() {
		case diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED:
		case diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE:
			t.refused["duplicate"]++
			ok = false
		default:
			t.refused[refusalName(r.GetReason())]++
			ok = false
		}
	}
	return ok
}

// refusalName is a refusal reason's enum name in lowercase without its
// prefix, such as "clock_ahead".
func refusalName(r diaryv1.RefusalReason) string {
	name, ok := diaryv1.RefusalReason_name[int32(r)]
	if !ok {
		return fmt.Sprintf("reason_%d", r)
	}
	const prefix = "REFUSAL_REASON_"
	out := []byte(name[len(prefix):])
	for i, c := range out {
		if c >= 'A' && c <= 'Z' {
			out[i] = c + 'a' - 'A'
		}
	}
	return string(out)
}

// ack is a push the server acknowledged: by whom, when the answer
// arrived, and the position (sequence number) of its last entry, which
// the pull after it reports.
type ack struct {
	navigator int
	at        time.Time
	seq       uint64
}

// navigatorResult is what one navigator device measured.
type navigatorResult struct {
	push, pull   []time.Duration
	acks         []ack
	pushes       int   // acknowledged
	entries      int   // in acknowledged pushes
	pulled       int   // entries pulled
	pullBytes    int64 // bytes of the answers to the pulls after its pushes
	tally        tally
	stoppedEarly bool // the load's time was up before its last push
}

// runNavigator makes one device push and pull until its pushes are done,
// the load's time is up (stop) or the run ends (ctx). A failed push or
// pull is counted and the device goes on with the next.
func runNavigator(ctx, stop context.Context, cfg *config, i int, d *device, pr *progress) *navigatorResult {
	r := &navigatorResult{tally: newTally()}
	cursor := uint64(0)
	// As an app's first sync after enrolment: a pull of nothing, whose
	// last page gives the device the count of its changes the server
	// holds, so that its pushes' entries do not come back to it.
	rctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
	if page, err := d.sync.Pull(rctx, &diaryv1.PullRequest{PageSize: pullPageSize, MergedText: d.merged}); err == nil && !page.GetMore() {
		d.pulledLast(page)
		cursor = page.GetNextCursor()
	} else if err != nil && ctx.Err() == nil {
		r.tally.errors[errorCode(err)]++
		pr.failed()
	}
	cancel()
	from := d.pullBytes.Load()
	defer func() { r.pullBytes = d.pullBytes.Load() - from }()
	for range cfg.pushes {
		if stop.Err() != nil {
			r.stoppedEarly = true
			break
		}
		changes := d.newEntries(cfg.entries, cfg.share)
		rctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
		start := time.Now()
		resp, err := d.sync.Push(rctx, &diaryv1.PushRequest{Changes: changes, Cursor: cursor})
		at := time.Now()
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.tally.errors[errorCode(err)]++
			pr.failed()
			continue
		}
		r.push = append(r.push, at.Sub(start))
		d.counted(resp.GetResults())
		r.pushes++
		r.entries += cfg.entries
		applied := r.tally.countResults(resp.GetResults(), len(changes))
		if !applied {
			pr.failed()
		}
		pr.add(1)
		pulledAll := true
		for {
			rctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
			start := time.Now()
			page, err := d.sync.Pull(rctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: pullPageSize, MergedText: d.merged, OwnChanges: d.own})
			took := time.Since(start)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					r.tally.errors[errorCode(err)]++
					pr.failed()
				}
				pulledAll = false
				break
			}
			r.pull = append(r.pull, took)
			r.pulled += len(page.GetEntries())
			cursor = page.GetNextCursor()
			d.pulledLast(page)
			if !page.GetMore() {
				break
			}
		}
		// The device is its user's only one and pushes one batch at a
		// time, so once it has pulled everything, its cursor is the
		// position of the push's last entry. A push with refused changes
		// may have no position of its own, and is not followed to the
		// supervisor.
		if pulledAll && applied {
			r.acks = append(r.acks, ack{navigator: i, at: at, seq: cursor})
		}
		if ctx.Err() != nil {
			break
		}
	}
	return r
}

// wake is a Subscribe message that told a supervisor of something new.
type wake struct {
	at     time.Time
	cursor uint64
}

// watcher is a supervisor device: it keeps a Subscribe stream open,
// records when each wake-up arrives, and pulls after it, as an app does.
type watcher struct {
	dev *device
	cfg *config

	opened   chan struct{} // closed at the stream's first message
	openOnce sync.Once
	kick     chan struct{} // a wake-up is waiting to be pulled

	mu       sync.Mutex
	wakes    []wake // in arrival order; cursors increase
	seen     uint64 // the greatest cursor the stream reported
	pulledTo uint64 // the cursor the supervisor has pulled up to
	tally    tally
	pull     []time.Duration
	entries  int
	removals int
}

func newWatcher(cfg *config, d *device) *watcher {
	return &watcher{dev: d, cfg: cfg, opened: make(chan struct{}), kick: make(chan struct{}, 1), tally: newTally()}
}

// run keeps the stream open and pulls on wake-ups until ctx ends.
func (w *watcher) run(ctx context.Context, pr *progress) {
	var wg sync.WaitGroup
	wg.Go(func() { w.subscribe(ctx, pr) })
	wg.Go(func() { w.puller(ctx, pr) })
	wg.Wait()
}

func (w *watcher) countError(ctx context.Context, err error, pr *progress) {
	if ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	w.tally.errors[errorCode(err)]++
	w.mu.Unlock()
	pr.failed()
}

// subscribe holds the Subscribe stream, opening it again from the last
// cursor seen when it breaks.
func (w *watcher) subscribe(ctx context.Context, pr *progress) {
	for ctx.Err() == nil {
		w.mu.Lock()
		from := w.seen
		w.mu.Unlock()
		stream, err := w.dev.sync.Subscribe(ctx, &diaryv1.SubscribeRequest{Cursor: from})
		if err == nil {
			for stream.Receive() {
				at := time.Now()
				msg := stream.Msg()
				w.openOnce.Do(func() { close(w.opened) })
				if msg.GetHeartbeat() {
					continue
				}
				w.mu.Lock()
				if c := msg.GetCursor(); c > w.seen {
					w.seen = c
					w.wakes = append(w.wakes, wake{at: at, cursor: c})
				}
				w.mu.Unlock()
				select {
				case w.kick <- struct{}{}:
				default:
				}
			}
			err = stream.Err()
			stream.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = connect.NewError(connect.CodeUnavailable, errors.New("the server ended the stream"))
		}
		w.countError(ctx, err, pr)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// puller pulls up to the newest cursor after each wake-up.
func (w *watcher) puller(ctx context.Context, pr *progress) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.mu.Lock()
		cursor, target := w.pulledTo, w.seen
		w.mu.Unlock()
		for cursor < target && ctx.Err() == nil {
			rctx, cancel := context.WithTimeout(ctx, w.cfg.rpcTimeout)
			start := time.Now()
			page, err := w.dev.sync.Pull(rctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: pullPageSize})
			took := time.Since(start)
			cancel()
			if err != nil {
				w.countError(ctx, err, pr)
				// Try again at the next wake-up, or at the drain's.
				break
			}
			cursor = page.GetNextCursor()
			w.mu.Lock()
			w.pull = append(w.pull, took)
			w.entries += len(page.GetEntries())
			w.removals += len(page.GetRemovals())
			w.pulledTo = cursor
			w.mu.Unlock()
			if !page.GetMore() {
				break
			}
		}
	}
}

// caughtUp reports whether the supervisor has been woken for and has
// pulled everything up to seq.
func (w *watcher) caughtUp(seq uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen >= seq && w.pulledTo >= seq
}

// nudge makes the puller look again, after a failed pull.
func (w *watcher) nudge() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// wakeFor returns the first wake-up whose cursor covers seq.
func (w *watcher) wakeFor(seq uint64) (wake, bool) {
	i := sort.Search(len(w.wakes), func(i int) bool { return w.wakes[i].cursor >= seq })
	if i == len(w.wakes) {
		return wake{}, false
	}
	return w.wakes[i], true
}
