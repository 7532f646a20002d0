package syncengine

import (
	"runtime"
	"runtime/metrics"
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

// BenchmarkTextReplayAutomergePaper types the automerge-paper trace into a
// TextDoc one edit at a time through Splice, each edit a change stamped by
// a Clock, as a client turns keystrokes into changes. It reports edits per
// second, the peak heap during the replay (sampled every 4096 edits), the
// live heap after it and the size of the final state's encoding.
func BenchmarkTextReplayAutomergePaper(b *testing.B) {
	tr := loadTrace(b, "automerge-paper.json.gz")
	edits := flatEdits(tr)
	r := ReplicaID{15: 1}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
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
			if i%4096 == 0 {
				metrics.Read(sample)
				peak = max(peak, sample[0].Value.Uint64())
			}
		}
	}
	b.StopTimer()
	if d.Text() != tr.EndContent {
		b.Fatal("replay did not give endContent")
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	enc := EncodeTextDoc(d)
	b.ReportMetric(float64(b.N*len(edits))/b.Elapsed().Seconds(), "edits/s")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MiB")
	b.ReportMetric(float64(len(enc)), "state-bytes")
	b.ReportMetric(float64(len(enc))/float64(len(tr.EndContent)), "state/text")
	runtime.KeepAlive(d)
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
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/merge")
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
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/merge")
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
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/merge")
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
