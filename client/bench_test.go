package client

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/syncengine"
)

// benchServer is diaryd running as its own process, so that the heap the
// benchmarks measure is the client's alone.
type benchServer struct {
	url   string
	data  string
	codes map[string]string // demo study codes → one-time codes
	cmd   *exec.Cmd
}

var (
	benchOnce sync.Once
	benchSrv  *benchServer
	benchErr  error
)

const benchEntries = 100_000

// startBenchServer builds and starts diaryd with the demo study and loads
// it with benchEntries entries of PN-A, once per test binary.
func startBenchServer(b *testing.B) *benchServer {
	benchOnce.Do(func() { benchSrv, benchErr = newBenchServer() })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

func newBenchServer() (*benchServer, error) {
	dir, err := os.MkdirTemp("", "diarysync-bench-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "diaryd")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/diaryd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build diaryd: %v\n%s", err, out)
	}
	s := &benchServer{data: filepath.Join(dir, "data"), codes: map[string]string{}}
	s.cmd = exec.Command(bin, "serve", "--data", s.data, "--addr", "127.0.0.1:0", "--demo", "--log-level", "warn")
	stdout, _ := s.cmd.StdoutPipe()
	stderr, _ := s.cmd.StderrPipe()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	code := regexp.MustCompile(`^\s+(PN-A|SUP-1)\s+\w+\s+([A-Z0-9]{5}-[A-Z0-9]{5})`)
	url := regexp.MustCompile(`--server (http://[0-9.:]+)`)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := code.FindStringSubmatch(sc.Text()); m != nil {
			s.codes[m[1]] = m[2]
		}
		if m := url.FindStringSubmatch(sc.Text()); m != nil && s.url == "" {
			s.url = m[1]
		}
		if strings.HasPrefix(sc.Text(), "    go run ./cmd/diary --home /tmp/sup1 inbox") {
			break
		}
	}
	go func() { bufio.NewScanner(stderr).Scan() }()
	if s.url == "" || s.codes["PN-A"] == "" {
		return nil, fmt.Errorf("diaryd did not print its URL and demo codes")
	}
	return s, s.load()
}

// load pushes benchEntries entries of PN-A straight through the API.
func (s *benchServer) load() error {
	ctx := context.Background()
	enr, err := diaryv1connect.NewDeviceServiceClient(http.DefaultClient, s.url).Enroll(ctx, &diaryv1.EnrollRequest{Code: s.codes["PN-A"], DeviceName: "loader"})
	if err != nil {
		return err
	}
	replica, _ := syncengine.ParseReplicaID(enr.GetReplicaId())
	auth := connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, r connect.AnyRequest) (connect.AnyResponse, error) {
			r.Header().Set("Authorization", "Bearer "+enr.GetToken())
			return next(ctx, r)
		}
	}))
	sync := diaryv1connect.NewSyncServiceClient(http.DefaultClient, s.url, auth)
	clock := syncengine.NewClock(nil)
	body := strings.Repeat("A reflective paragraph about the day. ", 10)
	var batch []*diaryv1.Change
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := sync.Push(ctx, &diaryv1.PushRequest{Changes: batch})
		batch = batch[:0]
		return err
	}
	for i := range benchEntries {
		id := syncengine.NewEntryID()
		for _, c := range []syncengine.Change{
			{Field: syncengine.FieldTitle, Text: fmt.Sprint("Entry ", i)},
			{Field: syncengine.FieldBody, Text: body},
			{Field: syncengine.FieldDate, Text: "2026-11-27"},
			{Field: syncengine.FieldTag, Tag: "housing", Flag: true},
		} {
			c.Entry, c.Stamp = id, syncengine.Stamp{Clock: clock.Now(), Replica: replica}
			batch = append(batch, wireChange(&c))
		}
		if len(batch) >= 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// code issues a fresh enrolment code for PN-A through the admin account.
func (s *benchServer) code(b *testing.B) string {
	out, err := exec.Command(filepath.Join(filepath.Dir(s.data), "diaryd"), "admin-code", "--data", s.data).Output()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	admin := MustOpen(b, Options{})
	if _, err := admin.Enroll(ctx, s.url, strings.TrimSpace(string(out)), "bench admin"); err != nil {
		b.Fatal(err)
	}
	r, _, _ := admin.rpcs()
	svc := r.admin
	resp, err := svc.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
	if err != nil {
		b.Fatal(err)
	}
	return resp.GetCode()
}

// heapSampler records the peak of live heap objects while it runs.
type heapSampler struct {
	stop chan struct{}
	done chan struct{}
	peak uint64
}

func sampleHeap() *heapSampler {
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(h.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			h.peak = max(h.peak, s[0].Value.Uint64())
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

func (h *heapSampler) Stop() uint64 { close(h.stop); <-h.done; return h.peak }

// BenchmarkFirstSync measures a fresh device's first sync of 100,000
// entries from diaryd on loopback, into its SQLite replica and queryable,
// and the client's peak heap while doing it.
func BenchmarkFirstSync(b *testing.B) {
	s := startBenchServer(b)
	ctx := context.Background()
	var peak uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c := MustOpen(b, Options{Synchronous: "FULL"})
		if _, err := c.Enroll(ctx, s.url, s.code(b), "bench"); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		h := sampleHeap()
		b.StartTimer()
		if err := c.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		page, err := c.List(ctx, ListOptions{Limit: 50})
		if err != nil || len(page.Entries) != 50 {
			b.Fatalf("list after sync: %v", err)
		}
		b.StopTimer()
		peak = max(peak, h.Stop())
		st, _ := c.Status(ctx)
		if p := st.Progress; p.Pulled != benchEntries {
			b.Fatalf("pulled %d entries, want %d", p.Pulled, benchEntries)
		}
		c.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(benchEntries*b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
}

// BenchmarkLocalWrite measures creating an entry on a device (durable,
// synchronous=FULL, no network) and reports the median and 99th
// percentile latency.
func BenchmarkLocalWrite(b *testing.B) {
	s := startBenchServer(b)
	ctx := context.Background()
	c := MustOpen(b, Options{Synchronous: "FULL"})
	if _, err := c.Enroll(ctx, s.url, s.code(b), "bench"); err != nil {
		b.Fatal(err)
	}
	body := strings.Repeat("A reflective paragraph about the day. ", 30)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if _, err := c.Create(ctx, Draft{Title: fmt.Sprint("Entry ", i), Body: body, Tags: []string{"housing"}, ShareSupervisor: true}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchSrv != nil {
		benchSrv.cmd.Process.Kill()
		benchSrv.cmd.Wait()
		os.RemoveAll(filepath.Dir(benchSrv.data))
	}
	os.Exit(code)
}

func wireChange(c *syncengine.Change) *diaryv1.Change { return wire.ChangeToProto(c) }
