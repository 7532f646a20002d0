package server

import (
	"sync"
	"time"
)

// failureLimiter slows down guessing: each key (a client address) may fail
// at most burst times, regaining one attempt every interval. A short
// enrolment code is safe only while guessing it is slow.
type failureLimiter struct {
	mu       sync.Mutex
	burst    float64
	interval time.Duration
	now      func() time.Time
	buckets  map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFailureLimiter(burst int, interval time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{burst: float64(burst), interval: interval, now: now, buckets: map[string]*bucket{}}
}

func (l *failureLimiter) refill(key string) *bucket {
	now := l.now()
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+float64(now.Sub(b.last))/float64(l.interval))
	b.last = now
	return b
}

// Allow reports whether key may try now, and if not, how long to wait.
func (l *failureLimiter) Allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.interval))
}

// Fail spends one attempt of key.
func (l *failureLimiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key)
	b.tokens = max(0, b.tokens-1)
	// Forget full buckets now and then, so the map does not grow with
	// every address ever seen.
	if len(l.buckets) > 10000 {
		for k, v := range l.buckets {
			if v.tokens+float64(l.now().Sub(v.last))/float64(l.interval) >= l.burst {
				delete(l.buckets, k)
			}
		}
	}
}
