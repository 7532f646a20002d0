package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// diarydModule is the import path built when no diaryd binary is given.
const diarydModule = "github.com/diarysync/diarysync/cmd/diaryd"

// findDiaryd returns the diaryd binary to start: the one given, else the
// one next to this program, else one built into dir with "go build".
func findDiaryd(ctx context.Context, given, dir string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("--diaryd %s: %w", given, err)
		}
		return given, nil
	}
	if self, err := os.Executable(); err == nil {
		next := filepath.Join(filepath.Dir(self), "diaryd")
		if fi, err := os.Stat(next); err == nil && fi.Mode().IsRegular() {
			return next, nil
		}
	}
	bin := filepath.Join(dir, "diaryd")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, diarydModule).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cannot build diaryd (run diaryload inside the diarysync module, or give the binary with --diaryd): %w\n%s", err, out)
	}
	return bin, nil
}

// diarydProcess is a diaryd that diaryload started and stops.
type diarydProcess struct {
	cmd       *exec.Cmd
	url       string
	log       *logTail
	exited    chan struct{}
	waitErr   error // set before exited is closed
	logErrors atomic.Int64
}

// childEnv is the environment of the diaryd child: this process's,
// without the DIARYSYNC_ settings, so that only the flags diaryload passes
// configure the server it measures.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DIARYSYNC_") {
			env = append(env, kv)
		}
	}
	return env
}

// startDiaryd starts "diaryd serve" on a free loopback port, on the
// PostgreSQL database when one is given and else on data, and returns it
// with a one-time administrator code: on SQLite the one a new study
// writes to <data>/admin-code, or a fresh one from "diaryd admin-code"
// for a study that exists already; on PostgreSQL always a fresh one.
func startDiaryd(ctx context.Context, bin, data, synchronous, database string) (*diarydProcess, string, error) {
	adminCode := func(store ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append([]string{"admin-code"}, store...)...)
		cmd.Env = childEnv()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("cannot get an administrator code from diaryd admin-code: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	code := ""
	args := []string{"serve", "--addr", "127.0.0.1:0", "--log-level", "info"}
	if database != "" {
		args = append(args, "--database", database)
	} else {
		args = append(args, "--data", data, "--synchronous", synchronous)
		if _, err := os.Stat(filepath.Join(data, "diarysync.db")); err == nil {
			var err error
			if code, err = adminCode("--data", data); err != nil {
				return nil, "", err
			}
		}
	}
	p := &diarydProcess{log: &logTail{max: 40}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = childEnv()
	p.cmd.Stdout = io.Discard
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("cannot start %s: %w", bin, err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.log.add(sc.Text())
			var line struct{ Level, Msg, URL string }
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "serving":
				select {
				case urls <- line.URL:
				default:
				}
			case line.Level == "ERROR":
				p.logErrors.Add(1)
			}
		}
		io.Copy(io.Discard, stderr)
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	fail := func(err error) (*diarydProcess, string, error) {
		p.stop()
		return nil, "", err
	}
	select {
	case p.url = <-urls:
	case <-p.exited:
		return nil, "", fmt.Errorf("diaryd exited before serving: %v\n%s", p.waitErr, p.log)
	case <-ctx.Done():
		return fail(context.Cause(ctx))
	case <-time.After(time.Minute):
		return fail(fmt.Errorf("diaryd did not start serving within a minute:\n%s", p.log))
	}
	if database != "" {
		// Asked of the database once it is migrated; a code for a study
		// that already has an administrator as well as for a new one.
		c, err := adminCode("--database", database)
		if err != nil {
			return fail(err)
		}
		code = c
	}
	if code == "" {
		b, err := os.ReadFile(filepath.Join(data, "admin-code"))
		if err != nil {
			return fail(fmt.Errorf("cannot read the administrator code of the new study: %w", err))
		}
		code = strings.TrimSpace(string(b))
	}
	return p, code, nil
}

// stop asks diaryd to shut down gracefully and waits; after 20 seconds
// it kills it. It returns an error when diaryd did not exit cleanly.
func (p *diarydProcess) stop() error {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("diaryd did not stop within 20 seconds of SIGTERM and was killed")
		}
	}
	if p.waitErr != nil {
		return fmt.Errorf("diaryd exited: %v\n%s", p.waitErr, p.log)
	}
	return nil
}

// logTail keeps the last lines a process logged, for error messages.
type logTail struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (l *logTail) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == l.max {
		l.lines = append(l.lines[:0], l.lines[1:]...)
	}
	l.lines = append(l.lines, line)
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// procStatus reads one "kB" field, such as VmRSS or VmHWM, of a process's
// /proc status (Linux) in bytes.
func procStatus(pid int, field string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s in /proc/%d/status: %w", field, pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssSampler follows the resident memory of a child process: VmRSS a few
// times a second, and the kernel's own high-water mark (VmHWM) when asked.
type rssSampler struct {
	pid  int
	peak atomic.Uint64
	ok   atomic.Bool
	quit chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus(pid, "VmRSS"); err == nil {
				s.ok.Store(true)
				if v > s.peak.Load() {
					s.peak.Store(v)
				}
			}
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the peak resident memory, the kernel's
// high-water mark if it can be read; ok is false when neither could.
func (s *rssSampler) stop() (peak uint64, ok bool) {
	close(s.quit)
	<-s.done
	peak, ok = s.peak.Load(), s.ok.Load()
	if hwm, err := procStatus(s.pid, "VmHWM"); err == nil {
		peak, ok = max(peak, hwm), true
	}
	return peak, ok
}
