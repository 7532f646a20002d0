package client

import (
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

func TestParseEnrolLink(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		for _, server := range []string{"https://diary.example.org", "http://127.0.0.1:8080", "https://example.org/diary"} {
			link := study.EnrolLink(server, "K7MPQ-3XRTA")
			gotServer, gotCode, err := ParseEnrolLink(link)
			if err != nil || gotServer != server || gotCode != "K7MPQ-3XRTA" {
				t.Fatalf("ParseEnrolLink(%q) = %q, %q, %v", link, gotServer, gotCode, err)
			}
		}
		// As typed or scanned with spaces around, and with a trailing slash.
		s, c, err := ParseEnrolLink("  diarysync:enrol?server=https%3A%2F%2Fdiary.example.org%2F&code=k7mpq3xrta\n")
		if err != nil || s != "https://diary.example.org" || c != "k7mpq3xrta" {
			t.Fatalf("got %q, %q, %v", s, c, err)
		}
	})
	for name, link := range map[string]string{
		"ErrOtherScheme":    "https://diary.example.org/enrol?server=x&code=K7MPQ-3XRTA",
		"ErrOtherAction":    "diarysync:open?server=https%3A%2F%2Fa.org&code=K7MPQ-3XRTA",
		"ErrNoCode":         "diarysync:enrol?server=https%3A%2F%2Fa.org",
		"ErrTwoCodes":       "diarysync:enrol?server=https%3A%2F%2Fa.org&code=K7MPQ-3XRTA&code=K7MPQ-3XRTB",
		"ErrBadCode":        "diarysync:enrol?server=https%3A%2F%2Fa.org&code=hello",
		"ErrServerNotHTTP":  "diarysync:enrol?server=ftp%3A%2F%2Fa.org&code=K7MPQ-3XRTA",
		"ErrServerNoHost":   "diarysync:enrol?server=https%3A%2F%2F&code=K7MPQ-3XRTA",
		"ErrServerWithUser": "diarysync:enrol?server=https%3A%2F%2Fme%40a.org&code=K7MPQ-3XRTA",
		"ErrBadEscape":      "diarysync:enrol?server=%zz&code=K7MPQ-3XRTA",
		"ErrTooLong":        "diarysync:enrol?server=https%3A%2F%2Fa.org&code=K7MPQ-3XRTA&x=" + strings.Repeat("a", 3000),
		"ErrEmpty":          "",
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := ParseEnrolLink(link); syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Fatalf("ParseEnrolLink(%.60q) = %v, want EINVALID", link, err)
			}
		})
	}
}
