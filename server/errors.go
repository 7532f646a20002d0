package server

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
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
	syncengine.ENOSPACE:         connect.CodeResourceExhausted,
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
	if code == syncengine.EINTERNAL || code == syncengine.ENOSPACE {
		// A full disk is the operator's to fix: it is logged as an error
		// with its cause, and the caller gets only the plain message.
		procedure := ""
		if info, ok := connect.CallInfoForHandlerContext(ctx); ok {
			procedure = info.Spec().Procedure
		}
		log.ErrorContext(ctx, string(code)+" error", "procedure", procedure, "err", err)
	}
	ce = connect.NewError(connectCodes[code], errors.New(syncengine.ErrorMessage(err)))
	// Connect codes are coarser than the application's (a size limit, a
	// rate limit and a full disk are all ResourceExhausted): the
	// application's code travels beside it, and so does the one reason a
	// device acts on by itself.
	ce.Meta().Set(wire.ErrorCodeHeader, string(code))
	var ahead *study.CursorAheadError
	if errors.As(err, &ahead) {
		ce.Meta().Set(wire.ErrorReasonHeader, wire.ReasonCursorAhead)
	}
	var de *study.DeviceError
	if errors.As(err, &de) {
		// The device learns its own state in a form a program reads: a
		// revoked device wipes its replica, a pending one waits.
		if detail, derr := connect.NewErrorDetail(&diaryv1.DeviceStatus{
			DeviceId:   de.Device,
			State:      diaryv1.DeviceState(de.State),
			Revocation: diaryv1.RevocationReason(de.Revocation),
			RevokedBy:  de.RevokedBy,
			RevokedAt:  wire.Timestamp(de.RevokedAt),
		}); derr == nil {
			ce.AddDetail(detail)
		}
	}
	return ce
}
