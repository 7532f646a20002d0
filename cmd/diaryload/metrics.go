package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metrics read from a server's /metrics. diaryd exposes its Go heap in
// use, and its resident memory under the conventional Prometheus name
// (the process collector), as other servers may.
const (
	metricHeap = "diarysync_go_heap_inuse_bytes"
	metricRSS  = "process_resident_memory_bytes"
	metricCPU  = "process_cpu_seconds_total"

	metricCommits    = "diarysync_group_commits_total"
	metricCommitted  = "diarysync_group_commit_pushes_total"
	metricCommitBusy = "diarysync_group_commit_seconds_total"
)

// metricsSampler scrapes a /metrics URL a couple of times a second and
// keeps the greatest value of each memory gauge it finds.
type metricsSampler struct {
	url    string
	client *http.Client

	mu    sync.Mutex
	peaks map[string]uint64

	quit chan struct{}
	done chan struct{}
}

// sampleMetrics scrapes url once, so that a wrong URL is reported before
// the load starts, and then keeps scraping until stop.
func sampleMetrics(ctx context.Context, url string) (*metricsSampler, error) {
	s := &metricsSampler{
		url:    url,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}},
		peaks:  map[string]uint64{},
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if err := s.scrape(ctx); err != nil {
		return nil, fmt.Errorf("cannot read metrics from %s: %w", url, err)
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
			}
			// A scrape that fails while the server is under load is
			// skipped: the peak is taken over those that succeed.
			s.scrape(ctx)
		}
	}()
	return s, nil
}

func (s *metricsSampler) scrape(ctx context.Context) error {
	values, err := s.fetch(ctx, metricHeap, metricRSS)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, v := range values {
		s.peaks[name] = max(s.peaks[name], uint64(v))
	}
	return nil
}

// cpuSeconds reads the server's CPU time once, if its metrics have it.
func (s *metricsSampler) cpuSeconds(ctx context.Context) (float64, bool) {
	values, err := s.fetch(ctx, metricCPU)
	v, ok := values[metricCPU]
	return v, err == nil && ok
}

// groupCounters reads the server's group commit counters once, if its
// metrics have them.
func (s *metricsSampler) groupCounters(ctx context.Context) (groupMark, bool) {
	before := time.Now()
	values, err := s.fetch(ctx, metricCommits, metricCommitted, metricCommitBusy)
	if err != nil || len(values) != 3 {
		return groupMark{}, false
	}
	return groupMark{commits: values[metricCommits], pushes: values[metricCommitted], busy: values[metricCommitBusy], before: before, after: time.Now()}, true
}

// fetch reads the named samples from the metrics once.
func (s *metricsSampler) fetch(ctx context.Context, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	return parseSamples(io.LimitReader(resp.Body, 4<<20), names...)
}

// stop ends scraping and returns the peak of each gauge that was found.
func (s *metricsSampler) stop() map[string]uint64 {
	close(s.quit)
	<-s.done
	s.client.CloseIdleConnections()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peaks
}

// parseSamples reads the named unlabelled samples from the Prometheus
// text format.
func parseSamples(r io.Reader, names ...string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		name, value := f[0], f[1]
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s: bad value %q", name, value)
		}
		out[name] = v
	}
	return out, sc.Err()
}
