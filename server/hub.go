package server

import (
	"sync"

	"github.com/diarysync/diarysync/study"
)

// hub wakes Subscribe streams when a commit concerns their reader. A
// wake-up carries no data: the stream reads the reader's position again,
// so a missed or merged wake-up loses nothing.
type hub struct {
	mu     sync.Mutex
	subs   map[hubKey]map[chan struct{}]struct{}
	closed chan struct{}
	once   sync.Once
}

// hubKey names a reader: a navigator's own entries, or a feed (a
// supervisor's, or research's with id 0).
type hubKey struct {
	owner bool
	id    int64
}

func newHub() *hub {
	return &hub{subs: map[hubKey]map[chan struct{}]struct{}{}, closed: make(chan struct{})}
}

func keyFor(rd study.Reader) hubKey { return hubKey{owner: rd.Owner, id: rd.ID} }

// subscribe registers interest in k. The channel receives a value
// (coalesced: it holds at most one) after each commit that concerns k.
func (h *hub) subscribe(k hubKey) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs[k] == nil {
		h.subs[k] = map[chan struct{}]struct{}{}
	}
	h.subs[k][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs[k], ch)
		if len(h.subs[k]) == 0 {
			delete(h.subs, k)
		}
		h.mu.Unlock()
	}
}

// notify wakes every stream that w concerns.
func (h *hub) notify(w *study.Wakeups) {
	if w == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, o := range w.Owners {
		h.wake(hubKey{owner: true, id: o})
	}
	for _, r := range w.Readers {
		h.wake(hubKey{id: r})
	}
}

// wakeAll wakes every stream, so that each checks again that its device
// may still listen: after a revocation, which is rare enough that waking
// everyone costs nothing worth tracking streams by device for.
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k := range h.subs {
		h.wake(k)
	}
}

func (h *hub) wake(k hubKey) {
	for ch := range h.subs[k] {
		select {
		case ch <- struct{}{}:
		default: // already has a wake-up waiting
		}
	}
}

// done is closed when the server starts shutting down, so streams end and
// the HTTP server can drain.
func (h *hub) done() <-chan struct{} { return h.closed }

func (h *hub) shutdown() { h.once.Do(func() { close(h.closed) }) }
