package server

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/diarysync/diarysync/internal/gzipmsg"
	"github.com/diarysync/diarysync/syncengine"
)

// Limits on what one client can make the server hold or do.
const (
	// DefaultMaxStreamsPerDevice is how many Subscribe streams one device
	// may hold open: an app needs one; a few cover a restart whose old
	// stream has not timed out yet.
	DefaultMaxStreamsPerDevice = 4
	// DefaultMaxStreams is how many Subscribe streams the whole server
	// holds open. Each costs a goroutine, a socket and a few KiB.
	DefaultMaxStreams = 2000
	// DefaultMinBodyRate is the slowest a request body may arrive, on
	// average, once BodyGrace has passed: 1 KiB/s. The largest request
	// the client sends is about 3 MiB (the server takes 4 MiB), which at
	// that rate takes 51 minutes (68 for 4 MiB); a GPRS link manages 4 to
	// 5 KiB/s, so a real phone on the poorest network passes with a
	// margin, while a sender that trickles bytes to hold a request open
	// is cut off.
	DefaultMinBodyRate = 1 << 10
	// DefaultBodyGrace is how long a request body may take before the
	// minimum rate applies, so that a slow start (a radio waking up,
	// TCP's slow start) is not held against it.
	DefaultBodyGrace = 10 * time.Second
	// maxRawBodyBytes bounds a request body as it arrives, before any
	// decompression: one message of MaxRequestBytes and the framing
	// around it.
	maxRawBodyBytes = MaxRequestBytes + 64<<10
)

// limitBodies wraps every request body so that it is refused as soon as
// it is larger than maxRawBodyBytes, and cut off when it arrives slower
// than rate bytes a second on average once grace has passed.
func limitBodies(next http.Handler, rate int, grace time.Duration, m *Metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &slowBody{
				r:     http.MaxBytesReader(w, r.Body, maxRawBodyBytes),
				rc:    http.NewResponseController(w),
				start: time.Now(),
				rate:  float64(rate),
				grace: grace,
				m:     m,
			}
		}
		next.ServeHTTP(w, r)
	})
}

// slowBody enforces a minimum average rate on a request body: before each
// read it sets the connection's (or the HTTP/2 stream's) read deadline
// to the moment by which the next byte must have arrived, so that a
// sender that stalls is cut off without a goroutine watching it.
type slowBody struct {
	r     io.ReadCloser
	rc    *http.ResponseController
	start time.Time
	n     int64
	rate  float64
	grace time.Duration
	done  bool
	m     *Metrics
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	due := b.start.Add(b.grace + time.Duration(float64(b.n+1)/b.rate*float64(time.Second)))
	deadline := b.rc.SetReadDeadline(due) == nil
	n, err := b.r.Read(p)
	b.n += int64(n)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.m.refusedRequests.WithLabelValues("too_slow").Inc()
		return n, connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf(
			"the request arrived slower than %s per second once %s had passed, and was cut off: try again on a better connection", byteSize(int64(b.rate)), b.grace))
	case errors.As(err, new(*http.MaxBytesError)):
		b.m.refusedRequests.WithLabelValues("too_large").Inc()
		return n, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("the request is larger than %s", byteSize(MaxRequestBytes)))
	case errors.Is(err, io.EOF):
		b.done = true
		if deadline {
			// The body is in: what follows (a stream's responses) is
			// not the body's to limit.
			b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

func (b *slowBody) Close() error { return b.r.Close() }

// byteSize formats a size for a person: "4 MiB", "1 KiB", "700 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// gzipOption replaces connect's gzip with one that compresses by the
// message's size (see internal/gzipmsg) and stops decompressing as soon
// as a message is larger than MaxRequestBytes. connect limits
// how much of a decompressed message it keeps, but then decompresses the
// rest to report its size: a 1 MB body that expands to 1 GiB cost seconds
// of CPU before it was refused.
func gzipOption(m *Metrics) connect.HandlerOption {
	return connect.WithCompression("gzip",
		func() connect.Decompressor { return &limitedGzip{max: MaxRequestBytes, m: m} },
		func() connect.Compressor { return gzipmsg.New() },
	)
}

// limitedGzip is a gzip decompressor that fails once it has produced more
// than max+1 bytes: connect reads max+1 bytes to learn that a message is
// too large, and must get no further.
type limitedGzip struct {
	gz  gzip.Reader
	n   int64
	max int64
	m   *Metrics
}

// errDecompressedTooLarge is the cause connect reports when it tries to
// read past the limit.
var errDecompressedTooLarge = fmt.Errorf("the request is larger than %s once decompressed", byteSize(MaxRequestBytes))

func (g *limitedGzip) Read(p []byte) (int, error) {
	if g.n > g.max {
		g.m.refusedRequests.WithLabelValues("too_large").Inc()
		return 0, errDecompressedTooLarge
	}
	if rest := g.max + 1 - g.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := g.gz.Read(p)
	g.n += int64(n)
	return n, err
}

func (g *limitedGzip) Close() error { return g.gz.Close() }

func (g *limitedGzip) Reset(r io.Reader) error {
	g.n = 0
	return g.gz.Reset(r)
}

// streamLimiter caps open streams per key (a device, or a console
// session) and in all. Every long-lived stream the server offers takes a
// slot for its lifetime.
type streamLimiter struct {
	mu     sync.Mutex
	perKey int
	max    int
	total  int
	open   map[string]int
	m      *Metrics
}

func newStreamLimiter(perKey, max int, m *Metrics) *streamLimiter {
	return &streamLimiter{perKey: perKey, max: max, open: map[string]int{}, m: m}
}

// acquire takes a slot for key, or returns ERATELIMIT (resource
// exhausted) saying which limit was reached. release gives the slot
// back.
func (l *streamLimiter) acquire(key, what string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open[key] >= l.perKey:
		l.m.streamsRefused.WithLabelValues("device").Inc()
		return nil, syncengine.Errorf(syncengine.ERATELIMIT,
			"%s already has %d open Subscribe streams, the most one may have: close one (an app needs only one), or wait for an old one to time out", what, l.perKey)
	case l.total >= l.max:
		l.m.streamsRefused.WithLabelValues("server").Inc()
		return nil, syncengine.Errorf(syncengine.ERATELIMIT,
			"the server has %d open Subscribe streams, the most it takes: sync on a timer and try again in a minute", l.max)
	}
	l.open[key]++
	l.total++
	once := sync.Once{}
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.total--
			if l.open[key]--; l.open[key] <= 0 {
				delete(l.open, key)
			}
		})
	}, nil
}

// clientAddr returns the address a request comes from: the peer's, or,
// when the peer is a trusted reverse proxy, the last address in
// X-Forwarded-For that is not one of the trusted proxies. Addresses in
// the header are believed only as far as trusted proxies wrote them: a
// client can send the header too, and its own entries come first.
func clientAddr(peer string, forwarded []string, trusted []netip.Prefix) string {
	host := peer
	if h, _, err := net.SplitHostPort(peer); err == nil {
		host = h
	}
	isTrusted := func(s string) bool {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	if len(trusted) == 0 || !isTrusted(host) {
		return host
	}
	var hops []string
	for _, h := range forwarded {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if isTrusted(hop) {
			continue
		}
		if a, err := netip.ParseAddr(hop); err == nil {
			return a.Unmap().String()
		}
		break // a malformed hop: believe nothing further left
	}
	return host
}

// ParseTrustedProxies parses a comma-separated list of CIDR prefixes (or
// single addresses) of reverse proxies whose X-Forwarded-For the server
// believes.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR prefix such as 10.0.0.0/8", f)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is not a CIDR prefix such as 10.0.0.0/8", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
