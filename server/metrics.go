package server

import (
	"net/http"

	"runtime/metrics"
	"time"

	"github.com/diarysync/diarysync/study"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics counts what the server does, for /metrics in the Prometheus
// exposition format. It has a registry of its own (not the process-wide
// default, which any imported package could add to) holding the
// standard Go runtime and process collectors beside the server's series.
type Metrics struct {
	registry *prometheus.Registry
	handler  http.Handler

	requests        *prometheus.CounterVec
	errors          *prometheus.CounterVec
	durations       *prometheus.HistogramVec
	changes         *prometheus.CounterVec
	activeStreams   prometheus.Gauge
	streamsRefused  *prometheus.CounterVec
	refusedRequests *prometheus.CounterVec
	pullLag         prometheus.Histogram
}

var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// NewMetrics returns empty metrics on a registry of their own.
func NewMetrics() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		registry: r,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "diarysync_rpc_requests_total", Help: "RPCs handled, by procedure and result code.",
		}, []string{"procedure", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "diarysync_rpc_errors_total", Help: "RPCs that ended with an error, by procedure.",
		}, []string{"procedure"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "diarysync_rpc_duration_seconds", Help: "RPC latency (for streams, their lifetime).", Buckets: latencyBuckets,
		}, []string{"procedure"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "diarysync_changes_total", Help: "Pushed changes, by outcome.",
		}, []string{"outcome"}),
		activeStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "diarysync_subscribe_streams_active", Help: "Open Subscribe streams.",
		}),
		streamsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "diarysync_subscribe_streams_refused_total", Help: "Subscribe streams refused, by the limit reached: one device's or the server's.",
		}, []string{"limit"}),
		refusedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "diarysync_requests_refused_total", Help: "Requests cut off while their body was read: too_large (before or after decompression), too_slow (below the minimum rate).",
		}, []string{"reason"}),
		// The pull feed's lag is, per Pull, how far behind the reader
		// was: the entries and removal notices waiting after the cursor
		// it sent (the page it got and what remained after it). Sequence
		// numbers are shared by every reader, so their difference says
		// nothing about one reader; the rows waiting do, like a
		// consumer's lag in a message queue.
		pullLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "diarysync_pull_lag_entries", Help: "Entries and removal notices waiting for a reader after the cursor of its Pull.",
			Buckets: []float64{0, 1, 10, 100, 1000, 10000, 100000, 1000000},
		}),
	}
	for _, name := range []string{"applied", "duplicate", "refused"} {
		m.changes.WithLabelValues(name)
	}
	for _, name := range []string{"device", "server"} {
		m.streamsRefused.WithLabelValues(name)
	}
	for _, name := range []string{"too_large", "too_slow"} {
		m.refusedRequests.WithLabelValues(name)
	}
	r.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.errors, m.durations, m.changes, m.activeStreams, m.streamsRefused, m.refusedRequests, m.pullLag,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "diarysync_go_heap_inuse_bytes", Help: "Bytes in heap spans in use by the Go runtime (live and not yet swept objects).",
		}, heapInUse),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "diarysync_go_goroutines", Help: "Goroutines that exist.",
		}, goroutines),
	)
	m.handler = promhttp.HandlerFor(r, promhttp.HandlerOpts{ErrorLog: nil})
	return m
}

// countGroups exports a store's group commit counters: how many
// commits held pushes, how many pushes they held (their ratio is the
// mean group size), and the time spent running groups (its rate is the
// share of the time the writer is busy).
func (m *Metrics) countGroups(g study.GroupCounter) {
	m.registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "diarysync_group_commits_total", Help: "Group commits that held pushes (one transaction and one disk flush each).",
		}, func() float64 { return float64(g.GroupStats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "diarysync_group_commit_pushes_total", Help: "Pushes committed in group commits.",
		}, func() float64 { return float64(g.GroupStats().Pushes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "diarysync_group_commit_seconds_total",
			Help: "Seconds spent running group commits, from asking for the write transaction to its end; its rate is the share of the time the single writer is busy (near 1, pushes queue behind it).",
		}, func() float64 { return g.GroupStats().Busy.Seconds() }),
	)
}

// Registry returns the registry the metrics are on, for collectors of
// other parts of the process (a storage engine's, say).
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ServeHTTP writes the metrics in the Prometheus exposition format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.handler.ServeHTTP(w, r) }

// observeRPC records one finished RPC.
func (m *Metrics) observeRPC(procedure, code string, d time.Duration) {
	m.requests.WithLabelValues(procedure, code).Inc()
	errs := m.errors.WithLabelValues(procedure)
	if code != "ok" {
		errs.Inc()
	}
	m.durations.WithLabelValues(procedure).Observe(d.Seconds())
}

// readRuntime reads one runtime/metrics sample, which, unlike
// runtime.ReadMemStats, does not stop the world.
func readRuntime(names ...string) []uint64 {
	s := make([]metrics.Sample, len(names))
	for i, name := range names {
		s[i].Name = name
	}
	metrics.Read(s)
	out := make([]uint64, len(s))
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			out[i] = s[i].Value.Uint64()
		}
	}
	return out
}

// heapInUse is what the memory bound of a request is about: the live
// objects plus the spans they occupy, without memory the runtime has
// released or keeps for stacks.
func heapInUse() float64 {
	v := readRuntime("/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes")
	return float64(v[0] + v[1])
}

func goroutines() float64 { return float64(readRuntime("/sched/goroutines:goroutines")[0]) }
