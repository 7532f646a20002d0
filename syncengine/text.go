// # Merged text
//
// A body (and a supervisor's feedback body) can be a TextDoc instead of a
// last-writer-wins register: a sequence CRDT that merges concurrent edits
// character by character, so that a paragraph added on the phone and a
// sentence fixed on the tablet both survive.
//
// The algorithm is FugueMax in the form of Yjs's integration loop with the
// small change to its rule that Weidner and Kleppmann ("The Art of the
// Fugue", 2023) showed equivalent to FugueMax (Gentle's "YjsMod"). Every
// character has a unique id and remembers two origins: the character
// immediately to its left and the one immediately to its right when it was
// typed. A replica that receives a character places it between its
// origins; characters typed concurrently between the same origins are
// ordered by where their own origins lie, and last by id. We chose it
// because:
//
//   - FugueMax is proved maximally non-interleaving: two people typing a
//     sentence each at the same place get the two sentences one after the
//     other, whether they type forwards or backwards (RGA, Automerge's
//     algorithm, can interleave text typed backwards);
//   - a state is the merged list itself, runs of characters with their
//     origins, so two states merge by integrating each other's missing
//     runs, as the existing Entry.Merge needs, and reading the text never
//     replays history;
//   - consecutive typing forms runs of consecutive ids whose inner origins
//     are implied, so a state costs a few bytes per run, not per character;
//   - Eg-walker, which keeps only the original operations and rebuilds the
//     merge structure for the concurrent part of the history, is smaller
//     and faster on long histories, but every merge replays history over
//     the causal graph and the implementation is several times larger; for
//     bodies of at most 256 KiB the direct structure is fast enough.
//
// The list is held as items (runs) in a B+ tree whose nodes count all
// characters, visible code points and visible UTF-16 code units, so a
// position in either unit, or the position of a character, is found in
// O(log n); each sequence indexes its items by offset, so an id is too.
//
// # Character ids
//
// A character id (TextID) is (replica, anchor, offset). A replica's first
// change to a document opens a sequence whose anchor is that change's
// clock; its later changes continue the sequence at the next offset, so a
// burst of typing spread over many changes is still one run of
// consecutive ids. Ids never collide: a device never reuses a clock, and
// only the replica that opened a sequence extends it, from the end it
// holds (a replica holds all its own changes before it makes the next). A
// change is identified by its Stamp (clock, replica) like every other
// change, so the server deduplicates text changes as it does today.
//
// A local insert goes before the visible character at its position, after
// any deleted characters in between; its origins are the item just before
// it (deleted or not) and that visible character. So text typed after
// backspacing continues the run that was backspaced.
//
// # Causal delivery
//
// Every TextChange carries Deps, the version it was made on: for each
// replica, the clock of the newest change of that replica it had applied,
// its own replica's previous change included. A document applies a change
// only when it holds that version, and holds the change in its state
// (Pending) until then; the held changes are part of the canonical state,
// so documents that received the same changes hold the same bytes however
// they arrived. A replica's own changes therefore apply in the order it
// made them, which makes a change with a clock at most its replica's
// newest a duplicate, and a change that skipped one its replica made
// before a fork, refused. A change that passes validation can only name
// characters its version holds.
//
// # Concurrent edits
//
// Heads are the newest changes of the replicas whose newest change no
// other replica's newest change had seen. Concurrent reports more than one
// head: the text holds edits made on two or more devices without seeing
// each other's, and nobody has edited the merged text since. It depends
// only on the set of changes, so every replica answers the same.
//
// # Deleted characters
//
// A delete names the ids it removes. Deleted characters stay as
// tombstones, ids and lengths without their text (which is dropped at
// once), because edits concurrent with the delete may name them as
// origins. A tombstone can be forgotten only once no device can still send
// a change concurrent with its deletion, that is, once every device that
// may write has applied the deleting change; and every replica must forget
// it at the same point of the history, or their canonical bytes differ.
// That needs a compaction point that the server agrees with every device
// and replicates as a change, which this package does not have yet, so
// tombstones are kept. They cost a few bytes per deleted run: after the
// 259,778 edits of the automerge-paper trace, a third of them deletions,
// the state is 1.5 times the size of the text.
//
// # Writes from old devices
//
// Devices that predate TextDoc send the whole body as a last-writer-wins
// value, with no record of what they had seen. LegacyWrite turns such a
// write into the edit from the part of the text the device may have seen
// to the text it sent: characters inserted by changes with a clock at or
// after the write's cannot have been seen (the device would have observed
// that clock first), so they are kept where they are. The change is
// stamped with the write's clock and LegacyReplica(device), so every
// replica merging the same write in the same state makes the same change
// and a retry is a duplicate.
package syncengine

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Limits of a TextDoc. They bound the memory one body costs and the size of
// any change or state that carries it.
const (
	// MaxTextChars is the most characters a document may ever have
	// inserted, deleted ones included (they stay as tombstones).
	MaxTextChars = 1 << 24
	// MaxTextPending is the most changes a document holds while it waits
	// for the changes they were made on.
	MaxTextPending = 1 << 16
	// MaxTextReplicas is the most replicas that may write one document.
	MaxTextReplicas = 1024
	// MaxTextParts is the most inserts plus deleted ranges one change may
	// carry. A local edit that could need more (it deletes more
	// characters than this) is refused before it changes anything.
	MaxTextParts = 1 << 20
)

// ErrInvalidPosition is the cause of a ValidationError for a splice
// position that is out of range or splits a character.
var ErrInvalidPosition = errors.New("invalid text position")

// ErrTextHistory is the cause of a ValidationError for a change that does
// not fit the document's history: it skips its replica's previous change,
// reuses ids, or names characters that its own past does not hold.
var ErrTextHistory = errors.New("text change does not fit the history")

// ErrCorruptText is returned (wrapped) by DecodeTextDoc and
// DecodeTextChange for input that is not a canonical encoding.
var ErrCorruptText = errors.New("not a canonical text encoding")

// TextID names one character of a TextDoc: the sequence that allotted it
// (the replica and the clock of the change that opened the sequence) and
// its offset in that sequence. The zero TextID names no character: as a
// left origin it means the start of the text, as a right origin its end.
type TextID struct {
	Replica ReplicaID
	Anchor  Timestamp
	Offset  uint32
}

// IsZero reports whether id names no character.
func (id TextID) IsZero() bool { return id.Replica.IsZero() }

// Compare orders ids by replica, anchor and offset. It is the last
// tie-break between characters typed concurrently at the same place.
func (id TextID) Compare(o TextID) int {
	if c := id.Replica.Compare(o.Replica); c != 0 {
		return c
	}
	switch {
	case id.Anchor < o.Anchor:
		return -1
	case id.Anchor > o.Anchor:
		return 1
	case id.Offset < o.Offset:
		return -1
	case id.Offset > o.Offset:
		return 1
	}
	return 0
}

// String formats id for messages and tests.
func (id TextID) String() string {
	if id.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%s@%d+%d", id.Replica, uint64(id.Anchor), id.Offset)
}

// TextInsert inserts Text (at least one character) between the characters
// Left and Right, which were adjacent when it was typed. Its characters get
// the ids ID, ID+1, ...; each names the one before it as its left origin
// and Right as its right origin.
type TextInsert struct {
	ID    TextID
	Left  TextID
	Right TextID
	Text  string
}

// TextRange names Len consecutive ids of one sequence, starting at ID.
type TextRange struct {
	ID  TextID
	Len uint32
}

// TextChange is one edit of a TextDoc made on one replica: what one save of
// a text field, one splice or one old device's whole-body write becomes. It
// is identified by its Stamp, like every other change. Inserts apply in
// order, then Deletes.
type TextChange struct {
	Stamp
	// Deps is the version the change was made on: for each replica whose
	// changes the author had applied, the clock of the newest, sorted by
	// replica. It includes the author's own previous change to this
	// document, if any.
	Deps    []Stamp
	Inserts []TextInsert
	Deletes []TextRange
}

// Splice replaces Del characters at Pos with Text. Positions count Unicode
// code points unless a function says otherwise.
type Splice struct {
	Pos  int
	Del  int
	Text string
}

// TextStatus says what Apply did with a change.
type TextStatus uint8

// Outcomes of Apply.
const (
	// TextApplied: the change is part of the text now.
	TextApplied TextStatus = iota + 1
	// TextDuplicate: the document already held the change; nothing changed.
	TextDuplicate
	// TextHeld: the change was made on a version the document does not
	// hold yet; it waits in the state and applies when that version
	// arrives.
	TextHeld
)

// String names the status.
func (s TextStatus) String() string {
	switch s {
	case TextApplied:
		return "applied"
	case TextDuplicate:
		return "duplicate"
	case TextHeld:
		return "held"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// LegacyReplica returns the replica id under which LegacyWrite records the
// whole-body writes of the device r. It is a fixed function of r, so every
// replica derives the same id, and it differs from r, so the writes the
// server makes in r's name never collide with changes r makes itself once
// it is upgraded.
func LegacyReplica(r ReplicaID) ReplicaID {
	h := sha256.New()
	h.Write([]byte("diarysync legacy text replica\x00"))
	h.Write(r[:])
	var id ReplicaID
	copy(id[:], h.Sum(nil))
	if id.IsZero() {
		id[15] = 1
	}
	return id
}

// ValidateTextChange checks a change on its own: stamp, ordering of Deps,
// ids, that every origin and deleted id comes from the author or from a
// replica in Deps, and the inserted text (valid UTF-8, no control
// characters other than newline and tab, at most limit bytes in all). It
// does not know the document the change will apply to; Apply checks the
// rest.
func ValidateTextChange(c *TextChange, limit int) error {
	if c.Replica.IsZero() {
		return invalid("replica id", ErrInvalidID, "replica id must not be the nil UUID")
	}
	if err := ValidateClock(c.Clock); err != nil {
		return err
	}
	if len(c.Deps) > MaxTextReplicas {
		return invalid("text change", ErrTooLarge, fmt.Sprintf("text change depends on %d replicas; the limit is %d", len(c.Deps), MaxTextReplicas))
	}
	for i, d := range c.Deps {
		if d.Replica.IsZero() {
			return invalid("text change", ErrInvalidValue, "a dependency of a text change names no replica")
		}
		if err := ValidateClock(d.Clock); err != nil {
			return err
		}
		if i > 0 && c.Deps[i-1].Replica.Compare(d.Replica) >= 0 {
			return invalid("text change", ErrInvalidValue, "dependencies of a text change are not sorted by replica")
		}
		if d.Replica == c.Replica && d.Clock >= c.Clock {
			return invalid("text change", ErrInvalidClock, "a text change's clock must be after its replica's previous change")
		}
	}
	if len(c.Inserts)+len(c.Deletes) > MaxTextParts {
		return invalid("text change", ErrTooLarge, fmt.Sprintf("text change has %d parts; the limit is %d", len(c.Inserts)+len(c.Deletes), MaxTextParts))
	}
	if len(c.Inserts)+len(c.Deletes) == 0 {
		return invalid("text change", ErrInvalidValue, "text change inserts and deletes nothing")
	}
	known := func(id TextID) bool {
		if id.Replica == c.Replica {
			return true
		}
		_, ok := slices.BinarySearchFunc(c.Deps, id.Replica, func(d Stamp, r ReplicaID) int { return d.Replica.Compare(r) })
		return ok
	}
	checkID := func(what string, id TextID) error {
		if id.IsZero() {
			return nil
		}
		if ValidateClock(id.Anchor) != nil {
			return invalid("text change", ErrInvalidID, fmt.Sprintf("%s of a text change has no valid anchor", what))
		}
		if !known(id) {
			return invalid("text change", ErrTextHistory, fmt.Sprintf("%s of a text change comes from a replica it does not depend on", what))
		}
		return nil
	}
	total := 0
	for i := range c.Inserts {
		in := &c.Inserts[i]
		if in.ID.Replica != c.Replica {
			return invalid("text change", ErrInvalidID, "a text change may insert only characters of its own replica")
		}
		if ValidateClock(in.ID.Anchor) != nil || in.ID.Anchor > c.Clock {
			return invalid("text change", ErrInvalidID, "an insert's sequence must be opened no later than the change")
		}
		if in.Text == "" {
			return invalid("text change", ErrInvalidValue, "an insert of a text change is empty")
		}
		if err := checkID("left origin", in.Left); err != nil {
			return err
		}
		if err := checkID("right origin", in.Right); err != nil {
			return err
		}
		total += len(in.Text)
		if total > limit {
			return invalid("text", ErrTooLarge, fmt.Sprintf("text change inserts more than %d bytes; the limit is %d bytes", limit, limit))
		}
		if err := ValidateText("text", in.Text, limit, true); err != nil {
			return err
		}
		if n := runeCount(in.Text); uint64(in.ID.Offset)+uint64(n) > maxOffset {
			return invalid("text change", ErrTooLarge, "an insert runs past the end of its sequence")
		}
	}
	for _, d := range c.Deletes {
		if d.ID.IsZero() || d.Len == 0 {
			return invalid("text change", ErrInvalidValue, "a delete of a text change names no characters")
		}
		if err := checkID("deleted id", d.ID); err != nil {
			return err
		}
		if uint64(d.ID.Offset)+uint64(d.Len) > maxOffset {
			return invalid("text change", ErrInvalidValue, "a delete runs past the end of its sequence")
		}
	}
	return nil
}

// maxOffset bounds the offsets of one sequence; a replica whose sequence
// would grow past it opens a new one.
const maxOffset = 1 << 31

func runeCount(s string) int { return utf8.RuneCountInString(s) }

// String formats the change for messages and tests.
func (c *TextChange) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "change %s@%d deps %d", c.Replica, uint64(c.Clock), len(c.Deps))
	for _, in := range c.Inserts {
		fmt.Fprintf(&b, " +%s(%s,%s)%q", in.ID, in.Left, in.Right, in.Text)
	}
	for _, d := range c.Deletes {
		fmt.Fprintf(&b, " -%s×%d", d.ID, d.Len)
	}
	return b.String()
}
