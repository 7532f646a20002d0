package syncengine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

func validChange() Change {
	return Change{
		Entry: NewEntryID(),
		Field: FieldTitle,
		Text:  "Outreach, Tuesday",
		Stamp: Stamp{Clock: NewTimestamp(1795788185123, 0), Replica: NewReplicaID()},
	}
}

func TestValidateChange(t *testing.T) {
	feedbackID := NewFeedbackID()
	for _, tc := range []struct {
		name   string
		edit   func(c *Change)
		cause  error // nil: valid
		detail string
	}{
		{"OK", func(c *Change) {}, nil, ""},
		{"OKEmptyTitle", func(c *Change) { c.Text = "" }, nil, ""},
		{"OKBodyAtLimit", func(c *Change) { c.Field, c.Text = FieldBody, strings.Repeat("a", MaxBodyBytes) }, nil, ""},
		{"OKBodyMultiline", func(c *Change) { c.Field, c.Text = FieldBody, "line one\r\nline two\n\tindented 🙂" }, nil, ""},
		{"OKDate", func(c *Change) { c.Field, c.Text = FieldDate, "2026-02-28" }, nil, ""},
		{"OKNoDate", func(c *Change) { c.Field, c.Text = FieldDate, "" }, nil, ""},
		{"OKMood", func(c *Change) { c.Field, c.Text, c.Number = FieldMood, "", 7 }, nil, ""},
		{"OKTag", func(c *Change) { c.Field, c.Text, c.Tag, c.Flag = FieldTag, "", "housing", true }, nil, ""},
		{"OKFeedback", func(c *Change) { c.Field, c.Feedback = FieldFeedbackBody, feedbackID }, nil, ""},

		{"ErrNilEntry", func(c *Change) { c.Entry = EntryID{} }, ErrInvalidID, "UUIDv7"},
		{"ErrEntryV4", func(c *Change) { c.Entry = EntryID(NewReplicaID()) }, ErrInvalidID, "UUIDv7"},
		{"ErrField", func(c *Change) { c.Field = 99 }, ErrInvalidField, "unknown field"},
		{"ErrZeroClock", func(c *Change) { c.Clock = 0 }, ErrInvalidClock, "clock"},
		{"ErrClockBefore2020", func(c *Change) { c.Clock = NewTimestamp(MinValidMillis-1, 0) }, ErrInvalidClock, "clock"},
		{"ErrMaxClock", func(c *Change) { c.Clock = ^Timestamp(0) }, ErrInvalidClock, "clock"},
		{"ErrNilReplica", func(c *Change) { c.Replica = ReplicaID{} }, ErrInvalidID, "replica"},
		{"ErrTitleTooLong", func(c *Change) { c.Text = strings.Repeat("é", MaxTitleBytes) }, ErrTooLarge, "limit is 1024 bytes"},
		{"ErrTitleNewline", func(c *Change) { c.Text = "a\nb" }, ErrInvalidText, "one line"},
		{"ErrTitleNUL", func(c *Change) { c.Text = "a\x00b" }, ErrInvalidText, "control character"},
		{"ErrTitleUTF8", func(c *Change) { c.Text = "caf\xe9" }, ErrInvalidUTF8, "UTF-8"},
		{"ErrBodyTooLong", func(c *Change) { c.Field, c.Text = FieldBody, strings.Repeat("a", MaxBodyBytes+1) }, ErrTooLarge, "limit is 262144 bytes"},
		{"ErrBodyUTF8", func(c *Change) { c.Field, c.Text = FieldBody, "\xff" }, ErrInvalidUTF8, "UTF-8"},
		{"ErrDateFormat", func(c *Change) { c.Field, c.Text = FieldDate, "27/11/2026" }, ErrInvalidDate, "YYYY-MM-DD"},
		{"ErrDateCalendar", func(c *Change) { c.Field, c.Text = FieldDate, "2026-02-30" }, ErrInvalidDate, "calendar date"},
		{"ErrMoodRange", func(c *Change) { c.Field, c.Text, c.Number = FieldMood, "", 11 }, ErrInvalidValue, "out of range"},
		{"ErrMoodNegative", func(c *Change) { c.Field, c.Text, c.Number = FieldMood, "", -1 }, ErrInvalidValue, "out of range"},
		{"ErrMoodAsText", func(c *Change) { c.Field = FieldMood }, ErrInvalidValue, "takes a number"},
		{"ErrFlagWithText", func(c *Change) { c.Field = FieldDeleted }, ErrInvalidValue, "true or false"},
		{"ErrTitleWithFlag", func(c *Change) { c.Flag = true }, ErrInvalidValue, "takes text"},
		{"ErrTagEmpty", func(c *Change) { c.Field, c.Text, c.Tag = FieldTag, "", "" }, ErrInvalidValue, "empty"},
		{"ErrTagLong", func(c *Change) { c.Field, c.Text, c.Tag = FieldTag, "", strings.Repeat("t", MaxTagBytes+1) }, ErrTooLarge, "limit is 64"},
		{"ErrTagSpace", func(c *Change) { c.Field, c.Text, c.Tag = FieldTag, "", " housing" }, ErrInvalidValue, "space"},
		{"ErrTagOnTitle", func(c *Change) { c.Tag = "housing" }, ErrInvalidValue, "must not name a tag"},
		{"ErrFeedbackNoID", func(c *Change) { c.Field = FieldFeedbackBody }, ErrInvalidID, "feedback id"},
		{"ErrFeedbackIDOnTitle", func(c *Change) { c.Feedback = feedbackID }, ErrInvalidValue, "feedback item"},
		{"ErrFeedbackTooLong", func(c *Change) {
			c.Field, c.Feedback, c.Text = FieldFeedbackBody, feedbackID, strings.Repeat("a", MaxFeedbackBodyBytes+1)
		}, ErrTooLarge, "limit is 8192"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validChange()
			tc.edit(&c)
			err := ValidateChange(&c)
			if tc.cause == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.cause) {
				t.Fatalf("error %v, want cause %v", err, tc.cause)
			}
			if !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("message %q does not mention %q", err, tc.detail)
			}
			wantCode := EINVALID
			if tc.cause == ErrTooLarge {
				wantCode = ETOOLARGE
			}
			if ErrorCode(err) != wantCode {
				t.Fatalf("ErrorCode = %q, want %q", ErrorCode(err), wantCode)
			}
		})
	}
}

func TestAdmits(t *testing.T) {
	e := &Entry{}
	c := validChange()
	c.Field, c.Text, c.Flag = FieldTag, "", true
	for i := range MaxTags {
		c.Tag = "tag" + strings.Repeat("x", i)
		c.Clock++
		if err := e.Admits(&c); err != nil {
			t.Fatalf("tag %d refused: %v", i, err)
		}
		e.Apply(&c)
	}
	c.Tag = "one-too-many"
	if err := e.Admits(&c); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "limit is 50") {
		t.Fatalf("tag %d: %v", MaxTags+1, err)
	}
	// Re-adding a tag already present is fine at the limit.
	c.Tag = "tag"
	if err := e.Admits(&c); err != nil {
		t.Fatalf("re-adding a present tag: %v", err)
	}
	// Removing never counts against the present limit, but does use a
	// tag name.
	for i := len(e.Tags); i < MaxTagRecords; i++ {
		c.Tag, c.Flag = "gone"+strings.Repeat("y", i%60)+string(rune('a'+i/60)), false
		c.Clock++
		if err := e.Admits(&c); err != nil {
			t.Fatalf("removal %d refused: %v", i, err)
		}
		e.Apply(&c)
	}
	c.Tag = "never-seen"
	if err := e.Admits(&c); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "limit is 200") {
		t.Fatalf("tag record %d: %v", MaxTagRecords+1, err)
	}
}

func TestValidateStudyCode(t *testing.T) {
	for _, ok := range []string{"PN-A", "SUP_1", "r.team", strings.Repeat("A", MaxAuthorBytes)} {
		if err := ValidateStudyCode(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "PN A", "PN/A", "PN-A'; DROP TABLE users;--", "Zoë", strings.Repeat("A", MaxAuthorBytes+1)} {
		if err := ValidateStudyCode(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseIDs(t *testing.T) {
	v7 := NewEntryID().String()
	if id, err := ParseEntryID(v7); err != nil || id.String() != v7 {
		t.Fatalf("ParseEntryID(%q) = %v, %v", v7, id, err)
	}
	for _, bad := range []string{"", "not-a-uuid", strings.ToUpper(v7), "{" + v7 + "}", NewReplicaID().String(), "00000000-0000-0000-0000-000000000000"} {
		if _, err := ParseEntryID(bad); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ParseEntryID(%q) = %v, want ErrInvalidID", bad, err)
		}
	}
	if _, err := ParseReplicaID("00000000-0000-0000-0000-000000000000"); err == nil {
		t.Error("nil replica id accepted")
	}
}

func TestErrorMessage(t *testing.T) {
	if got := ErrorMessage(errors.New("sql: database is locked")); got != "internal error" {
		t.Fatalf("raw error leaked as %q", got)
	}
	if got := ErrorCode(errors.New("x")); got != EINTERNAL {
		t.Fatalf("ErrorCode of a raw error = %q", got)
	}
	err := Errorf(ENOTFOUND, "no user with study code %q", "PN-Z")
	if ErrorCode(err) != ENOTFOUND || ErrorMessage(err) != `no user with study code "PN-Z"` {
		t.Fatalf("got %q %q", ErrorCode(err), ErrorMessage(err))
	}
}

func TestNewEntryIDFrom(t *testing.T) {
	at := time.Date(2026, 11, 27, 14, 0, 0, 123e6, time.UTC)
	r := bytes.NewReader(bytes.Repeat([]byte{0xff}, 20))
	id, err := NewEntryIDFrom(at, r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseEntryID(id.String())
	if err != nil || back != id {
		t.Fatalf("%s does not parse as a UUIDv7: %v", id, err)
	}
	if got := uuid.UUID(id).Time(); time.Unix(got.UnixTime()).Unix() != at.Unix() {
		t.Fatalf("id time %v, want %v", time.Unix(got.UnixTime()), at)
	}
	if _, err := NewEntryIDFrom(at, bytes.NewReader(nil)); err == nil {
		t.Fatal("an empty random source gave an id")
	}
}

// TestValidateTextEveryCharacter compares ValidateText with its
// definition, character by character, on every code point of the Basic
// Multilingual Plane and a few beyond, alone and between other text, on
// one line and on several.
func TestValidateTextEveryCharacter(t *testing.T) {
	want := func(s string, multiline bool) string {
		for _, r := range s {
			if r == '\n' || r == '\t' || r == '\r' {
				if !multiline {
					return "body must be one line"
				}
				continue
			}
			if unicode.IsControl(r) {
				return fmt.Sprintf("body contains the control character %U", r)
			}
		}
		return ""
	}
	check := func(s string) {
		t.Helper()
		for _, multiline := range []bool{false, true} {
			got := ""
			if err := ValidateText("body", s, len(s), multiline); err != nil {
				got = ErrorMessage(err)
			}
			if w := want(s, multiline); got != w {
				t.Fatalf("ValidateText(%q, multiline %v) = %q, want %q", s, multiline, got, w)
			}
		}
	}
	for r := rune(0); r < 0x10000; r++ {
		if utf8.ValidRune(r) {
			check(string(r))
			check("plain ascii " + string(r) + " and é after")
		}
	}
	for _, r := range []rune{0x1F642, 0xE0001, 0x10FFFF} {
		check("x" + string(r) + "\u0085")
	}
}
