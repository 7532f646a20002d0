package server

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/syncengine"
)

// connectCodes maps application error codes to Connect codes. It is the
// only place where that mapping is made.
var connectCodes = map[syncengine.Code]connect.Code{
	syncengine.EINVALID:         connect.CodeInvalidArgument,
	syncengine.ETOOLARGE:        connect.CodeResourceExhausted,
	syncengine.ENOTFOUND:        connect.CodeNotFound,
	syncengine.EEXISTS:          connect.CodeAlreadyExists,
	syncengine.ECONFLICT:        connect.CodeFailedPrecondition,
	syncengine.EPERMISSION:      connect.CodePermissionDenied,
	syncengine.EUNAUTHENTICATED: connect.CodeUnauthenticated,
	syncengine.ERATELIMIT:       connect.CodeResourceExhausted,
	syncengine.EUNAVAILABLE:     connect.CodeUnavailable,
	syncengine.EINTERNAL:        connect.CodeInternal,
}

// connectError converts an error from the store or the domain into a
// Connect error. Application errors keep their message; anything else is
// logged with its cause and reaches the caller only as "internal error".
// Context cancellation keeps its own code.
func connectError(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	if errors.Is(err, context.Canceled) {
		return connect.NewError(connect.CodeCanceled, errors.New("the request was cancelled"))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("the request ran out of time"))
	}
	code := syncengine.ErrorCode(err)
	if code == syncengine.EINTERNAL {
		procedure := ""
		if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
			procedure = info.Spec().Procedure
		}
		log.ErrorContext(ctx, "internal error", "procedure", procedure, "err", err)
	}
	return connect.NewError(connectCodes[code], errors.New(syncengine.ErrorMessage(err)))
}
