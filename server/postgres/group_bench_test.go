package postgres

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/faultproxy"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// BenchmarkGroupCommit has many devices push small batches (10 entries)
// at once, as phones do when the network comes back, with group commit
// ("group") and with every push in a transaction of its own ("single"),
// as the store did before. The difference depends on what a commit
// costs: run it against a server with fsync and synchronous_commit on
// (the throwaway cluster of .ci/run has both off).
func BenchmarkGroupCommit(b *testing.B) {
	for _, devices := range []int{1, 50, 200} {
		for _, mode := range []string{"group", "single"} {
			b.Run(fmt.Sprintf("devices=%d/%s", devices, mode), func(b *testing.B) {
				benchGroupCommit(b, devices, mode == "group")
			})
		}
	}
}

// BenchmarkGroupCommitOverNetwork is BenchmarkGroupCommit's group mode
// with PostgreSQL on another machine: the store reaches the server
// through a proxy that holds every chunk of bytes for 250 µs each way
// (a round trip of at least half a millisecond, as within one data
// centre). A group's pushes run one after another, so each round trip a
// push makes is one that every push behind it in the group waits for.
// It needs the server's TCP address in DIARYSYNC_BENCH_POSTGRES_ADDR
// (host:port; the cluster of .ci/run has none) and skips without it.
func BenchmarkGroupCommitOverNetwork(b *testing.B) {
	addr := os.Getenv("DIARYSYNC_BENCH_POSTGRES_ADDR")
	if addr == "" {
		b.Skip("DIARYSYNC_BENCH_POSTGRES_ADDR is not set: no TCP address of the PostgreSQL server to put a delay in front of")
	}
	for _, devices := range []int{50, 200} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) {
			u, err := url.Parse(newTestDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			px, err := faultproxy.Start(addr, func(int) faultproxy.Fault { return faultproxy.Fault{Delay: 250 * time.Microsecond} })
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { px.Close() })
			host, port, err := net.SplitHostPort(px.Addr())
			if err != nil {
				b.Fatal(err)
			}
			q := u.Query()
			q.Set("host", host)
			q.Set("port", port)
			q.Set("sslmode", "disable")
			u.RawQuery = q.Encode()
			db, err := Open(context.Background(), u.String(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			benchGroupCommitOn(b, db, devices, true)
		})
	}
}

func benchGroupCommit(b *testing.B, devices int, group bool) {
	benchGroupCommitOn(b, openTestDB(b), devices, group)
}

func benchGroupCommitOn(b *testing.B, db *DB, devices int, group bool) {
	navs := make([]*study.Identity, devices)
	clocks := make([]*syncengine.Clock, devices)
	for i := range navs {
		navs[i] = mustEnroll(b, db, fmt.Sprintf("PN-%d", i))
		clocks[i] = syncengine.NewClock(nil)
	}
	today := time.Now().Format(time.DateOnly)
	const perPush = 10
	push := func(who *study.Identity, in []study.Incoming) error {
		if group {
			_, _, err := db.Push(context.Background(), who, in)
			return err
		}
		// One push, one transaction: what Push did before group commit.
		results := make([]study.ChangeResult, len(in))
		candidates := make([]int, len(in))
		for i := range in {
			candidates[i] = i
		}
		j := &pushJob{ctx: context.Background(), who: who, in: in, candidates: candidates, results: results, wake: &study.Wakeups{}, now: db.now(), done: make(chan struct{})}
		db.runGroup([]*pushJob{j})
		return j.err
	}
	b.ResetTimer()
	for range b.N {
		var wg sync.WaitGroup
		errs := make(chan error, devices)
		for i, nav := range navs {
			wg.Go(func() {
				var in []study.Incoming
				for range perPush {
					in = append(in, newEntry(nav.Replica, clocks[i], today)...)
				}
				if err := push(nav, in); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(devices*b.N)/b.Elapsed().Seconds(), "pushes/s")
	stats := db.GroupStats()
	if stats.Commits > 0 {
		b.ReportMetric(float64(stats.Pushes)/float64(stats.Commits), "pushes/commit")
	}
}
