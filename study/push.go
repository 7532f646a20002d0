package study

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// Limits on a push.
const (
	// MaxPushChanges is the most changes one Push may carry.
	MaxPushChanges = 1000
	// MaxClockAhead is how far ahead of the server's clock a change's
	// clock may be. A device whose clock runs faster gets its changes
	// refused, corrects its offset and stamps them again, instead of
	// winning every merge until real time catches up.
	MaxClockAhead = time.Minute
)

// CheckPushSize refuses a push of more than MaxPushChanges changes.
func CheckPushSize(n int) error {
	if n > MaxPushChanges {
		return syncengine.Errorf(syncengine.ETOOLARGE, "a push may carry at most %d changes; this one has %d", MaxPushChanges, n)
	}
	return nil
}

// Outcome is what the server did with one pushed change; the numbers
// match the API's ChangeOutcome.
type Outcome int

// Outcomes.
const (
	OutcomeApplied   Outcome = 1
	OutcomeDuplicate Outcome = 2
	OutcomeRefused   Outcome = 3
)

// Refusal is why a change was refused; the numbers match the API's
// RefusalReason.
type Refusal int

// Refusal reasons.
const (
	RefusedInvalid      Refusal = 1
	RefusedTooLarge     Refusal = 2
	RefusedNotAuthor    Refusal = 3
	RefusedNotPermitted Refusal = 4
	RefusedErased       Refusal = 5
	RefusedClockAhead   Refusal = 6
	RefusedWrongReplica Refusal = 7
	// RefusedAwaitingApproval: a device waiting for approval wrote an
	// entry that existed before it (see Decide).
	RefusedAwaitingApproval Refusal = 8
	RefusedTextHistory      Refusal = 9
)

var refusalNames = map[Refusal]string{
	RefusedInvalid:          "invalid",
	RefusedTooLarge:         "too_large",
	RefusedNotAuthor:        "not_author",
	RefusedNotPermitted:     "not_permitted",
	RefusedErased:           "erased",
	RefusedClockAhead:       "clock_ahead",
	RefusedWrongReplica:     "wrong_replica",
	RefusedAwaitingApproval: "awaiting_approval",
	RefusedTextHistory:      "text_history",
}

// String returns the reason's stable lowercase name ("too_large"), or
// "refusal(N)" for a number this version does not know.
func (r Refusal) String() string {
	if n, ok := refusalNames[r]; ok {
		return n
	}
	return fmt.Sprintf("refusal(%d)", int(r))
}

// ChangeResult is the outcome of one pushed change.
type ChangeResult struct {
	Outcome Outcome
	Reason  Refusal
	Message string
}

// Incoming is one pushed change as the handler decoded it. Invalid is set
// when the change could not even be decoded (a malformed id, a value of
// the wrong kind).
type Incoming struct {
	Change  syncengine.Change
	Invalid error
	// Write is the clock of the first change of the save (one write on
	// the device) this change was part of, as the device said; 0 when it
	// did not. It only counts revisions (see Revisions).
	Write uint64
	// Seen is the cursor of the last page the device had applied when it
	// sent the push (PushRequest.cursor); 0 when it did not say.
	Seen int64
}

// GroupStats says how many group commits a store made (transactions
// holding the pushes that arrived together), how many pushes they held,
// and how long its writer spent running groups; stores that group their
// commits report it (GroupCounter).
type GroupStats struct {
	Commits, Pushes int64
	// Busy is the time spent running groups, each from asking for its
	// write transaction (waiting for another write, or on PostgreSQL
	// for another process's group, included) to its commit or failure.
	// Groups run one at a time, so Busy over a span of wall time is the
	// share of it the writer was busy: near 1, every push queues behind
	// the single writer.
	Busy time.Duration
}

// GroupCounter is a store that groups pushes into shared commits.
type GroupCounter interface {
	GroupStats() GroupStats
}

// Wakeups says whose Subscribe streams a commit concerns.
type Wakeups struct {
	Owners  []int64 // navigators whose own entries changed
	Readers []int64 // feed readers (supervisor ids; ResearchReader for research) whose feed changed
}

// Add adds o's wake-ups to w.
func (w *Wakeups) Add(o *Wakeups) {
	if o == nil {
		return
	}
	w.Owners = append(w.Owners, o.Owners...)
	w.Readers = append(w.Readers, o.Readers...)
}

func refusal(r Refusal, format string, args ...any) ChangeResult {
	return ChangeResult{Outcome: OutcomeRefused, Reason: r, Message: fmt.Sprintf(format, args...)}
}

// refusalFor turns a validation error into a refusal.
func refusalFor(err error) ChangeResult {
	if errors.Is(err, syncengine.ErrTooLarge) {
		return refusal(RefusedTooLarge, "%s", syncengine.ErrorMessage(err))
	}
	return refusal(RefusedInvalid, "%s", syncengine.ErrorMessage(err))
}

// CheckIncoming applies the rules that need nothing but the change and
// its writer: it must decode and validate, be made by the writer's own
// replica, and be of a kind the writer's role may write. It returns the
// refusal and false, or sets the change's author and returns true.
func CheckIncoming(who *Identity, in *Incoming) (ChangeResult, bool) {
	c := &in.Change
	if in.Invalid != nil {
		return refusalFor(in.Invalid), false
	}
	if err := syncengine.ValidateChange(c); err != nil {
		return refusalFor(err), false
	}
	if c.Replica != who.Replica {
		return refusal(RefusedWrongReplica, "the change was made by replica %s, not by this device (%s)", c.Replica, who.Replica), false
	}
	switch {
	case who.Role == RoleNavigator && c.Field.IsFeedback():
		return refusal(RefusedNotPermitted, "navigators cannot write feedback"), false
	case who.Role == RoleSupervisor && !c.Field.IsFeedback():
		return refusal(RefusedNotPermitted, "supervisors can write feedback, not entries"), false
	case who.Role != RoleNavigator && who.Role != RoleSupervisor:
		return refusal(RefusedNotPermitted, "a %s cannot write entries or feedback", who.Role), false
	}
	c.Author = who.StudyCode
	return ChangeResult{}, true
}

// Target is what a store knows, inside the push's transaction, about the
// entry a change is for and about the change itself.
type Target struct {
	// Exists says the store has the entry; Erased that it was erased
	// (then Entry is nil).
	Exists, Erased bool
	// Owner is the user id of the entry's owner; for an entry the store
	// does not have, the writer's.
	Owner int64
	// Entry is the entry's merged state so far, including the changes of
	// this push applied before this one; for an entry the store does not
	// have, an empty entry with its id.
	Entry *syncengine.Entry
	// Supervisors are the ids of the supervisors assigned to Owner.
	Supervisors []int64
	// Known says the writing device already had a change with this
	// clock accepted: this one is a retry.
	Known bool
	// Remembered is the refusal the same change got before, if it was
	// refused for a reason that could change later.
	Remembered *ChangeResult
	// Withdrawn says the writer withdrew from the study.
	Withdrawn bool
	// HeldBy is the id of the pending device whose new entry this is,
	// held back from every reader until that device is approved; 0 for
	// an entry that is not held.
	HeldBy int64
}

// Decision is what to do with one change.
type Decision struct {
	Result ChangeResult
	// Apply says to apply the change to the entry and record it.
	Apply bool
	// Remember says to keep the refusal, so that the same change sent
	// again gets the same answer: it depends on time or state.
	Remember bool
	// Hold says the change creates an entry from a device that waits for
	// approval: the store keeps the entry back from every reader (the
	// owner's other devices too: no feed row, not pulled, not exported)
	// until the device is approved, and erases it if the device is denied
	// or revoked first. What a pending device writes reaches nobody.
	Hold bool
}

// Decide applies the write rules to one change that passed
// CheckIncoming. Every store calls it for every such change, in push
// order, with the target as the push has left it so far.
func Decide(who *Identity, c *syncengine.Change, t *Target, now time.Time) Decision {
	// A change this device already had accepted is a retry (its answer
	// was lost): it gets the answer it got then, whatever changed since
	// (sharing, assignment), so that a retry never changes the outcome.
	// An erased entry's history is gone, so its retries are refused
	// below.
	if t.Known {
		return Decision{Result: ChangeResult{Outcome: OutcomeDuplicate}}
	}
	// Likewise a change refused before for a reason that could change
	// (time, sharing, limits) keeps its refusal: the device has stamped
	// it again, and a late copy must not be accepted too.
	if t.Remembered != nil {
		return Decision{Result: *t.Remembered}
	}
	if ahead := syncengine.TimestampAt(now.Add(MaxClockAhead)); c.Clock > ahead {
		return Decision{Remember: true, Result: refusal(RefusedClockAhead,
			"the change's clock (%s) is %s ahead of the server's time (%s); the limit is %s: correct the device clock offset and stamp it again",
			c.Clock.Time().Format(time.RFC3339), c.Clock.Time().Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339), MaxClockAhead)}
	}
	if t.Erased {
		return Decision{Result: refusal(RefusedErased, "entry %s was erased from the study and cannot be written again", c.Entry)}
	}
	if t.Withdrawn {
		return Decision{Result: refusal(RefusedErased, "%s withdrew from the study: their entries were erased and new ones are not accepted", who.StudyCode)}
	}
	// An entry held back for a pending device exists for that device
	// only; to anyone else it is as if it were not there yet. A pending
	// device may create entries and go on writing its own, but not write
	// any entry that existed before it: it has not been trusted with the
	// account's diary.
	if t.Exists && t.HeldBy != 0 && t.HeldBy != who.DeviceID {
		return Decision{Remember: true, Result: refusal(RefusedNotPermitted, "entry %s is waiting for its device to be approved", c.Entry)}
	}
	if who.Pending && t.Exists && t.HeldBy != who.DeviceID {
		return Decision{Remember: true, Result: refusal(RefusedAwaitingApproval,
			"this device is waiting for approval: it may write new entries, not entry %s, until another of your devices approves it", c.Entry)}
	}
	switch who.Role {
	case RoleNavigator:
		if t.Owner != who.UserID {
			return Decision{Result: refusal(RefusedNotAuthor, "entry %s belongs to another navigator", c.Entry)}
		}
	case RoleSupervisor:
		if !t.Exists || !slices.Contains(t.Supervisors, who.UserID) || !SupervisorVisible(t.Entry) {
			return Decision{Remember: true, Result: refusal(RefusedNotPermitted, "entry %s is not shared with you", c.Entry)}
		}
		if f := t.Entry.FindFeedback(c.Feedback); f != nil && f.Author != who.StudyCode {
			return Decision{Result: refusal(RefusedNotAuthor, "feedback %s was written by another supervisor", c.Feedback)}
		}
	}
	if err := t.Entry.Admits(c); err != nil {
		return Decision{Remember: true, Result: refusalFor(err)}
	}
	return Decision{Apply: true, Hold: who.Pending, Result: ChangeResult{Outcome: OutcomeApplied}}
}
