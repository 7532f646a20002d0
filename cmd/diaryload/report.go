package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// report is what one run measured. Its JSON form is diaryload's --json
// output; its fields are documented there by their names.
type report struct {
	RunID         string `json:"run_id"`
	Server        string `json:"server"`
	StartedServer bool   `json:"started_server"`
	Store         string `json:"store,omitempty"` // of a server it started: sqlite or postgres
	Synchronous   string `json:"synchronous,omitempty"`
	Data          string `json:"data,omitempty"`

	Devices         int  `json:"devices"`
	Supervisors     int  `json:"supervisors"`
	PushesPerDevice int  `json:"pushes_per_device"`
	EntriesPerPush  int  `json:"entries_per_push"`
	Shared          bool `json:"shared"`

	// Pushes counts the pushes the server acknowledged; Entries the
	// entries they created; EntriesPulled what the navigators' pulls
	// after them brought back.
	Pushes        int `json:"pushes"`
	Entries       int `json:"entries"`
	EntriesPulled int `json:"entries_pulled"`
	// PullBytes is what the answers to those pulls weighed on the wire
	// (compressed, HTTP/2 framing aside), in all and per pull.
	PullBytes        int64   `json:"pull_bytes"`
	PullBytesPerPull float64 `json:"pull_bytes_per_pull"`
	Seconds          float64 `json:"seconds"`
	PushesPerSecond  float64 `json:"pushes_per_second"`
	EntriesPerSecond float64 `json:"entries_per_second"`
	StoppedEarly     bool    `json:"stopped_early"`
	Interrupted      bool    `json:"interrupted,omitempty"`

	PushLatency           *latency `json:"push_latency_ms"`
	PullLatency           *latency `json:"pull_latency_ms"`
	WakeLatency           *latency `json:"wake_latency_ms,omitempty"`
	SupervisorPullLatency *latency `json:"supervisor_pull_latency_ms,omitempty"`

	// Wakes counts pushes for which a supervisor's wake-up was measured;
	// WakesMissed those whose wake-up never came; WakesBeforeAck those
	// whose wake-up arrived before the push's answer did (measured as 0).
	Wakes                     int `json:"wakes"`
	WakesMissed               int `json:"wakes_missed"`
	WakesBeforeAck            int `json:"wakes_before_ack"`
	SupervisorEntries         int `json:"supervisor_entries"`
	SupervisorEntriesExpected int `json:"supervisor_entries_expected"`

	Errors          map[string]int `json:"errors"`
	Refused         map[string]int `json:"refused"`
	ServerLogErrors int            `json:"server_log_errors,omitempty"`

	ServerRSSMaxBytes    *uint64 `json:"server_rss_max_bytes,omitempty"`
	ServerRSSSource      string  `json:"server_rss_source,omitempty"`
	ServerGoHeapMaxBytes *uint64 `json:"server_go_heap_inuse_max_bytes,omitempty"`
	ServerGoHeapSource   string  `json:"server_go_heap_source,omitempty"`

	// CPU is what the machine, diaryload and the server spent while the
	// navigators pushed.
	CPU *cpuReport `json:"cpu,omitempty"`
	// GroupCommit is what the server's group commits did meanwhile, from
	// its metrics.
	GroupCommit *groupReport `json:"group_commit,omitempty"`

	Preload  *preloadReport  `json:"preload,omitempty"`
	FullPull *fullPullReport `json:"full_pull,omitempty"`
	Cleanup  *cleanupReport  `json:"cleanup,omitempty"`
}

// latency is a distribution of durations in milliseconds.
type latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// summarize returns the nearest-rank percentiles of ds, or nil for none.
func summarize(ds []time.Duration) *latency {
	if len(ds) == 0 {
		return nil
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		k := int(math.Ceil(p*float64(len(s)))) - 1
		return millis(s[min(max(k, 0), len(s)-1)])
	}
	return &latency{Count: len(s), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: millis(s[len(s)-1])}
}

func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// fill adds what the devices measured during the load.
func (r *report) fill(cfg *config, s *loadStudy, results []*navigatorResult, watchers []*watcher, elapsed time.Duration) {
	var push, pull, wakeLat, supPull []time.Duration
	all := tally{errors: r.Errors, refused: r.Refused}
	for i, nr := range results {
		push = append(push, nr.push...)
		pull = append(pull, nr.pull...)
		r.Pushes += nr.pushes
		r.Entries += nr.entries
		r.EntriesPulled += nr.pulled
		r.PullBytes += nr.pullBytes
		r.StoppedEarly = r.StoppedEarly || nr.stoppedEarly
		all.add(nr.tally)
		if cfg.share && s.supervisorOf[i] >= 0 {
			r.SupervisorEntriesExpected += nr.entries
		}
		if !cfg.share {
			continue
		}
		for _, a := range nr.acks {
			j := s.supervisorOf[a.navigator]
			if j < 0 {
				continue
			}
			w, ok := watchers[j].wakeFor(a.seq)
			if !ok {
				r.WakesMissed++
				continue
			}
			d := w.at.Sub(a.at)
			if d < 0 {
				// The stream's message overtook the push's answer on
				// its way back: the supervisor knew no later than the
				// navigator did.
				d = 0
				r.WakesBeforeAck++
			}
			wakeLat = append(wakeLat, d)
		}
	}
	for _, w := range watchers {
		supPull = append(supPull, w.pull...)
		r.SupervisorEntries += w.entries
		all.add(w.tally)
	}
	r.Wakes = len(wakeLat)
	r.Seconds = seconds(elapsed)
	r.PushesPerSecond = rate(r.Pushes, elapsed)
	r.EntriesPerSecond = rate(r.Entries, elapsed)
	r.PushLatency = summarize(push)
	r.PullLatency = summarize(pull)
	if len(pull) > 0 {
		r.PullBytesPerPull = math.Round(float64(r.PullBytes)/float64(len(pull))*10) / 10
	}
	r.WakeLatency = summarize(wakeLat)
	r.SupervisorPullLatency = summarize(supPull)
}

// memory adds what was learnt of the server's memory.
func (r *report) memory(m *memoryReading) {
	if m.hasRSS {
		v := m.rss
		r.ServerRSSMaxBytes, r.ServerRSSSource = &v, m.rssSource
	}
	if m.hasHeap {
		v := m.heap
		r.ServerGoHeapMaxBytes, r.ServerGoHeapSource = &v, metricHeap+" from metrics"
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeReport prints the report as JSON or as a table.
func writeReport(w io.Writer, cfg *config, r *report) error {
	if cfg.json {
		return writeJSON(w, r)
	}
	var b strings.Builder
	how := "a running server"
	switch {
	case r.StartedServer && r.Store == "postgres":
		how = "diaryd started by diaryload on PostgreSQL"
	case r.StartedServer:
		how = "diaryd started by diaryload, synchronous=" + r.Synchronous
	}
	fmt.Fprintf(&b, "run %s on %s (%s)\n", r.RunID, r.Server, how)
	share := "not shared"
	if r.Shared {
		share = "shared with supervisors"
	}
	fmt.Fprintf(&b, "load: %s, %s; %s of %s each (%s)\n", plural(r.Devices, "device"), plural(r.Supervisors, "supervisor"),
		plural(r.PushesPerDevice, "push"), plural(r.EntriesPerPush, "entry"), share)
	if r.Preload != nil {
		p := r.Preload
		fmt.Fprintf(&b, "preload: %d entries in %d pushes by %s, %.3f s: %.1f entries/s\n", p.Entries, p.Pushes, p.StudyCode, p.Seconds, p.EntriesPerSecond)
	}
	fmt.Fprintf(&b, "pushes: %d acknowledged in %.3f s: %.1f pushes/s, %.1f entries/s", r.Pushes, r.Seconds, r.PushesPerSecond, r.EntriesPerSecond)
	switch {
	case r.Interrupted:
		b.WriteString(" (interrupted)")
	case r.StoppedEarly:
		b.WriteString(" (stopped early: --duration)")
	}
	fmt.Fprintf(&b, "\nentries: %d pushed, %d pulled back (%.0f bytes a pull)", r.Entries, r.EntriesPulled, r.PullBytesPerPull)
	if r.Supervisors > 0 {
		fmt.Fprintf(&b, "; supervisors pulled %d of %d shared", r.SupervisorEntries, r.SupervisorEntriesExpected)
	}
	b.WriteString("\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	// The names are padded here, so that they stay left-aligned while
	// the numbers are aligned right.
	fmt.Fprintf(tw, "%-16s\tcount\tp50\tp95\tp99\tmax\t\n", "latency (ms)")
	row := func(name string, l *latency) {
		if l == nil {
			fmt.Fprintf(tw, "%-16s\t0\t-\t-\t-\t-\t\n", name)
			return
		}
		fmt.Fprintf(tw, "%-16s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", name, l.Count, l.P50, l.P95, l.P99, l.Max)
	}
	row("push", r.PushLatency)
	row("pull", r.PullLatency)
	if r.Supervisors > 0 {
		row("wake", r.WakeLatency)
		row("supervisor pull", r.SupervisorPullLatency)
	}
	if r.Preload != nil {
		row("preload push", r.Preload.PushLatency)
	}
	if r.FullPull != nil {
		row("full-pull page", r.FullPull.PageLatency)
	}
	tw.Flush()
	b.WriteString("\n")

	if r.Supervisors > 0 {
		fmt.Fprintf(&b, "wake-ups: %d measured, %d missed, %d before the push's answer (counted as 0 ms)\n", r.Wakes, r.WakesMissed, r.WakesBeforeAck)
	}
	fmt.Fprintf(&b, "errors: %s\n", counts(r.Errors))
	fmt.Fprintf(&b, "refused changes: %s\n", counts(r.Refused))
	if r.ServerLogErrors > 0 {
		fmt.Fprintf(&b, "server logged %d errors\n", r.ServerLogErrors)
	}
	switch {
	case r.ServerRSSMaxBytes != nil:
		fmt.Fprintf(&b, "server resident memory: max %s (%s)\n", mib(*r.ServerRSSMaxBytes), r.ServerRSSSource)
	case r.ServerGoHeapMaxBytes != nil:
		b.WriteString("server resident memory: not in the server's metrics\n")
	case !r.StartedServer:
		b.WriteString("server resident memory: not known (--metrics reads what the server's metrics expose)\n")
	}
	if r.ServerGoHeapMaxBytes != nil {
		fmt.Fprintf(&b, "server Go heap in use: max %s (%s)\n", mib(*r.ServerGoHeapMaxBytes), r.ServerGoHeapSource)
	}
	if c := r.CPU; c != nil {
		var parts []string
		if c.ServerSeconds != nil {
			p := fmt.Sprintf("server %.2f s", *c.ServerSeconds)
			if c.ServerMsPerPush != nil {
				p += fmt.Sprintf(" (%.2f ms a push and its pull)", *c.ServerMsPerPush)
			}
			parts = append(parts, p)
		}
		if c.LoadSeconds != nil {
			parts = append(parts, fmt.Sprintf("diaryload %.2f s", *c.LoadSeconds))
		}
		if c.MachineBusy != nil {
			parts = append(parts, fmt.Sprintf("machine (%s) %.0f%% busy, %.0f%% stolen by its hypervisor",
				plural(c.MachineCores, "core"), *c.MachineBusy*100, *c.MachineSteal*100))
		}
		fmt.Fprintf(&b, "CPU while pushing: %s\n", strings.Join(parts, "; "))
	}
	if g := r.GroupCommit; g != nil {
		p := fmt.Sprintf("group commits while pushing: %d", g.Commits)
		if g.PushesPerCommit != nil {
			p += fmt.Sprintf(", %.1f pushes each", *g.PushesPerCommit)
		}
		if g.WriterBusy != nil {
			p += fmt.Sprintf("; the writer busy %.0f%% of the time", *g.WriterBusy*100)
		}
		fmt.Fprintln(&b, p)
	}
	if f := r.FullPull; f != nil {
		fmt.Fprintf(&b, "full pull by a fresh device of %s: %d entries (%d expected) in %d pages of up to %d, %.3f s: %.1f entries/s\n",
			f.StudyCode, f.Entries, f.Expected, f.Pages, f.PageSize, f.Seconds, f.EntriesPerSecond)
	}
	switch c := r.Cleanup; {
	case c != nil:
		fmt.Fprintf(&b, "cleanup: erased %d entries of %d navigators, deactivated %d users\n", c.EntriesErased, c.NavigatorsErased, c.UsersDeactivated)
	case !r.StartedServer:
		fmt.Fprintf(&b, "the users %s%s-* are still on the server: --cleanup-only %s erases and deactivates them\n", codePrefix, r.RunID, r.RunID)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// counts formats counts by name, most frequent first; "none" for none.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// plural is n and the noun, in the plural unless n is 1.
func plural(n int, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case strings.HasSuffix(noun, "y"):
		return fmt.Sprintf("%d %sies", n, noun[:len(noun)-1])
	case strings.HasSuffix(noun, "sh"):
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
