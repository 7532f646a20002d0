package study

import (
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// AttemptLimit slows down guessing: a client address may make Burst
// attempts at once, then regains one every Refill. A short enrolment code
// is safe only while guessing it is slow. Stores keep the buckets, so
// that the limit holds across every server process sharing a store, and
// take an attempt before the guess is checked, so that parallel guesses
// cannot together exceed it.
type AttemptLimit struct {
	Burst  int
	Refill time.Duration
}

// DefaultEnrollLimit is the limit on enrolment attempts per client
// address: ten at once, then one more a minute.
var DefaultEnrollLimit = AttemptLimit{Burst: 10, Refill: time.Minute}

// OrDefault returns l with zero fields replaced by DefaultEnrollLimit's.
func (l AttemptLimit) OrDefault() AttemptLimit {
	if l.Burst <= 0 {
		l.Burst = DefaultEnrollLimit.Burst
	}
	if l.Refill <= 0 {
		l.Refill = DefaultEnrollLimit.Refill
	}
	return l
}

// Attempts is the state of one address's bucket as a store keeps it: the
// attempts left at Updated.
type Attempts struct {
	Left    float64
	Updated time.Time
}

// Full returns the bucket of an address never seen: every attempt left.
func (l AttemptLimit) Full(now time.Time) Attempts {
	return Attempts{Left: float64(l.Burst), Updated: now}
}

// refill returns b as it stands at now.
func (l AttemptLimit) refill(b Attempts, now time.Time) Attempts {
	if now.After(b.Updated) {
		b.Left = min(float64(l.Burst), b.Left+float64(now.Sub(b.Updated))/float64(l.Refill))
		b.Updated = now
	}
	return b
}

// Take spends one attempt of b at now and returns the bucket to store,
// or ERATELIMIT, saying how long to wait, when none is left (then b is
// left as it was).
func (l AttemptLimit) Take(b Attempts, now time.Time) (Attempts, error) {
	b = l.refill(b, now)
	if b.Left < 1 {
		wait := time.Duration((1 - b.Left) * float64(l.Refill))
		return b, syncengine.Errorf(syncengine.ERATELIMIT,
			"too many wrong enrolment codes from this address: try again in %s", wait.Round(time.Second)+time.Second)
	}
	b.Left--
	return b, nil
}

// Give returns an attempt taken for a call that did not guess (a valid
// code, or a request refused before any code was looked up): only wrong
// codes count.
func (l AttemptLimit) Give(b Attempts, now time.Time) Attempts {
	b = l.refill(b, now)
	b.Left = min(float64(l.Burst), b.Left+1)
	return b
}

// ForgetBefore returns the time at or before which a bucket last
// updated is full again at now, so that a store may delete it: a full
// bucket and no bucket mean the same.
func (l AttemptLimit) ForgetBefore(now time.Time) time.Time {
	return now.Add(-time.Duration(l.Burst) * l.Refill)
}

// MaxAttemptKeyBytes bounds the client address a store keys a bucket by.
const MaxAttemptKeyBytes = 64

// AttemptKey returns the key a store keeps an address's bucket under,
// cut to MaxAttemptKeyBytes.
func AttemptKey(addr string) string {
	if len(addr) > MaxAttemptKeyBytes {
		return addr[:MaxAttemptKeyBytes]
	}
	return addr
}
