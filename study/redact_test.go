package study_test

import (
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

func mustRedactor(t *testing.T, terms ...string) *study.Redactor {
	t.Helper()
	var list []study.RedactTerm
	for _, term := range terms {
		tm := study.RedactTerm{Term: term}
		if name, marker, ok := strings.Cut(term, "="); ok {
			tm = study.RedactTerm{Term: name, Marker: marker}
		}
		list = append(list, tm)
	}
	rd, err := study.NewRedactor(study.DefaultRedaction(), list)
	if err != nil {
		t.Fatal(err)
	}
	return rd
}

func TestRedactDefaults(t *testing.T) {
	rd := mustRedactor(t, "John Smith", "John", "Anna", "Zoë", "Łódź=[place]", "O'Brien", "Ahmed Al-Sayed", "محمد")
	for _, tc := range []struct {
		name, in, want string
	}{
		// Phone numbers, UK formats.
		{"mobile international", "call +44 7700 900123 now", "call [phone] now"},
		{"mobile national", "call 07700 900123.", "call [phone]."},
		{"mobile no spaces", "07700900123", "[phone]"},
		{"mobile international no spaces", "ring +447700900123!", "ring [phone]!"},
		{"london", "office 020 7946 0958", "office [phone]"},
		{"london parentheses", "office (020) 7946 0958", "office [phone]"},
		{"international with (0)", "+44 (0)20 7946 0958", "[phone]"},
		{"00 44", "0044 20 7946 0958", "[phone]"},
		{"dashes", "0161-496-0000", "[phone]"},
		{"freephone 9 digits", "0800 123 456", "[phone]"},
		{"two phones", "07700 900123 or 07700 900456", "[phone] or [phone]"},
		// Not phone numbers.
		{"date", "on 2026-01-15 we met", "on 2026-01-15 we met"},
		{"date and time", "2026-01-15 10:30", "2026-01-15 10:30"},
		{"dotted date", "15.01.2026 at 09.45", "15.01.2026 at 09.45"},
		{"slashed date", "15/01/2026", "15/01/2026"},
		{"time", "from 09:00 to 17:30", "from 09:00 to 17:30"},
		{"inside a longer number", "ref 1207700900123", "ref 1207700900123"},
		{"too many digits", "077009001234567", "077009001234567"},
		{"short number", "room 0123", "room 0123"},
		{"money", "£20.50 and 300 quid", "£20.50 and 300 quid"},
		// E-mail addresses.
		{"email", "write to jo.bloggs+x@example.org today", "write to [email] today"},
		{"email subdomain", "<a.b@mail.example.co.uk>", "<[email]>"},
		{"email unicode", "zoë@exämple.de", "[email]"},
		{"email at end of sentence", "It is kim@example.com.", "It is [email]."},
		{"not an email", "meet @ 5, tom@home", "meet @ 5, tom@home"},
		// Postcodes.
		{"postcode SW1A", "lives near SW1A 1AA.", "lives near [postcode]."},
		{"postcode M1", "M1 1AE", "[postcode]"},
		{"postcode B33", "B33 8TH, Birmingham", "[postcode], Birmingham"},
		{"postcode EC1A", "EC1A 1BB", "[postcode]"},
		{"postcode W1A", "W1A 0AX", "[postcode]"},
		{"postcode lower case no space", "sw1a1aa", "[postcode]"},
		{"not a postcode", "took the M4 5pm bus", "took the M4 5pm bus"},
		{"not a postcode in a word", "XSW1A 1AA", "XSW1A 1AA"},
		// Terms.
		{"term", "Saw John today", "Saw [name] today"},
		{"longest first", "Saw John Smith today", "Saw [name] today"},
		{"longest that is a whole word", "John Smithson came", "[name] Smithson came"},
		{"case", "JOHN and john and jOhN", "[name] and [name] and [name]"},
		{"whole words only", "Annabel and Joanna met Anna", "Annabel and Joanna met [name]"},
		{"possessive", "Anna's room", "[name]'s room"},
		{"space run", "John   Smith", "[name]"},
		{"line break", "John\nSmith", "[name]"},
		{"accents", "ZOË called", "[name] called"},
		{"decomposed accents", "Zoe\u0308 called", "[name] called"},
		{"accent is part of the word", "Zoëy", "Zoëy"},
		{"own marker", "went to Łódź, then ŁÓDŹ", "went to [place], then [place]"},
		{"apostrophe inside", "o'brien said", "[name] said"},
		{"hyphen inside", "ahmed al-sayed", "[name]"},
		{"arabic", "قال محمد شيئا", "قال [name] شيئا"},
		{"arabic inside a word", "محمدي", "محمدي"},
		{"digits glued", "John2", "John2"},
		{"underscore is not a letter", "_John_", "_[name]_"},
		// Several kinds at once.
		{"all", "John (07700 900123, john@example.org) at B33 8TH", "[name] ([phone], [email]) at [postcode]"},
		{"email wins over term", "john.smith@example.org", "[email]"},
		{"nothing", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, counts := rd.Redact(tc.in)
			if got != tc.want {
				t.Fatalf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
			markers := strings.Count(tc.want, "[") - strings.Count(tc.in, "[")
			if counts.Total() != markers {
				t.Fatalf("Redact(%q) counts %v, want %d replacements", tc.in, counts, markers)
			}
		})
	}
}

func TestRedactCounts(t *testing.T) {
	rd := mustRedactor(t, "Anna")
	_, c := rd.Redact("Anna, Anna, 07700 900123")
	if c["[name]"] != 2 || c["[phone]"] != 1 || len(c) != 2 {
		t.Fatalf("counts = %v", c)
	}
}

func TestRedactUnchangedTextIsTheSame(t *testing.T) {
	rd := mustRedactor(t, "Anna")
	in := "Zoe\u0308 had nothing to hide" // not NFC, and nothing to redact
	if got, c := rd.Redact(in); got != in || c != nil {
		t.Fatalf("Redact(%q) = %q, %v; want it unchanged", in, got, c)
	}
}

func TestRedactDisabled(t *testing.T) {
	r := study.DefaultRedaction()
	r.Enabled = false
	rd, err := study.NewRedactor(r, []study.RedactTerm{{Term: "Anna"}})
	if err != nil {
		t.Fatal(err)
	}
	in := "Anna 07700 900123"
	if got, _ := rd.Redact(in); got != in {
		t.Fatalf("disabled Redact = %q", got)
	}
	var nilRd *study.Redactor
	if got, _ := nilRd.Redact(in); got != in {
		t.Fatalf("nil Redact = %q", got)
	}
}

func TestRedactEntry(t *testing.T) {
	rd := mustRedactor(t, "Anna", "Bob")
	e := &syncengine.Entry{
		Title: syncengine.Text{Value: "With Anna"},
		Body:  syncengine.Text{Value: "Anna rang from 07700 900123"},
		Tags:  []syncengine.Tag{{Name: "anna", Present: true}, {Name: "bob", Present: true}, {Name: "housing", Present: true}},
	}
	got, c := rd.RedactEntry(e)
	if got.Title.Value != "With [name]" || got.Body.Value != "[name] rang from [phone]" {
		t.Fatalf("redacted title %q body %q", got.Title.Value, got.Body.Value)
	}
	if names := got.TagNames(); strings.Join(names, ",") != "[name],housing" {
		t.Fatalf("tags = %v", names)
	}
	if c["[name]"] != 4 || c["[phone]"] != 1 {
		t.Fatalf("counts = %v", c)
	}
	if e.Title.Value != "With Anna" || e.Tags[0].Name != "anna" {
		t.Fatal("RedactEntry changed its input")
	}
}

func TestValidateRedaction(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    study.RedactPattern
	}{
		{"bad regexp", study.RedactPattern{Name: "x", Marker: "[x]", Expr: "("}},
		{"matches empty", study.RedactPattern{Name: "x", Marker: "[x]", Expr: "a*"}},
		{"no marker", study.RedactPattern{Name: "x", Expr: "a"}},
		{"bad name", study.RedactPattern{Name: "Has Space", Marker: "[x]", Expr: "a"}},
		{"long expr", study.RedactPattern{Name: "x", Marker: "[x]", Expr: strings.Repeat("a", study.MaxRedactExprBytes+1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := study.Redaction{Enabled: true, Patterns: []study.RedactPattern{tc.p}}
			if err := study.ValidateRedaction(&r); syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Fatalf("ValidateRedaction = %v, want EINVALID", err)
			}
		})
	}
	t.Run("duplicate name", func(t *testing.T) {
		p := study.RedactPattern{Name: "x", Marker: "[x]", Expr: "a"}
		r := study.Redaction{Patterns: []study.RedactPattern{p, p}}
		if err := study.ValidateRedaction(&r); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Fatalf("ValidateRedaction = %v, want EINVALID", err)
		}
	})
	t.Run("OK", func(t *testing.T) {
		r := study.DefaultRedaction()
		if err := study.ValidateRedaction(&r); err != nil {
			t.Fatal(err)
		}
	})
}

func TestValidateRedactTerm(t *testing.T) {
	tm := study.RedactTerm{Term: "  John \t Smith "}
	if err := study.ValidateRedactTerm(&tm); err != nil || tm.Term != "John Smith" || tm.Marker != study.DefaultTermMarker {
		t.Fatalf("ValidateRedactTerm = %v, %+v", err, tm)
	}
	for _, bad := range []string{"", "   ", "-John", "John!", strings.Repeat("a", study.MaxRedactTermBytes+1), "a\x00b"} {
		tm := study.RedactTerm{Term: bad}
		if err := study.ValidateRedactTerm(&tm); err == nil || (syncengine.ErrorCode(err) != syncengine.EINVALID && syncengine.ErrorCode(err) != syncengine.ETOOLARGE) {
			t.Errorf("ValidateRedactTerm(%q) = %v, want EINVALID", bad, err)
		}
	}
	if study.RedactTermKey("JOHN  smith") != study.RedactTermKey("john Smith") {
		t.Fatal("keys of the same term differ")
	}
	if study.RedactTermKey("Zoe\u0308") != study.RedactTermKey("ZOË") {
		t.Fatal("keys of the same term in two normalisation forms differ")
	}
}
