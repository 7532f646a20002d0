package syncengine

import (
	"testing"
)

// benchChanges returns n changes to one entry cycling through every field
// kind, from three replicas, with clocks that mostly increase and
// sometimes tie, like the edits of a navigator on two devices.
func benchChanges(n int) []Change {
	replicas := []ReplicaID{{15: 1}, {15: 2}, {15: 3}}
	tags := []string{"housing", "court", "relapse", "family", "hostel", "benefits"}
	out := make([]Change, n)
	t0 := NewTimestamp(1795788185123, 0)
	for i := range out {
		c := Change{Entry: testEntryID, Author: "PN-A", Stamp: Stamp{Clock: t0 + Timestamp(i/2), Replica: replicas[i%3]}}
		switch i % 8 {
		case 0:
			c.Field, c.Text = FieldTitle, "Tuesday outreach"
		case 1:
			c.Field, c.Text = FieldBody, "Met J. at the hostel. She asked about housing again."
		case 2:
			c.Field, c.Text = FieldDate, "2026-11-24"
		case 3:
			c.Field, c.Number = FieldMood, int64(i%10)
		case 4:
			c.Field, c.Flag = FieldShareSupervisor, i%3 == 0
		case 5, 6:
			c.Field, c.Tag, c.Flag = FieldTag, tags[i%len(tags)], i%5 != 0
		case 7:
			c.Field, c.Flag = FieldDeleted, false
		}
		out[i] = c
	}
	return out
}

// BenchmarkApply measures field merges: one Change merged into an entry.
// The target is at least 1,000,000 merges per second on one core.
func BenchmarkApply(b *testing.B) {
	changes := benchChanges(4096)
	e := &Entry{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%len(changes) == 0 {
			e = &Entry{} // start over so later changes keep winning
		}
		e.Apply(&changes[i%len(changes)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "merges/s")
}

// BenchmarkMergeEntries measures merging two replicas' states of one
// entry, reported per field register merged.
func BenchmarkMergeEntries(b *testing.B) {
	changes := benchChanges(64)
	x, y := applyAll(changes[:32]), applyAll(changes[32:])
	registers := 7 + len(y.Tags)
	b.ReportAllocs()
	for b.Loop() {
		m := x.Clone()
		m.Merge(y)
	}
	b.ReportMetric(float64(b.N*registers)/b.Elapsed().Seconds(), "merges/s")
}

// BenchmarkEncodeEntry measures the canonical encoding of a typical entry.
func BenchmarkEncodeEntry(b *testing.B) {
	e := sampleEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEntry(buf[:0], e)
	}
}

// BenchmarkDecodeEntry measures decoding a typical entry.
func BenchmarkDecodeEntry(b *testing.B) {
	enc := EncodeEntry(sampleEntry())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEntry(enc); err != nil {
			b.Fatal(err)
		}
	}
}
