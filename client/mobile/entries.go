package mobile

import (
	"context"
	"strings"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/syncengine"
)

// StringList is a list of strings (an entry's tags): gomobile binds no
// slices but bytes.
type StringList struct {
	items []string
}

// NewStringList returns an empty list.
func NewStringList() *StringList { return &StringList{} }

// Add appends s.
func (l *StringList) Add(s string) { l.items = append(l.items, s) }

// Len returns the number of strings.
func (l *StringList) Len() int {
	if l == nil {
		return 0
	}
	return len(l.items)
}

// Get returns the i-th string, or "" when i is out of range.
func (l *StringList) Get(i int) string {
	if i < 0 || i >= l.Len() {
		return ""
	}
	return l.items[i]
}

func (l *StringList) slice() []string {
	if l == nil {
		return nil
	}
	return l.items
}

// Draft is a new entry.
type Draft struct {
	// Title is the entry's title.
	Title string
	// Body is the entry's text.
	Body string
	// Date is the day the entry is about, YYYY-MM-DD; empty means today.
	Date string
	// Mood is 0 (not recorded) or 1 to 10.
	Mood int
	// Tags are the entry's tags; nil means none.
	Tags *StringList
	// ShareSupervisor says the navigator's supervisors may see the
	// entry.
	ShareSupervisor bool
	// ShareResearch says the research team may see the entry.
	ShareResearch bool
}

// NewDraft returns an empty draft with an empty tag list.
func NewDraft() *Draft { return &Draft{Tags: NewStringList()} }

// Create writes a new entry and returns its id. It is on this device's
// disk when Create returns, and reaches the server at the next sync.
func (m *Client) Create(d *Draft) (string, error) {
	if d == nil {
		return "", &Error{Code: CodeInvalid, Message: "there is no draft to write"}
	}
	ctx, done, err := m.begin()
	if err != nil {
		return "", err
	}
	defer done()
	id, err := m.c.Create(ctx, client.Draft{Title: d.Title, Body: d.Body, Date: d.Date, Mood: d.Mood, Tags: d.Tags.slice(),
		ShareSupervisor: d.ShareSupervisor, ShareResearch: d.ShareResearch})
	if err != nil {
		return "", wrap(err)
	}
	return id.String(), nil
}

// Edit is a change to some fields of an entry: only the fields set
// through its methods change.
type Edit struct {
	e client.Edit
}

// NewEdit returns an edit that changes nothing yet.
func NewEdit() *Edit { return &Edit{} }

// SetTitle sets the title.
func (e *Edit) SetTitle(title string) { e.e.Title = &title }

// SetBody sets the whole body text. Where the server merges text, an
// edit that changes a part of the body is better made with SpliceBody,
// which keeps words written meanwhile on another device.
func (e *Edit) SetBody(body string) { e.e.Body = &body }

// SetDate sets the date the entry is about (YYYY-MM-DD).
func (e *Edit) SetDate(date string) { e.e.Date = &date }

// SetMood sets the mood (0 for not recorded, or 1 to 10).
func (e *Edit) SetMood(mood int) { e.e.Mood = &mood }

// AddTag adds a tag.
func (e *Edit) AddTag(tag string) { e.e.AddTags = append(e.e.AddTags, tag) }

// RemoveTag removes a tag.
func (e *Edit) RemoveTag(tag string) { e.e.RemoveTags = append(e.e.RemoveTags, tag) }

// SetShareSupervisor sets whether the navigator's supervisors may see
// the entry.
func (e *Edit) SetShareSupervisor(share bool) { e.e.ShareSupervisor = &share }

// SetShareResearch sets whether the research team may see the entry.
func (e *Edit) SetShareResearch(share bool) { e.e.ShareResearch = &share }

// Update applies an edit to one of this navigator's entries, in one
// durable write: every field changes or none does.
func (m *Client) Update(id string, e *Edit) error {
	if e == nil {
		return &Error{Code: CodeInvalid, Message: "there is no edit to make"}
	}
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error { return m.c.Update(ctx, eid, e.e) })
}

// SpliceBody edits an entry's body where the person typed: it deletes
// del characters at pos and inserts text there, pos and del counted in
// UTF-16 code units as Android's and iOS's text views count them. Edits
// made meanwhile on another device are merged with it, word for word. A
// position between the two halves of a surrogate pair is CodeInvalid.
func (m *Client) SpliceBody(id string, pos, del int, text string) error {
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error {
		return m.c.SpliceBodyUTF16(ctx, eid, pos, del, text)
	})
}

// Delete marks an entry deleted. The deletion syncs, so the entry does
// not come back from another device; Restore undoes it.
func (m *Client) Delete(id string) error {
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error { return m.c.Delete(ctx, eid) })
}

// Restore brings back a deleted entry.
func (m *Client) Restore(id string) error {
	no := false
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error {
		return m.c.Update(ctx, eid, client.Edit{Deleted: &no})
	})
}

// SetSharing sets who besides its author may see an entry.
func (m *Client) SetSharing(id string, supervisor, research bool) error {
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error {
		return m.c.SetSharing(ctx, eid, supervisor, research)
	})
}

// AddTag adds a tag to an entry.
func (m *Client) AddTag(id, tag string) error {
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error { return m.c.AddTag(ctx, eid, tag) })
}

// RemoveTag removes a tag from an entry.
func (m *Client) RemoveTag(id, tag string) error {
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error { return m.c.RemoveTag(ctx, eid, tag) })
}

// MarkRead marks an entry read or unread, for an inbox. It stays on this
// device.
func (m *Client) MarkRead(id string, read bool) error {
	return m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error { return m.c.MarkRead(ctx, eid, read) })
}

// WriteFeedback leaves a feedback note, as a supervisor, on an entry
// shared with them, and returns the note's id.
func (m *Client) WriteFeedback(entryID, body string) (string, error) {
	var fid syncengine.FeedbackID
	err := m.onEntry(entryID, func(ctx context.Context, eid syncengine.EntryID) error {
		var err error
		fid, err = m.c.WriteFeedback(ctx, eid, body)
		return err
	})
	if err != nil {
		return "", err
	}
	return fid.String(), nil
}

// EditFeedback replaces the text of one of this supervisor's notes.
func (m *Client) EditFeedback(entryID, feedbackID, body string) error {
	return m.onFeedback(entryID, feedbackID, func(ctx context.Context, eid syncengine.EntryID, fid syncengine.FeedbackID) error {
		return m.c.EditFeedback(ctx, eid, fid, body)
	})
}

// DeleteFeedback deletes one of this supervisor's notes.
func (m *Client) DeleteFeedback(entryID, feedbackID string) error {
	return m.onFeedback(entryID, feedbackID, func(ctx context.Context, eid syncengine.EntryID, fid syncengine.FeedbackID) error {
		return m.c.DeleteFeedback(ctx, eid, fid)
	})
}

func (m *Client) onEntry(id string, f func(context.Context, syncengine.EntryID) error) error {
	ctx, done, err := m.begin()
	if err != nil {
		return err
	}
	defer done()
	eid, err := parseEntryID(id)
	if err != nil {
		return err
	}
	return wrap(f(ctx, eid))
}

func (m *Client) onFeedback(entryID, feedbackID string, f func(context.Context, syncengine.EntryID, syncengine.FeedbackID) error) error {
	fid, err := syncengine.ParseFeedbackID(strings.TrimSpace(feedbackID))
	if err != nil {
		return &Error{Code: CodeInvalid, Message: "this is not a feedback note's id"}
	}
	return m.onEntry(entryID, func(ctx context.Context, eid syncengine.EntryID) error { return f(ctx, eid, fid) })
}

func parseEntryID(id string) (syncengine.EntryID, error) {
	eid, err := syncengine.ParseEntryID(strings.TrimSpace(id))
	if err != nil {
		return eid, &Error{Code: CodeInvalid, Message: "this is not an entry's id"}
	}
	return eid, nil
}

// Entry is a diary entry as an app shows it.
type Entry struct {
	// ID is the entry's id.
	ID string
	// Author is the study code of the navigator who wrote it.
	Author string
	// Title is the entry's title.
	Title string
	// Body is the entry's text.
	Body string
	// Date is the day the entry is about, YYYY-MM-DD, or empty.
	Date string
	// Mood is 0 (not recorded) or 1 to 10.
	Mood int
	// Tags are the entry's tags, in order.
	Tags *StringList
	// ShareSupervisor says the navigator's supervisors may see it.
	ShareSupervisor bool
	// ShareResearch says the research team may see it.
	ShareResearch bool
	// Deleted says it is deleted (Restore brings it back).
	Deleted bool
	// BodyConcurrent says the body holds edits made on two or more
	// devices that had not seen each other's, merged, and nobody has
	// edited it since: what an app shows as "edited on two devices".
	BodyConcurrent bool
	// Pending counts its changes the server has not accepted yet.
	Pending int
	// CreatedAtMillis is when it was written first.
	CreatedAtMillis int64
	// UpdatedAtMillis is when it was last changed.
	UpdatedAtMillis int64
	// ReceivedAtMillis is when this device first got it.
	ReceivedAtMillis int64
	// ReadAtMillis is when it was marked read on this device; 0: unread.
	ReadAtMillis int64
	// Snippet, in search results, is the part of the text that matched,
	// the words found between [ and ]; empty in other lists.
	Snippet  string
	feedback []*Feedback
}

// FeedbackCount returns how many feedback notes the entry has.
func (e *Entry) FeedbackCount() int { return len(e.feedback) }

// Feedback returns the i-th feedback note, oldest first, or nil when i is
// out of range.
func (e *Entry) Feedback(i int) *Feedback {
	if i < 0 || i >= len(e.feedback) {
		return nil
	}
	return e.feedback[i]
}

// Feedback is a supervisor's note on an entry.
type Feedback struct {
	// ID is the note's id.
	ID string
	// Author is the study code of the supervisor who wrote it.
	Author string
	// Body is the note's text.
	Body string
	// CreatedAtMillis is when it was written.
	CreatedAtMillis int64
	// UpdatedAtMillis is when it was last changed.
	UpdatedAtMillis int64
}

func entryOf(e *client.Entry) *Entry {
	out := &Entry{ID: e.ID.String(), Author: e.Author, Title: e.Title, Body: e.Body, Date: e.Date, Mood: e.Mood,
		Tags: &StringList{items: e.Tags}, ShareSupervisor: e.ShareSupervisor, ShareResearch: e.ShareResearch, Deleted: e.Deleted,
		BodyConcurrent: e.BodyConcurrent, Pending: e.Pending, CreatedAtMillis: millis(e.CreatedAt), UpdatedAtMillis: millis(e.UpdatedAt),
		ReceivedAtMillis: millis(e.ReceivedAt), ReadAtMillis: millis(e.ReadAt)}
	for _, f := range e.Feedback {
		out.feedback = append(out.feedback, &Feedback{ID: f.ID.String(), Author: f.Author, Body: f.Body,
			CreatedAtMillis: millis(f.CreatedAt), UpdatedAtMillis: millis(f.UpdatedAt)})
	}
	return out
}

// Get returns one entry.
func (m *Client) Get(id string) (*Entry, error) {
	var out *Entry
	err := m.onEntry(id, func(ctx context.Context, eid syncengine.EntryID) error {
		e, err := m.c.Get(ctx, eid)
		if err == nil {
			out = entryOf(e)
		}
		return err
	})
	return out, err
}

// Sharing filters of Query.Sharing.
const (
	SharingAny       = 0 // no filter
	SharedSupervisor = 1 // shared with supervisors
	SharedResearch   = 2 // shared for research
	SharedWithAnyone = 3 // shared with supervisors or for research
	SharedWithNoone  = 4 // private
)

// Deleted filters of Query.Deleted.
const (
	HideDeleted = 0 // the default: deleted entries are left out
	OnlyDeleted = 1
	WithDeleted = 2
)

// Query selects and pages entries, newest date first.
type Query struct {
	// Text, when set, keeps only the entries whose title, body or tags
	// hold every word of it (the last word also as the start of a word),
	// and gives each a Snippet.
	Text string
	// From keeps only the entries dated on or after it (YYYY-MM-DD);
	// empty means no bound.
	From string
	// To keeps only the entries dated on or before it (YYYY-MM-DD);
	// empty means no bound.
	To string
	// Tag keeps only the entries with this tag.
	Tag string
	// Sharing is a Sharing constant: SharingAny, SharedSupervisor,
	// SharedResearch, SharedWithAnyone or SharedWithNoone.
	Sharing int
	// Deleted is HideDeleted, OnlyDeleted or WithDeleted.
	Deleted int
	// Unread keeps only the entries not marked read.
	Unread bool
	// Limit is the page size (default 50, at most 1000).
	Limit int
	// PageToken is the previous page's Next; empty for the first page.
	PageToken string
}

// NewQuery returns a query of the newest entries, 50 a page.
func NewQuery() *Query { return &Query{} }

func (q *Query) options() (client.ListOptions, error) {
	if q == nil {
		return client.ListOptions{}, nil
	}
	if q.Sharing < SharingAny || q.Sharing > SharedWithNoone {
		return client.ListOptions{}, &Error{Code: CodeInvalid, Message: "the sharing filter is not one of SharingAny, SharedSupervisor, SharedResearch, SharedWithAnyone, SharedWithNoone"}
	}
	if q.Deleted < HideDeleted || q.Deleted > WithDeleted {
		return client.ListOptions{}, &Error{Code: CodeInvalid, Message: "the deleted filter is not one of HideDeleted, OnlyDeleted, WithDeleted"}
	}
	return client.ListOptions{From: q.From, To: q.To, Tag: q.Tag, Sharing: client.Sharing(q.Sharing), Deleted: client.DeletedFilter(q.Deleted),
		Unread: q.Unread, Limit: q.Limit, PageToken: q.PageToken}, nil
}

func (q *Query) text() string {
	if q == nil {
		return ""
	}
	return q.Text
}

// EntryPage is one page of entries.
type EntryPage struct {
	entries []*Entry
	// Next is the PageToken of the next page; empty on the last page.
	Next string
}

// Len returns the number of entries on the page.
func (p *EntryPage) Len() int { return len(p.entries) }

// Get returns the i-th entry, or nil when i is out of range.
func (p *EntryPage) Get(i int) *Entry {
	if i < 0 || i >= len(p.entries) {
		return nil
	}
	return p.entries[i]
}

func listPageOf(p *client.ListPage) *EntryPage {
	out := &EntryPage{Next: p.Next}
	for _, e := range p.Entries {
		out.entries = append(out.entries, entryOf(e))
	}
	return out
}

func searchPageOf(p *client.SearchPage) *EntryPage {
	out := &EntryPage{Next: p.Next}
	for _, h := range p.Hits {
		e := entryOf(h.Entry)
		e.Snippet = h.Snippet
		out.entries = append(out.entries, e)
	}
	return out
}

// List returns a page of the entries q selects (nil: the newest), newest
// date first.
func (m *Client) List(q *Query) (*EntryPage, error) {
	ctx, done, err := m.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	o, err := q.options()
	if err != nil {
		return nil, err
	}
	if t := q.text(); t != "" {
		p, err := m.c.Search(ctx, client.SearchOptions{Query: t, ListOptions: o})
		if err != nil {
			return nil, wrap(err)
		}
		return searchPageOf(p), nil
	}
	p, err := m.c.List(ctx, o)
	if err != nil {
		return nil, wrap(err)
	}
	return listPageOf(p), nil
}

// Inbox returns a page of the entries not marked read, newest first: a
// supervisor's inbox.
func (m *Client) Inbox(limit int, pageToken string) (*EntryPage, error) {
	return m.List(&Query{Unread: true, Limit: limit, PageToken: pageToken})
}

// Count returns how many entries q selects over all its pages (its Limit
// and PageToken aside); with Unread set, an inbox's badge. A query with
// Text is counted as its pages are: ask List for them.
func (m *Client) Count(q *Query) (n int, err error) {
	ctx, done, err := m.begin()
	if err != nil {
		return 0, err
	}
	defer done()
	if q.text() != "" {
		return 0, &Error{Code: CodeInvalid, Message: "search results are not counted: page through them with List"}
	}
	o, err := q.options()
	if err != nil {
		return 0, err
	}
	n, err = m.c.CountEntries(ctx, o)
	return n, wrap(err)
}
