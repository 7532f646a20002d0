// Package faultproxy is a TCP proxy on loopback that breaks the
// connections it forwards the way mobile networks do: it cuts a response
// off after some bytes, resets connections, adds delays, and leaves
// connections half-open (one direction stops while the socket stays
// open, as when a NAT forgets a mapping). Tests put it between a client
// and a real server to check that sync makes progress and converges
// through such faults.
package faultproxy

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Kind is what the proxy does to one connection.
type Kind int

// Fault kinds. Every kind but Pass strikes once Fault.After bytes have
// passed in the direction it watches: the response (server to client)
// for Drop, Reset and StallResponse, the request for StallRequest.
const (
	// Pass forwards both ways untouched (apart from any Delay).
	Pass Kind = iota
	// Drop closes both sides normally (FIN): a response cut short.
	Drop
	// Reset closes both sides with a TCP reset (RST).
	Reset
	// StallResponse stops forwarding to the client while the socket
	// stays open: the client waits for bytes that never come.
	StallResponse
	// StallRequest stops forwarding to the server while the socket
	// stays open: the server waits for a request that never ends.
	StallRequest
)

// Kinds lists every kind that injects a fault.
var Kinds = []Kind{Drop, Reset, StallResponse, StallRequest}

// String returns the kind's name as used in test logs.
func (k Kind) String() string {
	switch k {
	case Pass:
		return "pass"
	case Drop:
		return "drop"
	case Reset:
		return "reset"
	case StallResponse:
		return "stall-response"
	case StallRequest:
		return "stall-request"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Fault is what the proxy does to one connection.
type Fault struct {
	Kind Kind
	// After is how many bytes pass, in the direction the kind watches,
	// before the fault strikes (0: before the first byte).
	After int64
	// Delay is added before forwarding each chunk, both ways.
	Delay time.Duration
	// Hold, for the stall kinds, is how long the connection stays
	// half-open before the proxy resets it, as a NAT or a keep-alive
	// probe eventually does; 0 holds it until one side closes.
	Hold time.Duration
}

// Policy chooses the fault for the n-th connection (from 1).
type Policy func(n int) Fault

// Stats counts what the proxy did.
type Stats struct {
	Conns   int          // connections accepted
	Delayed int          // connections given a delay
	Struck  map[Kind]int // faults that struck, by kind
}

// Total returns the number of faults that struck.
func (s Stats) Total() int {
	n := 0
	for _, v := range s.Struck {
		n += v
	}
	return n
}

// Proxy forwards connections from its loopback address to a target.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	policy Policy
	links  map[*link]bool
	stats  Stats
	closed bool
	wg     sync.WaitGroup
}

// Start listens on 127.0.0.1 (a free port) and forwards every connection
// to target (host:port), with the fault policy chooses (nil: Pass).
func Start(target string, policy Policy) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("cannot listen on loopback: %w", err)
	}
	p := &Proxy{ln: ln, target: target, policy: policy, links: map[*link]bool{}, stats: Stats{Struck: map[Kind]int{}}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns http://Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// SetPolicy replaces the policy for connections accepted from now on
// (nil: Pass). Open connections keep their fault.
func (p *Proxy) SetPolicy(policy Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.policy = policy
}

// Stats returns a copy of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Struck = make(map[Kind]int, len(p.stats.Struck))
	for k, v := range p.stats.Struck {
		s.Struck[k] = v
	}
	return s
}

// Strike injects a fault of kind k into every open connection now (with
// hold for the stall kinds) and returns how many it hit. Connections
// that already suffered a fault are left as they are.
func (p *Proxy) Strike(k Kind, hold time.Duration) int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	n := 0
	for _, l := range links {
		if l.strikeNow(k, hold) {
			n++
		}
	}
	return n
}

// Close stops accepting, closes every connection and waits until every
// goroutine of the proxy has returned.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.stats.Conns++
		f := Fault{}
		if p.policy != nil {
			f = p.policy(p.stats.Conns)
		}
		if f.Delay > 0 {
			p.stats.Delayed++
		}
		l := &link{proxy: p, client: c.(*net.TCPConn), fault: f, done: make(chan struct{})}
		p.links[l] = true
		p.wg.Add(1)
		p.mu.Unlock()
		go l.run()
	}
}

func (p *Proxy) struck(k Kind) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Struck[k]++
}

// link is one proxied connection.
type link struct {
	proxy  *Proxy
	client *net.TCPConn

	mu       sync.Mutex
	server   *net.TCPConn
	fault    Fault
	passed   [2]int64 // bytes forwarded: [up] to the server, [down] to the client
	struck   bool
	stalled  [2]bool // direction no longer forwarded
	closed   bool
	done     chan struct{}
	holdStop *time.Timer
}

const (
	up   = 0 // client to server
	down = 1 // server to client
)

func (l *link) run() {
	defer l.proxy.wg.Done()
	defer func() {
		l.proxy.mu.Lock()
		delete(l.proxy.links, l)
		l.proxy.mu.Unlock()
	}()
	s, err := net.DialTimeout("tcp", l.proxy.target, 5*time.Second)
	if err != nil {
		// As a network would: the client sees its connection refused.
		l.client.SetLinger(0)
		l.client.Close()
		return
	}
	l.mu.Lock()
	l.server = s.(*net.TCPConn)
	closed := l.closed
	l.mu.Unlock()
	if closed {
		s.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(up, l.client, l.server) }()
	go func() { defer wg.Done(); l.pump(down, l.server, l.client) }()
	wg.Wait()
	l.mu.Lock()
	if l.holdStop != nil {
		l.holdStop.Stop()
	}
	l.mu.Unlock()
}

// watches returns the direction whose bytes a kind counts.
func watches(k Kind) int {
	if k == StallRequest {
		return up
	}
	return down
}

// pump copies one direction until either side closes, applying the
// link's fault.
func (l *link) pump(dir int, src, dst net.Conn) {
	defer l.close(false)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.forward(dir, dst, buf[:n]) {
			return
		}
		if err != nil {
			return
		}
	}
}

// forward sends b on in direction dir, striking the fault when its byte
// count is reached. It reports false when the link is finished.
func (l *link) forward(dir int, dst net.Conn, b []byte) bool {
	l.mu.Lock()
	f := l.fault
	l.mu.Unlock()
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return false
		}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	if l.stalled[dir] {
		// A half-open direction: read and discard, so that the link
		// still notices when the other side gives up and closes.
		l.mu.Unlock()
		return true
	}
	send := b
	strike := false
	if !l.struck && f.Kind != Pass && watches(f.Kind) == dir {
		if left := f.After - l.passed[dir]; int64(len(b)) >= left {
			send, strike = b[:max(left, 0)], true
		}
	}
	l.passed[dir] += int64(len(send))
	l.mu.Unlock()
	if len(send) > 0 {
		if _, err := dst.Write(send); err != nil {
			return false
		}
	}
	if strike {
		return l.strike(f.Kind, f.Hold)
	}
	return true
}

// strike applies a fault now. It reports false when the link is closed.
func (l *link) strike(k Kind, hold time.Duration) bool {
	l.mu.Lock()
	if l.struck || l.closed {
		l.mu.Unlock()
		return !l.closed
	}
	l.struck = true
	l.mu.Unlock()
	l.proxy.struck(k)
	switch k {
	case Drop:
		l.close(false)
		return false
	case Reset:
		l.close(true)
		return false
	case StallResponse, StallRequest:
		l.mu.Lock()
		l.stalled[watches(k)] = true
		if hold > 0 {
			l.holdStop = time.AfterFunc(hold, func() { l.close(true) })
		}
		l.mu.Unlock()
	}
	return true
}

// strikeNow applies a fault to a link from outside its pumps.
func (l *link) strikeNow(k Kind, hold time.Duration) bool {
	l.mu.Lock()
	ok := !l.struck && !l.closed
	l.mu.Unlock()
	if !ok {
		return false
	}
	l.strike(k, hold)
	return true
}

// close closes both sides, with a TCP reset if rst.
func (l *link) close(rst bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	s := l.server
	l.mu.Unlock()
	for _, c := range []*net.TCPConn{l.client, s} {
		if c == nil {
			continue
		}
		if rst {
			// A zero linger makes Close send RST instead of FIN.
			c.SetLinger(0)
		}
		c.Close()
	}
}
