// Package wire converts between the API's protobuf messages and
// syncengine values. The server and the client both convert through it, so
// an entry has one meaning on the wire.
package wire

import (
	"fmt"
	"time"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ChangeFromProto converts a wire change to a syncengine change, checking
// that its ids parse and its value has the field's kind. It does not run
// syncengine.ValidateChange.
func ChangeFromProto(p *diaryv1.Change) (syncengine.Change, error) {
	var c syncengine.Change
	var err error
	if c.Entry, err = syncengine.ParseEntryID(p.GetEntryId()); err != nil {
		return c, err
	}
	c.Field = syncengine.Field(p.GetField())
	if p.GetField() < 0 || p.GetField() > 255 || !c.Field.Valid() {
		return c, &syncengine.ValidationError{Subject: "field", Err: syncengine.ErrInvalidField, Detail: fmt.Sprintf("unknown field %d", p.GetField())}
	}
	c.Tag = p.GetTag()
	if p.GetFeedbackId() != "" {
		if c.Feedback, err = syncengine.ParseFeedbackID(p.GetFeedbackId()); err != nil {
			return c, err
		}
	}
	want := c.Field.Kind()
	switch v := p.GetValue().(type) {
	case nil:
	case *diaryv1.Change_Text:
		if want != syncengine.KindText {
			return c, kindError(c.Field, "text")
		}
		c.Text = v.Text
	case *diaryv1.Change_Number:
		if want != syncengine.KindNumber {
			return c, kindError(c.Field, "a number")
		}
		c.Number = v.Number
	case *diaryv1.Change_Flag:
		if want != syncengine.KindFlag {
			return c, kindError(c.Field, "a flag")
		}
		c.Flag = v.Flag
	case *diaryv1.Change_TextChange:
		if c.Field != syncengine.FieldBody && c.Field != syncengine.FieldFeedbackBody {
			return c, kindError(c.Field, "a text change")
		}
		if c.TextEdit, err = syncengine.DecodeTextChange(v.TextChange); err != nil {
			return c, &syncengine.ValidationError{Subject: c.Field.String(), Err: syncengine.ErrInvalidValue, Detail: fmt.Sprintf("the %s's text change is not valid: %v", c.Field, err)}
		}
	}
	c.Clock = syncengine.Timestamp(p.GetClock())
	if c.Replica, err = syncengine.ParseReplicaID(p.GetReplicaId()); err != nil {
		return c, err
	}
	return c, nil
}

func kindError(f syncengine.Field, got string) error {
	return &syncengine.ValidationError{Subject: f.String(), Err: syncengine.ErrInvalidValue, Detail: fmt.Sprintf("%s cannot hold %s", f, got)}
}

// ChangeToProto converts a syncengine change to its wire form. Author is
// not sent: the server takes it from the device.
func ChangeToProto(c *syncengine.Change) *diaryv1.Change {
	p := &diaryv1.Change{
		EntryId:   c.Entry.String(),
		Field:     diaryv1.Field(c.Field),
		Tag:       c.Tag,
		Clock:     uint64(c.Clock),
		ReplicaId: c.Replica.String(),
	}
	if c.Field.IsFeedback() {
		p.FeedbackId = c.Feedback.String()
	}
	switch c.Field.Kind() {
	case syncengine.KindText:
		if c.TextEdit != nil {
			p.Value = &diaryv1.Change_TextChange{TextChange: syncengine.EncodeTextChange(c.TextEdit)}
			break
		}
		p.Value = &diaryv1.Change_Text{Text: c.Text}
	case syncengine.KindNumber:
		p.Value = &diaryv1.Change_Number{Number: c.Number}
	default:
		p.Value = &diaryv1.Change_Flag{Flag: c.Flag}
	}
	return p
}

func replicaString(r syncengine.ReplicaID) string {
	if r.IsZero() {
		return ""
	}
	return r.String()
}

func parseReplica(s string) (syncengine.ReplicaID, error) {
	if s == "" {
		return syncengine.ReplicaID{}, nil
	}
	return syncengine.ParseReplicaID(s)
}

func textToProto(r *syncengine.Text) *diaryv1.TextRegister {
	return &diaryv1.TextRegister{Value: r.Value, Clock: uint64(r.Clock), ReplicaId: replicaString(r.Replica)}
}

func flagToProto(r *syncengine.Flag) *diaryv1.FlagRegister {
	return &diaryv1.FlagRegister{Value: r.Value, Clock: uint64(r.Clock), ReplicaId: replicaString(r.Replica)}
}

// EntryToProto converts an entry (normally a view) to its wire form.
// Merged text goes in body_text, which holds the text too, so body then
// carries only its stamp; a view without merged text (see
// syncengine.Entry.Flat) is exactly what the API carried before merged
// text existed.
func EntryToProto(e *syncengine.Entry) *diaryv1.Entry {
	p := &diaryv1.Entry{
		Id:              e.ID.String(),
		Author:          e.Author,
		CreatedClock:    uint64(e.Created),
		Title:           textToProto(&e.Title),
		Body:            textToProto(&e.Body),
		Date:            textToProto(&e.Date),
		Mood:            &diaryv1.NumberRegister{Value: e.Mood.Value, Clock: uint64(e.Mood.Clock), ReplicaId: replicaString(e.Mood.Replica)},
		ShareSupervisor: flagToProto(&e.ShareSupervisor),
		ShareResearch:   flagToProto(&e.ShareResearch),
		Deleted:         flagToProto(&e.Deleted),
	}
	if e.BodyText != nil {
		p.BodyText = e.BodyText.Encoding()
		p.Body.Value = ""
	}
	if len(e.Tags) > 0 {
		p.Tags = make([]*diaryv1.TagRegister, len(e.Tags))
		for i, t := range e.Tags {
			p.Tags[i] = &diaryv1.TagRegister{Name: t.Name, Present: t.Present, Clock: uint64(t.Clock), ReplicaId: replicaString(t.Replica)}
		}
	}
	if len(e.Feedback) > 0 {
		p.Feedback = make([]*diaryv1.Feedback, len(e.Feedback))
		for i := range e.Feedback {
			f := &e.Feedback[i]
			p.Feedback[i] = &diaryv1.Feedback{Id: f.ID.String(), Author: f.Author, CreatedClock: uint64(f.Created), Body: textToProto(&f.Body), Deleted: flagToProto(&f.Deleted)}
			if f.BodyText != nil {
				p.Feedback[i].BodyText = f.BodyText.Encoding()
				p.Feedback[i].Body.Value = ""
			}
		}
	}
	return p
}

// EntryFromProto converts a wire entry to a syncengine entry. It checks
// ids, that tags and feedback are sorted without duplicates, and that
// merged text decodes and agrees with the text beside it, so that the
// result is in canonical form.
func EntryFromProto(p *diaryv1.Entry) (*syncengine.Entry, error) {
	e := &syncengine.Entry{Author: p.GetAuthor(), Created: syncengine.Timestamp(p.GetCreatedClock())}
	var err error
	if e.ID, err = syncengine.ParseEntryID(p.GetId()); err != nil {
		return nil, err
	}
	text := func(dst *syncengine.Text, r *diaryv1.TextRegister) {
		if err != nil || r == nil {
			return
		}
		dst.Value, dst.Clock = r.GetValue(), syncengine.Timestamp(r.GetClock())
		dst.Replica, err = parseReplica(r.GetReplicaId())
	}
	flag := func(dst *syncengine.Flag, r *diaryv1.FlagRegister) {
		if err != nil || r == nil {
			return
		}
		dst.Value, dst.Clock = r.GetValue(), syncengine.Timestamp(r.GetClock())
		dst.Replica, err = parseReplica(r.GetReplicaId())
	}
	merged := func(reg *syncengine.Text, dst **syncengine.TextState, b []byte, f syncengine.Field) {
		if err != nil || b == nil {
			return
		}
		var st *syncengine.TextState
		if st, err = syncengine.DecodeTextState(b, f); err != nil {
			return
		}
		if want := st.Register(); reg.Stamp != want.Stamp || reg.Value != "" {
			err = fmt.Errorf("the %s's register does not match its merged text", f)
			return
		}
		*dst, *reg = st, st.Register()
	}
	text(&e.Title, p.GetTitle())
	text(&e.Body, p.GetBody())
	merged(&e.Body, &e.BodyText, p.GetBodyText(), syncengine.FieldBody)
	text(&e.Date, p.GetDate())
	if m := p.GetMood(); m != nil && err == nil {
		e.Mood.Value, e.Mood.Clock = m.GetValue(), syncengine.Timestamp(m.GetClock())
		e.Mood.Replica, err = parseReplica(m.GetReplicaId())
	}
	flag(&e.ShareSupervisor, p.GetShareSupervisor())
	flag(&e.ShareResearch, p.GetShareResearch())
	flag(&e.Deleted, p.GetDeleted())
	for _, t := range p.GetTags() {
		if err != nil {
			break
		}
		tag := syncengine.Tag{Name: t.GetName(), Present: t.GetPresent()}
		tag.Clock = syncengine.Timestamp(t.GetClock())
		tag.Replica, err = parseReplica(t.GetReplicaId())
		e.Tags = append(e.Tags, tag)
	}
	for _, f := range p.GetFeedback() {
		if err != nil {
			break
		}
		item := syncengine.Feedback{Author: f.GetAuthor(), Created: syncengine.Timestamp(f.GetCreatedClock())}
		if item.ID, err = syncengine.ParseFeedbackID(f.GetId()); err != nil {
			break
		}
		text(&item.Body, f.GetBody())
		merged(&item.Body, &item.BodyText, f.GetBodyText(), syncengine.FieldFeedbackBody)
		flag(&item.Deleted, f.GetDeleted())
		e.Feedback = append(e.Feedback, item)
	}
	if err != nil {
		return nil, fmt.Errorf("entry %s: %w", p.GetId(), err)
	}
	for i := 1; i < len(e.Tags); i++ {
		if e.Tags[i-1].Name >= e.Tags[i].Name {
			return nil, fmt.Errorf("entry %s: tags are not sorted and unique", e.ID)
		}
	}
	for i := 1; i < len(e.Feedback); i++ {
		if e.Feedback[i-1].ID.Compare(e.Feedback[i].ID) >= 0 {
			return nil, fmt.Errorf("entry %s: feedback is not sorted and unique", e.ID)
		}
	}
	// The rest of canonical form (no register holds a value it was never
	// written with) is what the canonical decoder checks: an entry that
	// fails it here would be stored and then fail to load from the
	// replica, every time. Merged text was decoded in full above.
	if _, err := syncengine.DecodeEntryLazy(syncengine.EncodeEntry(e)); err != nil {
		return nil, fmt.Errorf("entry %s: %w", e.ID, err)
	}
	return e, nil
}

// Timestamp converts a time to its wire form; the zero time becomes nil.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// TimeFromMillis converts Unix milliseconds to a wire timestamp; 0
// becomes nil (unset).
func TimeFromMillis(ms int64) *timestamppb.Timestamp {
	if ms == 0 {
		return nil
	}
	return timestamppb.New(time.UnixMilli(ms))
}

// ErrorCodeHeader is the header (a trailer in gRPC) of every error the
// server answers with that carries the application's error code
// (syncengine.Code: "too_large", "rate_limited", "no_space", ...).
const ErrorCodeHeader = "Diary-Error-Code"

// ErrorReasonHeader names, when present, why an error happened in a form
// a device acts on; ReasonCursorAhead is the only reason so far.
const ErrorReasonHeader = "Diary-Error-Reason"

// ReasonCursorAhead: the pull's cursor is beyond the server's position
// (its data was replaced); the device pulls everything again.
const ReasonCursorAhead = "cursor-ahead"
