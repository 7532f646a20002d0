package server

import (
	"net/http"

	"github.com/diarysync/diarysync/server/console"
	"github.com/diarysync/diarysync/study"
)

// consoleHub gives the web console the server's wake-ups: what it writes
// wakes the Subscribe streams of phones, and its live inbox is woken by
// what phones push.
type consoleHub struct{ h *hub }

func (c consoleHub) Notify(w *study.Wakeups) { c.h.notify(w) }

func (c consoleHub) Subscribe(r study.Reader) (<-chan struct{}, func()) {
	return c.h.subscribe(keyFor(r))
}

func (c consoleHub) WakeAll() { c.h.wakeAll() }

func (c consoleHub) Done() <-chan struct{} { return c.h.done() }

// consoleStreams puts the console's live pages under the server's caps on
// long-lived streams, beside the Subscribe streams.
type consoleStreams struct{ l *streamLimiter }

func (c consoleStreams) Acquire(key, what string) (func(), error) { return c.l.acquire(key, what) }

// mountConsole serves the web console at /console/. A console that cannot
// be built (a bad public URL or session limits, which cmd/diaryd checks
// before) answers 503 and is logged, and the API is served regardless.
func (s *Server) mountConsole(mux *http.ServeMux, cfg Config) {
	cc := cfg.Console
	cc.Store, cc.Hub, cc.Logger = s.db, consoleHub{s.hub}, s.log
	cc.Streams = consoleStreams{s.streams}
	trusted := cfg.TrustedProxies
	cc.ClientAddress = func(r *http.Request) string {
		return clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
	}
	if cfg.PublicURL != "" {
		cc.PublicURL = cfg.PublicURL
	}
	c, err := console.New(cc)
	if err != nil {
		s.log.Error("the web console is off", "err", err)
		mux.Handle(console.Prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "the web console is not configured correctly; see the server's log", http.StatusServiceUnavailable)
		}))
		return
	}
	mux.Handle(console.Prefix, c)
	mux.Handle("GET /{$}", http.RedirectHandler(console.Prefix, http.StatusSeeOther))
}
