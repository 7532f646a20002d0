package syncengine

import (
	"slices"
	"strconv"
	"strings"
)

// Field names the part of an entry that a Change writes. The numbers are
// part of the canonical encoding and the wire API: never renumber them.
type Field uint8

// Fields of an entry.
const (
	FieldTitle           Field = 1  // text
	FieldBody            Field = 2  // text
	FieldDate            Field = 3  // text, YYYY-MM-DD or empty
	FieldMood            Field = 4  // number, 0 (not recorded) or 1 to 10
	FieldShareSupervisor Field = 5  // flag
	FieldShareResearch   Field = 6  // flag
	FieldDeleted         Field = 7  // flag
	FieldTag             Field = 8  // flag: the tag named by Change.Tag is present
	FieldFeedbackBody    Field = 9  // text of the feedback item named by Change.Feedback
	FieldFeedbackDeleted Field = 10 // flag of the feedback item named by Change.Feedback
)

var fieldNames = [...]string{
	FieldTitle:           "title",
	FieldBody:            "body",
	FieldDate:            "date",
	FieldMood:            "mood",
	FieldShareSupervisor: "share_supervisor",
	FieldShareResearch:   "share_research",
	FieldDeleted:         "deleted",
	FieldTag:             "tag",
	FieldFeedbackBody:    "feedback_body",
	FieldFeedbackDeleted: "feedback_deleted",
}

// String returns the field's name as used in messages and exports.
func (f Field) String() string {
	if f.Valid() {
		return fieldNames[f]
	}
	return "field(" + strconv.Itoa(int(f)) + ")"
}

// Valid reports whether f is a known field.
func (f Field) Valid() bool { return f >= FieldTitle && f <= FieldFeedbackDeleted }

// Kind is the type of value a field holds.
type Kind uint8

// Value kinds.
const (
	KindText Kind = iota + 1
	KindNumber
	KindFlag
)

// Kind returns the kind of value f holds.
func (f Field) Kind() Kind {
	switch f {
	case FieldTitle, FieldBody, FieldDate, FieldFeedbackBody:
		return KindText
	case FieldMood:
		return KindNumber
	default:
		return KindFlag
	}
}

// IsFeedback reports whether f writes a feedback item rather than the
// entry itself.
func (f Field) IsFeedback() bool { return f == FieldFeedbackBody || f == FieldFeedbackDeleted }

// Stamp orders writes to one register: the hybrid logical clock first,
// the replica id breaking ties.
type Stamp struct {
	Clock   Timestamp
	Replica ReplicaID
}

// Compare returns -1, 0 or +1 as s is older than, the same as, or newer
// than o.
func (s Stamp) Compare(o Stamp) int {
	switch {
	case s.Clock < o.Clock:
		return -1
	case s.Clock > o.Clock:
		return 1
	}
	return s.Replica.Compare(o.Replica)
}

// Text is a last-writer-wins register holding a string.
type Text struct {
	Value string
	Stamp
}

// Number is a last-writer-wins register holding an integer.
type Number struct {
	Value int64
	Stamp
}

// Flag is a last-writer-wins register holding a boolean.
type Flag struct {
	Value bool
	Stamp
}

// Tag is one member of an entry's tag set: a register holding whether the
// tag is present. A removed tag stays as a register with Present false, so
// that a stale add cannot bring it back.
type Tag struct {
	Name    string
	Present bool
	Stamp
}

// Feedback is a note a supervisor left on an entry.
type Feedback struct {
	ID      FeedbackID
	Author  string    // study code of the supervisor who wrote it
	Created Timestamp // clock of the first write to this item
	Body    Text
	// BodyText is the body as merged text, or nil while it is a register
	// (see Entry.BodyText).
	BodyText *TextState
	Deleted  Flag
}

// Entry is the merged state of one diary entry: the registers of its
// fields, each with the stamp of the write that won. Tags are sorted by
// name and feedback by id, so equal states have equal Go values and equal
// canonical encodings.
type Entry struct {
	ID      EntryID
	Author  string    // study code of the navigator who owns it
	Created Timestamp // clock of the first write to the entry's own fields

	Title Text
	// Body is the body's register. When BodyText is set it is derived
	// from it: the merged text, stamped with its newest change; readers
	// who get only the text (old devices, supervisors, research) hold
	// just this register.
	Body Text
	// BodyText is the body as merged text, which concurrent edits merge
	// into character by character, or nil while the body is a
	// last-writer-wins register (an entry written only before merged
	// text existed, or a view that carries only the text).
	BodyText        *TextState
	Date            Text
	Mood            Number
	ShareSupervisor Flag
	ShareResearch   Flag
	Deleted         Flag
	Tags            []Tag
	Feedback        []Feedback
}

// Change is one field-level write made on one replica. Author is not
// taken from the wire: the server fills it in from the authenticated
// device, and a client from its own profile.
type Change struct {
	Entry    EntryID
	Field    Field
	Tag      string     // FieldTag only: the tag's name
	Feedback FeedbackID // feedback fields only: the item written

	Text   string // value of a text field
	Number int64  // value of a number field
	Flag   bool   // value of a flag field
	// TextEdit, for the body and feedback bodies only, is an edit of the
	// merged text instead of a whole value (Text is then empty). Its
	// Stamp is the change's.
	TextEdit *TextChange
	Stamp

	Author string
}

// Updated returns the clock of the newest write to the entry's own fields
// and tags (feedback excluded): when it was last edited.
func (e *Entry) Updated() Timestamp {
	u := e.Title.Clock
	for _, c := range [...]Timestamp{e.Body.Clock, e.Date.Clock, e.Mood.Clock, e.ShareSupervisor.Clock, e.ShareResearch.Clock, e.Deleted.Clock} {
		u = max(u, c)
	}
	for i := range e.Tags {
		u = max(u, e.Tags[i].Clock)
	}
	return u
}

// TagNames returns the names of the tags present, sorted.
func (e *Entry) TagNames() []string {
	var names []string
	for i := range e.Tags {
		if e.Tags[i].Present {
			names = append(names, e.Tags[i].Name)
		}
	}
	return names
}

// HasTag reports whether the tag is present.
func (e *Entry) HasTag(name string) bool {
	i, ok := e.findTag(name)
	return ok && e.Tags[i].Present
}

// Exists reports whether any field of the entry itself was ever written;
// an Entry holding only feedback does not exist yet for its owner.
func (e *Entry) Exists() bool { return e.Created != 0 }

// Clone returns a deep copy of e. Merged texts are shared until one of
// the two entries changes them.
func (e *Entry) Clone() *Entry {
	c := *e
	c.Tags = slices.Clone(e.Tags)
	c.BodyText = e.BodyText.clone()
	c.Feedback = slices.Clone(e.Feedback)
	for i := range c.Feedback {
		c.Feedback[i].BodyText = c.Feedback[i].BodyText.clone()
	}
	return &c
}

func (e *Entry) findTag(name string) (int, bool) {
	return slices.BinarySearchFunc(e.Tags, name, func(t Tag, n string) int { return strings.Compare(t.Name, n) })
}

func (e *Entry) findFeedback(id FeedbackID) (int, bool) {
	return slices.BinarySearchFunc(e.Feedback, id, func(f Feedback, id FeedbackID) int { return f.ID.Compare(id) })
}

// FindFeedback returns the feedback item with the given id, or nil.
func (e *Entry) FindFeedback(id FeedbackID) *Feedback {
	if i, ok := e.findFeedback(id); ok {
		return &e.Feedback[i]
	}
	return nil
}

// The set* functions are the merge rule for one register: the write with
// the greater stamp wins; at an equal stamp, the greater value, so that
// even two different writes carrying one stamp converge.

func setText(r *Text, v string, s Stamp) bool {
	switch c := s.Compare(r.Stamp); {
	case c < 0, c == 0 && v <= r.Value:
		return false
	}
	r.Value, r.Stamp = v, s
	return true
}

func setNumber(r *Number, v int64, s Stamp) bool {
	switch c := s.Compare(r.Stamp); {
	case c < 0, c == 0 && v <= r.Value:
		return false
	}
	r.Value, r.Stamp = v, s
	return true
}

func setFlag(r *Flag, v bool, s Stamp) bool {
	switch c := s.Compare(r.Stamp); {
	case c < 0, c == 0 && (!v || r.Value):
		return false
	}
	r.Value, r.Stamp = v, s
	return true
}

func setTag(t *Tag, present bool, s Stamp) bool {
	switch c := s.Compare(t.Stamp); {
	case c < 0, c == 0 && (!present || t.Present):
		return false
	}
	t.Present, t.Stamp = present, s
	return true
}

// minClock keeps the earliest non-zero clock: zero means "none yet".
func minClock(a, b Timestamp) Timestamp {
	if a == 0 || (b != 0 && b < a) {
		return b
	}
	return a
}

// minAuthor keeps the smallest non-empty author. Replicas that follow the
// protocol never disagree on an author; the rule only makes sure that
// replicas given conflicting input still converge.
func minAuthor(a, b string) string {
	if a == "" || (b != "" && b < a) {
		return b
	}
	return a
}

// Apply merges one change into the entry and reports whether the entry
// changed. A change for another entry is ignored. Apply does not validate:
// callers run ValidateChange (and Admits, where limits matter) first. A
// text edit that does not fit the text's history changes nothing (see
// ApplyText, which says why).
//
// A text edit of a body that is still a register makes it merged text
// seeded with the register's text (see SeedReplica). A whole-value write
// of a body that is merged text is merged as LegacyEdit merges it: that
// depends on the state, so whole-value writes and text edits of one body
// commute only where the server orders them, which is why the server
// turns every whole-value write into a text edit before anyone else sees
// it.
func (e *Entry) Apply(c *Change) bool {
	if c.TextEdit != nil {
		st, err := e.ApplyText(c)
		return err == nil && st != TextDuplicate
	}
	if e.ID.IsZero() {
		e.ID = c.Entry
	} else if e.ID != c.Entry {
		return false
	}
	if c.Field.IsFeedback() {
		return e.applyFeedback(c)
	}
	oldCreated, oldAuthor := e.Created, e.Author
	e.Created = minClock(e.Created, c.Clock)
	e.Author = minAuthor(e.Author, c.Author)
	changed := e.Created != oldCreated || e.Author != oldAuthor
	switch c.Field {
	case FieldTitle:
		changed = setText(&e.Title, c.Text, c.Stamp) || changed
	case FieldBody:
		if e.BodyText != nil {
			tc, err := legacyEdit(&e.Body, &e.BodyText, c.Stamp, c.Text, MaxBodyBytes)
			changed = err == nil && tc != nil || changed
		} else {
			changed = setText(&e.Body, c.Text, c.Stamp) || changed
		}
	case FieldDate:
		changed = setText(&e.Date, c.Text, c.Stamp) || changed
	case FieldMood:
		changed = setNumber(&e.Mood, c.Number, c.Stamp) || changed
	case FieldShareSupervisor:
		changed = setFlag(&e.ShareSupervisor, c.Flag, c.Stamp) || changed
	case FieldShareResearch:
		changed = setFlag(&e.ShareResearch, c.Flag, c.Stamp) || changed
	case FieldDeleted:
		changed = setFlag(&e.Deleted, c.Flag, c.Stamp) || changed
	case FieldTag:
		i, ok := e.findTag(c.Tag)
		if !ok {
			e.Tags = slices.Insert(e.Tags, i, Tag{Name: c.Tag})
		}
		changed = setTag(&e.Tags[i], c.Flag, c.Stamp) || changed || !ok
	}
	return changed
}

func (e *Entry) applyFeedback(c *Change) bool {
	i, ok := e.findFeedback(c.Feedback)
	if !ok {
		e.Feedback = slices.Insert(e.Feedback, i, Feedback{ID: c.Feedback})
	}
	f := &e.Feedback[i]
	oldCreated, oldAuthor := f.Created, f.Author
	f.Created = minClock(f.Created, c.Clock)
	f.Author = minAuthor(f.Author, c.Author)
	changed := !ok || f.Created != oldCreated || f.Author != oldAuthor
	switch {
	case c.Field == FieldFeedbackBody && f.BodyText != nil:
		tc, err := legacyEdit(&f.Body, &f.BodyText, c.Stamp, c.Text, MaxFeedbackBodyBytes)
		changed = err == nil && tc != nil || changed
	case c.Field == FieldFeedbackBody:
		changed = setText(&f.Body, c.Text, c.Stamp) || changed
	default:
		changed = setFlag(&f.Deleted, c.Flag, c.Stamp) || changed
	}
	return changed
}

// Merge merges the state of o into e (both must have the same id) and
// reports whether e changed. Merge is commutative, associative and
// idempotent. Merged texts merge as TextDoc.Merge does; a body that is
// merged text on one side and a register on the other keeps the merged
// text, as the server makes every body merged text at its first write
// (see Apply).
func (e *Entry) Merge(o *Entry) bool {
	if e.ID.IsZero() {
		e.ID = o.ID
	} else if e.ID != o.ID {
		return false
	}
	oldCreated, oldAuthor := e.Created, e.Author
	e.Created = minClock(e.Created, o.Created)
	e.Author = minAuthor(e.Author, o.Author)
	changed := e.Created != oldCreated || e.Author != oldAuthor
	changed = setText(&e.Title, o.Title.Value, o.Title.Stamp) || changed
	changed = mergeText(&e.Body, &e.BodyText, &o.Body, o.BodyText) || changed
	changed = setText(&e.Date, o.Date.Value, o.Date.Stamp) || changed
	changed = setNumber(&e.Mood, o.Mood.Value, o.Mood.Stamp) || changed
	changed = setFlag(&e.ShareSupervisor, o.ShareSupervisor.Value, o.ShareSupervisor.Stamp) || changed
	changed = setFlag(&e.ShareResearch, o.ShareResearch.Value, o.ShareResearch.Stamp) || changed
	changed = setFlag(&e.Deleted, o.Deleted.Value, o.Deleted.Stamp) || changed
	for _, t := range o.Tags {
		i, ok := e.findTag(t.Name)
		if !ok {
			e.Tags = slices.Insert(e.Tags, i, Tag{Name: t.Name})
		}
		changed = setTag(&e.Tags[i], t.Present, t.Stamp) || changed || !ok
	}
	for _, of := range o.Feedback {
		i, ok := e.findFeedback(of.ID)
		if !ok {
			e.Feedback = slices.Insert(e.Feedback, i, Feedback{ID: of.ID})
		}
		f := &e.Feedback[i]
		oc, oa := f.Created, f.Author
		f.Created = minClock(f.Created, of.Created)
		f.Author = minAuthor(f.Author, of.Author)
		changed = changed || !ok || f.Created != oc || f.Author != oa
		changed = mergeText(&f.Body, &f.BodyText, &of.Body, of.BodyText) || changed
		changed = setFlag(&f.Deleted, of.Deleted.Value, of.Deleted.Stamp) || changed
	}
	return changed
}

// Audience is who reads a view of an entry.
type Audience uint8

// Audiences.
const (
	// AudienceOwner is the navigator who wrote the entry, on any of
	// their devices: the full state, with their own replica ids, so that
	// their devices can merge offline edits into it.
	AudienceOwner Audience = iota + 1
	// AudienceSupervisor is a supervisor of the owner. Replica ids (which
	// identify devices) are hidden, removed tags and deleted feedback
	// are left out.
	AudienceSupervisor
	// AudienceResearch is the research team: as for supervisors, and no
	// feedback at all.
	AudienceResearch
)

// View returns the state of e that the audience may hold. A view is what
// the server sends and what a reader's replica stores; readers that do not
// own an entry never merge into it, they replace their copy with each view
// they pull, so the parts left out cannot come back. The owner's view
// keeps the body's merged text, which carries device ids and the ids of
// deleted words; every other part of a view carries merged text as its
// text only. View is ViewFor with no reader and merged text.
func (e *Entry) View(a Audience) *Entry { return e.ViewFor(a, "", true) }

// ViewFor returns the view of e for one reader of the audience, whose
// study code is reader: as View, and a supervisor's view keeps the merged
// text of the feedback that reader wrote, so that their devices can merge
// their edits of it. With merged false it is the view for a device that
// predates merged text: every merged text as a plain register (see Flat).
func (e *Entry) ViewFor(a Audience, reader string, merged bool) *Entry {
	v := *e
	v.Tags, v.Feedback = nil, nil
	if a == AudienceOwner {
		v.Tags = slices.Clone(e.Tags)
		if merged {
			v.BodyText = e.BodyText.clone()
		} else {
			v.BodyText = nil
		}
	} else {
		v.BodyText = nil
		for _, r := range []*Stamp{&v.Title.Stamp, &v.Body.Stamp, &v.Date.Stamp, &v.Mood.Stamp, &v.ShareSupervisor.Stamp, &v.ShareResearch.Stamp, &v.Deleted.Stamp} {
			r.Replica = ReplicaID{}
		}
		for _, t := range e.Tags {
			if t.Present {
				t.Replica = ReplicaID{}
				v.Tags = append(v.Tags, t)
			}
		}
	}
	if a != AudienceResearch {
		for _, f := range e.Feedback {
			if f.Deleted.Value {
				continue
			}
			if merged && a == AudienceSupervisor && reader != "" && f.Author == reader && f.BodyText != nil {
				f.BodyText = f.BodyText.clone()
			} else {
				f.BodyText = nil
				f.Body.Replica = ReplicaID{}
			}
			f.Deleted.Replica = ReplicaID{}
			v.Feedback = append(v.Feedback, f)
		}
	}
	return &v
}

// Flat returns e with every merged text as a plain register holding its
// text, stamped with its newest change: what a device that predates
// merged text holds of a view. Feedback registers hide their replica, as
// in every view.
func (e *Entry) Flat() *Entry {
	v := *e
	v.BodyText = nil
	if len(e.Feedback) > 0 {
		v.Feedback = slices.Clone(e.Feedback)
		for i := range v.Feedback {
			if f := &v.Feedback[i]; f.BodyText != nil {
				f.BodyText = nil
				f.Body.Replica = ReplicaID{}
			}
		}
	}
	return &v
}

// HasMergedText reports whether any body of e is merged text.
func (e *Entry) HasMergedText() bool {
	if e.BodyText != nil {
		return true
	}
	for i := range e.Feedback {
		if e.Feedback[i].BodyText != nil {
			return true
		}
	}
	return false
}

func slicesSortByID(entries []*Entry) {
	slices.SortFunc(entries, func(a, b *Entry) int { return a.ID.Compare(b.ID) })
}
