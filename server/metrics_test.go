package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
)

// TestMetrics_Standard checks that /metrics carries the standard Go and
// process series beside the server's own, the refused-streams counter and
// the pull feed's lag, the group commit counters and the writer's busy time, and that with PrivateMetrics the public handler
// does not serve them.
func TestMetrics_Standard(t *testing.T) {
	ts := newTestServer(t, Config{})
	nav := newWriter(MustEnrollDevice(t, ts.DB, study.RoleNavigator, "PN-A"))
	c := ts.clients(bearer(nav.Token))
	for range 3 {
		_, ch := nav.newEntry("t", "b", false, false)
		mustPush(t, c, ch...)
	}
	// Three pages of one entry: the reader was 3, 2, then 1 behind.
	cursor := uint64(0)
	for range 3 {
		resp, err := c.sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: cursor, PageSize: 1})
		wantCode(t, err, 0)
		cursor = resp.GetNextCursor()
	}
	rec := httptest.NewRecorder()
	ts.Server.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	values, err := parseMetrics(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count", "process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"} {
		if _, ok := values[name]; !ok {
			t.Errorf("/metrics lacks the standard series %s", name)
		}
	}
	for name, want := range map[string]float64{
		`diarysync_subscribe_streams_refused_total{limit="device"}`: 0,
		`diarysync_subscribe_streams_refused_total{limit="server"}`: 0,
		`diarysync_pull_lag_entries_count`:                          3,
		`diarysync_pull_lag_entries_sum`:                            6,
		`diarysync_pull_lag_entries_bucket{le="1"}`:                 1,
		`diarysync_changes_total{outcome="applied"}`:                6,
		`diarysync_group_commits_total`:                             3, // one push after another: a group each
		`diarysync_group_commit_pushes_total`:                       3,
	} {
		if got, ok := values[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if got := values["diarysync_group_commit_seconds_total"]; !(got > 0) {
		t.Errorf("diarysync_group_commit_seconds_total = %v after three group commits, want the time they took", got)
	}

	private := newTestServer(t, Config{PrivateMetrics: true})
	rec = httptest.NewRecorder()
	private.Server.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Fatalf("the public handler served /metrics with PrivateMetrics: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	private.Server.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("MetricsHandler: %d", rec.Code)
	}
}
