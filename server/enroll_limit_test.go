package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
)

// lookupCounter is a store that counts the enrolment codes it is asked
// to look up.
type lookupCounter struct {
	study.Store
	lookups atomic.Int64
}

func (c *lookupCounter) Enroll(ctx context.Context, req study.EnrollRequest) (*study.Enrollment, error) {
	c.lookups.Add(1)
	return c.Store.Enroll(ctx, req)
}

// TestEnrollLimit_ParallelGuesses sends 300 wrong enrolment codes at
// once from one address through twenty HTTP clients, ten speaking HTTP/2
// and ten HTTP/1.1, so that they arrive over many connections (the test
// counts them). However the guesses interleave, no more codes are looked
// up in the store than the limit of 10, because the attempt is spent
// before the code is read; the other 290 are refused as rate-limited
// without being looked at.
func TestEnrollLimit_ParallelGuesses(t *testing.T) {
	ctx := context.Background()
	limit := study.AttemptLimit{Burst: 10, Refill: time.Hour}
	db := &lookupCounter{Store: MustOpenDBWith(t, storetest.Options{Now: newTestClock().Now, EnrollLimit: limit}).Store}
	ts := newTestServer(t, Config{Store: db})
	base := ts.http.Client().Transport.(*http.Transport)
	var conns []*clients
	var dials atomic.Int64
	for i := range 20 {
		tr := base.Clone()
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		if i%2 == 1 {
			// HTTP/1.1 only: every request in flight has a connection.
			tr.Protocols = new(http.Protocols)
			tr.Protocols.SetHTTP1(true)
			tr.TLSClientConfig = tr.TLSClientConfig.Clone()
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		t.Cleanup(tr.CloseIdleConnections)
		conns = append(conns, ts.clientsOver(&http.Client{Transport: tr}, ""))
	}
	const guesses = 300
	start := make(chan struct{})
	answers := make(chan connect.Code, guesses)
	var wg sync.WaitGroup
	for i := range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := conns[i%len(conns)].device.Enroll(ctx, &diaryv1.EnrollRequest{Code: "AAAAA-AAAAA", DeviceName: "guess"})
			answers <- connect.CodeOf(err)
		}()
	}
	close(start)
	wg.Wait()
	close(answers)
	count := map[connect.Code]int{}
	for c := range answers {
		count[c]++
	}
	if n := db.lookups.Load(); n > int64(limit.Burst) {
		t.Fatalf("%d codes looked up, want at most %d (answers %v)", n, limit.Burst, count)
	}
	if count[connect.CodeUnauthenticated] != limit.Burst || count[connect.CodeResourceExhausted] != guesses-limit.Burst {
		t.Fatalf("answers %v: want %d wrong-code answers and %d rate-limited", count, limit.Burst, guesses-limit.Burst)
	}
	if n := db.lookups.Load(); n != int64(limit.Burst) {
		t.Fatalf("%d codes looked up for %d wrong-code answers", n, limit.Burst)
	}
	if n := dials.Load(); n <= int64(len(conns)) {
		t.Fatalf("the guesses came over %d connections, want more than one per transport", n)
	}
	t.Logf("%d guesses over %d connections: %d codes looked up", guesses, dials.Load(), db.lookups.Load())
}
