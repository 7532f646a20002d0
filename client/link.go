package client

import (
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// maxEnrolLinkBytes bounds a scanned link: a QR code can hold far more
// than a server address and a code need.
const maxEnrolLinkBytes = 2048

// ParseEnrolLink reads the link an enrolment QR code carries
// (diarysync:enrol?server=<URL>&code=<code>, see study.EnrolLink) and
// returns the server's address and the one-time code, ready for Enroll.
// It checks that the address is an http or https URL and that the code
// has the form of one; whether the code works is for the server to say.
func ParseEnrolLink(link string) (serverURL, code string, err error) {
	link = strings.TrimSpace(link)
	if len(link) > maxEnrolLinkBytes {
		return "", "", syncengine.Errorf(syncengine.EINVALID, "the enrolment link is longer than %d bytes", maxEnrolLinkBytes)
	}
	u, err := url.Parse(link)
	if err != nil || u.Scheme != "diarysync" || u.Opaque != "enrol" {
		return "", "", syncengine.Errorf(syncengine.EINVALID, "this is not a diarysync enrolment link: it should start with %q", study.EnrolLinkPrefix)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", "", syncengine.Errorf(syncengine.EINVALID, "the enrolment link is damaged: %v", err)
	}
	if len(q["server"]) != 1 || len(q["code"]) != 1 {
		return "", "", syncengine.Errorf(syncengine.EINVALID, "the enrolment link must carry one server and one code")
	}
	serverURL, code = q.Get("server"), q.Get("code")
	s, err := url.Parse(serverURL)
	if err != nil || (s.Scheme != "http" && s.Scheme != "https") || s.Host == "" || s.User != nil || s.RawQuery != "" || s.Fragment != "" {
		return "", "", syncengine.Errorf(syncengine.EINVALID, "the enrolment link's server %q is not an http or https address", truncateText(serverURL, 80))
	}
	if study.CheckCodeForm(code) != nil {
		return "", "", syncengine.Errorf(syncengine.EINVALID, "the enrolment link's code is not an enrolment code")
	}
	return strings.TrimRight(serverURL, "/"), code, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
