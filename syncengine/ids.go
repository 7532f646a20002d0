package syncengine

import (
	"bytes"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
)

// EntryID identifies an entry. It is a UUIDv7 made on the device that
// created the entry, so ids sort roughly by creation time and need no
// server round trip.
type EntryID [16]byte

// ReplicaID identifies one replica (one enrolled device). The server
// assigns it at enrolment; it breaks ties between equal clocks.
type ReplicaID [16]byte

// FeedbackID identifies one feedback item. Like an EntryID it is a UUIDv7
// made on the device that wrote it.
type FeedbackID [16]byte

// NewEntryID returns a fresh UUIDv7 entry id.
func NewEntryID() EntryID { return EntryID(mustV7()) }

// NewFeedbackID returns a fresh UUIDv7 feedback id.
func NewFeedbackID() FeedbackID { return FeedbackID(mustV7()) }

// NewEntryIDFrom returns a UUIDv7 entry id for the millisecond of t, with
// its random bits read from r. It lets a caller that controls time and
// randomness (a deterministic simulation) control ids too.
func NewEntryIDFrom(t time.Time, r io.Reader) (EntryID, error) {
	var id EntryID
	if _, err := io.ReadFull(r, id[6:]); err != nil {
		return EntryID{}, fmt.Errorf("cannot read random bits for an id: %w", err)
	}
	ms := uint64(t.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (40 - 8*i))
	}
	id[6] = 0x70 | id[6]&0x0f // version 7
	id[8] = 0x80 | id[8]&0x3f // RFC 9562 variant
	return id, nil
}

// NewReplicaID returns a fresh random replica id.
func NewReplicaID() ReplicaID { return ReplicaID(uuid.New()) }

func mustV7() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		// uuid.NewV7 fails only when the system's random source does,
		// and nothing sensible can go on without one.
		panic(fmt.Sprintf("syncengine: cannot make UUIDv7: %v", err))
	}
	return id
}

// ParseEntryID parses the canonical text form of a UUIDv7.
func ParseEntryID(s string) (EntryID, error) {
	u, err := parseV7("entry id", s)
	return EntryID(u), err
}

// ParseFeedbackID parses the canonical text form of a UUIDv7.
func ParseFeedbackID(s string) (FeedbackID, error) {
	u, err := parseV7("feedback id", s)
	return FeedbackID(u), err
}

// ParseReplicaID parses the canonical text form of a UUID. The nil UUID is
// refused: it marks a register whose writer is hidden from the reader.
func ParseReplicaID(s string) (ReplicaID, error) {
	u, err := parseCanonical("replica id", s)
	if err != nil {
		return ReplicaID{}, err
	}
	if u == uuid.Nil {
		return ReplicaID{}, invalid("replica id", ErrInvalidID, "replica id must not be the nil UUID")
	}
	return ReplicaID(u), nil
}

func parseCanonical(what, s string) (uuid.UUID, error) {
	// uuid.Parse also takes braces, URNs and hex without dashes; the wire
	// takes only the lowercase 36-character form, so that one id has one
	// spelling everywhere (logs, exports, state hashes).
	if len(s) != 36 {
		return uuid.Nil, invalid(what, ErrInvalidID, fmt.Sprintf("%s %q is not a UUID in its 36-character form", what, truncate(s, 40)))
	}
	u, err := uuid.Parse(s)
	if err != nil || u.String() != s {
		return uuid.Nil, invalid(what, ErrInvalidID, fmt.Sprintf("%s %q is not a lowercase UUID", what, truncate(s, 40)))
	}
	return u, nil
}

func parseV7(what, s string) (uuid.UUID, error) {
	u, err := parseCanonical(what, s)
	if err != nil {
		return uuid.Nil, err
	}
	if u.Version() != 7 || u.Variant() != uuid.RFC4122 {
		return uuid.Nil, invalid(what, ErrInvalidID, fmt.Sprintf("%s %q is not a UUIDv7", what, s))
	}
	return u, nil
}

// String returns the canonical text form.
func (id EntryID) String() string { return uuid.UUID(id).String() }

// String returns the canonical text form.
func (id ReplicaID) String() string { return uuid.UUID(id).String() }

// String returns the canonical text form.
func (id FeedbackID) String() string { return uuid.UUID(id).String() }

// IsZero reports whether id is the nil UUID.
func (id EntryID) IsZero() bool { return id == EntryID{} }

// IsZero reports whether id is the nil UUID, which marks a register whose
// writer is not known to (or hidden from) this replica.
func (id ReplicaID) IsZero() bool { return id == ReplicaID{} }

// IsZero reports whether id is the nil UUID.
func (id FeedbackID) IsZero() bool { return id == FeedbackID{} }

// Compare orders entry ids bytewise, which is also their text order.
func (id EntryID) Compare(o EntryID) int { return bytes.Compare(id[:], o[:]) }

// Compare orders replica ids bytewise, which is also their text order.
func (id ReplicaID) Compare(o ReplicaID) int { return bytes.Compare(id[:], o[:]) }

// Compare orders feedback ids bytewise, which is also their text order.
func (id FeedbackID) Compare(o FeedbackID) int { return bytes.Compare(id[:], o[:]) }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
