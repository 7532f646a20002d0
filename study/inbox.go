package study

import (
	"encoding/hex"
	"strings"
	"time"

	"github.com/diarysync/diarysync/syncengine"
)

// ReadMark is a supervisor's mark that they read an entry (or, with Read
// false, want it shown as unread again). Marks are kept on the server per
// supervisor, so an entry read in the console is read on their phone too.
// A mark is a last-writer-wins register per (supervisor, entry), stamped
// with the hybrid logical clock of the device or browser that made it.
type ReadMark struct {
	Entry syncengine.EntryID
	Read  bool
	Clock syncengine.Timestamp
}

// Newer reports whether m wins over o, the mark held so far: the later
// clock wins; at an equal clock, read wins over unread, so that replicas
// given the same marks in any order agree.
func (m ReadMark) Newer(o ReadMark) bool {
	return m.Clock > o.Clock || (m.Clock == o.Clock && m.Read && !o.Read)
}

// MaxReadMarks is the most marks one MarkRead may carry.
const MaxReadMarks = 1000

// CheckReadMarksSize refuses a batch of more than MaxReadMarks marks.
func CheckReadMarksSize(n int) error {
	if n > MaxReadMarks {
		return syncengine.Errorf(syncengine.ETOOLARGE, "at most %d read marks at once; this request has %d", MaxReadMarks, n)
	}
	return nil
}

// ReadTarget is what a store knows, inside its transaction, about the
// entry a mark is for.
type ReadTarget struct {
	// Visible says the entry is in the supervisor's feed now.
	Visible bool
	// Stored is the mark kept so far, or nil.
	Stored *ReadMark
}

// DecideReadMark applies the rules to one read mark: only a supervisor
// marks, only entries they may see now, with a clock not ahead of the
// server's; a mark older than the one kept changes nothing (a
// duplicate). It reports whether to keep the mark.
func DecideReadMark(who *Identity, m ReadMark, t ReadTarget, now time.Time) (ChangeResult, bool) {
	if who.Role != RoleSupervisor {
		return refusal(RefusedNotPermitted, "only supervisors mark entries read"), false
	}
	if err := syncengine.ValidateClock(m.Clock); err != nil {
		return refusalFor(err), false
	}
	if ahead := syncengine.TimestampAt(now.Add(MaxClockAhead)); m.Clock > ahead {
		return refusal(RefusedClockAhead, "the read mark's clock (%s) is ahead of the server's time (%s): correct the device clock offset and mark it again",
			m.Clock.Time().Format(time.RFC3339), now.UTC().Format(time.RFC3339)), false
	}
	if !t.Visible {
		return refusal(RefusedNotPermitted, "entry %s is not shared with you", m.Entry), false
	}
	if t.Stored != nil && !m.Newer(*t.Stored) {
		return ChangeResult{Outcome: OutcomeDuplicate}, false
	}
	return ChangeResult{Outcome: OutcomeApplied}, true
}

// ReadState is the read mark a supervisor holds on an entry, as pulls
// deliver it.
type ReadState struct {
	Entry syncengine.EntryID
	Read  bool
	Clock syncengine.Timestamp // 0: never marked
}

// Inbox page limits.
const (
	DefaultInboxPageSize = 25
	MaxInboxPageSize     = 100
	// InboxScanLimit bounds the entries one inbox page reads to fill
	// itself when a tag filter (which the store cannot index) leaves
	// most of them out; the page then ends early with a token to go on.
	InboxScanLimit = 2000
)

// InboxPageSize returns the page size to use when n was asked for.
func InboxPageSize(n uint32) int {
	switch {
	case n == 0:
		return DefaultInboxPageSize
	case n > MaxInboxPageSize:
		return MaxInboxPageSize
	}
	return int(n)
}

// InboxQuery filters and pages a supervisor's inbox: the entries shared
// with them now, newest date first.
type InboxQuery struct {
	Navigator string // a navigator's study code; "" for every navigator
	Tag       string // only entries with this tag
	From, To  string // dates, YYYY-MM-DD, inclusive; "" for open
	Unread    bool   // only entries not marked read
	PageSize  uint32
	PageToken string
}

// CheckInboxQuery refuses filters that are not well formed (EINVALID).
func CheckInboxQuery(q *InboxQuery) error {
	if q.Navigator != "" {
		if err := syncengine.ValidateStudyCode(q.Navigator); err != nil {
			return err
		}
	}
	if q.Tag != "" {
		if err := syncengine.ValidateTag(q.Tag); err != nil {
			return err
		}
	}
	for _, d := range []string{q.From, q.To} {
		if d != "" {
			if err := syncengine.ValidateDate(d); err != nil {
				return err
			}
		}
	}
	if q.From != "" && q.To != "" && q.To < q.From {
		return syncengine.Errorf(syncengine.EINVALID, "the date range ends (%s) before it starts (%s)", q.To, q.From)
	}
	return nil
}

// InboxItem is one entry of a supervisor's inbox: their view of it and
// whether they read it.
type InboxItem struct {
	Entry  *syncengine.Entry // the supervisor's view
	Read   bool
	ReadAt time.Time // when it was marked read; zero if unread
}

// Matches reports whether the item passes the query's filters, all of
// which a store may also apply itself before decoding.
func (q *InboxQuery) Matches(it *InboxItem) bool {
	e := it.Entry
	switch {
	case q.Navigator != "" && !strings.EqualFold(e.Author, q.Navigator):
		return false
	case q.Tag != "" && !e.HasTag(q.Tag):
		return false
	case q.From != "" && e.Date.Value < q.From:
		return false
	case q.To != "" && e.Date.Value > q.To:
		return false
	case q.Unread && it.Read:
		return false
	}
	return true
}

// InboxPage is one page of an inbox.
type InboxPage struct {
	Items []*InboxItem
	// Next is the token of the next page, "" on the last. A page may
	// hold fewer items than asked and still have a next page, when the
	// filters left out most of what it read (see InboxScanLimit).
	Next string
}

// InboxPager fills one inbox page from the rows a store reads, in the
// inbox's order and at most InboxScanLimit of them: it keeps the items
// the query matches until the page is full, and says where the next page
// starts, after the last item kept or, when the scan limit ended the
// read first, after the last row read.
type InboxPager struct {
	q        *InboxQuery
	size     int
	page     InboxPage
	scanned  int
	lastDate string
	lastID   syncengine.EntryID
}

// NewInboxPager starts a page of q (checked with CheckInboxQuery).
func NewInboxPager(q *InboxQuery) *InboxPager {
	return &InboxPager{q: q, size: InboxPageSize(q.PageSize)}
}

// Add takes the next row read: its item, date and id. It reports false
// once the page is full, when the store stops reading.
func (p *InboxPager) Add(it *InboxItem, date string, id syncengine.EntryID) bool {
	p.scanned++
	if p.q.Matches(it) {
		if len(p.page.Items) == p.size {
			last := p.page.Items[p.size-1].Entry
			p.page.Next = EncodeInboxToken(last.Date.Value, last.ID)
			return false
		}
		p.page.Items = append(p.page.Items, it)
	}
	p.lastDate, p.lastID = date, id
	return true
}

// Page returns the page once the rows are read (or Add said stop).
func (p *InboxPager) Page() *InboxPage {
	if p.page.Next == "" && p.scanned == InboxScanLimit {
		p.page.Next = EncodeInboxToken(p.lastDate, p.lastID)
	}
	return &p.page
}

// EncodeInboxToken makes the token of the inbox position after the entry
// with the given date and id (pages are ordered by date, then id, both
// descending).
func EncodeInboxToken(date string, id syncengine.EntryID) string {
	return EncodePageToken(date + "|" + hex.EncodeToString(id[:]))
}

// DecodeInboxToken returns the position an inbox token holds.
func DecodeInboxToken(tok string) (string, syncengine.EntryID, error) {
	s, err := DecodePageToken(tok)
	if err != nil {
		return "", syncengine.EntryID{}, err
	}
	date, h, ok := strings.Cut(s, "|")
	b, herr := hex.DecodeString(h)
	if !ok || herr != nil || len(b) != 16 || (date != "" && syncengine.ValidateDate(date) != nil) {
		return "", syncengine.EntryID{}, errPageToken
	}
	return date, syncengine.EntryID(b), nil
}

// AuditQuery filters and pages the audit log, newest first.
type AuditQuery struct {
	Actor   string // exact study code, or "system"
	Action  string // exact action, or a prefix ending in "." ("device.")
	Subject string // exact subject
	// Since and Until bound the time, inclusive and exclusive; zero for
	// open.
	Since, Until time.Time
	PageSize     uint32
	PageToken    string
}

// MaxAuditFilterBytes bounds each text filter of an audit query.
const MaxAuditFilterBytes = 128

// CheckAuditQuery refuses filters that are not well formed (EINVALID,
// or ETOOLARGE for one over MaxAuditFilterBytes).
func CheckAuditQuery(q *AuditQuery) error {
	for _, f := range []struct{ name, v string }{{"actor", q.Actor}, {"action", q.Action}, {"subject", q.Subject}} {
		if err := syncengine.ValidateText(f.name+" filter", f.v, MaxAuditFilterBytes, false); err != nil {
			return err
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return syncengine.Errorf(syncengine.EINVALID, "the time range ends before it starts")
	}
	return nil
}
