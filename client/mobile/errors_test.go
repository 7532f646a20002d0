package mobile

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/syncengine"
)

// TestErrorCodes: every kind of failure comes out with its code, and the
// text an app gets from an exception or NSError reads back to the same
// code and message.
func TestErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code string
	}{
		{"ServerInvalid", &client.ServerError{Action: "push", Code: syncengine.EINVALID, Message: "bad"}, CodeInvalid},
		{"ServerPermission", &client.ServerError{Action: "push", Code: syncengine.EPERMISSION, Message: "no"}, CodePermission},
		{"ServerRevoked", &client.ServerError{Action: "pull", Code: syncengine.EUNAUTHENTICATED, Message: "revoked"}, CodeUnauthenticated},
		{"ServerConflict", &client.ServerError{Action: "pull", Code: syncengine.ECONFLICT, Message: "x"}, CodeConflict},
		{"ServerBusy", &client.ServerError{Action: "pull", Code: syncengine.EUNAVAILABLE, Message: "x"}, CodeUnavailable},
		{"ServerLimit", &client.ServerError{Action: "push", Code: syncengine.ETOOLARGE, Message: "x"}, CodeTooLarge},
		{"ServerRateLimit", &client.ServerError{Action: "enrol", Code: syncengine.ERATELIMIT, Message: "x"}, CodeRateLimited},
		{"ServerFull", &client.ServerError{Action: "push", Code: syncengine.ENOSPACE, Message: "x"}, CodeNoSpace},
		{"ServerInternal", &client.ServerError{Action: "push", Code: syncengine.EINTERNAL, Message: "x"}, CodeInternal},
		{"Network", &client.NetworkError{Action: "pull", Err: errors.New("connection refused")}, CodeNetwork},
		{"WrappedNetwork", fmt.Errorf("sync: %w", &client.NetworkError{Action: "push", Err: errors.New("reset")}), CodeNetwork},
		{"NotEnrolled", client.ErrNotEnrolled, CodeNotEnrolled},
		{"Cancelled", fmt.Errorf("pull: %w", context.Canceled), CodeCancelled},
		{"Domain", syncengine.Errorf(syncengine.ENOTFOUND, "no such entry"), CodeNotFound},
		{"DomainLimit", syncengine.Errorf(syncengine.ERATELIMIT, "too many attempts"), CodeRateLimited},
		{"Bug", errors.New("disk I/O error"), CodeInternal},
		{"Facade", &Error{Code: CodeClosed, Message: "closed"}, CodeClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := wrap(tc.err)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("wrap gave a %T", err)
			}
			if e.Code != tc.code || e.Message == "" {
				t.Fatalf("code %q message %q, want code %q", e.Code, e.Message, tc.code)
			}
			back := ParseError(err.Error())
			if back.Code != e.Code || back.Message != e.Message {
				t.Fatalf("read back as %+v from %q", back, err.Error())
			}
		})
	}
	if wrap(nil) != nil {
		t.Fatal("wrap(nil) is not a nil error")
	}
	if e := ParseError("java.io.IOException: disk full"); e.Code != CodeInternal || e.Message != "java.io.IOException: disk full" {
		t.Fatalf("text from elsewhere: %+v", e)
	}
}
