package export

import (
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/google/uuid"
)

// bigWaves split the generated study in two.
var bigWaves = []study.Wave{
	{Number: 1, Label: "Before", Start: "2020-01-01", End: "2024-12-31"},
	{Number: 2, Label: "After", Start: "2025-01-01", End: "2029-12-31"},
}

// generated serves n records of bodyBytes-byte bodies, 50 per study code,
// building each one afresh as a database would, so that a writer that
// kept records or bodies would hold all of them. sample is called every
// n/10 records.
func generated(n, bodyBytes int, sample func()) study.Records {
	line := "Slept at the night shelter again; the key worker was off, so nobody followed up on the housing form. "
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	return func(p study.Pass, yield func(*study.Record) error) error {
		buf := make([]byte, 0, bodyBytes)
		for i := range n {
			code, j := i/50, i%50
			date := base.AddDate(0, 0, j*60)
			wave := uint32(1)
			if date.Year() >= 2025 {
				wave = 2
			}
			if p.Wave != 0 && wave != p.Wave {
				continue
			}
			var id uuid.UUID
			binary.BigEndian.PutUint64(id[8:], uint64(i))
			id[6], id[8] = 0x70, 0x80
			r := &study.Record{
				EntryID: id.String(), StudyCode: fmt.Sprintf("PN-%04d", code), Wave: wave,
				Date: date.Format(time.DateOnly), Title: fmt.Sprintf("Entry %d", i),
				Tags: []string{"housing", "shelter"}, Mood: j%10 + 1,
				Created: date, LastEdited: date.Add(time.Hour), WaveDefinition: study.DefinitionDefault, Revisions: 3,
			}
			if !p.SkipBody {
				buf = fmt.Appendf(buf[:0], "Entry %d.\r\n", i)
				for len(buf) < bodyBytes {
					buf = append(buf, line...)
				}
				r.Body = string(buf[:bodyBytes])
			}
			if err := yield(r); err != nil {
				return err
			}
			if sample != nil && (i+1)%(n/10) == 0 {
				sample()
			}
		}
		return nil
	}
}

// heapGrowth runs write over n generated records and returns how far the
// live heap rose above what it was before, at its highest.
func heapGrowth(t *testing.T, n, bodyBytes int, write func(io.Writer, study.Manifest, study.Records) error) uint64 {
	t.Helper()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before, peak := ms.HeapAlloc, ms.HeapAlloc
	sample := func() {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapAlloc)
	}
	m := study.Manifest{Position: 1, ExportedAt: exportedAt, SnapshotAt: exportedAt, Waves: bigWaves, Entries: uint64(n), FormulaGuard: true}
	if err := write(io.Discard, m, generated(n, bodyBytes, sample)); err != nil {
		t.Fatal(err)
	}
	return peak - before
}

func TestMemoryBounded(t *testing.T) {
	n, small, bodyBytes := 20_000, 2_000, 10<<10
	if raceEnabled {
		// Still enough to show a kept body (8 MiB) or a per-entry cost
		// of more than 150 bytes.
		n, small, bodyBytes = 2_000, 200, 4<<10
	}
	for _, w := range []struct {
		name  string
		write func(io.Writer, study.Manifest, study.Records) error
	}{{"CSV", WriteCSV}, {"JSONL", WriteJSONL}, {"QDPX", WriteQDPX}} {
		t.Run(w.name, func(t *testing.T) {
			few := heapGrowth(t, small, bodyBytes, w.write)
			many := heapGrowth(t, n, bodyBytes, w.write)
			t.Logf("live heap rose by %d KiB for %d entries, %d KiB for %d (%d MiB of bodies)", few>>10, small, many>>10, n, n*bodyBytes>>20)
			// A compressor and a few buffers: about 1 MiB for QDPX, next
			// to nothing for the others.
			if many > 4<<20 {
				t.Errorf("live heap rose by %d KiB for %d entries; want under 4 MiB", many>>10, n)
			}
			// Ten times the entries, the same memory: archive/zip's
			// directory (about 300 bytes a file) or a kept GUID per
			// entry would show here.
			if many > few && many-few > 256<<10 {
				t.Errorf("live heap grows with the entries: %d KiB more for %d more entries", (many-few)>>10, n-small)
			}
		})
	}
}
