package syncengine

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what one entry may hold. They bound the memory a single entry
// costs on every replica and the size of any message that carries it.
const (
	MaxTitleBytes        = 1 << 10   // 1 KiB
	MaxBodyBytes         = 256 << 10 // 256 KiB
	MaxTagBytes          = 64
	MaxTags              = 50  // tags present at once
	MaxTagRecords        = 200 // tags present plus removed ones remembered
	MaxMood              = 10
	MaxFeedbackBodyBytes = 8 << 10 // 8 KiB
	MaxFeedbackItems     = 50
	MaxAuthorBytes       = 32
)

// ValidateChange checks one change on its own: ids, field, clock, value
// type and size, UTF-8. It does not know the entry the change will be
// applied to; Entry.Admits checks the limits that depend on it.
func ValidateChange(c *Change) error {
	if !isV7(c.Entry) {
		return invalid("entry id", ErrInvalidID, "entry id must be a UUIDv7")
	}
	if !c.Field.Valid() {
		return invalid("field", ErrInvalidField, fmt.Sprintf("unknown field number %d", c.Field))
	}
	if err := ValidateClock(c.Clock); err != nil {
		return err
	}
	if c.Replica.IsZero() {
		return invalid("replica id", ErrInvalidID, "replica id must not be the nil UUID")
	}
	if c.Field != FieldTag && c.Tag != "" {
		return invalid("tag", ErrInvalidValue, fmt.Sprintf("a %s change must not name a tag", c.Field))
	}
	if c.Field.IsFeedback() {
		if !isV7(c.Feedback) {
			return invalid("feedback id", ErrInvalidID, "feedback id must be a UUIDv7")
		}
	} else if !c.Feedback.IsZero() {
		return invalid("feedback id", ErrInvalidValue, fmt.Sprintf("a %s change must not name a feedback item", c.Field))
	}
	if c.TextEdit != nil {
		switch {
		case c.Field != FieldBody && c.Field != FieldFeedbackBody:
			return invalid(c.Field.String(), ErrInvalidValue, fmt.Sprintf("%s takes a whole value, not a text edit: only the body and feedback bodies are merged text", c.Field))
		case c.Text != "" || c.Number != 0 || c.Flag:
			return invalid(c.Field.String(), ErrInvalidValue, "a text edit carries no whole value")
		case c.TextEdit.Stamp != c.Stamp:
			return invalid(c.Field.String(), ErrInvalidValue, "a text edit must carry its change's clock and replica")
		}
		return ValidateTextChange(c.TextEdit, textLimit(c.Field))
	}
	switch c.Field.Kind() {
	case KindText:
		if c.Number != 0 || c.Flag {
			return invalid(c.Field.String(), ErrInvalidValue, fmt.Sprintf("%s takes text", c.Field))
		}
	case KindNumber:
		if c.Text != "" || c.Flag {
			return invalid(c.Field.String(), ErrInvalidValue, fmt.Sprintf("%s takes a number", c.Field))
		}
	case KindFlag:
		if c.Text != "" || c.Number != 0 {
			return invalid(c.Field.String(), ErrInvalidValue, fmt.Sprintf("%s takes true or false", c.Field))
		}
	}
	switch c.Field {
	case FieldTitle:
		return ValidateText("title", c.Text, MaxTitleBytes, false)
	case FieldBody:
		return ValidateText("body", c.Text, MaxBodyBytes, true)
	case FieldFeedbackBody:
		return ValidateText("feedback", c.Text, MaxFeedbackBodyBytes, true)
	case FieldDate:
		if c.Text == "" {
			return nil
		}
		return ValidateDate(c.Text)
	case FieldMood:
		if c.Number < 0 || c.Number > MaxMood {
			return invalid("mood", ErrInvalidValue, fmt.Sprintf("mood %d is out of range: use 0 (not recorded) or 1 to %d", c.Number, MaxMood))
		}
	case FieldTag:
		return ValidateTag(c.Tag)
	}
	return nil
}

// ValidateClock checks that a change's clock could have come from a
// device whose clock was set: after 2020 and within the Timestamp range.
// How far ahead of real time a clock may be is the server's decision.
func ValidateClock(t Timestamp) error {
	if ms := t.Millis(); ms < MinValidMillis || ms >= MaxMillis {
		return invalid("clock", ErrInvalidClock, fmt.Sprintf("clock %d is not a time between 2020 and the year 10000", uint64(t)))
	}
	return nil
}

// ValidateText checks a text value: valid UTF-8, at most limit bytes, no
// control characters (newlines and tabs are allowed only if multiline).
func ValidateText(subject, s string, limit int, multiline bool) error {
	if len(s) > limit {
		return invalid(subject, ErrTooLarge, fmt.Sprintf("%s is %d bytes; the limit is %d bytes", subject, len(s), limit))
	}
	if !utf8.ValidString(s) {
		return invalid(subject, ErrInvalidUTF8, fmt.Sprintf("%s is not valid UTF-8", subject))
	}
	for i := 0; i < len(s); {
		// Most text is ASCII: a byte is a character, and only those
		// below a space and DEL are control characters.
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		} else if r >= ' ' && r != 0x7f {
			i++
			continue
		}
		i += size
		if r == '\n' || r == '\t' || r == '\r' {
			if multiline {
				continue
			}
			return invalid(subject, ErrInvalidText, fmt.Sprintf("%s must be one line", subject))
		}
		if unicode.IsControl(r) {
			return invalid(subject, ErrInvalidText, fmt.Sprintf("%s contains the control character %U", subject, r))
		}
	}
	return nil
}

// ValidateDate checks a calendar date written YYYY-MM-DD.
func ValidateDate(s string) error {
	if len(s) != 10 {
		return invalid("date", ErrInvalidDate, fmt.Sprintf("date %q is not written YYYY-MM-DD", truncate(s, 20)))
	}
	if _, err := time.Parse(time.DateOnly, s); err != nil {
		return invalid("date", ErrInvalidDate, fmt.Sprintf("date %q is not a calendar date written YYYY-MM-DD", s))
	}
	return nil
}

// ValidateTag checks a tag name: 1 to MaxTagBytes bytes of UTF-8, no
// control characters, no leading or trailing space.
func ValidateTag(name string) error {
	if name == "" {
		return invalid("tag", ErrInvalidValue, "tag must not be empty")
	}
	if err := ValidateText("tag", name, MaxTagBytes, false); err != nil {
		return err
	}
	first, _ := utf8.DecodeRuneInString(name)
	last, _ := utf8.DecodeLastRuneInString(name)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return invalid("tag", ErrInvalidValue, fmt.Sprintf("tag %q must not start or end with a space", name))
	}
	return nil
}

// ValidateStudyCode checks a study code such as "PN-A": 1 to
// MaxAuthorBytes letters, digits, '-', '_' or '.'. Study codes are the
// only name research output carries, so they stay plain.
func ValidateStudyCode(code string) error {
	if code == "" || len(code) > MaxAuthorBytes {
		return invalid("study code", ErrInvalidValue, fmt.Sprintf("study code must be 1 to %d characters", MaxAuthorBytes))
	}
	for i := 0; i < len(code); i++ {
		c := code[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return invalid("study code", ErrInvalidValue, fmt.Sprintf("study code %q may hold only letters, digits, '-', '_' and '.'", truncate(code, 40)))
		}
	}
	return nil
}

// Admits reports whether applying c would keep the entry within its
// limits (tags present, tag records, feedback items). It returns a
// ValidationError wrapping ErrTooLarge when it would not.
func (e *Entry) Admits(c *Change) error {
	switch {
	case c.Field == FieldTag && c.Flag:
		i, ok := e.findTag(c.Tag)
		if ok && e.Tags[i].Present {
			return nil
		}
		present := 0
		for j := range e.Tags {
			if e.Tags[j].Present {
				present++
			}
		}
		if present >= MaxTags {
			return invalid("tags", ErrTooLarge, fmt.Sprintf("entry has %d tags; the limit is %d", present, MaxTags))
		}
		if !ok && len(e.Tags) >= MaxTagRecords {
			return invalid("tags", ErrTooLarge, fmt.Sprintf("entry has used %d tag names; the limit is %d", len(e.Tags), MaxTagRecords))
		}
	case c.Field == FieldTag:
		if _, ok := e.findTag(c.Tag); !ok && len(e.Tags) >= MaxTagRecords {
			return invalid("tags", ErrTooLarge, fmt.Sprintf("entry has used %d tag names; the limit is %d", len(e.Tags), MaxTagRecords))
		}
	case c.Field.IsFeedback():
		if _, ok := e.findFeedback(c.Feedback); !ok && len(e.Feedback) >= MaxFeedbackItems {
			return invalid("feedback", ErrTooLarge, fmt.Sprintf("entry has %d feedback items; the limit is %d", len(e.Feedback), MaxFeedbackItems))
		}
	}
	return nil
}

// isV7 reports whether id is a UUIDv7 of the RFC 9562 variant.
func isV7[T ~[16]byte](id T) bool { return id[6]>>4 == 7 && id[8]>>6 == 2 }
