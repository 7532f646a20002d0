package study

import (
	"bytes"

	"github.com/diarysync/diarysync/syncengine"
)

// SupervisorVisible reports whether the supervisors assigned to an
// entry's owner may see it: shared with them and not deleted.
func SupervisorVisible(e *syncengine.Entry) bool {
	return e != nil && e.Exists() && e.ShareSupervisor.Value && !e.Deleted.Value
}

// ResearchVisible reports whether the research team may see an entry:
// shared for research and not deleted.
func ResearchVisible(e *syncengine.Entry) bool {
	return e != nil && e.Exists() && e.ShareResearch.Value && !e.Deleted.Value
}

// RemovalReason is why an entry left a reader's replica; the numbers
// match the API's RemovalReason.
type RemovalReason int

// Removal reasons.
const (
	ReasonNotShared  RemovalReason = 1
	ReasonUnassigned RemovalReason = 2
	ReasonDeleted    RemovalReason = 3
	ReasonErased     RemovalReason = 4
)

// ResearchReader is the feed reader id of the research team, who all
// see the same; supervisors' feeds are read by their user ids.
const ResearchReader = 0

// FeedChange is what a write does to the feeds of one audience: the
// entry enters (or changes in) their feeds, or leaves them with a
// reason.
type FeedChange struct {
	Audience syncengine.Audience // AudienceSupervisor or AudienceResearch
	Visible  bool
	Reason   RemovalReason // when not Visible
}

// FeedChanges returns what a write that took an entry from old (nil if
// the entry is new) to new does to the non-owning readers' feeds: for
// each audience, nothing (the view they hold did not change, or they
// could not see it before and still cannot), a new view, or a removal
// notice. Visibility changes are changes: a reader who loses an entry
// must be told on their next pull.
func FeedChanges(old, new *syncengine.Entry) []FeedChange {
	var out []FeedChange
	for _, aud := range []struct {
		audience syncengine.Audience
		visible  func(*syncengine.Entry) bool
	}{
		{syncengine.AudienceSupervisor, SupervisorVisible},
		{syncengine.AudienceResearch, ResearchVisible},
	} {
		was, is := aud.visible(old), aud.visible(new)
		switch {
		case is && (!was || !bytes.Equal(syncengine.EncodeEntry(old.View(aud.audience)), syncengine.EncodeEntry(new.View(aud.audience))) ||
			aud.audience == syncengine.AudienceSupervisor && feedbackTextChanged(old, new)):
			out = append(out, FeedChange{Audience: aud.audience, Visible: true})
		case was && !is:
			reason := ReasonNotShared
			if new.Deleted.Value {
				reason = ReasonDeleted
			}
			out = append(out, FeedChange{Audience: aud.audience, Reason: reason})
		}
	}
	return out
}

// feedbackTextChanged reports whether the merged text of some feedback
// note changed from old to new: its author's view holds it, so their
// devices must pull it even when its text, which is all the other
// readers see, stayed the same. An edit of a note deleted meanwhile (on
// the author's other device) counts too: no view holds the note, and the
// device that made the edit must pull a view without it, or it keeps
// the note its edit made again.
func feedbackTextChanged(old, new *syncengine.Entry) bool {
	for i := range new.Feedback {
		f := &new.Feedback[i]
		o := old.FindFeedback(f.ID)
		if f.Deleted.Value {
			if o != nil && o.Deleted.Value && (o.Body != f.Body || !sameText(o.BodyText, f.BodyText)) {
				return true
			}
			continue
		}
		if f.BodyText == nil {
			continue
		}
		if o == nil || o.BodyText == nil || !bytes.Equal(o.BodyText.Encoding(), f.BodyText.Encoding()) {
			return true
		}
	}
	return false
}

func sameText(a, b *syncengine.TextState) bool {
	if a == nil || b == nil {
		return a == b
	}
	return bytes.Equal(a.Encoding(), b.Encoding())
}

// Reader says which entries a caller pulls and how they see them: a
// navigator reads their own entries, a supervisor their feed, the
// research team theirs.
type Reader struct {
	Owner    bool  // a navigator reading their own entries
	ID       int64 // the owner's user id, or the feed reader id
	Audience syncengine.Audience
	Code     string // the reader's study code (supervisors: whose feedback is theirs)
}

// View returns the view of e that the reader holds. With mergedText (the
// reader's device merges text, see PullRequest.MergedText) it carries the
// merged text the reader may hold: the body's for the owner, their own
// feedback's for a supervisor; without it every merged text is its text
// alone, as devices that predate merged text hold it.
func (r Reader) View(e *syncengine.Entry, mergedText bool) *syncengine.Entry {
	return e.ViewFor(r.Audience, r.Code, mergedText)
}

// ReaderFor returns the reader a caller pulls as.
func ReaderFor(who *Identity) (Reader, error) {
	switch who.Role {
	case RoleNavigator:
		return Reader{Owner: true, ID: who.UserID, Audience: syncengine.AudienceOwner, Code: who.StudyCode}, nil
	case RoleSupervisor:
		return Reader{ID: who.UserID, Audience: syncengine.AudienceSupervisor, Code: who.StudyCode}, nil
	case RoleResearcher:
		return Reader{ID: ResearchReader, Audience: syncengine.AudienceResearch}, nil
	}
	return Reader{}, syncengine.Errorf(syncengine.EPERMISSION, "a %s has no diary entries to sync", who.Role)
}

// Pull page limits.
const (
	DefaultPullPageSize = 500
	MaxPullPageSize     = 1000
	// MaxPullPageBytes is roughly how much entry state one page carries;
	// a page stops early rather than grow past it (but always holds at
	// least one entry), so a page of large entries stays a few MiB.
	MaxPullPageBytes = 4 << 20
)

// PullPageSize returns the page size to use when n was asked for.
func PullPageSize(n uint32) int {
	switch {
	case n == 0:
		return DefaultPullPageSize
	case n > MaxPullPageSize:
		return MaxPullPageSize
	}
	return int(n)
}

// CheckCursor refuses a cursor a caller cannot have been given.
func CheckCursor(cursor int64) error {
	if cursor < 0 {
		return syncengine.Errorf(syncengine.EINVALID, "cursor must not be negative")
	}
	return nil
}

// ErrCursorAhead is the error for a cursor beyond the store's position:
// the store's data was replaced (restored from an older backup, or a new
// study at the same address), and the reader must start again. It is a
// *CursorAheadError, an ECONFLICT.
func ErrCursorAhead(cursor, head int64) error {
	return &CursorAheadError{Cursor: cursor, Head: head,
		Err: syncengine.Errorf(syncengine.ECONFLICT, "cursor %d is ahead of this server's position %d: the server's data was replaced; sync again from the start", cursor, head)}
}

// CursorAheadError says that a reader's cursor is beyond the store's
// position. It is the one error after which a device forgets what it
// pulled and pulls everything again, so the transport tells it apart
// from every other conflict.
type CursorAheadError struct {
	Cursor, Head int64
	Err          error // the ECONFLICT a person reads
}

func (e *CursorAheadError) Error() string { return e.Err.Error() }

// Unwrap returns the ECONFLICT.
func (e *CursorAheadError) Unwrap() error { return e.Err }

// MaxRemainingCount is how many waiting entries and removals past a page
// a pull counts when it was not asked for an exact count: beyond it,
// PullPage.Remaining is a lower bound. Counting everything on every page
// made a first sync cost the square of its size.
const MaxRemainingCount = 10000

// PullRequest asks for the page after a cursor.
type PullRequest struct {
	Cursor   int64
	PageSize uint32 // 0: the default; at most MaxPullPageSize
	// CountRemaining asks for an exact count of what waits after the
	// page, which costs time in proportion to it: a client asks once per
	// sync, on its first page.
	CountRemaining bool
	// MergedText says the reader's device merges text: the page's views
	// carry merged text where the reader may hold it (see Reader.View).
	MergedText bool
	// AwaitingApproval asks, when the page is the sync's last (More is
	// false), for the user's devices that wait for approval (up to
	// MaxAwaitingApproval, newest first) and how many there are, read in
	// the page's snapshot: a person sees at the end of a sync that a new
	// device asks to join their account.
	AwaitingApproval bool
	// OwnChanges is how many of the device's changes the server holds,
	// as the device knows it, when OwnChangesKnown: while it is the
	// store's count, a navigator's page leaves out the entries the
	// device holds exactly as the store does (see echo.go).
	OwnChanges      int64
	OwnChangesKnown bool
}

// StateHashRequest asks for the state hash of a reader's views.
type StateHashRequest struct {
	// MergedText hashes the views as a device that merges text holds
	// them (see PullRequest.MergedText).
	MergedText bool
}

// Removal tells a reader to drop an entry.
type Removal struct {
	Entry  syncengine.EntryID
	Reason RemovalReason
}

// PullPage is one page of what changed for a reader after a cursor.
type PullPage struct {
	Entries  []*syncengine.Entry // views for the reader
	Removals []Removal
	Next     int64 // the cursor to store with this page
	// Reads are a supervisor's read marks on the entries of the page
	// (only those ever marked).
	Reads []ReadState
	More  bool
	// Remaining is how many entries and removals wait after Next: exact
	// when RemainingExact, else a lower bound of MaxRemainingCount.
	Remaining      int64
	RemainingExact bool
	// Awaiting and AwaitingCount answer PullRequest.AwaitingApproval.
	Awaiting      []*Device
	AwaitingCount int
	// OwnChanges, on a navigator's last page, is how many changes of
	// the calling device the store holds, in the page's snapshot
	// (OwnChangesSet).
	OwnChanges    int64
	OwnChangesSet bool
}

// StateHash is the state hash of what a reader may see, and the position
// it reflects.
type StateHash struct {
	Sum     [32]byte
	Entries int
	Cursor  int64
}
