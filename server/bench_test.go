package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// The benchmarks run the server the way diaryd does (Serve on a loopback
// listener, HTTP/2 without TLS, synchronous=FULL) and a Connect client
// in the same process, on each engine: SQLite, and PostgreSQL when
// DIARYSYNC_TEST_POSTGRES names a server (a sub-benchmark says it skips
// otherwise). The heap they report is the process's, client included;
// BenchmarkDiaryd in cmd/diaryd measures the server's alone.
//
//	go test -run '^$' -bench 'Push|Pull' -benchtime 1x -count 6 ./server | benchstat -

const benchEntries = 100_000

// benchServer serves db on loopback until the benchmark ends and returns
// its URL.
func benchServer(b *testing.B, db *storetest.Store) string {
	b.Helper()
	store := db.Store
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(Config{Store: store}).Serve(ctx, ln, ServeOptions{}) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return "http://" + ln.Addr().String()
}

// h2cClient speaks HTTP/2 without TLS, as a client of diaryd without TLS
// certificates does.
func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}

// benchPage returns the changes creating n entries of fields changes each:
// title and body first (about 400 bytes together), then date, mood and a
// tag, which is what a typical diary entry holds.
func benchPage(replica syncengine.ReplicaID, clock *syncengine.Clock, n, fields int) []*diaryv1.Change {
	day := time.Now().Format(time.DateOnly)
	out := make([]*diaryv1.Change, 0, n*fields)
	for range n {
		id := syncengine.NewEntryID()
		for _, c := range []syncengine.Change{
			{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"},
			{Field: syncengine.FieldBody, Text: benchBody},
			{Field: syncengine.FieldDate, Text: day},
			{Field: syncengine.FieldMood, Number: 6},
			{Field: syncengine.FieldTag, Tag: "housing", Flag: true},
		}[:fields] {
			c.Entry, c.Replica, c.Clock = id, replica, clock.Now()
			out = append(out, wire.ChangeToProto(&c))
		}
	}
	return out
}

// heapPeak samples the process's heap in use until stopped and keeps the
// greatest value. In the in-process benchmarks it covers the client too,
// so it is an upper bound on the server's.
type heapPeak struct {
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

func startHeapPeak() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			if v := s[0].Value.Uint64() + s[1].Value.Uint64(); v > h.peak.Load() {
				h.peak.Store(v)
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
	return h
}

// bytes stops sampling and returns the peak.
func (h *heapPeak) bytes() float64 {
	close(h.stop)
	<-h.done
	return float64(h.peak.Load())
}

// BenchmarkPush pushes 100,000 new entries from one device into an empty
// server, one page after another, as a phone uploading a long backlog
// does.
func BenchmarkPush(b *testing.B) {
	for _, engine := range benchEngines {
		for _, bc := range []struct {
			fields, perPage int
		}{
			{2, 500}, // 1000 changes a push: the limit
			{5, 200},
		} {
			b.Run(fmt.Sprintf("%s/changes=%d/page=%d", engine, bc.fields, bc.perPage), func(b *testing.B) { benchPush(b, engine, bc.fields, bc.perPage) })
		}
	}
}

// benchEngines are the engines the benchmarks compare.
var benchEngines = []string{storetest.SQLite, storetest.Postgres}

func benchPush(b *testing.B, engine string, fields, perPage int) {
	var peak float64
	for range b.N {
		b.StopTimer()
		db := storetest.OpenOn(b, engine, storetest.Options{})
		dev := MustEnrollDevice(b, db, study.RoleNavigator, "PN-A")
		sync := diaryv1connect.NewSyncServiceClient(h2cClient(), benchServer(b, db), connect.WithInterceptors(authHeader(bearer(dev.Token))))
		clock := syncengine.NewClock(nil)
		heap := startHeapPeak()
		b.StartTimer()
		for sent := 0; sent < benchEntries; sent += perPage {
			resp, err := sync.Push(context.Background(), &diaryv1.PushRequest{Changes: benchPage(dev.Replica, clock, perPage, fields)})
			if err != nil {
				b.Fatal(err)
			}
			if r := resp.GetResults()[len(resp.GetResults())-1]; r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
				b.Fatalf("push: %v", r)
			}
		}
		b.StopTimer()
		peak = max(peak, heap.bytes())
	}
	b.ReportMetric(float64(benchEntries*b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(peak, "client+server-peak-heap-bytes")
}

// BenchmarkPull pulls 100,000 entries from an empty cursor in pages of
// 1000, as a new device of a navigator with a long history does.
func BenchmarkPull(b *testing.B) {
	for _, engine := range benchEngines {
		b.Run(engine, func(b *testing.B) { benchPull(b, engine) })
	}
}

func benchPull(b *testing.B, engine string) {
	db := storetest.OpenOn(b, engine, storetest.Options{})
	dev := MustEnrollDevice(b, db, study.RoleNavigator, "PN-A")
	clock := syncengine.NewClock(nil)
	var batch []study.Incoming
	for range benchEntries {
		id := syncengine.NewEntryID()
		for _, c := range []syncengine.Change{{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"}, {Field: syncengine.FieldBody, Text: benchBody}} {
			c.Entry, c.Replica, c.Clock = id, dev.Replica, clock.Now()
			batch = append(batch, study.Incoming{Change: c})
		}
		if len(batch) == study.MaxPushChanges {
			MustPush(b, db, dev.Identity, batch)
			batch = batch[:0]
		}
	}
	sync := diaryv1connect.NewSyncServiceClient(h2cClient(), benchServer(b, db), connect.WithInterceptors(authHeader(bearer(dev.Token))))
	b.Run(fmt.Sprintf("page=%d", study.MaxPullPageSize), func(b *testing.B) {
		var peak float64
		for range b.N {
			heap := startHeapPeak()
			var cursor uint64
			n := 0
			for {
				resp, err := sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: cursor, PageSize: study.MaxPullPageSize})
				if err != nil {
					b.Fatal(err)
				}
				n += len(resp.GetEntries())
				cursor = resp.GetNextCursor()
				if !resp.GetMore() {
					break
				}
			}
			if n != benchEntries {
				b.Fatalf("pulled %d entries, want %d", n, benchEntries)
			}
			b.StopTimer()
			peak = max(peak, heap.bytes())
			b.StartTimer()
		}
		b.ReportMetric(float64(benchEntries*b.N)/b.Elapsed().Seconds(), "entries/s")
		b.ReportMetric(peak, "client+server-peak-heap-bytes")
	})
}
