//go:build unix

package server

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// The export benchmarks fill a study with entries shared for research
// (20 navigators, four waves, two tags of twenty each, a body of about
// 450 bytes with a phone number and a name on the study's list of 50
// terms) and export every wave as a researcher does, over loopback:
//
//	go test -run '^$' -bench 'Export' -benchtime 1x -count 6 ./server | benchstat -
//
// Besides entries per second of wall-clock time they report entries per
// second of the process's CPU time (user and system, client included),
// which a busy shared machine disturbs far less. (The build constraint
// is for getrusage.)

const exportBenchNavigators = 20

// exportBenchBody is an entry's text: what researchers export, with a
// phone number and a listed name for de-identification to replace.
const exportBenchBody = benchBody + " Rang her back on 07700 900123 at four; Jane Doe from the council joined the call."

// cpuSeconds is the CPU time the process has used so far.
func cpuSeconds(b *testing.B) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// exportBenchStudy fills db with n entries shared for research and
// returns the researcher's device.
func exportBenchStudy(b *testing.B, db study.Store, n int) TestDevice {
	b.Helper()
	ctx := context.Background()
	for i, w := range []study.Wave{
		{Label: "Baseline", Start: "2026-01-01", End: "2026-03-31"},
		{Label: "Three months", Start: "2026-04-01", End: "2026-06-30"},
		{Label: "Six months", Start: "2026-07-01", End: "2026-09-30"},
		{Label: "Follow-up", Start: "2026-10-01", End: "2026-12-31"},
	} {
		w.Number = uint32(i + 1)
		if _, err := db.CreateWave(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 50 {
		term := fmt.Sprintf("Client%02d Surname", i)
		if i == 0 {
			term = "Jane Doe"
		}
		if _, err := db.AddRedactTerm(ctx, study.RedactTerm{Term: term}); err != nil {
			b.Fatal(err)
		}
	}
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	per := n / exportBenchNavigators
	for nav := range exportBenchNavigators {
		dev := MustEnrollDevice(b, db, study.RoleNavigator, fmt.Sprintf("PN-%02d", nav))
		clock := syncengine.NewClock(nil)
		var batch []study.Incoming
		for i := range per {
			id := syncengine.NewEntryID()
			for _, c := range []syncengine.Change{
				{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"},
				{Field: syncengine.FieldBody, Text: exportBenchBody},
				{Field: syncengine.FieldDate, Text: day.AddDate(0, 0, i%365).Format(time.DateOnly)},
				{Field: syncengine.FieldMood, Number: int64(i%10 + 1)},
				{Field: syncengine.FieldTag, Tag: fmt.Sprintf("tag-%02d", i%20), Flag: true},
				{Field: syncengine.FieldTag, Tag: fmt.Sprintf("tag-%02d", (i+7)%20), Flag: true},
				{Field: syncengine.FieldShareResearch, Flag: true},
			} {
				c.Entry, c.Replica, c.Clock = id, dev.Replica, clock.Now()
				batch = append(batch, study.Incoming{Change: c})
			}
			if len(batch)+7 > study.MaxPushChanges {
				MustPush(b, db, dev.Identity, batch)
				batch = batch[:0]
			}
		}
		if len(batch) > 0 {
			MustPush(b, db, dev.Identity, batch)
		}
	}
	return MustEnrollDevice(b, db, study.RoleResearcher, "RES-1")
}

// BenchmarkExport exports every wave of a study of 10,000 and of 100,000
// entries as CSV and as a REFI-QDA project, streamed to the client and
// dropped there, and reports entries per second and the process's peak
// heap (client included).
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			db := MustOpenDB(b)
			res := exportBenchStudy(b, db, n)
			research := diaryv1connect.NewResearchServiceClient(h2cClient(), benchServer(b, db), connect.WithInterceptors(authHeader(bearer(res.Token))))
			for _, format := range []diaryv1.ExportFormat{diaryv1.ExportFormat_EXPORT_FORMAT_CSV, diaryv1.ExportFormat_EXPORT_FORMAT_QDPX} {
				b.Run("format="+study.ExportFormat(format).String(), func(b *testing.B) {
					var peak, cpu float64
					var bytes int64
					for range b.N {
						heap := startHeapPeak()
						start := cpuSeconds(b)
						bytes = exportOnce(b, research, format, n)
						b.StopTimer()
						cpu += cpuSeconds(b) - start
						peak = max(peak, heap.bytes())
						b.StartTimer()
					}
					b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
					b.ReportMetric(float64(n*b.N)/cpu, "entries/cpu-s")
					b.ReportMetric(peak, "client+server-peak-heap-bytes")
					b.ReportMetric(float64(bytes), "export-bytes")
				})
			}
		})
	}
}

// exportOnce exports every wave and returns the size of the export file.
func exportOnce(b *testing.B, research diaryv1connect.ResearchServiceClient, format diaryv1.ExportFormat, want int) int64 {
	stream, err := research.ExportWave(context.Background(), &diaryv1.ExportWaveRequest{Format: format})
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	var size int64
	var entries uint64
	for stream.Receive() {
		switch p := stream.Msg().GetPart().(type) {
		case *diaryv1.ExportWaveResponse_Manifest:
			entries = p.Manifest.GetEntries()
		case *diaryv1.ExportWaveResponse_Chunk:
			size += int64(len(p.Chunk))
		}
	}
	if err := stream.Err(); err != nil {
		b.Fatal(err)
	}
	if entries != uint64(want) || size == 0 {
		b.Fatalf("exported %d entries in %d bytes, want %d entries", entries, size, want)
	}
	return size
}

// BenchmarkExportReading measures what one reading of an export's
// records costs, the unit every writer pays once or more (a CSV reads
// with bodies twice, once for the file and once for the manifest; a
// .qdpx three times and three more without): the store's part of an
// export alone (counting, and keeping each entry's hash, which is one
// reading with bodies), then with one more reading with bodies, and with
// one more without.
func BenchmarkExportReading(b *testing.B) {
	const n = 10_000
	db := MustOpenDB(b)
	exportBenchStudy(b, db, n)
	for _, bc := range []struct {
		name     string
		readings []study.Pass
	}{
		{"store", nil},
		{"store+bodies", []study.Pass{{}}},
		{"store+nobodies", []study.Pass{{SkipBody: true}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			start := cpuSeconds(b)
			for range b.N {
				err := db.Export(context.Background(), study.ExportRequest{Format: study.FormatCSV}, func(m study.Manifest, recs study.Records) error {
					for _, p := range bc.readings {
						got := 0
						if err := recs(p, func(*study.Record) error { got++; return nil }); err != nil {
							return err
						}
						if got != n {
							return fmt.Errorf("a reading gave %d records, want %d", got, n)
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			cpu := cpuSeconds(b) - start
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(n*b.N)/cpu, "entries/cpu-s")
		})
	}
}
