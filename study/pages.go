package study

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/diarysync/diarysync/syncengine"
)

// Page sizes for administrative lists.
const (
	DefaultListPageSize = 100
	MaxListPageSize     = 1000
)

// ListPageSize returns the page size to use when n was asked for: the
// default for 0, at most MaxListPageSize.
func ListPageSize(n uint32) int {
	switch {
	case n == 0:
		return DefaultListPageSize
	case n > MaxListPageSize:
		return MaxListPageSize
	}
	return int(n)
}

// maxPageTokenBytes bounds a page token a caller sends.
const maxPageTokenBytes = 200

var errPageToken = syncengine.Errorf(syncengine.EINVALID, "page token is not one this server issued")

// EncodePageToken makes an opaque page token of a position in a list.
func EncodePageToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// DecodePageToken returns the position an EncodePageToken token holds.
func DecodePageToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	// Every position this server issues is text; a store need not
	// compare with bytes that are not.
	if err != nil || len(tok) > maxPageTokenBytes || !utf8.Valid(b) {
		return "", errPageToken
	}
	return string(b), nil
}

// EncodeIntPageToken makes a page token of an integer position.
func EncodeIntPageToken(n int64) string { return EncodePageToken(strconv.FormatInt(n, 10)) }

// DecodeIntPageToken returns the integer position a token holds; the
// empty token is 0, the start.
func DecodeIntPageToken(tok string) (int64, error) {
	if tok == "" {
		return 0, nil
	}
	s, err := DecodePageToken(tok)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errPageToken
	}
	return n, nil
}

// ErrPageToken is the error for a page token this server did not issue.
func ErrPageToken() error { return errPageToken }
