package study

import (
	"testing"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

func TestAttemptLimit(t *testing.T) {
	l := AttemptLimit{Burst: 3, Refill: time.Minute}
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

	t.Run("OKBurstThenRefill", func(t *testing.T) {
		b := l.Full(now)
		var err error
		for i := range 3 {
			if b, err = l.Take(b, now); err != nil {
				t.Fatalf("attempt %d: %v", i+1, err)
			}
		}
		if _, err := l.Take(b, now); syncengine.ErrorCode(err) != syncengine.ERATELIMIT {
			t.Fatalf("fourth attempt at once: %v, want rate limited", err)
		}
		if _, err := l.Take(b, now.Add(59*time.Second)); syncengine.ErrorCode(err) != syncengine.ERATELIMIT {
			t.Fatalf("attempt after 59 s: %v, want rate limited", err)
		}
		b, err = l.Take(b, now.Add(time.Minute))
		if err != nil {
			t.Fatalf("attempt after a minute: %v", err)
		}
		if _, err := l.Take(b, now.Add(time.Minute)); syncengine.ErrorCode(err) != syncengine.ERATELIMIT {
			t.Fatalf("second attempt after a minute: %v, want rate limited", err)
		}
	})

	t.Run("OKRefillStopsAtBurst", func(t *testing.T) {
		b := l.Full(now)
		b, _ = l.Take(b, now)
		later := now.Add(24 * time.Hour)
		var err error
		for i := range 3 {
			if b, err = l.Take(b, later); err != nil {
				t.Fatalf("attempt %d a day later: %v", i+1, err)
			}
		}
		if _, err := l.Take(b, later); err == nil {
			t.Fatal("a day of waiting gave more than the burst")
		}
	})

	t.Run("OKGiveBack", func(t *testing.T) {
		// Taken and given back: a valid code costs nothing.
		b := l.Full(now)
		for range 10 {
			var err error
			if b, err = l.Take(b, now); err != nil {
				t.Fatal(err)
			}
			b = l.Give(b, now)
		}
		if b.Left != 3 {
			t.Fatalf("%v attempts left after ten given back, want 3", b.Left)
		}
		if b = l.Give(b, now); b.Left != 3 {
			t.Fatalf("giving to a full bucket left %v, want 3", b.Left)
		}
	})

	t.Run("ErrWaitInMessage", func(t *testing.T) {
		b := Attempts{Left: 0, Updated: now}
		_, err := l.Take(b, now.Add(30*time.Second))
		if msg := syncengine.ErrorMessage(err); msg != "too many wrong enrolment codes from this address: try again in 31s" {
			t.Fatalf("message %q", msg)
		}
	})

	t.Run("OKForgettable", func(t *testing.T) {
		// A bucket emptied at now is full again three minutes later.
		b := Attempts{Left: 0, Updated: now}
		at := l.ForgetBefore(now.Add(3 * time.Minute))
		if at.Before(b.Updated) {
			t.Fatalf("a bucket emptied at %v is not forgettable at %v", now, at)
		}
		if got := l.refill(b, now.Add(3*time.Minute)); got.Left != float64(l.Burst) {
			t.Fatalf("refilled to %v, want full", got.Left)
		}
		if l.ForgetBefore(now.Add(179 * time.Second)).Equal(now) {
			t.Fatal("forgotten before it refilled")
		}
	})

	t.Run("OKDefaults", func(t *testing.T) {
		if d := (AttemptLimit{}).OrDefault(); d != DefaultEnrollLimit || d.Burst != 10 || d.Refill != time.Minute {
			t.Fatalf("defaults %+v", d)
		}
		if k := AttemptKey(string(make([]byte, 100))); len(k) != MaxAttemptKeyBytes {
			t.Fatalf("key of %d bytes", len(k))
		}
	})
}
