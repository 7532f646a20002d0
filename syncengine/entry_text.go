package syncengine

import (
	"fmt"
	"slices"
)

// textTarget returns the register and the merged text state of the text
// c writes: the body, or the body of the feedback item c names. A
// feedback item that does not exist yet is returned as a new item, with
// at false; commit inserts it.
type textTarget struct {
	e     *Entry
	reg   *Text
	state **TextState
	limit int

	item   *Feedback // the feedback item, or nil for the body
	at     int       // its index in e.Feedback
	exists bool      // the item is in e.Feedback already
}

func (e *Entry) textTarget(c *Change) (*textTarget, error) {
	switch c.Field {
	case FieldBody:
		return &textTarget{e: e, reg: &e.Body, state: &e.BodyText, limit: MaxBodyBytes}, nil
	case FieldFeedbackBody:
		i, ok := e.findFeedback(c.Feedback)
		t := &textTarget{e: e, at: i, exists: ok, limit: MaxFeedbackBodyBytes}
		if ok {
			t.item = &e.Feedback[i]
		} else {
			t.item = &Feedback{ID: c.Feedback}
		}
		t.reg, t.state = &t.item.Body, &t.item.BodyText
		return t, nil
	}
	return nil, errNotText(c.Field)
}

// doc returns the document to change: the state's, or a new one seeded
// from the register while the text is still a register.
func (t *textTarget) doc() (*TextDoc, error) {
	if *t.state == nil {
		return seedDoc(*t.reg, t.limit), nil
	}
	return (*t.state).writable()
}

// commit records that d, the document t.doc returned, changed because of
// c: the state, the derived register, and the created clock and author of
// the entry or the feedback item, which a new item joins.
func (t *textTarget) commit(d *TextDoc, c *Change) {
	if *t.state == nil {
		*t.state = &TextState{limit: t.limit, doc: d}
	}
	(*t.state).refresh()
	*t.reg = (*t.state).Register()
	t.touch(c)
}

// touch merges c's clock and author into the entry, or into the feedback
// item (which it inserts if new), as every change does.
func (t *textTarget) touch(c *Change) {
	e := t.e
	if t.item == nil {
		e.Created = minClock(e.Created, c.Clock)
		e.Author = minAuthor(e.Author, c.Author)
		return
	}
	t.item.Created = minClock(t.item.Created, c.Clock)
	t.item.Author = minAuthor(t.item.Author, c.Author)
	if !t.exists {
		e.Feedback = slices.Insert(e.Feedback, t.at, *t.item)
		t.item, t.exists = &e.Feedback[t.at], true
		t.reg, t.state = &t.item.Body, &t.item.BodyText
	}
}

func (e *Entry) adopt(c *Change) error {
	if e.ID.IsZero() {
		e.ID = c.Entry
	} else if e.ID != c.Entry {
		return invalid("entry id", ErrInvalidID, fmt.Sprintf("change for entry %s applied to entry %s", c.Entry, e.ID))
	}
	return nil
}

// ApplyText merges a text edit (c.TextEdit set) into the body or feedback
// body it names, as Apply does, and says what happened: applied, a
// duplicate, or held until the changes it was made on arrive. Like Apply
// it does not validate: callers run ValidateChange first. On error (the
// edit does not fit the text's history, or a limit of TextDoc would be
// broken) e does not change.
func (e *Entry) ApplyText(c *Change) (TextStatus, error) {
	if c.TextEdit == nil {
		return 0, invalid(c.Field.String(), ErrInvalidValue, "the change is not a text edit")
	}
	if err := e.adopt(c); err != nil {
		return 0, err
	}
	t, err := e.textTarget(c)
	if err != nil {
		return 0, err
	}
	d, err := t.doc()
	if err != nil {
		return 0, err
	}
	st, err := d.applyValid(c.TextEdit)
	if err != nil {
		return 0, err
	}
	if st == TextDuplicate {
		return st, nil
	}
	t.commit(d, c)
	return st, nil
}

// TextReady reports what ApplyText would do with the text edit c now,
// without doing it (see TextDoc.Ready).
func (e *Entry) TextReady(c *Change) (TextStatus, error) {
	if c.TextEdit == nil {
		return 0, invalid(c.Field.String(), ErrInvalidValue, "the change is not a text edit")
	}
	t, err := e.textTarget(c)
	if err != nil {
		return 0, err
	}
	var d *TextDoc
	switch {
	case *t.state == nil && (t.reg.Clock == 0 || t.reg.Value == ""):
		// A text never written: an edit made on nothing is ready, one
		// made on anything waits, as an empty document would say.
		if len(c.TextEdit.Deps) == 0 {
			return TextApplied, nil
		}
		return TextHeld, nil
	case *t.state == nil:
		d = seedDoc(*t.reg, t.limit)
	default:
		if d, err = (*t.state).Doc(); err != nil {
			return 0, err
		}
	}
	return d.Ready(c.TextEdit)
}

// LegacyEdit merges a whole-value write of a body or a feedback body, as a
// device that predates merged text sends it, as an edit of the merged
// text (see TextDoc.LegacyWrite), making the body merged text if it was a
// register. It returns the text edit it made, stamped with the write's
// clock and LegacyReplica of its replica, for the history and for the
// devices that merge text; nil when the text did not change (the body
// stays a register when it was an empty one and the write is empty).
//
// Unlike Apply, the result depends on e's state, not only on the set of
// changes: only the server, which sees every change in one order, merges
// whole-value writes this way, and every other replica receives the text
// edit it made. On error e does not change.
func (e *Entry) LegacyEdit(c *Change) (*Change, error) {
	if c.TextEdit != nil {
		return nil, invalid(c.Field.String(), ErrInvalidValue, "the change is a text edit, not a whole value")
	}
	if err := e.adopt(c); err != nil {
		return nil, err
	}
	t, err := e.textTarget(c)
	if err != nil {
		return nil, err
	}
	d, err := t.doc()
	if err != nil {
		return nil, err
	}
	tc, err := d.LegacyWrite(c.Stamp, c.Text)
	if err != nil {
		return nil, err
	}
	switch {
	case tc != nil || (*t.state == nil && len(d.version) > 0):
		t.commit(d, c)
	case *t.state == nil:
		// An empty write to an empty register: it stays a register.
		setText(t.reg, c.Text, c.Stamp)
		t.touch(c)
	default:
		t.touch(c)
	}
	if tc == nil {
		return nil, nil
	}
	return &Change{Entry: c.Entry, Field: c.Field, Feedback: c.Feedback, TextEdit: tc, Stamp: tc.Stamp, Author: c.Author}, nil
}

// EditText makes an edit of the body or feedback body c names, on this
// replica: edit is called with the document (seeded from the register if
// the body was one) and returns the change it made, stamped with c.Stamp,
// or nil for none (the text is already as asked). EditText stores it in
// c.TextEdit and merges c into e as Apply would. On error, or when edit
// makes no change, e does not change.
func (e *Entry) EditText(c *Change, edit func(d *TextDoc) (*TextChange, error)) error {
	c.TextEdit = nil
	if err := e.adopt(c); err != nil {
		return err
	}
	t, err := e.textTarget(c)
	if err != nil {
		return err
	}
	d, err := t.doc()
	if err != nil {
		return err
	}
	tc, err := edit(d)
	if err != nil || tc == nil {
		return err
	}
	if tc.Stamp != c.Stamp {
		// The document holds the edit now; a caller that stamped it
		// otherwise broke the contract.
		panic("syncengine: EditText: the edit's stamp is not the change's")
	}
	c.TextEdit = tc
	t.commit(d, c)
	return nil
}

// MergedText returns the merged text state of the body, or of the body
// of the feedback item fb names when f is FieldFeedbackBody: nil while
// it is a register (or when there is no such item).
func (e *Entry) MergedText(f Field, fb FeedbackID) *TextState {
	switch f {
	case FieldBody:
		return e.BodyText
	case FieldFeedbackBody:
		if item := e.FindFeedback(fb); item != nil {
			return item.BodyText
		}
	}
	return nil
}

// applyEdit and legacyEdit are ApplyText and LegacyEdit on one register
// and state, for Apply's own paths.
func legacyEdit(r *Text, s **TextState, stamp Stamp, text string, limit int) (*TextChange, error) {
	d, err := (*s).writable()
	if err != nil {
		return nil, err
	}
	tc, err := d.LegacyWrite(stamp, text)
	if err != nil || tc == nil {
		return nil, err
	}
	(*s).refresh()
	*r = (*s).Register()
	return tc, nil
}

// mergeText merges the text o holds (its register r, or its merged text s)
// into the register and state of e, and reports whether they changed.
func mergeText(er *Text, es **TextState, or *Text, os *TextState) bool {
	switch {
	case os == nil && *es == nil:
		return setText(er, or.Value, or.Stamp)
	case os == nil:
		return false
	case *es == nil:
		*es = os.clone()
		*er = (*es).Register()
		return true
	}
	before := (*es).Encoding()
	d, err := (*es).writable()
	if err != nil {
		return false
	}
	od, err := os.Doc()
	if err != nil {
		return false
	}
	if err := d.Merge(od); err != nil {
		return false
	}
	(*es).refresh()
	*er = (*es).Register()
	return !slices.Equal(before, (*es).Encoding())
}
