package client

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash"
	"sync"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// errClosed is what a call that needs an open client answers after Close.
var errClosed = syncengine.Errorf(syncengine.ECONFLICT, "the client is closed")

// LiveOptions tunes a live query.
type LiveOptions struct {
	// Debounce is how long a live query lets changes gather after the
	// first one before it runs again (default 100 ms): a pull of many
	// pages or a burst of writes gives one new result, and a stream of
	// changes still gives one at least this often.
	Debounce time.Duration
}

// Live is a query whose result is delivered once when it starts and
// again each time a local write or a pull changes it. Deliveries come one
// at a time, from a goroutine of the client.
type Live struct {
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// Stop ends the live query: no delivery starts after Stop returns, and
// one in progress is the last. Stop may be called more than once, and
// from within a delivery.
func (l *Live) Stop() {
	l.once.Do(func() {
		close(l.stop)
		l.cancel()
	})
}

// Done is closed when the live query has ended (after Stop, or when the
// client closes) and no delivery is running.
func (l *Live) Done() <-chan struct{} { return l.done }

// WatchList runs List with o now and each time its result changes, and
// hands each new result to deliver. Options that List would refuse (a bad
// date or page token) are refused here. A result equal to the last one
// delivered is not delivered again; an error is delivered once, and the
// query runs again at the next change.
func (c *Client) WatchList(o ListOptions, lo LiveOptions, deliver func(*ListPage, error)) (*Live, error) {
	if _, _, err := listFilter(o); err != nil {
		return nil, err
	}
	return watchLive(c, lo, func(ctx context.Context) (*ListPage, []byte, error) {
		p, err := c.List(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		h := sha256.New()
		for _, e := range p.Entries {
			digestEntry(h, e)
		}
		fmt.Fprintf(h, "next %q", p.Next)
		return p, h.Sum(nil), nil
	}, deliver)
}

// WatchSearch is WatchList for Search.
func (c *Client) WatchSearch(o SearchOptions, lo LiveOptions, deliver func(*SearchPage, error)) (*Live, error) {
	if _, err := matchExpr(o.Query); err != nil {
		return nil, err
	}
	if _, _, err := listFilter(o.ListOptions); err != nil {
		return nil, err
	}
	return watchLive(c, lo, func(ctx context.Context) (*SearchPage, []byte, error) {
		p, err := c.Search(ctx, o)
		if err != nil {
			return nil, nil, err
		}
		h := sha256.New()
		for _, hit := range p.Hits {
			digestEntry(h, hit.Entry)
			fmt.Fprintf(h, "snippet %q", hit.Snippet)
		}
		fmt.Fprintf(h, "next %q", p.Next)
		return p, h.Sum(nil), nil
	}, deliver)
}

// digestEntry adds to h everything of e that an app can show, so that
// two results differ in digest when they differ on screen.
func digestEntry(h hash.Hash, e *Entry) {
	shown := *e
	shown.State = nil // the merge's bookkeeping, and a pointer
	fmt.Fprintf(h, "%#v\n", shown)
}

// watchLive runs a live query: query returns a result and its digest.
func watchLive[T any](c *Client, lo LiveOptions, query func(context.Context) (T, []byte, error), deliver func(T, error)) (*Live, error) {
	if lo.Debounce <= 0 {
		lo.Debounce = 100 * time.Millisecond
	}
	c.runMu.Lock()
	if c.closed {
		c.runMu.Unlock()
		return nil, errClosed
	}
	// Watch before the first query, so that no change made after it
	// runs goes unseen; and before Close can close the watchers, so
	// that Close ends this query too.
	events, unwatch := c.Watch()
	c.lives.Add(1)
	c.runMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	l := &Live{cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer c.lives.Done()
		defer close(l.done)
		defer unwatch()
		defer cancel()
		var (
			last    []byte
			lastErr string
			first   = true
		)
		for {
			res, digest, err := query(ctx)
			select {
			case <-l.stop:
				return
			default:
			}
			switch {
			case err != nil:
				if err.Error() != lastErr {
					lastErr, last = err.Error(), nil
					deliver(res, err)
				}
			case first || string(digest) != string(last):
				last, lastErr = digest, ""
				deliver(res, nil)
			}
			first = false
			if !waitForEntries(events, l.stop) {
				return
			}
			window := time.NewTimer(lo.Debounce)
		gather:
			for {
				select {
				case <-l.stop:
					window.Stop()
					return
				case _, ok := <-events:
					if !ok {
						window.Stop()
						return
					}
				case <-window.C:
					break gather
				}
			}
		}
	}()
	return l, nil
}

// waitForEntries waits for an EventEntries; it reports false when the
// query stops or the client closes first.
func waitForEntries(events <-chan Event, stop <-chan struct{}) bool {
	for {
		select {
		case <-stop:
			return false
		case e, ok := <-events:
			if !ok {
				return false
			}
			if e == EventEntries {
				return true
			}
		}
	}
}
