package export

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// lineFeeds writes every line break of s as LF: CRLF and a lone CR both
// become LF. Devices write all three, and a reader sees the same line
// break in each, but tools that count characters (REFI-QDA selections)
// or split records (CSV readers) do not treat them alike.
func lineFeeds(s string) string {
	if !strings.ContainsRune(s, '\r') {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.ReplaceAll(s, "\r", "\n")
}

// plainText prepares text for a REFI-QDA project: valid UTF-8, LF line
// breaks, no character that XML 1.0 cannot carry or that is a control
// character other than tab and line feed (each becomes U+FFFD, so that
// character positions do not shift), in Unicode normalisation form C.
//
// Tools code a REFI-QDA text source by character positions, so the text
// file and the project must agree on every character: NFC makes "é" one
// character whichever way the device composed it. The server's
// validation already refuses control characters; this is the last line
// of defence, not the rule.
func plainText(s string) string {
	s = lineFeeds(strings.ToValidUTF8(s, "\uFFFD"))
	if strings.IndexFunc(s, unsafeRune) >= 0 {
		s = strings.Map(func(r rune) rune {
			if unsafeRune(r) {
				return utf8.RuneError
			}
			return r
		}, s)
	}
	return norm.NFC.String(s)
}

// unsafeRune reports whether r must not reach a REFI-QDA project: a
// control character other than tab and line feed, or one of the two
// non-characters XML 1.0 excludes. (Surrogates cannot occur: they are not
// valid UTF-8 and plainText replaces invalid UTF-8 first.)
func unsafeRune(r rune) bool {
	switch {
	case r == '\t' || r == '\n':
		return false
	case unicode.IsControl(r):
		return true
	case r == 0xFFFE || r == 0xFFFF:
		return true
	}
	return false
}
