package mobile

import (
	"context"
	"errors"
	"strings"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/syncengine"
)

// Error codes: the stable part of an Error, for programs.
const (
	CodeInvalid         = "invalid"         // the input is malformed or breaks a rule
	CodeTooLarge        = "too_large"       // the input is over a size or count limit
	CodeNotFound        = "not_found"       // no such entry, feedback note or refused change here
	CodeExists          = "exists"          // it exists already
	CodeConflict        = "conflict"        // the current state forbids it
	CodePermission      = "permission"      // this person may not do it
	CodeUnauthenticated = "unauthenticated" // the server does not know this device (revoked?)
	CodeRateLimited     = "rate_limited"    // too many attempts: try again later
	CodeUnavailable     = "unavailable"     // the server is overloaded or shutting down: try again
	CodeNetwork         = "network"         // the server cannot be reached
	CodeNotEnrolled     = "not_enrolled"    // this device has not enrolled yet
	CodeClosed          = "closed"          // the client was closed
	CodeCancelled       = "cancelled"       // Stop or Close cut it short
	CodeInternal        = "internal"        // a bug or a broken replica
	CodeNoSpace         = "no_space"        // the server's storage (or the phone's) is full; nothing was written
)

// Error is what every call of this package returns when it fails. Kotlin
// and Swift see it as an exception (NSError) whose message is Error():
// "code: message". ParseError takes that text apart again.
type Error struct {
	// Code is one of the Code constants.
	Code string
	// Message says what went wrong in words a person understands.
	Message string
}

// Error returns "code: message".
func (e *Error) Error() string { return e.Code + ": " + e.Message }

// ParseError reads the text of an exception (getMessage()) or NSError
// (localizedDescription) that this package threw. Text from elsewhere
// comes back with CodeInternal and the text as its message.
func ParseError(text string) *Error {
	code, msg, ok := strings.Cut(text, ": ")
	if ok && isCode(code) {
		return &Error{Code: code, Message: msg}
	}
	return &Error{Code: CodeInternal, Message: text}
}

func isCode(s string) bool {
	switch s {
	case CodeInvalid, CodeTooLarge, CodeNotFound, CodeExists, CodeConflict, CodePermission, CodeUnauthenticated,
		CodeRateLimited, CodeUnavailable, CodeNetwork, CodeNotEnrolled, CodeClosed, CodeCancelled, CodeInternal, CodeNoSpace:
		return true
	}
	return false
}

// errClosed is what a call on a closed Client returns.
var errClosed = &Error{Code: CodeClosed, Message: "the diary is closed on this device"}

// wrap turns any error into an *Error, and nil into a nil error (never a
// nil *Error, which Go would see as an error).
func wrap(err error) error {
	if err == nil {
		return nil
	}
	return toError(err)
}

func toError(err error) *Error {
	var me *Error
	if errors.As(err, &me) {
		return me
	}
	if errors.Is(err, client.ErrNotEnrolled) {
		return &Error{Code: CodeNotEnrolled, Message: syncengine.ErrorMessage(err)}
	}
	var ne *client.NetworkError
	if errors.As(err, &ne) {
		return &Error{Code: CodeNetwork, Message: "cannot " + ne.Action + ": the server cannot be reached"}
	}
	var se *client.ServerError
	if errors.As(err, &se) {
		// The server's codes are this package's.
		code := string(se.Code)
		if !isCode(code) {
			code = CodeInternal
		}
		return &Error{Code: code, Message: se.Error()}
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Code: CodeCancelled, Message: "stopped before it finished; nothing is lost, and the next sync goes on from there"}
	}
	if code := syncengine.ErrorCode(err); code != syncengine.EINTERNAL {
		return &Error{Code: string(code), Message: syncengine.ErrorMessage(err)}
	}
	return &Error{Code: CodeInternal, Message: "internal error on this device (" + err.Error() + ")"}
}
