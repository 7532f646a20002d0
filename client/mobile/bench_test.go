package mobile

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
)

var benchEntries = flag.Int("mobile.entries", 100_000, "how many entries BenchmarkFirstSync pulls")

// benchServer is diaryd running as its own process, so that the heap the
// benchmark measures is the client's alone.
type benchServer struct {
	url string
	db  string
	dir string
	cmd *exec.Cmd
	// loader is PN-A's first device, which wrote the entries and
	// approves each device the benchmark enrols after it.
	loader *client.Client
}

var (
	benchOnce sync.Once
	benchSrv  *benchServer
	benchErr  error
)

// startBenchServer builds and starts diaryd and loads it with
// benchEntries entries of PN-A, once per test binary.
func startBenchServer(b *testing.B) *benchServer {
	benchOnce.Do(func() { benchSrv, benchErr = newBenchServer(*benchEntries) })
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchSrv
}

func newBenchServer(entries int) (*benchServer, error) {
	dir, err := os.MkdirTemp("", "diarysync-mobile-bench-")
	if err != nil {
		return nil, err
	}
	s := &benchServer{dir: dir, db: filepath.Join(dir, "data", "diarysync.db")}
	bin := filepath.Join(dir, "diaryd")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/diaryd").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build diaryd: %v\n%s", err, out)
	}
	// The study's one navigator, made in the file diaryd then serves.
	if err := os.Mkdir(filepath.Dir(s.db), 0o700); err != nil {
		return nil, err
	}
	db, err := sqlite.Open(context.Background(), s.db, sqlite.Options{})
	if err != nil {
		return nil, err
	}
	_, err = db.CreateUser(context.Background(), "PN-A", study.RoleNavigator, "Bench navigator")
	db.Close()
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "serve", "--data", filepath.Dir(s.db), "--addr", "127.0.0.1:0", "--synchronous", "NORMAL")
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(stderr)
	for s.url == "" && sc.Scan() {
		var line struct{ Msg, URL string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "serving" {
			s.url = line.URL
		}
	}
	go func() {
		for sc.Scan() { // keep diaryd from blocking on a full pipe
		}
	}()
	if s.url == "" {
		return s, fmt.Errorf("diaryd did not log the address it serves")
	}
	return s, s.load(entries)
}

// load writes entries entries of PN-A on a loader device and pushes them.
func (s *benchServer) load(entries int) error {
	ctx := context.Background()
	code, err := s.code()
	if err != nil {
		return err
	}
	c, err := client.Open(ctx, filepath.Join(s.dir, "loader.db"), client.Options{Synchronous: "NORMAL"})
	if err != nil {
		return err
	}
	s.loader = c
	if _, err := c.Enroll(ctx, s.url, code, "loader"); err != nil {
		return err
	}
	body := strings.Repeat("A reflective paragraph about the day. ", 10)
	for i := range entries {
		if _, err := c.Create(ctx, client.Draft{Title: fmt.Sprint("Entry ", i), Body: body, Date: "2026-11-27", Tags: []string{"housing"}}); err != nil {
			return err
		}
	}
	return c.Sync(ctx)
}

// code issues a one-time enrolment code for PN-A, in diaryd's file.
func (s *benchServer) code() (string, error) {
	db, err := sqlite.Open(context.Background(), s.db, sqlite.Options{})
	if err != nil {
		return "", err
	}
	defer db.Close()
	code, _, err := db.IssueEnrollmentCode(context.Background(), "PN-A", 0)
	return code, err
}

// approve lets a device the benchmark enrolled sync: it is PN-A's second.
func (s *benchServer) approve(b *testing.B, deviceID string) {
	if _, err := s.loader.ApproveDevice(context.Background(), deviceID); err != nil {
		b.Fatal(err)
	}
}

func (s *benchServer) mustCode(b *testing.B) string {
	code, err := s.code()
	if err != nil {
		b.Fatal(err)
	}
	return code
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

// BenchmarkFirstSync measures a fresh device's first sync of
// -mobile.entries entries from diaryd on loopback, until the first page
// of the list is on screen: through client directly, and through this
// package as an app calls it. Both write with synchronous=FULL. The
// ratio of the two is the facade's cost; peak-heap-MB is the live heap
// of the whole process during the sync, diaryd being another process.
func BenchmarkFirstSync(b *testing.B) {
	s := startBenchServer(b)
	n := *benchEntries
	b.Run("client", func(b *testing.B) {
		ctx := context.Background()
		var peak uint64
		for range b.N {
			b.StopTimer()
			c, err := client.Open(ctx, filepath.Join(b.TempDir(), "diary.db"), client.Options{})
			if err != nil {
				b.Fatal(err)
			}
			p, err := c.Enroll(ctx, s.url, s.mustCode(b), "bench")
			if err != nil {
				b.Fatal(err)
			}
			s.approve(b, p.DeviceID)
			runtime.GC()
			h := sampleHeap()
			b.StartTimer()
			if err := c.Sync(ctx); err != nil {
				b.Fatal(err)
			}
			page, err := c.List(ctx, client.ListOptions{Limit: 50})
			if err != nil || len(page.Entries) != 50 {
				b.Fatalf("list after sync: %v", err)
			}
			b.StopTimer()
			peak = max(peak, h.Stop())
			if got, err := c.CountEntries(ctx, client.ListOptions{}); err != nil || got != n {
				b.Fatalf("the device holds %d entries (%v), want %d", got, err, n)
			}
			c.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	})
	b.Run("mobile", func(b *testing.B) {
		var peak uint64
		for range b.N {
			b.StopTimer()
			m, err := Open(filepath.Join(b.TempDir(), "diary.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			p, err := m.Enrol(s.url, s.mustCode(b), "bench")
			if err != nil {
				b.Fatal(err)
			}
			s.approve(b, p.DeviceID)
			runtime.GC()
			h := sampleHeap()
			b.StartTimer()
			if err := m.SyncNow(); err != nil {
				b.Fatal(err)
			}
			page, err := m.List(&Query{Limit: 50})
			if err != nil || page.Len() != 50 {
				b.Fatalf("list after sync: %v", err)
			}
			b.StopTimer()
			peak = max(peak, h.Stop())
			if got, err := m.Count(nil); err != nil || got != n {
				b.Fatalf("the device holds %d entries (%v), want %d", got, err, n)
			}
			m.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	})
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if benchSrv != nil {
		if benchSrv.loader != nil {
			benchSrv.loader.Close()
		}
		if benchSrv.cmd != nil && benchSrv.cmd.Process != nil {
			benchSrv.cmd.Process.Kill()
			benchSrv.cmd.Wait()
		}
		os.RemoveAll(benchSrv.dir)
	}
	os.Exit(code)
}
