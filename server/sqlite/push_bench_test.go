package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// BenchmarkPushSmall is the store's part of the load diaryload makes:
// pushes of 10 new entries (title, body of about 400 bytes, shared with
// supervisors) from 200 devices in turn, into a study that already holds
// 20 such pushes from each. One push at a time, and synchronous=NORMAL
// (no sync at a commit), so that the time is the writer's CPU, not the
// disk's: what a group commit spends on each push it holds, plus one
// commit.
func BenchmarkPushSmall(b *testing.B) {
	const (
		devices = 200
		entries = 10
		preload = 20
	)
	db, err := Open(context.Background(), filepath.Join(b.TempDir(), "diary.db"), Options{Synchronous: "NORMAL"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	body := strings.Repeat("Spent the morning at the day centre with R. ", 9)
	navs := make([]*study.Identity, devices)
	clocks := make([]*syncengine.Clock, devices)
	for i := range navs {
		navs[i] = MustEnroll(b, db, study.RoleNavigator, fmt.Sprintf("PN-%03d", i))
		clocks[i] = syncengine.NewClock(nil)
	}
	batch := func(i int) []study.Incoming {
		out := make([]study.Incoming, 0, 3*entries)
		for range entries {
			id := syncengine.NewEntryID()
			for _, c := range []syncengine.Change{
				{Field: syncengine.FieldTitle, Text: "Outreach at the day centre"},
				{Field: syncengine.FieldBody, Text: body},
				{Field: syncengine.FieldShareSupervisor, Flag: true},
			} {
				c.Entry, c.Replica, c.Clock = id, navs[i].Replica, clocks[i].Now()
				out = append(out, study.Incoming{Change: c})
			}
		}
		return out
	}
	for range preload {
		for i := range navs {
			MustPush(b, db, navs[i], batch(i))
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		i := n % devices
		in := batch(i)
		b.StartTimer()
		MustPush(b, db, navs[i], in)
	}
}
