package server

import (
	"fmt"
	"io"
	"net/http"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics counts what the server does, for /metrics in the Prometheus
// text format. It is small on purpose: counters, one histogram per RPC
// and a gauge, written by hand rather than pulling in a client library.
type Metrics struct {
	mu        sync.Mutex
	requests  map[requestKey]uint64
	durations map[string]*histogram

	changesApplied   atomic.Uint64
	changesDuplicate atomic.Uint64
	changesRefused   atomic.Uint64
	activeStreams    atomic.Int64
}

type requestKey struct{ procedure, code string }

var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	sum    float64
	count  uint64
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{requests: map[requestKey]uint64{}, durations: map[string]*histogram{}}
}

// observeRPC records one finished RPC.
func (m *Metrics) observeRPC(procedure, code string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[requestKey{procedure, code}]++
	h := m.durations[procedure]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(latencyBuckets))}
		m.durations[procedure] = h
	}
	s := d.Seconds()
	if i, _ := slices.BinarySearch(latencyBuckets, s); i < len(latencyBuckets) {
		h.counts[i]++
	}
	h.sum += s
	h.count++
}

// ServeHTTP writes the metrics in the Prometheus text exposition format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m.WriteTo(w)
}

// WriteTo writes the metrics in the Prometheus text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	m.mu.Lock()
	keys := make([]requestKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestKey) int {
		return strings.Compare(a.procedure+" "+a.code, b.procedure+" "+b.code)
	})
	b.WriteString("# HELP diarysync_rpc_requests_total RPCs handled, by procedure and result code.\n# TYPE diarysync_rpc_requests_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "diarysync_rpc_requests_total{procedure=%q,code=%q} %d\n", k.procedure, k.code, m.requests[k])
	}
	b.WriteString("# HELP diarysync_rpc_errors_total RPCs that ended with an error, by procedure.\n# TYPE diarysync_rpc_errors_total counter\n")
	errs := map[string]uint64{}
	var procs []string
	for _, k := range keys {
		if _, ok := errs[k.procedure]; !ok {
			procs = append(procs, k.procedure)
			errs[k.procedure] = 0
		}
		if k.code != "ok" {
			errs[k.procedure] += m.requests[k]
		}
	}
	for _, p := range procs {
		fmt.Fprintf(&b, "diarysync_rpc_errors_total{procedure=%q} %d\n", p, errs[p])
	}
	b.WriteString("# HELP diarysync_rpc_duration_seconds RPC latency (for streams, their lifetime).\n# TYPE diarysync_rpc_duration_seconds histogram\n")
	names := make([]string, 0, len(m.durations))
	for p := range m.durations {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		h := m.durations[p]
		var cum uint64
		for i, le := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(&b, "diarysync_rpc_duration_seconds_bucket{procedure=%q,le=\"%g\"} %d\n", p, le, cum)
		}
		fmt.Fprintf(&b, "diarysync_rpc_duration_seconds_bucket{procedure=%q,le=\"+Inf\"} %d\n", p, h.count)
		fmt.Fprintf(&b, "diarysync_rpc_duration_seconds_sum{procedure=%q} %g\n", p, h.sum)
		fmt.Fprintf(&b, "diarysync_rpc_duration_seconds_count{procedure=%q} %d\n", p, h.count)
	}
	m.mu.Unlock()
	b.WriteString("# HELP diarysync_changes_total Pushed changes, by outcome.\n# TYPE diarysync_changes_total counter\n")
	fmt.Fprintf(&b, "diarysync_changes_total{outcome=\"applied\"} %d\n", m.changesApplied.Load())
	fmt.Fprintf(&b, "diarysync_changes_total{outcome=\"duplicate\"} %d\n", m.changesDuplicate.Load())
	fmt.Fprintf(&b, "diarysync_changes_total{outcome=\"refused\"} %d\n", m.changesRefused.Load())
	b.WriteString("# HELP diarysync_subscribe_streams_active Open Subscribe streams.\n# TYPE diarysync_subscribe_streams_active gauge\n")
	fmt.Fprintf(&b, "diarysync_subscribe_streams_active %d\n", m.activeStreams.Load())
	writeRuntime(&b)
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// runtimeSamples are read from the Go runtime for each scrape. Heap in use
// is what the memory bound of a request is about: it is the live objects
// plus the spans they occupy, without memory the runtime has released or
// kept for stacks.
var runtimeSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/sched/goroutines:goroutines",
}

// writeRuntime writes the Go runtime's heap and goroutine gauges. It
// reads runtime/metrics, which, unlike runtime.ReadMemStats, does not
// stop the world.
func writeRuntime(b *strings.Builder) {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	value := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not supported by this Go version
		}
		return s[i].Value.Uint64()
	}
	b.WriteString("# HELP diarysync_go_heap_inuse_bytes Bytes in heap spans in use by the Go runtime (live and not yet swept objects).\n# TYPE diarysync_go_heap_inuse_bytes gauge\n")
	fmt.Fprintf(b, "diarysync_go_heap_inuse_bytes %d\n", value(0)+value(1))
	b.WriteString("# HELP diarysync_go_goroutines Goroutines that exist.\n# TYPE diarysync_go_goroutines gauge\n")
	fmt.Fprintf(b, "diarysync_go_goroutines %d\n", value(2))
}
