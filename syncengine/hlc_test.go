package syncengine

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

type fakeWall struct{ t time.Time }

func (w *fakeWall) now() time.Time { return w.t }

func TestClock(t *testing.T) {
	start := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)

	t.Run("FollowsWallClock", func(t *testing.T) {
		w := &fakeWall{start}
		c := NewClock(w.now)
		if got := c.Now(); got != TimestampAt(start) {
			t.Fatalf("Now = %v, want %v", got, TimestampAt(start))
		}
		w.t = start.Add(time.Second)
		if got := c.Now(); got != TimestampAt(w.t) {
			t.Fatalf("Now = %v, want %v", got, TimestampAt(w.t))
		}
	})

	t.Run("SameMillisecondCounts", func(t *testing.T) {
		c := NewClock((&fakeWall{start}).now)
		a, b := c.Now(), c.Now()
		if b != a+1 || b.Millis() != a.Millis() || b.Logical() != 1 {
			t.Fatalf("second reading in one millisecond: %v then %v", a, b)
		}
	})

	t.Run("WallClockGoesBackwards", func(t *testing.T) {
		w := &fakeWall{start}
		c := NewClock(w.now)
		a := c.Now()
		w.t = start.Add(-time.Hour)
		if b := c.Now(); b <= a {
			t.Fatalf("clock went backwards: %v then %v", a, b)
		}
	})

	t.Run("ObserveMovesPastRemote", func(t *testing.T) {
		c := NewClock((&fakeWall{start}).now)
		remote := TimestampAt(start.Add(time.Hour)) + 5
		c.Observe(remote)
		if got := c.Now(); got <= remote {
			t.Fatalf("Now after Observe(%v) = %v", remote, got)
		}
		c.Observe(TimestampAt(start)) // older: no effect
		if c.Last() <= remote {
			t.Fatal("Observe of an older clock moved the clock back")
		}
	})

	t.Run("Offset", func(t *testing.T) {
		w := &fakeWall{start.Add(24 * time.Hour)} // a phone a day fast
		c := NewClock(w.now)
		c.SetOffset(-24 * time.Hour)
		if got := c.Now(); got != TimestampAt(start) {
			t.Fatalf("Now with offset = %v, want %v", got, TimestampAt(start))
		}
		if c.Offset() != -24*time.Hour {
			t.Fatalf("Offset = %v", c.Offset())
		}
	})

	t.Run("RewindAfterRefusedFutureStamps", func(t *testing.T) {
		w := &fakeWall{start.Add(24 * time.Hour)}
		c := NewClock(w.now)
		accepted := TimestampAt(start.Add(-time.Minute))
		future := c.Now()
		c.SetOffset(-24 * time.Hour)
		c.Rewind(accepted)
		got := c.Now()
		if got >= future || got <= accepted {
			t.Fatalf("after rewind Now = %v; want between %v and %v", got, accepted, future)
		}
		c.Rewind(future) // never raises
		if c.Last() != got {
			t.Fatal("Rewind raised the clock")
		}
	})

	t.Run("LogicalOverflowCarries", func(t *testing.T) {
		c := NewClock((&fakeWall{start}).now)
		c.Observe(NewTimestamp(start.UnixMilli(), 0xffff))
		got := c.Now()
		if got.Millis() != start.UnixMilli()+1 || got.Logical() != 0 {
			t.Fatalf("overflowing counter gave %v", got)
		}
	})
}

// TestClockMonotonic drives a clock with a random wall clock and random
// remote clocks: every reading is greater than every earlier reading and
// every observed clock.
func TestClockMonotonic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := &fakeWall{time.UnixMilli(MinValidMillis)}
		c := NewClock(w.now)
		var high Timestamp
		for range rapid.IntRange(1, 200).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0:
				w.t = w.t.Add(time.Duration(rapid.IntRange(-5000, 5000).Draw(t, "jump")) * time.Millisecond)
			case 1:
				r := NewTimestamp(w.t.UnixMilli()+int64(rapid.IntRange(-2000, 2000).Draw(t, "remote")), uint16(rapid.IntRange(0, 0xffff).Draw(t, "logical")))
				c.Observe(r)
				high = max(high, r)
			case 2:
				c.SetOffset(time.Duration(rapid.IntRange(-3000, 3000).Draw(t, "offset")) * time.Millisecond)
			default:
				now := c.Now()
				if now <= high {
					t.Fatalf("Now = %v, not after %v", now, high)
				}
				high = now
			}
		}
	})
}

func TestTimestampString(t *testing.T) {
	for _, tc := range []struct {
		ts   Timestamp
		text string
	}{
		{NewTimestamp(MinValidMillis, 0), "2020-01-01T00:00:00.000Z+0"},
		{NewTimestamp(1795788185123, 42), "2026-11-27T14:03:05.123Z+42"},
		{NewTimestamp(0, 65535), "1970-01-01T00:00:00.000Z+65535"},
	} {
		if got := tc.ts.String(); got != tc.text {
			t.Errorf("String(%d) = %q, want %q", uint64(tc.ts), got, tc.text)
		}
		back, err := ParseTimestamp(tc.text)
		if err != nil || back != tc.ts {
			t.Errorf("ParseTimestamp(%q) = %v, %v; want %v", tc.text, back, err, tc.ts)
		}
	}
	for _, bad := range []string{"", "2026-11-27T14:03:05.123Z", "2026-11-27T14:03:05.123Z+", "2026-11-27T14:03:05.123Z+65536", "2026-11-27T14:03:05.123Z+01", "2026-11-27T14:03:05Z+1", "yesterday+1", "2026-11-27T14:03:05.123Z+-1"} {
		if _, err := ParseTimestamp(bad); err == nil {
			t.Errorf("ParseTimestamp(%q) succeeded", bad)
		}
	}
}

func FuzzParseTimestamp(f *testing.F) {
	for _, s := range []string{"2026-11-27T14:03:05.123Z+42", "1970-01-01T00:00:00.000Z+0", "9999-12-31T23:59:59.999Z+65535", "+", "2026-11-27T14:03:05.123Z+00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ParseTimestamp(s)
		if err != nil {
			return
		}
		// Whatever parses must print back to a string that parses to the
		// same clock: the text form is a faithful codec.
		again, err := ParseTimestamp(ts.String())
		if err != nil || again != ts {
			t.Fatalf("%q parsed to %v, which reads back as %v, %v", s, ts, again, err)
		}
	})
}
