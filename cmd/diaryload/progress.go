package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// progress shows on a terminal what the run is doing: the phase, how far
// it is, the errors so far. Written anywhere else (a file, a pipe, a
// test's buffer), it stays silent, so that output meant for a program
// carries no control characters.
type progress struct {
	w io.Writer // nil when not a terminal

	mu    sync.Mutex
	name  string
	total int
	start time.Time

	done atomic.Int64
	errs atomic.Int64

	once sync.Once
	quit chan struct{}
	exit chan struct{}
}

func newProgress(w io.Writer) *progress {
	p := &progress{quit: make(chan struct{}), exit: make(chan struct{}), start: time.Now()}
	if !isTerminal(w) {
		close(p.exit)
		return p
	}
	p.w = w
	go func() {
		defer close(p.exit)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.quit:
				fmt.Fprint(p.w, "\r\x1b[K")
				return
			case <-t.C:
				fmt.Fprint(p.w, "\r\x1b[K"+p.line())
			}
		}
	}()
	return p
}

// line is the progress line without its carriage return.
func (p *progress) line() string {
	p.mu.Lock()
	name, total, start := p.name, p.total, p.start
	p.mu.Unlock()
	s := "diaryload: " + name
	if total > 0 {
		s += fmt.Sprintf(" %d/%d", p.done.Load(), total)
	}
	if n := p.errs.Load(); n > 0 {
		s += fmt.Sprintf(", %d errors", n)
	}
	return s + fmt.Sprintf(" (%s)", time.Since(start).Round(time.Second))
}

// phase starts a phase of total steps (0 when not counted).
func (p *progress) phase(name string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.name, p.total, p.start = name, total, time.Now()
	p.done.Store(0)
}

// add counts n steps done.
func (p *progress) add(n int) { p.done.Add(int64(n)) }

// failed counts one error.
func (p *progress) failed() { p.errs.Add(1) }

// stop clears the progress line for good. It may be called more than
// once.
func (p *progress) stop() {
	p.once.Do(func() { close(p.quit) })
	<-p.exit
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
