package client

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/study"
)

// refusedStreams reads the server's count of Subscribe streams refused for
// one device's limit.
func refusedStreams(tb testing.TB, ts *testServer) int {
	tb.Helper()
	rec := httptest.NewRecorder()
	ts.Server.Metrics().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `diarysync_subscribe_streams_refused_total{limit="device"} `); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return int(n)
		}
	}
	tb.Fatal("no refused-streams counter in /metrics")
	return 0
}

// TestRunRefusedStream: a device whose Subscribe stream the server refuses
// (another app on it holds the one stream it may have) does not hammer the
// server for one, and keeps syncing on its timer: a change made elsewhere
// still arrives, and its syncs do not fail.
func TestRunRefusedStream(t *testing.T) {
	ts := startServerWith(t, server.Config{MaxStreamsPerDevice: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	phone := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	tablet := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	// The phone's one stream is taken.
	phone.mu.Lock()
	token := phone.token
	phone.mu.Unlock()
	hold := diaryv1connect.NewSyncServiceClient(http.DefaultClient, ts.URL, connect.WithInterceptors(streamAuth(token)))
	s, err := hold.Subscribe(ctx, &diaryv1.SubscribeRequest{})
	if err != nil || !s.Receive() {
		t.Fatalf("cannot take the stream: %v %v", err, s.Err())
	}
	defer s.Close()

	events, stop := phone.Watch()
	defer stop()
	errc := make(chan error, 1)
	go func() {
		errc <- phone.Run(ctx, RunOptions{Interval: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond})
	}()
	id := mustCreate(t, tablet, Draft{Title: "written on the tablet"})
	mustSync(t, tablet)
	deadline := time.After(20 * time.Second)
	for {
		if _, err := phone.Get(ctx, id); err == nil {
			break
		}
		select {
		case <-events:
		case <-deadline:
			t.Fatal("the phone never synced the tablet's entry on its timer")
		}
	}
	st, err := phone.Status(ctx)
	if err != nil || st.LastError != "" {
		t.Fatalf("the phone's syncs failed: %+v, %v", st.LastError, err)
	}
	// Refused once, then waiting at least refusedStreamBackoff: not
	// retrying every MinBackoff.
	if n := refusedStreams(t, ts); n < 1 || n > 2 {
		t.Fatalf("the server refused the phone's stream %d times", n)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
