package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
)

// RunOptions tunes Run.
type RunOptions struct {
	// Interval is how often Run syncs when nothing else prompts it
	// (default 5 minutes).
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed sync; the
	// wait doubles from MinBackoff (default 1 s) up to MaxBackoff
	// (default 5 minutes), with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Debounce is how long Run waits after a local write before pushing,
	// so that a burst of edits goes in one push (default 500 ms).
	Debounce time.Duration
	// StreamTimeout is how long the Subscribe stream may stay silent
	// before it is taken for dead (a half-open connection) and opened
	// again (default 45 s; the server sends a heartbeat every 15 s).
	StreamTimeout time.Duration
}

// Run keeps the replica in sync until ctx ends or the client closes:
// after local writes, when the server's Subscribe stream says there is
// something new, and on a timer; after a failure it backs off
// exponentially with jitter. Run returns nil when ctx ends; it is an
// error to run it twice at once.
func (c *Client) Run(ctx context.Context, o RunOptions) error {
	if _, _, err := c.rpcs(); err != nil {
		return err
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Debounce <= 0 {
		o.Debounce = 500 * time.Millisecond
	}
	if o.StreamTimeout <= 0 {
		o.StreamTimeout = 45 * time.Second
	}
	c.runMu.Lock()
	if c.closed {
		c.runMu.Unlock()
		return syncengine.Errorf(syncengine.ECONFLICT, "the client is closed")
	}
	if c.runCancel != nil {
		c.runMu.Unlock()
		return syncengine.Errorf(syncengine.ECONFLICT, "Run is already running")
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	c.runCancel, c.runDone = cancel, done
	c.runMu.Unlock()
	defer func() {
		cancel()
		c.runMu.Lock()
		c.runCancel, c.runDone = nil, nil
		c.runMu.Unlock()
		close(done)
	}()

	c.conn.setRunning(true)
	defer c.conn.setRunning(false)

	remote := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.subscribeLoop(ctx, o, remote) }()
	defer wg.Wait()

	backoff := time.Duration(0)
	timer := time.NewTimer(0) // sync at once on start
	defer timer.Stop()
	// Taken before each sync, so that a NetworkChanged during it is seen
	// after it.
	changed := c.network.wait()
	for {
		fromTimer := false
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			fromTimer = true
		case <-changed:
			// A new network: what failed on the old one may work now.
			changed = c.network.wait()
			backoff, fromTimer = 0, true
		case <-remote:
		case <-c.kick:
			if backoff == 0 {
				// Let a burst of writes settle into one push.
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(o.Debounce):
				}
			}
		}
		if backoff > 0 && !fromTimer {
			// While backing off, prompts wait for the timer (Go timers
			// since 1.23 need no draining; it stays armed).
			continue
		}
		// The wait after a failure is chosen before the sync, so that its
		// status can say when the retry comes as soon as it fails.
		next := nextBackoff(backoff, o.MinBackoff, o.MaxBackoff)
		err := c.Sync(context.WithValue(ctx, retryKey{}, next))
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = next
			c.log.Info("sync failed; backing off", "wait", backoff, "err", err)
			timer.Reset(backoff)
			c.conn.scheduled(c.opts.Now().Add(backoff))
			continue
		}
		backoff = 0
		timer.Reset(o.Interval)
		c.conn.scheduled(c.opts.Now().Add(o.Interval))
	}
}

// nextBackoff doubles the wait, from min up to max, with full jitter on
// the upper half so that many devices coming back at once spread out.
func nextBackoff(cur, min, max time.Duration) time.Duration {
	next := cur * 2
	if next < min {
		next = min
	}
	if next > max {
		next = max
	}
	return next/2 + rand.N(next/2+1)
}

// refusedStreamBackoff is the least a client waits after the server
// refused it a Subscribe stream for its limits: the stream only speeds
// up syncs, which go on on their timer meanwhile.
const refusedStreamBackoff = 30 * time.Second

// subscribeLoop keeps a Subscribe stream open and signals remote when the
// server says there is something past the local cursor. It reconnects
// with backoff when the stream breaks; when the server refuses it a
// stream (too many open, or this device waits for approval) it waits
// longer, while Run goes on syncing on its timer.
func (c *Client) subscribeLoop(ctx context.Context, o RunOptions, remote chan<- struct{}) {
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		changed := c.network.wait()
		ok, err := c.subscribeOnce(ctx, o.StreamTimeout, remote, changed)
		if ctx.Err() != nil {
			return
		}
		if ok {
			backoff = 0
		}
		if err != nil && !ok {
			// A stream that cannot even open says whether the server can
			// be reached, between syncs that would otherwise wait for
			// their timer to find out.
			if ne := rpcError("listen for changes", err); errors.As(ne, new(*NetworkError)) {
				c.noteReachable(ne)
				c.watchers.notify(EventStatus)
			}
		}
		backoff = nextBackoff(backoff, o.MinBackoff, o.MaxBackoff)
		switch {
		case connect.CodeOf(err) == connect.CodeResourceExhausted:
			c.log.Info("the server refused a Subscribe stream; syncing on the timer", "err", err)
			backoff = max(backoff, min(refusedStreamBackoff, o.MaxBackoff))
		case awaitingApproval(err):
			backoff = max(backoff, o.Interval)
		case c.revocationNoted():
			return // Run's next sync wipes the replica
		}
		if !ok && err != nil {
			c.conn.streamFailed(rpcError("listen for changes", err), c.opts.Now().Add(backoff))
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			backoff = 0
		case <-time.After(backoff):
		}
	}
}

// subscribeOnce runs one Subscribe stream until it ends; it reports
// whether the stream was established, and why it ended. NetworkChanged
// ends it: it was opened on the old network.
func (c *Client) subscribeOnce(ctx context.Context, silence time.Duration, remote chan<- struct{}, changed <-chan struct{}) (bool, error) {
	rpc, _, err := c.rpcs()
	if err != nil {
		return false, err
	}
	var cursor int64
	if err := c.db.Read.QueryRowContext(ctx, `SELECT cursor FROM profile WHERE id = 1`).Scan(&cursor); err != nil {
		return false, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-ctx.Done():
		}
	}()
	stream, err := rpc.sync.Subscribe(ctx, &diaryv1.SubscribeRequest{Cursor: uint64(cursor)})
	if err != nil {
		return false, err
	}
	defer stream.Close()
	// A stream that stays silent past the heartbeat interval is dead
	// (a half-open connection): cancel it so Receive returns.
	watchdog := time.AfterFunc(silence, cancel)
	defer watchdog.Stop()
	established := false
	for stream.Receive() {
		if !established {
			c.conn.streamOpened()
			if c.conn.needsContact() || c.offline.Load() != nil {
				// The server is back: a sync says so, and catches up.
				select {
				case remote <- struct{}{}:
				default:
				}
			}
		}
		established = true
		watchdog.Reset(silence)
		msg := stream.Msg()
		if msg.GetHeartbeat() {
			continue
		}
		var local int64
		if err := c.db.Read.QueryRowContext(ctx, `SELECT cursor FROM profile WHERE id = 1`).Scan(&local); err != nil {
			return established, err
		}
		if msg.GetCursor() > uint64(local) {
			select {
			case remote <- struct{}{}:
			default:
			}
		}
	}
	err = stream.Err()
	if err != nil && !errors.Is(err, context.Canceled) {
		c.log.Debug("subscribe stream ended", "err", err)
	}
	return established, err
}
