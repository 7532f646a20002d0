package syncengine

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock value. The high 48 bits hold Unix
// milliseconds and the low 16 bits a logical counter, so comparing two
// Timestamps as integers compares them as clock readings, and a counter
// that overflows carries into the next millisecond instead of wrapping.
type Timestamp uint64

const (
	logicalBits = 16
	logicalMask = 1<<logicalBits - 1

	// MaxMillis is the largest physical time a Timestamp can hold
	// (about the year 10889).
	MaxMillis = 1<<(64-logicalBits) - 1

	// MinValidMillis is the earliest physical time a change may carry
	// (2020-01-01T00:00:00Z). Anything earlier comes from a device whose
	// clock was never set, and would lose every merge.
	MinValidMillis = 1577836800000
)

// NewTimestamp packs physical milliseconds and a logical counter.
func NewTimestamp(millis int64, logical uint16) Timestamp {
	if millis < 0 {
		millis = 0
	}
	if millis > MaxMillis {
		millis = MaxMillis
	}
	return Timestamp(uint64(millis)<<logicalBits | uint64(logical))
}

// TimestampAt returns the first Timestamp of the millisecond holding t.
func TimestampAt(t time.Time) Timestamp {
	return NewTimestamp(t.UnixMilli(), 0)
}

// Millis returns the physical part in Unix milliseconds.
func (t Timestamp) Millis() int64 { return int64(uint64(t) >> logicalBits) }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(uint64(t) & logicalMask) }

// Time returns the physical part as a time.Time in UTC.
func (t Timestamp) Time() time.Time { return time.UnixMilli(t.Millis()).UTC() }

// IsZero reports whether t is the zero Timestamp, which marks a register
// that was never written.
func (t Timestamp) IsZero() bool { return t == 0 }

// String formats t as RFC 3339 UTC with milliseconds, then "+" and the
// logical counter: "2026-11-27T14:03:05.123Z+2". ParseTimestamp reads it.
func (t Timestamp) String() string {
	return t.Time().Format("2006-01-02T15:04:05.000Z") + "+" + strconv.Itoa(int(t.Logical()))
}

// ParseTimestamp parses the form produced by Timestamp.String.
func ParseTimestamp(s string) (Timestamp, error) {
	head, counter, ok := strings.Cut(s, "+")
	if !ok {
		return 0, fmt.Errorf("clock %q: want RFC 3339 time, \"+\" and a counter", s)
	}
	tm, err := time.Parse("2006-01-02T15:04:05.000Z", head)
	if err != nil {
		return 0, fmt.Errorf("clock %q: %w", s, err)
	}
	n, err := strconv.ParseUint(counter, 10, 16)
	if err != nil || (len(counter) > 1 && counter[0] == '0') {
		return 0, fmt.Errorf("clock %q: counter must be a decimal from 0 to 65535", s)
	}
	ms := tm.UnixMilli()
	if ms < 0 || ms > MaxMillis {
		return 0, fmt.Errorf("clock %q: time out of range", s)
	}
	return NewTimestamp(ms, uint16(n)), nil
}

// Clock is a hybrid logical clock. Now never returns a value lower than or
// equal to one it returned before, nor lower than one passed to Observe,
// whatever the wall clock does. The wall clock can be corrected by an
// offset learnt from the server, so a device whose own clock is wrong
// still stamps changes close to real time. A Clock is safe for concurrent
// use.
type Clock struct {
	mu     sync.Mutex
	wall   func() time.Time
	offset time.Duration
	last   Timestamp
}

// NewClock returns a Clock reading the wall clock through wall, which may
// be nil for time.Now.
func NewClock(wall func() time.Time) *Clock {
	if wall == nil {
		wall = time.Now
	}
	return &Clock{wall: wall}
}

// Now returns a new Timestamp greater than every Timestamp this clock has
// returned or observed.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := c.last + 1
	if w := TimestampAt(c.wall().Add(c.offset)); w > next {
		next = w
	}
	c.last = next
	return next
}

// Observe moves the clock past remote (the receive rule), so that every
// later Now is greater than remote.
func (c *Clock) Observe(remote Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.last {
		c.last = remote
	}
}

// Last returns the greatest Timestamp returned or observed so far.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// SetOffset sets the correction added to the wall clock. A device learns
// it by comparing its wall clock with the server's time.
func (c *Clock) SetOffset(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = d
}

// Offset returns the correction added to the wall clock.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// Rewind lowers the clock to floor. It exists for one case: a device whose
// wall clock ran fast stamped changes the server refused as being in the
// future. None of those stamps entered the system, so after correcting the
// offset the device rewinds to the greatest stamp the system has accepted
// from or delivered to it, and re-stamps what is still pending. Rewinding
// below a Timestamp that some other replica holds would break ordering;
// callers pass such a floor. Rewind never raises the clock.
func (c *Clock) Rewind(floor Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if floor < c.last {
		c.last = floor
	}
}
