package client

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/diarysync/diarysync/internal/wire"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
)

// Entry is a diary entry as an app shows it.
type Entry struct {
	ID              syncengine.EntryID
	Author          string // study code of the navigator who wrote it
	Title           string
	Body            string
	Date            string // YYYY-MM-DD, or empty
	Mood            int    // 0 (not recorded) or 1 to 10
	Tags            []string
	ShareSupervisor bool
	ShareResearch   bool
	Deleted         bool
	CreatedAt       time.Time // clock of the first write
	UpdatedAt       time.Time // clock of the last write to the entry itself
	Pending         int       // local changes the server has not accepted yet
	ReceivedAt      time.Time // when this replica first got it
	ReadAt          time.Time // when it was marked read (zero: unread)
	// BodyConcurrent says the body holds edits made on two or more
	// devices that had not seen each other's, merged, and nobody has
	// edited it since: what an app shows as "edited on two devices".
	BodyConcurrent bool
	Feedback       []Feedback

	// State is the merged state with every register's clock, for apps
	// that need it.
	State *syncengine.Entry
}

// Feedback is a supervisor's note on an entry.
type Feedback struct {
	ID        syncengine.FeedbackID
	Author    string // study code of the supervisor
	Body      string
	CreatedAt time.Time
	UpdatedAt time.Time
	// BodyConcurrent is Entry.BodyConcurrent for the note, on the
	// devices of the supervisor who wrote it.
	BodyConcurrent bool
}

func entryFromState(e *syncengine.Entry) *Entry {
	out := &Entry{
		ID:              e.ID,
		Author:          e.Author,
		Title:           e.Title.Value,
		Body:            e.Body.Value,
		Date:            e.Date.Value,
		Mood:            int(e.Mood.Value),
		Tags:            e.TagNames(),
		ShareSupervisor: e.ShareSupervisor.Value,
		ShareResearch:   e.ShareResearch.Value,
		Deleted:         e.Deleted.Value,
		BodyConcurrent:  e.BodyText != nil && e.BodyText.Concurrent(),
		State:           e,
	}
	if e.Created != 0 {
		out.CreatedAt = e.Created.Time()
	}
	if u := e.Updated(); u != 0 {
		out.UpdatedAt = u.Time()
	}
	for _, f := range e.Feedback {
		if f.Deleted.Value {
			continue
		}
		out.Feedback = append(out.Feedback, Feedback{ID: f.ID, Author: f.Author, Body: f.Body.Value, CreatedAt: f.Created.Time(), UpdatedAt: f.Body.Clock.Time(),
			BodyConcurrent: f.BodyText != nil && f.BodyText.Concurrent()})
	}
	return out
}

// Draft is a new entry.
type Draft struct {
	Title           string
	Body            string
	Date            string // YYYY-MM-DD; empty means today
	Mood            int
	Tags            []string
	ShareSupervisor bool
	ShareResearch   bool
}

// Edit changes some fields of an entry; nil fields stay as they are.
// Body is the whole new text, as a text field hands it over: the client
// sends the edit from the text the replica holds to it, which merges with
// edits made meanwhile on other devices.
type Edit struct {
	Title *string
	Body  *string
	// BodyBase, when set with Body, is the text the app showed when the
	// person began to edit (the Body that Get returned then). If the
	// body has changed since (a sync merged in an edit made on another
	// device), the edit from BodyBase to Body is made on the body as it is
	// now (syncengine.Rebase), so that the other edit stays.
	BodyBase        *string
	Date            *string
	Mood            *int
	AddTags         []string
	RemoveTags      []string
	ShareSupervisor *bool
	ShareResearch   *bool
	Deleted         *bool
}

// Create writes a new entry and returns its id. It is durable when Create
// returns, and reaches the server on the next sync.
func (c *Client) Create(ctx context.Context, d Draft) (syncengine.EntryID, error) {
	id, err := c.newID()
	if err != nil {
		return syncengine.EntryID{}, err
	}
	if d.Date == "" {
		d.Date = c.opts.Now().Format(time.DateOnly)
	}
	changes := d.Changes(id)
	if err := c.write(ctx, changes, true); err != nil {
		return syncengine.EntryID{}, err
	}
	return syncengine.EntryID(id), nil
}

// Update applies an edit to an entry of this navigator.
func (c *Client) Update(ctx context.Context, id syncengine.EntryID, e Edit) error {
	changes := e.Changes(id)
	if len(changes) == 0 {
		return syncengine.Errorf(syncengine.EINVALID, "nothing to change")
	}
	if e.Body != nil && e.BodyBase != nil {
		for i := range changes {
			if changes[i].Field == syncengine.FieldBody {
				return c.write(ctx, changes, false, &splice{index: i, base: e.BodyBase})
			}
		}
	}
	return c.write(ctx, changes, false)
}

// Changes returns the field-level changes that create entry id from the
// draft, not yet stamped: title, body and date always, the rest when set.
// Create fills in an empty Date with today first. With a server that
// merges text, Create queues the body as a text edit, and none for an
// empty body.
func (d Draft) Changes(id syncengine.EntryID) []syncengine.Change {
	changes := []syncengine.Change{
		{Entry: id, Field: syncengine.FieldTitle, Text: d.Title},
		{Entry: id, Field: syncengine.FieldBody, Text: d.Body},
		{Entry: id, Field: syncengine.FieldDate, Text: d.Date},
	}
	if d.Mood != 0 {
		changes = append(changes, syncengine.Change{Entry: id, Field: syncengine.FieldMood, Number: int64(d.Mood)})
	}
	for _, t := range d.Tags {
		changes = append(changes, syncengine.Change{Entry: id, Field: syncengine.FieldTag, Tag: t, Flag: true})
	}
	if d.ShareSupervisor {
		changes = append(changes, syncengine.Change{Entry: id, Field: syncengine.FieldShareSupervisor, Flag: true})
	}
	if d.ShareResearch {
		changes = append(changes, syncengine.Change{Entry: id, Field: syncengine.FieldShareResearch, Flag: true})
	}
	return changes
}

// Changes returns the field-level changes the edit makes to entry id, not
// yet stamped, one per field set and per tag added or removed. With a
// server that merges text, Update queues the body as a text edit, and
// none when it is the text the entry already has.
func (e Edit) Changes(id syncengine.EntryID) []syncengine.Change {
	var changes []syncengine.Change
	add := func(ch syncengine.Change) {
		ch.Entry = id
		changes = append(changes, ch)
	}
	if e.Title != nil {
		add(syncengine.Change{Field: syncengine.FieldTitle, Text: *e.Title})
	}
	if e.Body != nil {
		add(syncengine.Change{Field: syncengine.FieldBody, Text: *e.Body})
	}
	if e.Date != nil {
		add(syncengine.Change{Field: syncengine.FieldDate, Text: *e.Date})
	}
	if e.Mood != nil {
		add(syncengine.Change{Field: syncengine.FieldMood, Number: int64(*e.Mood)})
	}
	for _, t := range e.AddTags {
		add(syncengine.Change{Field: syncengine.FieldTag, Tag: t, Flag: true})
	}
	for _, t := range e.RemoveTags {
		add(syncengine.Change{Field: syncengine.FieldTag, Tag: t, Flag: false})
	}
	if e.ShareSupervisor != nil {
		add(syncengine.Change{Field: syncengine.FieldShareSupervisor, Flag: *e.ShareSupervisor})
	}
	if e.ShareResearch != nil {
		add(syncengine.Change{Field: syncengine.FieldShareResearch, Flag: *e.ShareResearch})
	}
	if e.Deleted != nil {
		add(syncengine.Change{Field: syncengine.FieldDeleted, Flag: *e.Deleted})
	}
	return changes
}

// Delete marks an entry deleted. The deletion syncs like any edit, so the
// entry cannot come back from another device; Update with Deleted false
// restores it.
func (c *Client) Delete(ctx context.Context, id syncengine.EntryID) error {
	t := true
	return c.Update(ctx, id, Edit{Deleted: &t})
}

// SetSharing sets both sharing flags of an entry.
func (c *Client) SetSharing(ctx context.Context, id syncengine.EntryID, supervisor, research bool) error {
	return c.Update(ctx, id, Edit{ShareSupervisor: &supervisor, ShareResearch: &research})
}

// AddTag adds a tag to an entry.
func (c *Client) AddTag(ctx context.Context, id syncengine.EntryID, tag string) error {
	return c.Update(ctx, id, Edit{AddTags: []string{tag}})
}

// RemoveTag removes a tag from an entry.
func (c *Client) RemoveTag(ctx context.Context, id syncengine.EntryID, tag string) error {
	return c.Update(ctx, id, Edit{RemoveTags: []string{tag}})
}

// WriteFeedback leaves a new feedback note, as a supervisor, on an entry
// shared with them, and returns its id.
func (c *Client) WriteFeedback(ctx context.Context, entry syncengine.EntryID, body string) (syncengine.FeedbackID, error) {
	id, err := c.newID()
	if err != nil {
		return syncengine.FeedbackID{}, err
	}
	err = c.write(ctx, []syncengine.Change{{Entry: entry, Field: syncengine.FieldFeedbackBody, Feedback: id, Text: body}}, false)
	return id, err
}

// EditFeedback sets the text of one of this supervisor's feedback notes,
// which merges, as an entry's body does, with edits made meanwhile on
// their other devices.
func (c *Client) EditFeedback(ctx context.Context, entry syncengine.EntryID, id syncengine.FeedbackID, body string) error {
	return c.write(ctx, []syncengine.Change{{Entry: entry, Field: syncengine.FieldFeedbackBody, Feedback: id, Text: body}}, false)
}

// DeleteFeedback deletes one of this supervisor's feedback notes.
func (c *Client) DeleteFeedback(ctx context.Context, entry syncengine.EntryID, id syncengine.FeedbackID) error {
	return c.write(ctx, []syncengine.Change{{Entry: entry, Field: syncengine.FieldFeedbackDeleted, Feedback: id, Flag: true}}, false)
}

var errNotFound = func(id syncengine.EntryID) error {
	return syncengine.Errorf(syncengine.ENOTFOUND, "no entry %s on this device", id)
}

// SpliceBody replaces del characters of an entry's body at pos with
// text, as an edit made on this device: positions count Unicode code
// points. It merges, as every body edit does, with edits made meanwhile
// on other devices. A position outside the body is EINVALID.
func (c *Client) SpliceBody(ctx context.Context, id syncengine.EntryID, pos, del int, text string) error {
	return c.write(ctx, []syncengine.Change{{Entry: id, Field: syncengine.FieldBody}}, false, &splice{pos: pos, del: del, text: text})
}

// SpliceBodyUTF16 is SpliceBody with pos and del counted in UTF-16 code
// units, as phone text views count them. A position between the two
// halves of a surrogate pair is EINVALID.
func (c *Client) SpliceBodyUTF16(ctx context.Context, id syncengine.EntryID, pos16, del16 int, text string) error {
	return c.write(ctx, []syncengine.Change{{Entry: id, Field: syncengine.FieldBody}}, false, &splice{pos: pos16, del: del16, text: text, units16: true})
}

// splice is an edit an app makes to a body directly, instead of handing
// over the whole text; or, with base, the text a whole-text edit was
// made on. It applies to the index-th change of a write.
type splice struct {
	index    int
	pos, del int
	text     string
	units16  bool
	base     *string
}

func (sp *splice) edit(d *syncengine.TextDoc, s syncengine.Stamp) (*syncengine.TextChange, error) {
	if sp.units16 {
		return d.SpliceUTF16(s, sp.pos, sp.del, sp.text)
	}
	return d.Splice(s, sp.pos, sp.del, sp.text)
}

// writeChecked stamps, validates and applies changes locally, and queues them in
// the outbox, all in one durable transaction: either every change is
// written or none is. A body (or feedback body) is queued as the text
// edit from the text the replica holds (or as sp, for the one change of
// a splice), when the server merges text; a body set to the text it has
// queues nothing.
func (c *Client) writeChecked(ctx context.Context, changes []syncengine.Change, create bool, sp ...*splice) error {
	_, p, err := c.rpcs()
	if err != nil {
		return err
	}
	feedback := changes[0].Field.IsFeedback()
	switch {
	case p.Role == study.RoleNavigator && feedback:
		return syncengine.Errorf(syncengine.EPERMISSION, "navigators cannot write feedback")
	case p.Role == study.RoleSupervisor && !feedback:
		return syncengine.Errorf(syncengine.EPERMISSION, "only the navigator who wrote an entry can change it")
	case p.Role != study.RoleNavigator && p.Role != study.RoleSupervisor:
		return syncengine.Errorf(syncengine.EPERMISSION, "a %s cannot write entries or feedback", p.Role)
	}
	queued := 0
	err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		states := map[syncengine.EntryID]*localEntry{}
		for i := range changes {
			ch := &changes[i]
			le := states[ch.Entry]
			if le == nil {
				var err error
				if le, err = loadLocal(ctx, tx, ch.Entry); err != nil {
					return err
				}
				switch {
				case le == nil && create:
					le = &localEntry{state: &syncengine.Entry{ID: ch.Entry}}
				case le == nil:
					return errNotFound(ch.Entry)
				case create:
					return syncengine.Errorf(syncengine.EEXISTS, "entry %s already exists", ch.Entry)
				}
				states[ch.Entry] = le
			}
			if !feedback && le.state.Author != "" && le.state.Author != p.StudyCode {
				return syncengine.Errorf(syncengine.EPERMISSION, "entry %s belongs to %s; only they can change it", ch.Entry, le.state.Author)
			}
			if feedback {
				if f := le.state.FindFeedback(ch.Feedback); f != nil && f.Author != p.StudyCode {
					return syncengine.Errorf(syncengine.EPERMISSION, "feedback %s was written by %s; only they can change it", ch.Feedback, f.Author)
				} else if f == nil && ch.Field != syncengine.FieldFeedbackBody {
					return syncengine.Errorf(syncengine.ENOTFOUND, "no feedback %s on entry %s", ch.Feedback, ch.Entry)
				}
			}
			ch.Stamp = syncengine.Stamp{Clock: c.stamp(), Replica: p.Replica}
			ch.Author = p.StudyCode
			var edit *splice
			if len(sp) > 0 && i == sp[0].index {
				edit = sp[0]
			}
			if edit != nil && edit.base != nil {
				// A whole text made on an older text: the edit, made on
				// the text as it is now.
				if cur := textOf(le.state, keyOf(ch)); cur != *edit.base {
					ch.Text = syncengine.Rebase(*edit.base, ch.Text, cur)
				}
				edit = nil
			}
			if isText(ch.Field) {
				if le.whole == nil {
					le.whole = map[docKey]bool{}
					if le.before > 0 { // only an entry with changes queued can have whole texts queued
						rows, err := entryOutbox(ctx, tx, ch.Entry)
						if err != nil {
							return err
						}
						le.whole = wholePending(rows)
					}
				}
				if c.mergedText() && !le.whole[keyOf(ch)] {
					if err := c.editText(le, ch, edit); err != nil {
						return err
					}
					if ch.TextEdit == nil {
						continue // the text is already as asked
					}
				} else {
					cur := textOf(le.state, keyOf(ch))
					if edit != nil {
						text, err := spliceString(cur, edit.pos, edit.del, edit.text, edit.units16)
						if err != nil {
							return err
						}
						ch.Text = text
					}
					if ch.Text == cur && (!create || cur != "") {
						continue // the text is already as asked
					}
					le.whole[keyOf(ch)] = true
				}
			}
			if ch.TextEdit == nil {
				if err := syncengine.ValidateChange(ch); err != nil {
					return err
				}
				if err := le.state.Admits(ch); err != nil {
					return err
				}
				le.state.Apply(ch)
			}
			le.pending++
			queued++
			// Every change of this save names it by the clock of its
			// first change, so that the server counts one revision.
			pc := wire.ChangeToProto(ch)
			pc.Write = uint64(changes[0].Clock)
			b, err := proto.Marshal(pc)
			if err != nil {
				return fmt.Errorf("cannot encode change: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (entry, clock, change, text) VALUES (?, ?, ?, ?)`, ch.Entry[:], int64(ch.Clock), b, ch.TextEdit != nil); err != nil {
				return fmt.Errorf("cannot queue change: %w", err)
			}
		}
		w, err := newEntryWriter(ctx, tx)
		if err != nil {
			return err
		}
		defer w.close()
		for _, le := range states {
			if le.exists && le.pending == le.before {
				continue // nothing queued for it
			}
			if err := w.store(ctx, le, c.opts.Now(), !le.exists); err != nil {
				return err
			}
		}
		return saveClock(ctx, tx, c.clock.Last())
	})
	if err != nil {
		return err
	}
	if queued == 0 {
		return nil
	}
	c.watchers.notify(EventEntries)
	c.watchers.notify(EventStatus)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// editText makes ch (a body or feedback body set to ch.Text, or edited by
// sp) a text edit of le's state, merging it into the state; it leaves
// ch.TextEdit nil when the text is already as asked.
func (c *Client) editText(le *localEntry, ch *syncengine.Change, sp *splice) error {
	if sp == nil {
		// The whole text is checked as a whole value would be, so that
		// an app gets the same errors either way.
		if err := syncengine.ValidateChange(ch); err != nil {
			return err
		}
	} else if err := syncengine.ValidateText("text", sp.text, syncengine.MaxBodyBytes, true); err != nil {
		return err
	}
	if err := le.state.Admits(ch); err != nil {
		return err
	}
	text := ch.Text
	ch.Text = ""
	err := le.state.EditText(ch, func(d *syncengine.TextDoc) (*syncengine.TextChange, error) {
		if sp != nil {
			return sp.edit(d, ch.Stamp)
		}
		return d.SetText(ch.Stamp, text)
	})
	if err != nil {
		ch.Text = text
		if syncengine.ErrorCode(err) == syncengine.EINTERNAL {
			return fmt.Errorf("entry %s: stored state: %w", ch.Entry, err)
		}
		return err
	}
	if ch.TextEdit == nil {
		return nil
	}
	return syncengine.ValidateChange(ch)
}

func saveClock(ctx context.Context, tx *sql.Tx, last syncengine.Timestamp) error {
	if _, err := tx.ExecContext(ctx, `UPDATE clock SET last = max(last, ?) WHERE id = 1`, int64(last)); err != nil {
		return fmt.Errorf("cannot save clock: %w", err)
	}
	return nil
}

// localEntry is an entries row being worked on.
type localEntry struct {
	exists  bool
	base    *syncengine.Entry // nil: the server has not sent it
	state   *syncengine.Entry
	pending int
	before  int             // pending when loaded
	whole   map[docKey]bool // texts with whole-text writes queued (see wholePending)
}

func loadLocal(ctx context.Context, tx *sql.Tx, id syncengine.EntryID) (*localEntry, error) {
	var base, state []byte
	le := &localEntry{exists: true}
	err := tx.QueryRowContext(ctx, `SELECT base, state, pending FROM entries WHERE id = ?`, id[:]).Scan(&base, &state, &le.pending)
	le.before = le.pending
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read entry: %w", err)
	}
	if le.state, err = syncengine.DecodeEntryLazy(state); err != nil {
		return nil, fmt.Errorf("entry %s: stored state: %w", id, err)
	}
	if base != nil {
		if le.base, err = syncengine.DecodeEntryLazy(base); err != nil {
			return nil, fmt.Errorf("entry %s: stored base: %w", id, err)
		}
	}
	return le, nil
}

// entryWriter writes entries rows and their tags with statements
// prepared once per transaction: SQLite spends most of a small write
// parsing its SQL, and a pulled page writes a thousand entries.
type entryWriter struct {
	tx                      *sql.Tx
	upsert, delTags, insTag *sql.Stmt
	search                  *searchWriter
}

func newEntryWriter(ctx context.Context, tx *sql.Tx) (*entryWriter, error) {
	w := &entryWriter{tx: tx}
	var err error
	if w.upsert, err = tx.PrepareContext(ctx, `INSERT INTO entries (id, base, state, author, date, deleted, share_supervisor, share_research, created, updated, pending, received_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET base = excluded.base, state = excluded.state, author = excluded.author, date = excluded.date,
			deleted = excluded.deleted, share_supervisor = excluded.share_supervisor, share_research = excluded.share_research,
			created = excluded.created, updated = excluded.updated, pending = excluded.pending`); err != nil {
		return nil, fmt.Errorf("cannot prepare entry write: %w", err)
	}
	if w.delTags, err = tx.PrepareContext(ctx, `DELETE FROM entry_tags WHERE entry = ?`); err != nil {
		return nil, fmt.Errorf("cannot prepare entry write: %w", err)
	}
	if w.insTag, err = tx.PrepareContext(ctx, `INSERT INTO entry_tags (tag, entry) VALUES (?, ?)`); err != nil {
		return nil, fmt.Errorf("cannot prepare entry write: %w", err)
	}
	if w.search, err = newSearchWriter(ctx, tx); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// store writes the entry; fresh says the row is known not to exist yet,
// so it has no tags to clear.
func (w *entryWriter) store(ctx context.Context, le *localEntry, now time.Time, fresh bool) error {
	e := le.state
	enc := syncengine.EncodeEntry(e)
	var base []byte
	switch {
	case le.base == e:
		base = enc
	case le.base != nil:
		base = syncengine.EncodeEntry(le.base)
	}
	if _, err := w.upsert.ExecContext(ctx, e.ID[:], base, enc, e.Author, e.Date.Value, e.Deleted.Value, e.ShareSupervisor.Value, e.ShareResearch.Value,
		int64(e.Created), int64(e.Updated()), le.pending, now.UnixMilli()); err != nil {
		return fmt.Errorf("cannot store entry: %w", err)
	}
	if !fresh {
		if _, err := w.delTags.ExecContext(ctx, e.ID[:]); err != nil {
			return fmt.Errorf("cannot store tags: %w", err)
		}
	}
	for i := range e.Tags {
		if e.Tags[i].Present {
			if _, err := w.insTag.ExecContext(ctx, e.Tags[i].Name, e.ID[:]); err != nil {
				return fmt.Errorf("cannot store tags: %w", err)
			}
		}
	}
	return w.search.index(ctx, e)
}

func (w *entryWriter) close() {
	for _, s := range []*sql.Stmt{w.upsert, w.delTags, w.insTag} {
		if s != nil {
			s.Close()
		}
	}
	if w.search != nil {
		w.search.close()
	}
}

func deleteLocal(ctx context.Context, tx *sql.Tx, id syncengine.EntryID) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM entries WHERE id = ?`, id[:]); err != nil {
		return fmt.Errorf("cannot drop entry: %w", err)
	}
	return nil
}

const entryColumns = `state, pending, received_at, read_at`

func scanEntry(row interface{ Scan(...any) error }, extra ...any) (*Entry, error) {
	var (
		state    []byte
		pending  int
		received int64
		read     sql.NullInt64
	)
	if err := row.Scan(append([]any{&state, &pending, &received, &read}, extra...)...); err != nil {
		return nil, err
	}
	s, err := syncengine.DecodeEntryLazy(state)
	if err != nil {
		return nil, fmt.Errorf("stored state: %w", err)
	}
	e := entryFromState(s)
	e.Pending = pending
	if received > 0 {
		e.ReceivedAt = time.UnixMilli(received).UTC()
	}
	if read.Valid {
		e.ReadAt = time.UnixMilli(read.Int64).UTC()
	}
	return e, nil
}

// getChecked is Get without the check for a damaged replica.
func (c *Client) getChecked(ctx context.Context, id syncengine.EntryID) (*Entry, error) {
	e, err := scanEntry(c.db.Read.QueryRowContext(ctx, `SELECT `+entryColumns+` FROM entries WHERE id = ?`, id[:]))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read entry %s: %w", id, err)
	}
	return e, nil
}

// Sharing selects entries by their sharing flags.
type Sharing int

// Sharing filters.
const (
	SharingAny       Sharing = iota // no filter
	SharedSupervisor                // shared with supervisors
	SharedResearch                  // shared for research
	SharedWithAnyone                // shared with supervisors or research
	SharedWithNoone                 // private
)

// DeletedFilter selects entries by their deleted flag.
type DeletedFilter int

// Deleted filters.
const (
	HideDeleted DeletedFilter = iota // the default: deleted entries are left out
	OnlyDeleted
	WithDeleted
)

// ListOptions filters and pages List.
type ListOptions struct {
	From, To  string // dates, YYYY-MM-DD, inclusive; empty means open
	Tag       string // only entries with this tag
	Sharing   Sharing
	Deleted   DeletedFilter
	Unread    bool   // only entries not marked read
	Limit     int    // default 50, at most 1000
	PageToken string // from the previous page's ListPage.Next
}

// ListPage is one page of entries, newest date first.
type ListPage struct {
	Entries []*Entry
	Next    string // token for the next page; empty on the last page
}

// listChecked is List without the check for a damaged replica.
func (c *Client) listChecked(ctx context.Context, o ListOptions) (*ListPage, error) {
	limit := o.Limit
	switch {
	case limit <= 0:
		limit = 50
	case limit > 1000:
		limit = 1000
	}
	where, args, err := listFilter(o)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + entryColumns + `, date, id FROM entries`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY date DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := c.db.Read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("cannot list entries: %w", err)
	}
	defer rows.Close()
	page := &ListPage{}
	var lastDate string
	var lastID []byte
	for rows.Next() {
		if len(page.Entries) == limit {
			page.Next = encodeListToken(lastDate, lastID)
			break
		}
		e, err := scanEntry(rows, &lastDate, &lastID)
		if err != nil {
			return nil, fmt.Errorf("cannot list entries: %w", err)
		}
		page.Entries = append(page.Entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cannot list entries: %w", err)
	}
	return page, nil
}

func encodeListToken(date string, id []byte) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte(date+"|"), id...))
}

func decodeListToken(tok string) (string, []byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		if date, id, ok := strings.Cut(string(b), "|"); ok && len(id) == 16 {
			return date, []byte(id), nil
		}
	}
	return "", nil, syncengine.Errorf(syncengine.EINVALID, "page token is not one this replica issued")
}

// markReadChecked is MarkRead without the check for a damaged replica.
func (c *Client) markReadChecked(ctx context.Context, id syncengine.EntryID, read bool) error {
	_, p, err := c.rpcs()
	if err != nil {
		return err
	}
	if p.Role != study.RoleSupervisor {
		return syncengine.Errorf(syncengine.EPERMISSION, "only supervisors mark entries read")
	}
	err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM entries WHERE id = ?`, id[:]).Scan(&n); err != nil {
			return fmt.Errorf("cannot read entry: %w", err)
		}
		if n == 0 {
			return errNotFound(id)
		}
		clock := c.stamp()
		var at any
		if read {
			at = clock.Millis()
		}
		if _, err := tx.ExecContext(ctx, `UPDATE entries SET read_at = ?, read_clock = ? WHERE id = ?`, at, int64(clock), id[:]); err != nil {
			return fmt.Errorf("cannot mark entry read: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO read_outbox (entry, read, clock) VALUES (?, ?, ?)
			ON CONFLICT (entry) DO UPDATE SET read = excluded.read, clock = excluded.clock`, id[:], read, int64(clock)); err != nil {
			return fmt.Errorf("cannot queue read mark: %w", err)
		}
		return saveClock(ctx, tx, c.clock.Last())
	})
	if err != nil {
		return err
	}
	c.watchers.notify(EventEntries)
	c.watchers.notify(EventStatus)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// stateHashChecked is StateHash without the check for a damaged replica.
func (c *Client) stateHashChecked(ctx context.Context) ([32]byte, int, error) {
	h := syncengine.NewStateHasher()
	err := c.db.ReadTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT state FROM entries ORDER BY id`)
		if err != nil {
			return fmt.Errorf("cannot read entries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				return err
			}
			e, err := syncengine.DecodeEntryLazy(b)
			if err != nil {
				return fmt.Errorf("stored state: %w", err)
			}
			if err := h.Add(e); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	return h.Sum(), h.Count(), err
}

// findIDChecked is FindID without the check for a damaged replica.
func (c *Client) findIDChecked(ctx context.Context, s string) (syncengine.EntryID, error) {
	if id, err := syncengine.ParseEntryID(s); err == nil {
		return id, nil
	}
	hex := strings.ToUpper(strings.ReplaceAll(s, "-", ""))
	if len(hex) < 4 || len(hex) > 32 || strings.Trim(hex, "0123456789ABCDEF") != "" {
		return syncengine.EntryID{}, syncengine.Errorf(syncengine.EINVALID, "%q is not an entry id or part of one (at least 4 hex digits)", s)
	}
	found, err := queryEntryIDs(ctx, c.db.Read, `SELECT id FROM entries WHERE hex(id) LIKE ? OR hex(id) LIKE ? LIMIT 2`, hex+"%", "%"+hex)
	if err != nil {
		return syncengine.EntryID{}, fmt.Errorf("cannot look up entry: %w", err)
	}
	switch len(found) {
	case 0:
		return syncengine.EntryID{}, syncengine.Errorf(syncengine.ENOTFOUND, "no entry on this device has an id starting or ending with %q", s)
	case 1:
		return found[0], nil
	}
	return syncengine.EntryID{}, syncengine.Errorf(syncengine.EINVALID, "more than one entry has an id starting or ending with %q: type more of it", s)
}

// ShortID returns the last 8 hex digits of an entry id: what lists show,
// and enough for FindID.
func ShortID(id syncengine.EntryID) string {
	s := id.String()
	return s[len(s)-8:]
}

// List returns a page of entries, newest date first (then newest created).
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) List(ctx context.Context, o ListOptions) (*ListPage, error) {
	if err := c.checkDamaged(); err != nil {
		return nil, err
	}
	r0, err := c.listChecked(ctx, o)
	return r0, c.damage(err)
}

// Get returns one entry.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) Get(ctx context.Context, id syncengine.EntryID) (*Entry, error) {
	if err := c.checkDamaged(); err != nil {
		return nil, err
	}
	r0, err := c.getChecked(ctx, id)
	return r0, c.damage(err)
}

// MarkRead marks an entry read (or unread) in a supervisor's inbox. The
// mark is kept on the server, so the entry shows as read on the
// supervisor's other devices and in the web console too: it is written
// here at once and durably, queued, and sent on the next sync, so it
// works offline. Of two marks of one entry, the one made later (by the
// hybrid logical clock) wins everywhere.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) MarkRead(ctx context.Context, id syncengine.EntryID, read bool) error {
	if err := c.checkDamaged(); err != nil {
		return err
	}
	return c.damage(c.markReadChecked(ctx, id, read))
}

// StateHash returns the state hash of every entry on this replica, to
// compare with the server's GetStateHash.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) StateHash(ctx context.Context) ([32]byte, int, error) {
	if err := c.checkDamaged(); err != nil {
		return [32]byte{}, 0, err
	}
	r0, r1, err := c.stateHashChecked(ctx)
	return r0, r1, c.damage(err)
}

// FindID returns the entry whose id is s, or starts or ends with s (at
// least 4 hex digits, dashes optional), so people can type short ids. The
// end of a UUIDv7 is random, so its last 8 digits (ShortID) tell entries
// apart; its start is a timestamp, shared by entries made within a
// minute of each other.
// A replica found damaged answers a *DamagedError, and so does every
// call after it.
func (c *Client) FindID(ctx context.Context, s string) (syncengine.EntryID, error) {
	if err := c.checkDamaged(); err != nil {
		return syncengine.EntryID{}, err
	}
	r0, err := c.findIDChecked(ctx, s)
	return r0, c.damage(err)
}

// write applies local changes (see writeChecked), unless the replica is
// known to be damaged.
func (c *Client) write(ctx context.Context, changes []syncengine.Change, create bool, sp ...*splice) error {
	if err := c.checkDamaged(); err != nil {
		return err
	}
	return c.damage(c.writeChecked(ctx, changes, create, sp...))
}

// queryEntryIDs runs a query whose one column is an entry id and returns
// the ids, in the order of the rows.
func queryEntryIDs(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]syncengine.EntryID, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []syncengine.EntryID
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return nil, err
		}
		ids = append(ids, syncengine.EntryID(b))
	}
	return ids, rows.Err()
}
