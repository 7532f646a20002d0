package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/syncengine"
)

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// diarydBinary builds diaryd once per test run.
func diarydBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "diaryd-test-"); buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "diaryd")
		args := []string{"build", "-o", binary}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("cannot build diaryd: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binary
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a running diaryd.
type process struct {
	cmd    *exec.Cmd
	url    string
	stdout syncBuffer
	stderr syncBuffer
	exited chan struct{}
	err    error // from Wait, once exited is closed
}

// startDiaryd starts "diaryd serve" on data and waits for its "serving"
// log line.
func startDiaryd(tb testing.TB, data string, extra ...string) *process {
	tb.Helper()
	args := append([]string{"serve", "--data", data, "--addr", "127.0.0.1:0"}, extra...)
	p := &process{cmd: exec.Command(diarydBinary(tb), args...), exited: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), "DIARYSYNC_DEMO=")
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.stderr.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, URL string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
				select {
				case urls <- line.URL:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case p.url = <-urls:
	case <-p.exited:
		tb.Fatalf("diaryd exited before serving: %v\n%s", p.err, p.stderr.String())
	case <-time.After(60 * time.Second):
		tb.Fatalf("diaryd did not log \"serving\" within a minute:\n%s", p.stderr.String())
	}
	return p
}

// wait waits for the process to exit and returns Wait's error.
func (p *process) wait(tb testing.TB) error {
	tb.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(30 * time.Second):
		tb.Fatalf("diaryd did not exit:\n%s", p.stderr.String())
	}
	return nil
}

// authHeader sets a bearer token on every call.
type authHeader string

func (a authHeader) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if a != "" {
			req.Header().Set("Authorization", "Bearer "+string(a))
		}
		return next(ctx, req)
	}
}

func (a authHeader) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		if a != "" {
			conn.RequestHeader().Set("Authorization", "Bearer "+string(a))
		}
		return conn
	}
}

func (a authHeader) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// h2c is an HTTP client that speaks unencrypted HTTP/2, as gRPC clients
// do against a server without TLS.
var h2c = func() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}()

var codeFormat = regexp.MustCompile(`^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}-[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}$`)

func readAdminCode(tb testing.TB, data string) string {
	tb.Helper()
	path := filepath.Join(data, "admin-code")
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		tb.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	code := strings.TrimSpace(string(b))
	if !codeFormat.MatchString(code) {
		tb.Fatalf("%s holds %q, not an enrolment code", path, code)
	}
	return code
}

var errNotApplied = errors.New("change not applied")

// sentEntry is an entry the test pushed: its id and contents.
type sentEntry struct {
	id          syncengine.EntryID
	title, body string
}

// TestDiaryd_Process runs diaryd as a process: first start, a navigator
// pushing batches until the server is killed with SIGKILL at a random
// moment, a new admin code while it is down, a restart that must hold
// every acknowledged change, and a clean SIGTERM shutdown.
func TestDiaryd_Process(t *testing.T) {
	ctx := context.Background()
	data := filepath.Join(t.TempDir(), "data")
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	p := startDiaryd(t, data)
	var adminCode, navToken string
	var replica syncengine.ReplicaID

	t.Run("OKFirstStart", func(t *testing.T) {
		adminCode = readAdminCode(t, data)
		// The code is printed before the "serving" line is logged, but
		// standard output reaches the buffer through a pipe of its own:
		// give it a moment to arrive.
		for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.stdout.String(), adminCode) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(p.stdout.String(), adminCode) {
			t.Fatalf("first start did not print the admin code:\n%s", p.stdout.String())
		}
		for _, f := range []string{data, filepath.Join(data, "diarysync.db")} {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s has mode %v: readable by others", f, fi.Mode().Perm())
			}
		}
		device := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p.url)
		enr, err := device.Enroll(ctx, &diaryv1.EnrollRequest{Code: adminCode, DeviceName: "admin"})
		if err != nil {
			t.Fatal(err)
		}
		admin := diaryv1connect.NewAdminServiceClient(http.DefaultClient, p.url, connect.WithInterceptors(authHeader(enr.GetToken())))
		if _, err := admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-A", Role: diaryv1.Role_ROLE_NAVIGATOR}); err != nil {
			t.Fatal(err)
		}
		ic, err := admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
		if err != nil {
			t.Fatal(err)
		}
		nav, err := device.Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode(), DeviceName: "phone"})
		if err != nil {
			t.Fatal(err)
		}
		navToken = nav.GetToken()
		if replica, err = syncengine.ParseReplicaID(nav.GetReplicaId()); err != nil {
			t.Fatal(err)
		}
		// The admin code works once.
		if _, err := device.Enroll(ctx, &diaryv1.EnrollRequest{Code: adminCode}); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("admin code used twice: %v", err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// The navigator pushes batches over gRPC on h2c until the server dies.
	var acked []sentEntry
	var inFlight []*diaryv1.Change
	t.Run("OKKilled", func(t *testing.T) {
		sync := diaryv1connect.NewSyncServiceClient(h2c, p.url, connect.WithGRPC(), connect.WithInterceptors(authHeader(navToken)))
		clock := syncengine.NewClock(nil)
		firstAck := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for batch := 0; ; batch++ {
				var sent []sentEntry
				var changes []*diaryv1.Change
				for i := range 50 {
					e := sentEntry{id: syncengine.NewEntryID(), title: fmt.Sprintf("batch %d entry %d", batch, i), body: strings.Repeat(fmt.Sprintf("body %d/%d ", batch, i), 20)}
					sent = append(sent, e)
					for _, c := range []syncengine.Change{{Field: syncengine.FieldTitle, Text: e.title}, {Field: syncengine.FieldBody, Text: e.body}} {
						c.Entry, c.Replica, c.Clock = e.id, replica, clock.Now()
						changes = append(changes, wire.ChangeToProto(&c))
					}
				}
				inFlight = changes
				resp, err := sync.Push(ctx, &diaryv1.PushRequest{Changes: changes})
				if err != nil {
					done <- err
					return
				}
				for i, r := range resp.GetResults() {
					if r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
						done <- fmt.Errorf("%w: batch %d change %d: %v", errNotApplied, batch, i, r)
						return
					}
				}
				inFlight = nil
				acked = append(acked, sent...)
				if batch == 0 {
					close(firstAck)
				}
			}
		}()
		select {
		case <-firstAck:
		case err := <-done:
			t.Fatalf("first push failed: %v", err)
		}
		time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Any transport error will do: the connection died mid-call.
		if err := <-done; errors.Is(err, errNotApplied) {
			t.Fatal(err)
		}
		var exit *exec.ExitError
		if err := p.wait(t); !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("diaryd ended with %v, want killed", err)
		}
		t.Logf("%d entries acknowledged before SIGKILL", len(acked))
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("OKAdminCode", func(t *testing.T) {
		out, err := exec.Command(diarydBinary(t), "admin-code", "--data", data).Output()
		if err != nil {
			t.Fatal(err)
		}
		code := strings.TrimSpace(string(out))
		if !codeFormat.MatchString(code) || code == adminCode {
			t.Fatalf("admin-code printed %q (the first code was %q)", code, adminCode)
		}
		if got := readAdminCode(t, data); got != code {
			t.Fatalf("admin-code file holds %q, printed %q", got, code)
		}
		adminCode = code
	})

	p = startDiaryd(t, data)
	t.Run("OKRestarted", func(t *testing.T) {
		if strings.Contains(p.stdout.String(), "One-time enrolment code") {
			t.Fatal("a restart created another administrator")
		}
		sync := diaryv1connect.NewSyncServiceClient(http.DefaultClient, p.url, connect.WithInterceptors(authHeader(navToken)))
		got := map[string]*diaryv1.Entry{}
		var cursor uint64
		for {
			resp, err := sync.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range resp.GetEntries() {
				got[e.GetId()] = e
			}
			cursor = resp.GetNextCursor()
			if !resp.GetMore() {
				break
			}
		}
		for _, e := range acked {
			g := got[e.id.String()]
			if g == nil {
				t.Fatalf("acknowledged entry %q is gone after SIGKILL", e.title)
			}
			if g.GetTitle().GetValue() != e.title || g.GetBody().GetValue() != e.body {
				t.Fatalf("acknowledged entry %q came back as %q", e.title, g.GetTitle().GetValue())
			}
		}
		// Nothing but the acknowledged batches and the one in flight.
		if len(got) != len(acked) && len(got) != len(acked)+len(inFlight)/2 {
			t.Fatalf("%d entries stored, %d acknowledged, %d in flight", len(got), len(acked), len(inFlight)/2)
		}
		// The batch whose answer was lost can be sent again.
		if len(inFlight) > 0 {
			resp, err := sync.Push(ctx, &diaryv1.PushRequest{Changes: inFlight})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range resp.GetResults() {
				if o := r.GetOutcome(); o != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED && o != diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE {
					t.Fatalf("retried change %d: %v", i, r)
				}
			}
		}
		device := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, p.url)
		if _, err := device.Enroll(ctx, &diaryv1.EnrollRequest{Code: adminCode, DeviceName: "new admin laptop"}); err != nil {
			t.Fatalf("the code from admin-code does not enrol: %v", err)
		}
	})

	t.Run("OKTerminated", func(t *testing.T) {
		// An open stream must not keep the server from shutting down.
		sync := diaryv1connect.NewSyncServiceClient(h2c, p.url, connect.WithInterceptors(authHeader(navToken)))
		stream, err := sync.Subscribe(ctx, &diaryv1.SubscribeRequest{})
		if err != nil {
			t.Fatal(err)
		}
		defer stream.Close()
		if !stream.Receive() {
			t.Fatalf("no first message: %v", stream.Err())
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t); err != nil {
			t.Fatalf("diaryd exited with %v after SIGTERM, want status 0:\n%s", err, p.stderr.String())
		}
		for stream.Receive() {
		}
		if connect.CodeOf(stream.Err()) != connect.CodeUnavailable {
			t.Fatalf("stream ended with %v, want unavailable", stream.Err())
		}
		if !strings.Contains(p.stderr.String(), `"msg":"shutting down"`) {
			t.Fatalf("no shutdown in the log:\n%s", p.stderr.String())
		}
	})
}

// TestRun checks the command line's errors without starting a server.
func TestRun(t *testing.T) {
	ctx := context.Background()
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // part of the error; "" for success
	}{
		{"OKHelp", []string{"help"}, ""},
		{"ErrNoCommand", nil, "no command given"},
		{"ErrUnknownCommand", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"ErrAdminCodeWithoutData", []string{"admin-code", "--data", empty}, "start the server there once first"},
		{"ErrBadLogLevel", []string{"serve", "--data", empty, "--log-level", "loud"}, `log level "loud"`},
		{"ErrExtraArgument", []string{"serve", "--data", empty, "extra"}, `unexpected argument "extra"`},
		{"ErrBadSynchronous", []string{"serve", "--data", filepath.Join(empty, "d"), "--synchronous", "OFF"}, "synchronous must be"},
		{"ErrTLSKeyMissing", []string{"serve", "--data", filepath.Join(empty, "t"), "--addr", "127.0.0.1:0", "--tls-cert", "cert.pem"}, "TLS needs both"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(ctx, tt.args, &stdout, &stderr)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestDiaryd_MetricsAddr: with --metrics-addr, /metrics is served on that
// private address, with the standard Go and process series, and not on
// the public one.
func TestDiaryd_MetricsAddr(t *testing.T) {
	p := startDiaryd(t, t.TempDir(), "--metrics-addr", "127.0.0.1:0")
	var private string
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		var l struct{ Msg, URL string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving metrics" {
			private = l.URL
		}
	}
	if private == "" {
		t.Fatalf("diaryd did not say where it serves metrics:\n%s", p.stderr.String())
	}
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the public address serves /metrics: %s", resp.Status)
	}
	resp, err = http.Get(private)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{"\ngo_goroutines ", "\nprocess_resident_memory_bytes ", "\ndiarysync_subscribe_streams_active ", "diarysync_go_heap_inuse_bytes "} {
		if !strings.Contains(string(body), series) {
			t.Errorf("private /metrics lacks %q", strings.TrimSpace(series))
		}
	}
}

// TestDiaryd_Pprof: --pprof serves Go's profiler on the private metrics
// address only, and only when asked; it needs --metrics-addr.
func TestDiaryd_Pprof(t *testing.T) {
	get := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	metricsURL := func(p *process) string {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			var l struct{ Msg, URL string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving metrics" {
				return strings.TrimSuffix(l.URL, "/metrics")
			}
		}
		t.Fatalf("diaryd did not say where it serves metrics:\n%s", p.stderr.String())
		return ""
	}
	p := startDiaryd(t, t.TempDir(), "--metrics-addr", "127.0.0.1:0", "--pprof")
	private := metricsURL(p)
	if code := get(private + "/debug/pprof/heap"); code != http.StatusOK {
		t.Fatalf("the private address answers the heap profile with %d", code)
	}
	if code := get(private + "/metrics"); code != http.StatusOK {
		t.Fatalf("with --pprof the private address answers /metrics with %d", code)
	}
	if code := get(p.url + "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Fatalf("the public address answers the heap profile with %d", code)
	}
	q := startDiaryd(t, t.TempDir(), "--metrics-addr", "127.0.0.1:0")
	if code := get(metricsURL(q) + "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Fatalf("without --pprof the private address answers the heap profile with %d", code)
	}
	err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--pprof"}, io.Discard, io.Discard)
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("--pprof without --metrics-addr: %v, want a usage error (exit status 2)", err)
	}
}

// TestDiaryd_DataTightened: an existing data directory (and admin code)
// left open to others is made private when the server starts.
func TestDiaryd_DataTightened(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startDiaryd(t, data)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.wait(t)
	if err := os.Chmod(data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"admin-code", "diarysync.db"} {
		if err := os.Chmod(filepath.Join(data, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p = startDiaryd(t, data)
	for path, want := range map[string]os.FileMode{data: 0o700, filepath.Join(data, "admin-code"): 0o600, filepath.Join(data, "diarysync.db"): 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s has mode %04o, want %04o", path, st.Mode().Perm(), want)
		}
	}
}

// TestHelpAndVersion: --help prints a command's flags to standard output
// and succeeds; version prints the build; a bad flag value is a usage
// mistake (exit status 2).
func TestHelpAndVersion(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"serve", "--help"}, []string{"-data", "-addr", "-tls-cert", "-tls-key", "-log-level", "-demo", "-synchronous", "-metrics-addr", "-trusted-proxy", "-max-streams-per-device", "-max-streams"}},
		{[]string{"admin-code", "--help"}, []string{"-data"}},
		{[]string{"version", "--help"}, []string{"-json"}},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(ctx, tc.args, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%v: %v", tc.args, err)
		}
		for _, f := range tc.flags {
			if !strings.Contains(stdout.String(), f+" ") && !strings.Contains(stdout.String(), f+"\n") {
				t.Errorf("diaryd %v does not show %s:\n%s", tc.args, f, stdout.String())
			}
		}
		if stderr.Len() > 0 {
			t.Errorf("diaryd %v wrote to stderr: %s", tc.args, stderr.String())
		}
	}
	var stdout bytes.Buffer
	if err := run(ctx, []string{"version", "--json"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	var info struct{ Module, Version, Go string }
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil || info.Module != "github.com/diarysync/diarysync" || info.Version == "" || info.Go == "" {
		t.Fatalf("version --json: %q (%v)", stdout.String(), err)
	}
	for _, bad := range [][]string{
		{"serve", "--max-streams", "many"},
		{"serve", "--max-streams-per-device", "0"},
		{"serve", "--trusted-proxy", "10.0.0.0/99"},
		{"serve", "--log-level", "loud"},
		{"serve", "--no-such-flag"},
		{"frobnicate"},
	} {
		err := run(ctx, bad, io.Discard, io.Discard)
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("diaryd %v: %v, want a usage error (exit status 2)", bad, err)
		}
	}
}
