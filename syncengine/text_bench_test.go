package syncengine

import (
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
	"testing"
	"time"
)

// flatEdits returns the trace's patches in order.
func flatEdits(tr *editTrace) []tracePatch {
	var out []tracePatch
	for i := range tr.Txns {
		out = append(out, tr.Txns[i].Patches...)
	}
	return out
}

// typingClock returns a Clock whose wall clock moves on by step at every
// reading, like a person typing.
func typingClock(step time.Duration) *Clock {
	t := time.UnixMilli(1795788185123)
	return NewClock(func() time.Time {
		t = t.Add(step)
		return t
	})
}

// heapObjects returns the bytes of heap objects, live or not yet swept.
func heapObjects() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// BenchmarkTextReplayAutomergePaper types the automerge-paper trace into a
// TextDoc one edit at a time through Splice, each edit a change stamped by
// a Clock, as a client turns keystrokes into changes. It reports edits per
// second and the heap: the trace itself (held by the benchmark) as a
// baseline, the peak above it during a replay (sampled every 1024 edits,
// so it includes garbage the collector has not reclaimed yet), and what
// the finished document retains; and the size of the final state's
// encoding.
func BenchmarkTextReplayAutomergePaper(b *testing.B) {
	edits, end := compactEdits(b, "automerge-paper.json.gz")
	r := ReplicaID{15: 1}
	runtime.GC()
	base := heapObjects()
	var peak uint64
	var d *TextDoc
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clock := typingClock(100 * time.Millisecond)
		d = NewTextDoc(0)
		for i, e := range edits {
			if _, err := d.Splice(Stamp{clock.Now(), r}, e.Pos, e.Del, e.Text); err != nil {
				b.Fatal(err)
			}
			if i%1024 == 0 {
				peak = max(peak, heapObjects())
			}
		}
	}
	b.StopTimer()
	if d.Text() != end {
		b.Fatal("replay did not give endContent")
	}
	runtime.GC()
	retained := heapObjects()
	runtime.KeepAlive(edits)
	enc := EncodeTextDoc(d)
	b.ReportMetric(float64(b.N*len(edits))/b.Elapsed().Seconds(), "edits/s")
	b.ReportMetric(float64(base)/(1<<20), "trace-heap-MiB")
	b.ReportMetric(float64(peak-base)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(retained-base)/(1<<20), "doc-heap-MiB")
	b.ReportMetric(float64(len(enc)), "state-bytes")
	b.ReportMetric(float64(len(enc))/float64(len(end)), "state/text")
	runtime.KeepAlive(d)
}

// compactEdits returns a sequential trace's edits with all their text in
// one string, and its endContent, and drops the decoded trace, so that the
// benchmark's own memory is small beside the document's.
func compactEdits(b *testing.B, name string) ([]tracePatch, string) {
	tr := loadTrace(b, name)
	var all strings.Builder
	for i := range tr.Txns {
		for _, p := range tr.Txns[i].Patches {
			all.WriteString(p.Text)
		}
	}
	text := all.String()
	var edits []tracePatch
	at := 0
	for i := range tr.Txns {
		for _, p := range tr.Txns[i].Patches {
			edits = append(edits, tracePatch{Pos: p.Pos, Del: p.Del, Text: text[at : at+len(p.Text)]})
			at += len(p.Text)
		}
	}
	edits = slices.Clip(edits)
	end := strings.Clone(tr.EndContent)
	traceCache.Delete(name)
	return edits, end
}

// BenchmarkTextMergeTraceLogs builds the final document of each concurrent
// trace from its agents' operation logs: every change of the last agent,
// then of the one before, and so on, so that most changes arrive before
// the changes they were made on and wait to be applied.
func BenchmarkTextMergeTraceLogs(b *testing.B) {
	for _, name := range []string{"friendsforever.json.gz", "clownschool.json.gz"} {
		b.Run(name, func(b *testing.B) {
			tr := loadTrace(b, name)
			logs := replayConcurrent(b, tr).agentLogs(tr)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d := NewTextDoc(0)
				for a := len(logs) - 1; a >= 0; a-- {
					for _, c := range logs[a] {
						if _, err := d.Apply(c); err != nil {
							b.Fatal(err)
						}
					}
				}
				if d.Text() != tr.EndContent {
					b.Fatal("merge did not give endContent")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/merge")
		})
	}
}

// BenchmarkTextApplyTraceInOrder applies each concurrent trace's changes in
// the order they were made, as a replica that pulls them from the server
// does.
func BenchmarkTextApplyTraceInOrder(b *testing.B) {
	for _, name := range []string{"friendsforever.json.gz", "clownschool.json.gz"} {
		b.Run(name, func(b *testing.B) {
			tr := loadTrace(b, name)
			changes := replayConcurrent(b, tr).changes
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d := NewTextDoc(0)
				for _, cs := range changes {
					for _, c := range cs {
						if _, err := d.Apply(c); err != nil {
							b.Fatal(err)
						}
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/merge")
		})
	}
}

// BenchmarkTextMergeTraceStates merges the final states of each concurrent
// trace's agents (state-based merge).
func BenchmarkTextMergeTraceStates(b *testing.B) {
	for _, name := range []string{"friendsforever.json.gz", "clownschool.json.gz"} {
		b.Run(name, func(b *testing.B) {
			tr := loadTrace(b, name)
			agents := replayConcurrent(b, tr).agents
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				d := agents[0].Clone()
				for _, a := range agents[1:] {
					if err := d.Merge(a); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e6/float64(b.N), "ms/merge")
		})
	}
}

// BenchmarkTextEncodeAutomergePaper and BenchmarkTextDecodeAutomergePaper
// measure the canonical encoding of the automerge-paper final state; the
// decoder rebuilds the document by integrating its runs.
func BenchmarkTextEncodeAutomergePaper(b *testing.B) {
	d := replaySequential(b, loadTrace(b, "automerge-paper.json.gz"))
	buf := EncodeTextDoc(d)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendTextDoc(buf[:0], d)
	}
}

func BenchmarkTextDecodeAutomergePaper(b *testing.B) {
	enc := EncodeTextDoc(replaySequential(b, loadTrace(b, "automerge-paper.json.gz")))
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeTextDoc(enc, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTextSetTextLargeBody measures the path of an app that hands
// the client the whole new text: one word typed in the middle of a 256 KiB
// body, found by Diff and applied as one change.
func BenchmarkTextSetTextLargeBody(b *testing.B) {
	var body strings.Builder
	for body.Len() < MaxBodyBytes-64 {
		body.WriteString("Met J. at the hostel; she asked about housing again. ")
	}
	text := body.String()
	d := NewTextDoc(0)
	clock := typingClock(time.Second)
	if _, err := d.SetText(Stamp{clock.Now(), phone}, text); err != nil {
		b.Fatal(err)
	}
	mid := len(text) / 2
	edited := []string{text[:mid] + "rain " + text[mid:], text}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := d.SetText(Stamp{clock.Now(), phone}, edited[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiffUnrelatedBodies measures Diff's worst case: two unrelated
// 256 KiB bodies, where the cost bound cuts the search short.
func BenchmarkDiffUnrelatedBodies(b *testing.B) {
	words := strings.Fields("met at the hostel she asked about housing again court date family relapse benefits shelter night outreach")
	gen := func(seed int) string {
		var s strings.Builder
		for i := 0; s.Len() < MaxBodyBytes; i++ {
			s.WriteString(words[(i*7+seed*13+i*i*seed)%len(words)])
			s.WriteByte(' ')
		}
		return s.String()[:MaxBodyBytes]
	}
	x, y := gen(1), gen(2)
	b.ReportAllocs()
	for b.Loop() {
		Diff(x, y)
	}
}
