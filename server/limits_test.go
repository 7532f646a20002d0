package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// metricValue scrapes the server's metrics and returns one series.
func metricValue(tb testing.TB, ts *testServer, series string) float64 {
	tb.Helper()
	rec := httptest.NewRecorder()
	ts.Server.Metrics().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	values, err := parseMetrics(rec.Body)
	if err != nil {
		tb.Fatal(err)
	}
	v, ok := values[series]
	if !ok {
		tb.Fatalf("/metrics has no series %s", series)
	}
	return v
}

// TestStreamCaps reproduces one device opening Subscribe streams without
// end: beyond its cap, and beyond the server's, a stream is refused with
// ResourceExhausted and a message saying which limit, and counted.
func TestStreamCaps(t *testing.T) {
	ctx := context.Background()
	ts := newTestServer(t, Config{Heartbeat: time.Hour, MaxStreamsPerDevice: 2, MaxStreams: 3})
	a := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A").Token))
	b := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-B").Token))
	c := ts.clients(bearer(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-C").Token))
	open := func(cl *clients) (*connect.ServerStreamForClient[diaryv1.SubscribeResponse], context.CancelFunc, error) {
		sctx, cancel := context.WithCancel(ctx)
		s, err := cl.sync.Subscribe(sctx, &diaryv1.SubscribeRequest{})
		if err == nil && !s.Receive() {
			err = s.Err()
		}
		return s, cancel, err
	}
	_, closeA1, err := open(a)
	wantCode(t, err, 0)
	defer closeA1()
	_, closeA2, err := open(a)
	wantCode(t, err, 0)
	defer closeA2()

	t.Run("ErrPerDevice", func(t *testing.T) {
		_, cancel, err := open(a)
		defer cancel()
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), "this device already has 2 open Subscribe streams") {
			t.Fatalf("message %q does not say which limit", err)
		}
		if got := metricValue(t, ts, `diarysync_subscribe_streams_refused_total{limit="device"}`); got != 1 {
			t.Fatalf("refused (device) = %v, want 1", got)
		}
	})
	_, closeB, err := open(b)
	wantCode(t, err, 0)
	defer closeB()
	t.Run("ErrServerWide", func(t *testing.T) {
		_, cancel, err := open(c)
		defer cancel()
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), "the server has 3 open Subscribe streams") {
			t.Fatalf("message %q does not say which limit", err)
		}
		if got := metricValue(t, ts, `diarysync_subscribe_streams_refused_total{limit="server"}`); got != 1 {
			t.Fatalf("refused (server) = %v, want 1", got)
		}
	})
	t.Run("OKAfterClose", func(t *testing.T) {
		closeA1()
		// The slot is given back when the handler returns.
		var err error
		for range 100 {
			var cancel context.CancelFunc
			_, cancel, err = open(c)
			defer cancel()
			if err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		wantCode(t, err, 0)
	})
}

// bomb returns a gzip stream of n MiB of zeros: one small member,
// repeated (a gzip stream may hold many members). 1024 MiB take about
// 1 MB.
func bomb(tb testing.TB, mib int) []byte {
	tb.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	return bytes.Repeat(member.Bytes(), mib)
}

// heapGrowth samples the heap in use (see heapPeak) until stopped and
// returns how far its peak rose above its value at the start.
func heapGrowth() (stop func() uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	base := s[0].Value.Uint64() + s[1].Value.Uint64()
	h := startHeapPeak()
	return func() uint64 {
		if p := uint64(h.bytes()); p > base {
			return p - base
		}
		return 0
	}
}

// TestGzipBomb reproduces a 1 MB gzip body that expands to 1 GiB, sent to
// Enroll without any token: it must be refused once it is past the limit
// decompressed, not decompressed in full first, over Connect and gRPC.
func TestGzipBomb(t *testing.T) {
	ts := newTestServer(t, Config{})
	body := bomb(t, 1024)
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{"Connect", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, ts.URL+diaryv1connect.DeviceServiceEnrollProcedure, bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/proto")
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}},
		{"gRPC", func() *http.Request {
			frame := make([]byte, 5, 5+len(body))
			frame[0] = 1 // compressed
			binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
			r, _ := http.NewRequest(http.MethodPost, ts.URL+diaryv1connect.DeviceServiceEnrollProcedure, bytes.NewReader(append(frame, body...)))
			r.Header.Set("Content-Type", "application/grpc")
			r.Header.Set("Grpc-Encoding", "gzip")
			r.Header.Set("Te", "trailers")
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metricValue(t, ts, `diarysync_requests_refused_total{reason="too_large"}`)
			stop := heapGrowth()
			resp, err := ts.http.Client().Do(tc.req())
			if err != nil {
				t.Fatal(err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			grew := stop()
			all := string(msg) + resp.Header.Get("Grpc-Message") + resp.Trailer.Get("Grpc-Message")
			if !strings.Contains(all, "resource_exhausted") && resp.Header.Get("Grpc-Status") != "8" && resp.Trailer.Get("Grpc-Status") != "8" {
				t.Fatalf("status %s, %q: want resource exhausted", resp.Status, all)
			}
			// connect reports the full size when it decompressed it all to
			// find it out: that is the attack.
			if strings.Contains(all, "1073741824") {
				t.Fatalf("the server decompressed the whole bomb: %q", all)
			}
			if !strings.Contains(all, "once decompressed") {
				t.Fatalf("the message %q does not say the request is too large once decompressed", all)
			}
			if got := metricValue(t, ts, `diarysync_requests_refused_total{reason="too_large"}`); got != before+1 {
				t.Fatalf("too_large refusals %v, want %v", got, before+1)
			}
			if grew > 64<<20 {
				t.Fatalf("the server's heap grew by %d MiB for a refused request", grew>>20)
			}
		})
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestRawBodyLimit: a body far over the limit is refused when the limit
// is crossed, not read to its end first.
func TestRawBodyLimit(t *testing.T) {
	ts := newTestServer(t, Config{})
	for _, http1 := range []bool{false, true} {
		name := "HTTP2"
		hc := ts.http.Client()
		if http1 {
			name, hc = "HTTP1", ts.http1Client()
		}
		t.Run(name, func(t *testing.T) {
			body := &countingReader{r: io.LimitReader(zeros{}, 200<<20)}
			r, _ := http.NewRequest(http.MethodPost, ts.URL+diaryv1connect.DeviceServiceEnrollProcedure, body)
			r.Header.Set("Content-Type", "application/proto")
			resp, err := hc.Do(r)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Fatal("a 200 MiB request was accepted")
				}
			}
			// What the client managed to send before the server stopped
			// reading: the limit, plus what buffers and flow control held.
			if sent := body.n.Load(); sent > 32<<20 {
				t.Fatalf("the server read %d MiB of a request over its 4 MiB limit", sent>>20)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// trickle sends its bytes at chunk bytes every interval, however large
// the reads it is asked for.
type trickle struct {
	data     []byte
	chunk    int
	interval time.Duration
	start    time.Time
	sent     int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	if t.start.IsZero() {
		t.start = time.Now()
	}
	for {
		allowed := (int(time.Since(t.start)/t.interval) + 1) * t.chunk
		if t.sent < allowed {
			n := min(len(p), allowed-t.sent, len(t.data))
			copy(p, t.data[:n])
			t.data, t.sent = t.data[n:], t.sent+n
			return n, nil
		}
		time.Sleep(t.start.Add(time.Duration(allowed/t.chunk) * t.interval).Sub(time.Now()))
	}
}

// TestSlowBody reproduces a body declared large and sent slowly: it is cut
// off once the grace has passed and it falls below the minimum rate, over
// HTTP/1.1 and HTTP/2, while a large push at a rate above the minimum
// gets through.
func TestSlowBody(t *testing.T) {
	// The test's minimum rate is higher than the default (1 KiB/s), so
	// that a body above it takes seconds rather than minutes.
	const rate = 256 << 10
	ts := newTestServer(t, Config{MinBodyRate: rate, BodyGrace: 300 * time.Millisecond})
	navDev := MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A")
	for _, http1 := range []bool{false, true} {
		name := "HTTP2"
		hc := ts.http.Client()
		if http1 {
			name, hc = "HTTP1", ts.http1Client()
		}
		t.Run(name+"/ErrTooSlow", func(t *testing.T) {
			before := metricValue(t, ts, `diarysync_requests_refused_total{reason="too_slow"}`)
			// A valid Enroll message, sent ten bytes every 50 ms (200 B/s)
			// and declared at its full length: without a minimum rate the
			// server would wait for it as long as the sender likes.
			msg, _ := proto.Marshal(&diaryv1.EnrollRequest{Code: "ABCDE-FGHJK", DeviceName: strings.Repeat("n", 60)})
			msg = append(msg, make([]byte, 4<<10)...) // padding the server must read too
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r, _ := http.NewRequestWithContext(ctx, http.MethodPost, ts.URL+diaryv1connect.DeviceServiceEnrollProcedure,
				&trickle{data: msg, chunk: 10, interval: 50 * time.Millisecond})
			r.ContentLength = int64(len(msg))
			r.Header.Set("Content-Type", "application/proto")
			resp, err := hc.Do(r)
			if ctx.Err() != nil {
				t.Fatal("the server was still reading the slow body after 30 s")
			}
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if ctx.Err() != nil {
					t.Fatal("the server was still reading the slow body after 30 s")
				}
				if !strings.Contains(string(b), "slower than 256 KiB per second") {
					t.Fatalf("status %s, %q: want the slow body cut off", resp.Status, b)
				}
			}
			if got := metricValue(t, ts, `diarysync_requests_refused_total{reason="too_slow"}`); got != before+1 {
				t.Fatalf("too_slow refusals %v, want %v", got, before+1)
			}
		})
		t.Run(name+"/OKAboveMinimum", func(t *testing.T) {
			// A push of about 2 MiB at twice the minimum rate.
			w := newWriter(navDev)
			var changes []*diaryv1.Change
			for range 8 {
				changes = append(changes, w.change(syncengine.NewEntryID(), syncengine.Change{Field: syncengine.FieldBody, Text: strings.Repeat("x", syncengine.MaxBodyBytes-100)}))
			}
			msg, err := proto.Marshal(&diaryv1.PushRequest{Changes: changes})
			if err != nil {
				t.Fatal(err)
			}
			r, _ := http.NewRequest(http.MethodPost, ts.URL+diaryv1connect.SyncServicePushProcedure,
				&trickle{data: msg, chunk: 64 << 10, interval: 125 * time.Millisecond})
			r.ContentLength = int64(len(msg))
			r.Header.Set("Content-Type", "application/proto")
			r.Header.Set("Authorization", bearer(navDev.Token))
			resp, err := hc.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s: %s", resp.Status, b)
			}
			var pr diaryv1.PushResponse
			if err := proto.Unmarshal(b, &pr); err != nil {
				t.Fatal(err)
			}
			for _, res := range pr.GetResults() {
				if res.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
					t.Fatalf("result %v", res)
				}
			}
		})
	}
}

func TestClientAddr(t *testing.T) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.168.1.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		peer      string
		forwarded []string
		trusted   []netip.Prefix
		want      string
	}{
		{"NoProxies", "203.0.113.9:5000", []string{"198.51.100.1"}, nil, "203.0.113.9"},
		// Anyone can send the header: only a trusted peer's is believed.
		{"UntrustedPeer", "203.0.113.9:5000", []string{"198.51.100.1"}, proxies, "203.0.113.9"},
		{"TrustedPeer", "10.1.2.3:443", []string{"198.51.100.1"}, proxies, "198.51.100.1"},
		// The client's own entries come first; the last untrusted hop is
		// what a trusted proxy saw.
		{"SpoofedPrefix", "10.1.2.3:443", []string{"1.2.3.4, 198.51.100.1"}, proxies, "198.51.100.1"},
		{"ChainOfProxies", "192.168.1.7:443", []string{"198.51.100.1, 10.9.9.9"}, proxies, "198.51.100.1"},
		{"SeveralHeaders", "10.1.2.3:443", []string{"1.2.3.4", "198.51.100.2"}, proxies, "198.51.100.2"},
		{"NoHeader", "10.1.2.3:443", nil, proxies, "10.1.2.3"},
		{"Malformed", "10.1.2.3:443", []string{"198.51.100.1, not-an-address"}, proxies, "10.1.2.3"},
		{"IPv6", "[::ffff:10.1.2.3]:443", []string{"2001:db8::1"}, proxies, "2001:db8::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clientAddr(tc.peer, tc.forwarded, tc.trusted); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example.org", "10.0.0"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

// TestTrustedProxy: behind a trusted proxy, wrong enrolment codes are
// limited per client, not per proxy; without one, the header does not let
// a guesser pose as many clients.
func TestTrustedProxy(t *testing.T) {
	ctx := context.Background()
	guess := func(ts *testServer, from string) error {
		c := ts.clientsOver(ts.http.Client(), "", connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("X-Forwarded-For", from)
				return next(ctx, req)
			}
		})))
		_, err := c.device.Enroll(ctx, &diaryv1.EnrollRequest{Code: "ABCDE-FGHJK"})
		return err
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	twoGuesses := study.AttemptLimit{Burst: 2, Refill: time.Hour}
	t.Run("OKPerClient", func(t *testing.T) {
		ts := newTestServer(t, Config{Store: MustOpenDBWith(t, storetest.Options{EnrollLimit: twoGuesses}), TrustedProxies: loopback})
		for range 2 {
			wantCode(t, guess(ts, "198.51.100.1"), connect.CodeUnauthenticated)
		}
		wantCode(t, guess(ts, "198.51.100.1"), connect.CodeResourceExhausted)
		// Another client behind the same proxy is not held back.
		wantCode(t, guess(ts, "198.51.100.2"), connect.CodeUnauthenticated)
	})
	t.Run("ErrSpoofedHeader", func(t *testing.T) {
		ts := newTestServer(t, Config{Store: MustOpenDBWith(t, storetest.Options{EnrollLimit: twoGuesses})})
		for range 2 {
			wantCode(t, guess(ts, "198.51.100.1"), connect.CodeUnauthenticated)
		}
		err := guess(ts, "198.51.100.99")
		wantCode(t, err, connect.CodeResourceExhausted)
		if !strings.Contains(err.Error(), "too many wrong enrolment codes") {
			t.Fatal(err)
		}
	})
}
