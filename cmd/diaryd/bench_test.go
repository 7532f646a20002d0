package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/syncengine"
)

// BenchmarkDiaryd measures diaryd as a process, so that its memory is the
// server's alone: a navigator's device pushes 100,000 entries (title and
// body, about 400 bytes, 500 entries a push) and then a new device pulls
// them all (1000 a page). The server's Go heap in use is sampled from
// /metrics every 20 ms in each phase; peak-rss is the process's high-water
// mark of resident memory (VmHWM), which also counts SQLite's page cache
// (PostgreSQL's is in its own processes). It runs on SQLite and, when
// DIARYSYNC_TEST_POSTGRES names a server, on PostgreSQL.
//
//	go test -run '^$' -bench Diaryd -benchtime 1x -count 6 ./cmd/diaryd | benchstat -
func BenchmarkDiaryd(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { benchDiaryd(b, false) })
	b.Run("postgres", func(b *testing.B) { benchDiaryd(b, true) })
}

func benchDiaryd(b *testing.B, onPostgres bool) {
	const entries, perPush, perPull = 100_000, 500, 1000
	ctx := context.Background()
	var pushPeak, pullPeak, rss uint64
	var pushTime, pullTime time.Duration
	for range b.N {
		data := filepath.Join(b.TempDir(), "data")
		store := []string{"--data", data}
		if onPostgres {
			store = []string{"--database", storetest.NewDatabase(b)}
		}
		p := startDiaryd(b, data, store...)
		code, err := exec.Command(diarydBinary(b), append([]string{"admin-code"}, store...)...).Output()
		if err != nil {
			b.Fatal(err)
		}
		device := diaryv1connect.NewDeviceServiceClient(h2c, p.url)
		admin, err := device.Enroll(ctx, &diaryv1.EnrollRequest{Code: strings.TrimSpace(string(code))})
		if err != nil {
			b.Fatal(err)
		}
		adminc := diaryv1connect.NewAdminServiceClient(h2c, p.url, connect.WithInterceptors(authHeader(admin.GetToken())))
		if _, err := adminc.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: "PN-A", Role: diaryv1.Role_ROLE_NAVIGATOR}); err != nil {
			b.Fatal(err)
		}
		enrol := func() *diaryv1.EnrollResponse {
			ic, err := adminc.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: "PN-A"})
			if err != nil {
				b.Fatal(err)
			}
			nav, err := device.Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode()})
			if err != nil {
				b.Fatal(err)
			}
			return nav
		}
		phone, laptop := enrol(), enrol()
		replica, err := syncengine.ParseReplicaID(phone.GetReplicaId())
		if err != nil {
			b.Fatal(err)
		}

		sampler := sampleHeap(b, p.url)
		push := diaryv1connect.NewSyncServiceClient(h2c, p.url, connect.WithInterceptors(authHeader(phone.GetToken())))
		clock := syncengine.NewClock(nil)
		start := time.Now()
		for sent := 0; sent < entries; sent += perPush {
			changes := make([]*diaryv1.Change, 0, 2*perPush)
			for range perPush {
				id := syncengine.NewEntryID()
				for _, c := range []syncengine.Change{{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"}, {Field: syncengine.FieldBody, Text: benchBody}} {
					c.Entry, c.Replica, c.Clock = id, replica, clock.Now()
					changes = append(changes, wire.ChangeToProto(&c))
				}
			}
			if _, err := push.Push(ctx, &diaryv1.PushRequest{Changes: changes}); err != nil {
				b.Fatal(err)
			}
		}
		pushTime += time.Since(start)
		pushPeak = max(pushPeak, sampler.stop())

		sampler = sampleHeap(b, p.url)
		pull := diaryv1connect.NewSyncServiceClient(h2c, p.url, connect.WithInterceptors(authHeader(laptop.GetToken())))
		start = time.Now()
		n := 0
		for cursor := uint64(0); ; {
			resp, err := pull.Pull(ctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: perPull})
			if err != nil {
				b.Fatal(err)
			}
			n += len(resp.GetEntries())
			cursor = resp.GetNextCursor()
			if !resp.GetMore() {
				break
			}
		}
		pullTime += time.Since(start)
		pullPeak = max(pullPeak, sampler.stop())
		if n != entries {
			b.Fatalf("pulled %d entries, want %d", n, entries)
		}
		rss = max(rss, highWaterMark(b, p.cmd.Process.Pid))
		p.cmd.Process.Signal(os.Interrupt)
		if err := p.wait(b); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(entries*b.N)/pushTime.Seconds(), "push-entries/s")
	b.ReportMetric(float64(entries*b.N)/pullTime.Seconds(), "pull-entries/s")
	b.ReportMetric(float64(pushPeak), "push-peak-heap-bytes")
	b.ReportMetric(float64(pullPeak), "pull-peak-heap-bytes")
	b.ReportMetric(float64(rss), "peak-rss-bytes")
}

const benchBody = `Met J. outside the hostel this morning. She had been moved again and lost her paperwork for the housing appointment, so we spent an hour on the phone to the council. She was calm but tired. I noticed I wanted to fix everything for her, which is something I know from my own time in hostels. Talked it through; we have a plan for Thursday.`

// heapSampler scrapes diarysync_go_heap_inuse_bytes until stopped and
// keeps the greatest value.
type heapSampler struct {
	peak atomic.Uint64
	quit chan struct{}
	done chan struct{}
}

func sampleHeap(tb testing.TB, url string) *heapSampler {
	s := &heapSampler{quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := scrapeHeap(url); err != nil {
				tb.Error(err)
				return
			} else if v > s.peak.Load() {
				s.peak.Store(v)
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

func (s *heapSampler) stop() uint64 {
	close(s.quit)
	<-s.done
	return s.peak.Load()
}

func scrapeHeap(url string) (uint64, error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "diarysync_go_heap_inuse_bytes "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no diarysync_go_heap_inuse_bytes in /metrics: %v", sc.Err())
}

// highWaterMark returns the peak resident set size of a process (Linux).
func highWaterMark(tb testing.TB, pid int) uint64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc status")
	return 0
}
