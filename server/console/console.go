// Package console is diarysync's web console: pages for supervisors (the
// inbox of shared reflections, feedback), researchers (exports) and
// administrators (people, assignments, waves, enrolment codes with QR
// codes, devices, erasure, the audit log), served by diaryd at /console/
// beside the API.
//
// Pages are rendered on the server with html/template and work without
// JavaScript; the console's own small script only keeps an open inbox
// live (server-sent events). Templates, style and script are embedded in
// the binary: nothing is fetched from elsewhere, since studies run on
// intranets and offline networks.
//
// The console is transport, like the rest of package server: it reads
// and writes through study.Store only. A signed-in browser is a device of
// kind study.KindBrowser with a replica id of its own, so the feedback a
// supervisor writes here passes the same write rules (study.CheckIncoming,
// study.Decide, through Store.Push) as feedback from their phone.
//
// Security: a session is an HttpOnly, SameSite=Strict cookie (Secure
// under TLS or an https public URL) whose token the store keeps only as a
// hash; it ends after an idle timeout, after its lifetime, on sign-out,
// or when revoked from a device list, at its next request. Every form
// carries a CSRF token derived from the session, checked on every POST;
// every response carries a strict Content-Security-Policy (no inline
// script or style), Cache-Control: no-store and nosniff, and refuses to
// be framed. No diary text is put in a URL or a log line: filters by tag
// are sent in a form post. A page a role may not see answers 404.
package console

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// Prefix is where the console is mounted.
const Prefix = "/console/"

// Hub lets the console wake the server's Subscribe streams after a write
// (a supervisor's feedback reaches their navigator's phone at once), and
// be woken itself when a commit concerns a reader (the live inbox).
type Hub interface {
	// Notify wakes the streams of the readers and owners w names.
	Notify(w *study.Wakeups)
	// Subscribe registers interest in a reader; the channel receives a
	// value (coalesced) after each commit that concerns it.
	Subscribe(r study.Reader) (<-chan struct{}, func())
	// WakeAll wakes every stream, so that each checks its session again.
	WakeAll()
	// Done is closed when the server starts shutting down.
	Done() <-chan struct{}
}

// Config configures the console.
type Config struct {
	Store study.Store
	Hub   Hub
	// Logger receives one line per request (method, route, status,
	// duration, session device); never form values or diary content.
	Logger *slog.Logger
	// PublicURL is the server's address as people reach it (behind a
	// reverse proxy, the proxy's): it goes into enrolment links and QR
	// codes, decides Secure cookies, and is the only origin a form may
	// be posted from. Empty: taken from each request.
	PublicURL string
	// IdleTimeout and Lifetime bound a session (defaults
	// study.DefaultSessionIdle and study.DefaultSessionLifetime).
	IdleTimeout, Lifetime time.Duration
	// Hashing sets argon2id's parameters for new passphrase hashes
	// (default DefaultHashParams); MaxHashing is how many passphrases
	// are hashed at once (default 2), each costing Hashing.Memory.
	Hashing    HashParams
	MaxHashing int
	// Streams caps the open live-inbox streams, per session and in all,
	// together with the server's other long-lived streams (Subscribe):
	// server.New passes its own. Nil: a cap of the console's own, of
	// DefaultMaxStreamsPerSession and DefaultMaxStreams.
	Streams Streams
	// ClientAddress says where a request comes from, for the limits on
	// wrong codes and passphrases: server.New passes its rule (behind a
	// trusted reverse proxy, X-Forwarded-For). Nil: the peer's address.
	ClientAddress func(r *http.Request) string
	// Heartbeat is how often an idle live-inbox stream gets a comment
	// line, and its session is checked (default 15 s).
	Heartbeat time.Duration
}

// Console serves the web console.
type Console struct {
	db        study.Store
	hub       Hub
	log       *slog.Logger
	public    *url.URL // nil: from the request
	idle      time.Duration
	lifetime  time.Duration
	hasher    *hasher
	heartbeat time.Duration
	pages     *pages
	mux       *http.ServeMux

	clocksMu sync.Mutex
	clocks   map[int64]*syncengine.Clock // session device id → its clock

	streams  Streams
	clientIP func(r *http.Request) string
}

// New builds the console. It returns an error for a public URL or
// session limits that are not acceptable.
func New(cfg Config) (*Console, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = study.DefaultSessionIdle
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = study.DefaultSessionLifetime
	}
	if err := study.CheckSessionLimits(cfg.IdleTimeout, cfg.Lifetime); err != nil {
		return nil, err
	}
	if cfg.Hashing == (HashParams{}) {
		cfg.Hashing = DefaultHashParams
	}
	if cfg.MaxHashing <= 0 {
		cfg.MaxHashing = 2
	}
	if cfg.Streams == nil {
		cfg.Streams = &streamCounter{max: DefaultMaxStreams, perSession: DefaultMaxStreamsPerSession, open: map[string]int{}}
	}
	if cfg.ClientAddress == nil {
		cfg.ClientAddress = peerAddress
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	c := &Console{
		db:        cfg.Store,
		hub:       cfg.Hub,
		log:       cfg.Logger,
		idle:      cfg.IdleTimeout,
		lifetime:  cfg.Lifetime,
		hasher:    newHasher(cfg.Hashing, cfg.MaxHashing),
		heartbeat: cfg.Heartbeat,
		clocks:    map[int64]*syncengine.Clock{},
		streams:   cfg.Streams,
		clientIP:  cfg.ClientAddress,
	}
	if cfg.PublicURL != "" {
		u, err := ParsePublicURL(cfg.PublicURL)
		if err != nil {
			return nil, err
		}
		c.public = u
	}
	var err error
	if c.pages, err = loadPages(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// ParsePublicURL checks a public URL: http or https, a host, and nothing
// after it (the console and the API are served from the root).
func ParsePublicURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(s, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, syncengine.Errorf(syncengine.EINVALID, "the public URL %q must be http:// or https:// and a host (with a port if needed), nothing after it", s)
	}
	return u, nil
}

// ServeHTTP serves the console.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	c.headers(rec, r)
	c.mux.ServeHTTP(rec, r)
	attrs := []slog.Attr{slog.String("method", r.Method), slog.String("route", routeOf(r)), slog.Int("status", rec.status),
		slog.Float64("ms", float64(time.Since(start).Microseconds())/1000)}
	if d, ok := r.Context().Value(logDeviceKey{}).(*string); ok && *d != "" {
		attrs = append(attrs, slog.String("device", *d))
	}
	level := slog.LevelInfo
	if rec.status >= 500 {
		level = slog.LevelError
	}
	c.log.LogAttrs(r.Context(), level, "console", attrs...)
}

// routeOf names the route a request matched, with its pattern's
// wildcards rather than their values: the log needs no entry ids.
func routeOf(r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return "unmatched"
}

type logDeviceKey struct{}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush for the live inbox.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// contentSecurityPolicy allows the console's own script, style and forms
// only: no inline script or style, no other origin, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func (c *Console) headers(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// same-origin, not no-referrer: with no-referrer, browsers send
	// "Origin: null" with form posts, and the origin check needs it.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if c.secure(r) {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// secure reports whether the browser reached the console over TLS (its
// own, or a proxy's named by the public URL).
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || (c.public != nil && c.public.Scheme == "https")
}

// origin is the one origin forms may be posted from.
func (c *Console) origin(r *http.Request) string {
	if c.public != nil {
		return c.public.Scheme + "://" + c.public.Host
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// publicBase is the server's address as people reach it, for enrolment
// links.
func (c *Console) publicBase(r *http.Request) string { return c.origin(r) }

// clientAddress is the address sign-in attempts are counted against.
// clientAddress is where a request comes from, as the server's rule
// says, with one IPv6 client's whole /64 counted as one.
func (c *Console) clientAddress(r *http.Request) string {
	host := c.clientIP(r)
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		// One IPv6 client can hold a whole /64: count the /64.
		return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
	}
	return host
}

// peerAddress is the address of the request's peer.
func peerAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Cookies.
const (
	sessionCookie = "diarysync_console"
	// preCookie holds a random value before sign-in, so that the sign-in
	// forms carry a CSRF token too.
	preCookie = "diarysync_console_pre"
)

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: Prefix, HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
}

func (c *Console) clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
}

// csrfToken derives a form token from a cookie's value. Only the cookie's
// holder can compute it (the cookie is HttpOnly and never leaves the
// browser but to this server), and nothing needs keeping: every server
// process in front of one store derives the same token. The prefix makes
// it differ from the hash the store keeps of a session's secret.
func csrfToken(cookie string) string {
	h := sha256.Sum256([]byte("diarysync console form\x00" + cookie))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func checkCSRF(r *http.Request, cookie string) bool {
	got := r.PostFormValue("csrf")
	want := csrfToken(cookie)
	return cookie != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// session is the signed-in browser of a request.
type session struct {
	*study.Session
	token string
}

func (s *session) identity() *study.Identity { return &s.Identity }

type sessionKey struct{}

func sessionFrom(ctx context.Context) *session {
	s, _ := ctx.Value(sessionKey{}).(*session)
	return s
}

// errSessionEnded carries why a session may not be used, so that the
// sign-in page can say so.
type errSessionEnded struct{ reason study.SessionEnd }

func (e errSessionEnded) Error() string { return study.SessionEndMessage(e.reason) }

// loadSession returns the session of the request's cookie, nil if there
// is none, or errSessionEnded. A session found idle or past its lifetime
// is ended in the store, so that its token never works again.
func (c *Console) loadSession(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil, nil
	}
	ctx := r.Context()
	s, err := c.db.Session(ctx, ck.Value)
	if syncengine.ErrorCode(err) == syncengine.EUNAUTHENTICATED {
		return nil, errSessionEnded{study.EndRevoked}
	}
	if err != nil {
		return nil, err
	}
	now := c.db.Now()
	reason, _ := study.CheckSession(s, now, c.idle)
	switch reason {
	case study.EndNone:
	case study.EndIdle, study.EndLifetime:
		if err := c.db.EndSession(study.NewContext(ctx, &s.Identity), s.DeviceID, reason); err != nil {
			return nil, err
		}
		c.forgetClock(s.DeviceID)
		return nil, errSessionEnded{reason}
	default:
		c.forgetClock(s.DeviceID)
		return nil, errSessionEnded{reason}
	}
	if study.SessionTouchDue(s.LastSeen, now, c.idle) {
		if err := c.db.TouchSession(ctx, s.DeviceID); err != nil {
			return nil, err
		}
	}
	return &session{Session: s, token: ck.Value}, nil
}

// clock returns the session's hybrid logical clock, moved past every
// clock the store holds from it: a clock that lived in another process,
// or in this one before a restart, never gives a stamp twice.
func (c *Console) clock(ctx context.Context, s *session) (*syncengine.Clock, error) {
	c.clocksMu.Lock()
	clk := c.clocks[s.DeviceID]
	if clk == nil {
		if len(c.clocks) >= 10000 {
			clear(c.clocks) // each is rebuilt from the store on its next use
		}
		clk = syncengine.NewClock(c.db.Now)
		c.clocks[s.DeviceID] = clk
	}
	c.clocksMu.Unlock()
	last, err := c.db.DeviceClock(ctx, s.DeviceID)
	if err != nil {
		return nil, err
	}
	clk.Observe(last)
	return clk, nil
}

func (c *Console) forgetClock(device int64) {
	c.clocksMu.Lock()
	delete(c.clocks, device)
	c.clocksMu.Unlock()
}

// Streams caps long-lived streams.
type Streams interface {
	// Acquire takes a slot for key (what names it in the error), or
	// returns ERATELIMIT saying which limit was reached; release gives
	// the slot back.
	Acquire(key, what string) (release func(), err error)
}

// Caps of the console's own stream limiter, when it has no Streams.
const (
	DefaultMaxStreamsPerSession = 4
	DefaultMaxStreams           = 256
)

// streamCounter is the console's own cap on open live-inbox streams.
type streamCounter struct {
	mu              sync.Mutex
	max, perSession int
	total           int
	open            map[string]int
}

func (s *streamCounter) Acquire(key, what string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.max || s.open[key] >= s.perSession {
		return nil, syncengine.Errorf(syncengine.ERATELIMIT, "too many live views are open: close some console tabs")
	}
	s.total++
	s.open[key]++
	once := sync.Once{}
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.open[key]--; s.open[key] <= 0 {
				delete(s.open, key)
			}
		})
	}, nil
}

// maxFormBytes bounds a form a browser posts: the largest field is a
// feedback note (8 KiB), sent with its base for merging.
const maxFormBytes = 64 << 10

var errCrossSite = errors.New("cross-site request")

// checkPost refuses a post from another origin (which SameSite=Strict
// cookies already keep from carrying a session) and bounds its size.
func (c *Console) checkPost(w http.ResponseWriter, r *http.Request) error {
	if o := r.Header.Get("Origin"); o != "" && o != c.origin(r) {
		return errCrossSite
	}
	if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
		return errCrossSite
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return syncengine.Errorf(syncengine.ETOOLARGE, "the form is larger than %d KiB or damaged", maxFormBytes>>10)
	}
	return nil
}
