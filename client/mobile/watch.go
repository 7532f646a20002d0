package mobile

import (
	"sync"
	"time"

	"github.com/diarysync/diarysync/client"
)

// EntriesListener receives a watched query's results. It has one
// method, so that a Kotlin lambda can be one.
type EntriesListener interface {
	// OnEntries receives the query's result: at once, then each time a
	// write on this device or a sync changes it. When the query could not
	// run, page is nil and err says why; it runs again at the next
	// change. Otherwise err is nil.
	OnEntries(page *EntryPage, err *Error)
}

// StatusListener receives the sync status each time it changes. It has
// one method, so that a Kotlin lambda can be one.
type StatusListener interface {
	// OnStatus receives the sync status: at once, then each time it
	// changes.
	OnStatus(status *Status)
}

// Subscription is a watch; Stop ends it.
type Subscription struct {
	once sync.Once
	stop func()
	m    *Client
}

// Stop ends the watch. A call to the listener already under way, or one
// starting at the very moment Stop is called, may still come; none comes
// after that. Stop may be called from within the listener, and twice.
func (s *Subscription) Stop() {
	if s.m == nil {
		return // made by its bare constructor: watches nothing
	}
	s.once.Do(func() {
		s.stop()
		s.m.mu.Lock()
		delete(s.m.subs, s)
		s.m.mu.Unlock()
	})
}

// add registers a subscription, or says the client is closed.
func (m *Client) add(s *Subscription) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	m.subs[s] = true
	return nil
}

// WatchEntries runs q now and each time its result changes, and hands
// each result to l: a list screen that stays up to date, with a Text
// query a search that does. Changes that come together (a sync of many
// pages, a burst of writes) give one result.
func (m *Client) WatchEntries(q *Query, l EntriesListener) (*Subscription, error) {
	if l == nil {
		return nil, &Error{Code: CodeInvalid, Message: "there is no listener to call"}
	}
	_, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	o, err := q.options()
	if err != nil {
		return nil, err
	}
	s := &Subscription{m: m}
	lo := client.LiveOptions{Debounce: m.liveDelay()}
	onErr := func(err error) { l.OnEntries(nil, toError(err)) }
	var live *client.Live
	if t := q.text(); t != "" {
		live, err = m.c.WatchSearch(client.SearchOptions{Query: t, ListOptions: o}, lo, func(p *client.SearchPage, err error) {
			if err != nil {
				onErr(err)
				return
			}
			l.OnEntries(searchPageOf(p), nil)
		})
	} else {
		live, err = m.c.WatchList(o, lo, func(p *client.ListPage, err error) {
			if err != nil {
				onErr(err)
				return
			}
			l.OnEntries(listPageOf(p), nil)
		})
	}
	if err != nil {
		return nil, wrap(err)
	}
	s.stop = live.Stop
	if err := m.add(s); err != nil {
		live.Stop()
		return nil, err
	}
	return s, nil
}

// WatchStatus hands the sync status to l now and each time it changes:
// pending counts, progress, connectivity. Progress during a sync comes at
// most about every LiveDelayMillis. It wakes only when the client says
// something changed, never on a timer, so an idle app costs no battery:
// the time of a retry is in RetryAtMillis, and the retry itself, when it
// comes, is a change.
func (m *Client) WatchStatus(l StatusListener) (*Subscription, error) {
	if l == nil {
		return nil, &Error{Code: CodeInvalid, Message: "there is no listener to call"}
	}
	if m.c == nil {
		return nil, errNotOpen
	}
	stop := make(chan struct{})
	s := &Subscription{m: m, stop: func() { close(stop) }}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed
	}
	// Watch before the first status, so that no change after it is
	// missed; registered under the lock, so that Close waits for it.
	events, unwatch := m.c.Watch()
	m.subs[s] = true
	m.watchers.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.watchers.Done()
		defer unwatch()
		var last Status
		first := true
		delay := m.liveDelay()
		for {
			if st, err := m.Status(); err == nil && (first || *st != last) {
				select {
				case <-stop:
					return
				default:
				}
				first, last = false, *st
				l.OnStatus(st)
			}
			select {
			case <-stop:
				return
			case _, ok := <-events:
				if !ok {
					return
				}
			}
			window := time.NewTimer(delay)
		gather:
			for {
				select {
				case <-stop:
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
	return s, nil
}
