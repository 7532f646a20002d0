package main

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// forwarder is a TCP front for diaryd processes, as a load balancer is:
// devices know its address only, and it sends each new connection to
// whichever server is its target now.
type forwarder struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
}

func newForwarder(tb testing.TB, target string) *forwarder {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	f := &forwarder{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go f.accept()
	tb.Cleanup(func() { ln.Close(); f.cut() })
	return f
}

// url returns the address devices use.
func (f *forwarder) url() string { return "http://" + f.ln.Addr().String() }

// point sends new connections to url and cuts the open ones.
func (f *forwarder) point(url string) {
	f.mu.Lock()
	f.target = url
	f.mu.Unlock()
	f.cut()
}

func (f *forwarder) cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

func (f *forwarder) accept() {
	for {
		in, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		target := strings.TrimPrefix(f.target, "http://")
		f.mu.Unlock()
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		f.mu.Lock()
		f.conns[in], f.conns[out] = true, true
		f.mu.Unlock()
		go func() {
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); io.Copy(in, out); in.Close() }()
			wg.Wait()
			f.mu.Lock()
			delete(f.conns, in)
			delete(f.conns, out)
			f.mu.Unlock()
		}()
	}
}
