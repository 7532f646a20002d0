package server

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// The text-CRDT variants of BenchmarkPush and BenchmarkPull: the same
// 100,000 entries, with bodies written through the text CRDT (a text
// change, as a device that merges text sends it) and pulled as merged
// text by the owner's device, on each engine as the others. Run them in
// one go with the others, so the ratios compare like with like:
//
//	go test -run '^$' -bench 'Push|Pull' -benchtime 1x -count 6 ./server | benchstat -

// textBodyEdit returns the text change that writes benchBody into an
// empty body: what syncengine.TextDoc.SetText makes on a device (checked
// once by TestBenchTextBodyIsTheCRDTs), built directly so that the
// benchmark's client side costs what it costs for a whole-value body.
func textBodyEdit(s syncengine.Stamp) *syncengine.TextChange {
	return &syncengine.TextChange{Stamp: s, Inserts: []syncengine.TextInsert{{ID: syncengine.TextID{Replica: s.Replica, Anchor: s.Clock}, Text: benchBody}}}
}

func TestBenchTextBodyIsTheCRDTs(t *testing.T) {
	s := syncengine.Stamp{Clock: syncengine.TimestampAt(time.Now()), Replica: syncengine.ReplicaID{15: 1}}
	got, err := syncengine.NewTextDoc(0).SetText(s, benchBody)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(syncengine.EncodeTextChange(got), syncengine.EncodeTextChange(textBodyEdit(s))) {
		t.Fatal("the benchmark's body edit is not the one the text CRDT makes")
	}
}

// benchTextPage is benchPage with the body as a text change.
func benchTextPage(replica syncengine.ReplicaID, clock *syncengine.Clock, n, fields int) []*diaryv1.Change {
	out := benchPage(replica, clock, n, fields)
	for _, p := range out {
		if p.GetField() == diaryv1.Field_FIELD_BODY {
			c := syncengine.Change{Field: syncengine.FieldBody, Stamp: syncengine.Stamp{Clock: syncengine.Timestamp(p.GetClock()), Replica: replica}}
			c.Entry, _ = syncengine.ParseEntryID(p.GetEntryId())
			c.TextEdit = textBodyEdit(c.Stamp)
			*p = *wire.ChangeToProto(&c)
		}
	}
	return out
}

// BenchmarkPushText is BenchmarkPush with bodies written through the text
// CRDT.
func BenchmarkPushText(b *testing.B) {
	for _, engine := range benchEngines {
		for _, bc := range []struct {
			fields, perPage int
		}{
			{2, 500},
			{5, 200},
		} {
			b.Run(fmt.Sprintf("%s/changes=%d/page=%d", engine, bc.fields, bc.perPage), func(b *testing.B) { benchPushText(b, engine, bc.fields, bc.perPage) })
		}
	}
}

func benchPushText(b *testing.B, engine string, fields, perPage int) {
	var peak float64
	for range b.N {
		b.StopTimer()
		db := storetest.OpenOn(b, engine, storetest.Options{})
		dev := MustEnrollDevice(b, db, study.RoleNavigator, "PN-A")
		sync := diaryv1connect.NewSyncServiceClient(h2cClient(), benchServer(b, db), connect.WithInterceptors(authHeader(bearer(dev.Token))))
		clock := syncengine.NewClock(nil)
		heap := startHeapPeak()
		b.StartTimer()
		for sent := 0; sent < benchEntries; sent += perPage {
			resp, err := sync.Push(context.Background(), &diaryv1.PushRequest{Changes: benchTextPage(dev.Replica, clock, perPage, fields)})
			if err != nil {
				b.Fatal(err)
			}
			if r := resp.GetResults()[len(resp.GetResults())-1]; r.GetOutcome() != diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED {
				b.Fatalf("push: %v", r)
			}
		}
		b.StopTimer()
		peak = max(peak, heap.bytes())
	}
	b.ReportMetric(float64(benchEntries*b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(peak, "client+server-peak-heap-bytes")
}

// BenchmarkPullText is BenchmarkPull with bodies written through the text
// CRDT and pulled by a device that merges text, so that each entry
// carries its body's merged text.
func BenchmarkPullText(b *testing.B) {
	for _, engine := range benchEngines {
		b.Run(engine, func(b *testing.B) { benchPullText(b, engine) })
	}
}

func benchPullText(b *testing.B, engine string) {
	db := storetest.OpenOn(b, engine, storetest.Options{})
	dev := MustEnrollDevice(b, db, study.RoleNavigator, "PN-A")
	clock := syncengine.NewClock(nil)
	var batch []study.Incoming
	for range benchEntries {
		id := syncengine.NewEntryID()
		title := syncengine.Change{Entry: id, Field: syncengine.FieldTitle, Text: "Outreach at the day centre", Stamp: syncengine.Stamp{Clock: clock.Now(), Replica: dev.Replica}}
		body := syncengine.Change{Entry: id, Field: syncengine.FieldBody, Stamp: syncengine.Stamp{Clock: clock.Now(), Replica: dev.Replica}}
		body.TextEdit = textBodyEdit(body.Stamp)
		batch = append(batch, study.Incoming{Change: title}, study.Incoming{Change: body})
		if len(batch) == study.MaxPushChanges {
			MustPush(b, db, dev.Identity, batch)
			batch = batch[:0]
		}
	}
	sync := diaryv1connect.NewSyncServiceClient(h2cClient(), benchServer(b, db), connect.WithInterceptors(authHeader(bearer(dev.Token))))
	b.Run(fmt.Sprintf("page=%d", study.MaxPullPageSize), func(b *testing.B) {
		var peak float64
		for range b.N {
			heap := startHeapPeak()
			var cursor uint64
			n := 0
			for {
				resp, err := sync.Pull(context.Background(), &diaryv1.PullRequest{Cursor: cursor, PageSize: study.MaxPullPageSize, MergedText: true})
				if err != nil {
					b.Fatal(err)
				}
				n += len(resp.GetEntries())
				if e := resp.GetEntries(); len(e) > 0 && len(e[0].GetBodyText()) == 0 {
					b.Fatal("the pull carries no merged text")
				}
				cursor = resp.GetNextCursor()
				if !resp.GetMore() {
					break
				}
			}
			if n != benchEntries {
				b.Fatalf("pulled %d entries, want %d", n, benchEntries)
			}
			b.StopTimer()
			peak = max(peak, heap.bytes())
			b.StartTimer()
		}
		b.ReportMetric(float64(benchEntries*b.N)/b.Elapsed().Seconds(), "entries/s")
		b.ReportMetric(peak, "client+server-peak-heap-bytes")
	})
}
