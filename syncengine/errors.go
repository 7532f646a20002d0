package syncengine

import (
	"errors"
	"fmt"
)

// Code classifies an application error. The server maps each Code to a
// Connect code in exactly one table; the client shows Message to people.
type Code string

// Application error codes.
const (
	EINVALID         Code = "invalid"         // the input is malformed or breaks a rule
	ETOOLARGE        Code = "too_large"       // the input is over a size or count limit
	ENOTFOUND        Code = "not_found"       // the thing named does not exist
	EEXISTS          Code = "exists"          // the thing already exists
	ECONFLICT        Code = "conflict"        // the current state forbids it
	EPERMISSION      Code = "permission"      // the caller may not do this
	EUNAUTHENTICATED Code = "unauthenticated" // the caller is not known (bad, revoked or missing token)
	ERATELIMIT       Code = "rate_limited"    // too many attempts; try again later
	EUNAVAILABLE     Code = "unavailable"     // shutting down or overloaded; try again
	ENOSPACE         Code = "no_space"        // the storage is full; nothing was written
	EINTERNAL        Code = "internal"        // a bug or a broken store; details are logged, not shown
)

// Error is an application error: a Code for programs and a Message for
// people. Its message never contains diary content.
type Error struct {
	Code    Code
	Message string
}

// Error implements the error interface.
func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the application error in err's chain,
// EINTERNAL for any other non-nil error, and "" for nil.
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		if errors.Is(ve.Err, ErrTooLarge) {
			return ETOOLARGE
		}
		return EINVALID
	}
	return EINTERNAL
}

// ErrorMessage returns the human message of the application error in
// err's chain, and "internal error" for anything else, so that a raw Go
// error string never reaches a user.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Error()
	}
	return "internal error"
}

// Sentinel causes carried by ValidationError; test with errors.Is.
var (
	ErrTooLarge     = errors.New("too large")
	ErrInvalidUTF8  = errors.New("invalid UTF-8")
	ErrInvalidText  = errors.New("invalid text")
	ErrInvalidDate  = errors.New("invalid date")
	ErrInvalidClock = errors.New("invalid clock")
	ErrInvalidID    = errors.New("invalid id")
	ErrInvalidField = errors.New("invalid field")
	ErrInvalidValue = errors.New("invalid value")
)

// ValidationError reports why one value was refused. Subject names what
// was checked ("body", "tag", "clock"); Err is one of the sentinel causes
// above; Detail is a sentence a person understands, naming the limit when
// a limit was broken.
type ValidationError struct {
	Subject string
	Err     error
	Detail  string
}

// Error implements the error interface.
func (e *ValidationError) Error() string { return e.Detail }

// Unwrap returns the sentinel cause.
func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(subject string, cause error, detail string) *ValidationError {
	return &ValidationError{Subject: subject, Err: cause, Detail: detail}
}
