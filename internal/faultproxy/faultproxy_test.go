package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// backend is a server that answers each request line with size bytes and
// then keeps the connection open until the client closes it, so that a
// test can tell a cut from a stall.
type backend struct {
	ln       net.Listener
	size     int
	requests atomic.Int64 // request lines received
}

func startBackend(tb testing.TB, size int) *backend {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &backend{ln: ln, size: size}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					b.requests.Add(1)
					if _, err := c.Write(bytes.Repeat([]byte{'x'}, b.size)); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() { ln.Close() })
	return b
}

func startProxy(tb testing.TB, target string, policy Policy) *Proxy {
	tb.Helper()
	p, err := Start(target, policy)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// exchange sends one request line and reads until the response is
// complete, the connection ends, or wait passes with nothing more.
func exchange(tb testing.TB, c net.Conn, want int, wait time.Duration) (int, error) {
	tb.Helper()
	if _, err := c.Write([]byte("request\n")); err != nil {
		return 0, err
	}
	got := 0
	buf := make([]byte, 4096)
	for got < want {
		c.SetReadDeadline(time.Now().Add(wait))
		n, err := c.Read(buf)
		got += n
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

func always(f Fault) Policy { return func(int) Fault { return f } }

// TestProxy checks each fault kind against a backend whose answer is
// known: how many bytes reach the client and how the connection ends.
func TestProxy(t *testing.T) {
	const size = 100 << 10
	tests := []struct {
		name      string
		fault     Fault
		wantBytes int
		wantErr   func(error) bool
		requests  int64 // request lines the backend must have seen
	}{
		{"OKPass", Fault{}, size, func(err error) bool { return err == nil }, 1},
		{"OKDelay", Fault{Delay: 20 * time.Millisecond}, size, func(err error) bool { return err == nil }, 1},
		{"Drop", Fault{Kind: Drop, After: 1000}, 1000, func(err error) bool { return errors.Is(err, io.EOF) }, 1},
		{"DropBeforeAnyByte", Fault{Kind: Drop}, 0, func(err error) bool { return errors.Is(err, io.EOF) }, 1},
		{"Reset", Fault{Kind: Reset, After: 1000}, -1, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }, 1},
		{"StallResponse", Fault{Kind: StallResponse, After: 1000}, 1000, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }, 1},
		{"StallRequest", Fault{Kind: StallRequest, After: 3}, 0, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }, 0},
		{"StallThenReset", Fault{Kind: StallResponse, After: 10, Hold: 100 * time.Millisecond}, 10, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBackend(t, size)
			p := startProxy(t, b.ln.Addr().String(), always(tt.fault))
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			got, err := exchange(t, c, size, 500*time.Millisecond)
			if !tt.wantErr(err) {
				t.Fatalf("exchange ended with %v after %d bytes", err, got)
			}
			// A reset may discard bytes already in flight; only the
			// upper bound is certain.
			if tt.wantBytes >= 0 && got != tt.wantBytes {
				t.Fatalf("client got %d bytes, want %d", got, tt.wantBytes)
			}
			if tt.fault.Kind == Reset && got > int(tt.fault.After) {
				t.Fatalf("client got %d bytes past a reset after %d", got, tt.fault.After)
			}
			if tt.fault.Delay > 0 && time.Since(start) < tt.fault.Delay {
				t.Fatalf("answer took %v, less than the delay %v", time.Since(start), tt.fault.Delay)
			}
			if n := b.requests.Load(); n != tt.requests {
				t.Fatalf("backend saw %d requests, want %d", n, tt.requests)
			}
			st := p.Stats()
			if st.Conns != 1 {
				t.Fatalf("stats: %d connections, want 1", st.Conns)
			}
			if tt.fault.Kind != Pass && (st.Struck[tt.fault.Kind] != 1 || st.Total() != 1) {
				t.Fatalf("stats: struck %v, want one %v", st.Struck, tt.fault.Kind)
			}
		})
	}
}

// TestProxy_Strike checks faults injected into open connections from
// outside, as a test does to a long-lived stream.
func TestProxy_Strike(t *testing.T) {
	const size = 10
	for _, tt := range []struct {
		kind    Kind
		wantErr func(error) bool
	}{
		{Reset, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{Drop, func(err error) bool { return errors.Is(err, io.EOF) }},
		{StallResponse, func(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }},
	} {
		t.Run(tt.kind.String(), func(t *testing.T) {
			b := startBackend(t, size)
			p := startProxy(t, b.ln.Addr().String(), nil)
			c, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got, err := exchange(t, c, size, time.Second); err != nil || got != size {
				t.Fatalf("before the strike: %d bytes, %v", got, err)
			}
			if n := p.Strike(tt.kind, 0); n != 1 {
				t.Fatalf("Strike hit %d connections, want 1", n)
			}
			if _, err := exchange(t, c, size, 300*time.Millisecond); !tt.wantErr(err) {
				t.Fatalf("after the strike: %v", err)
			}
			// A new connection is not affected.
			c2, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			if got, err := exchange(t, c2, size, time.Second); err != nil || got != size {
				t.Fatalf("new connection after the strike: %d bytes, %v", got, err)
			}
		})
	}
}

// TestProxy_CloseEndsEverything checks that Close returns with stalled
// connections open and that their clients see them end.
func TestProxy_CloseEndsEverything(t *testing.T) {
	b := startBackend(t, 10)
	p, err := Start(b.ln.Addr().String(), always(Fault{Kind: StallResponse}))
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := exchange(t, c, 10, 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled exchange: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return with a stalled connection open")
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read after Close: %v, want the connection ended", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("the proxy still accepts after Close")
	}
}
