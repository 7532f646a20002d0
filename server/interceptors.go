package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
)

// callNote lets inner interceptors and handlers add to the log line the
// outer interceptor writes when the call ends.
type callNote struct {
	device string
	role   study.Role
}

type callNoteKey struct{}

// observer logs every RPC (procedure, code, duration, device; never
// content) and records it in the metrics.
type observer struct {
	log     *slog.Logger
	metrics *Metrics
}

func (o *observer) finish(ctx context.Context, procedure string, start time.Time, note *callNote, err error) {
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	d := time.Since(start)
	o.metrics.observeRPC(procedure, code, d)
	level := slog.LevelInfo
	if err != nil && connect.CodeOf(err) == connect.CodeInternal {
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("procedure", procedure), slog.String("code", code), slog.Float64("ms", float64(d.Microseconds())/1000)}
	if note.device != "" {
		attrs = append(attrs, slog.String("device", note.device), slog.String("role", note.role.String()))
	}
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) {
			attrs = append(attrs, slog.String("error", ce.Message()))
		}
	}
	o.log.LogAttrs(ctx, level, "rpc", attrs...)
}

func (o *observer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start, note := time.Now(), &callNote{}
		resp, err := next(context.WithValue(ctx, callNoteKey{}, note), req)
		o.finish(ctx, req.Spec().Procedure, start, note, err)
		return resp, err
	}
}

func (o *observer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (o *observer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start, note := time.Now(), &callNote{}
		err := next(context.WithValue(ctx, callNoteKey{}, note), conn)
		o.finish(ctx, conn.Spec().Procedure, start, note, err)
		return err
	}
}

// authenticator checks the bearer token of every call but the public ones
// and then the policy table; the handler's context carries the Identity.
type authenticator struct {
	db  study.Store
	log *slog.Logger
}

func (a *authenticator) authenticate(ctx context.Context, procedure string, header http.Header) (context.Context, error) {
	if publicProcedures[procedure] {
		return ctx, nil
	}
	if _, ok := policy[procedure]; !ok {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("this procedure is not open to anyone"))
	}
	auth := header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(`missing "Authorization: Bearer <device token>" header: enrol the device first`))
	}
	id, err := a.db.Authenticate(ctx, strings.TrimSpace(token))
	if err != nil {
		return nil, connectError(ctx, a.log, err)
	}
	if note, ok := ctx.Value(callNoteKey{}).(*callNote); ok {
		note.device, note.role = id.Device, id.Role
	}
	if !allowed(procedure, id.Role) {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("a "+id.Role.String()+" may not call "+procedure))
	}
	if err := study.CheckOperation(id, operations[procedure]); err != nil {
		return nil, connectError(ctx, a.log, err)
	}
	switch procedure {
	case diaryv1connect.SyncServicePushProcedure, diaryv1connect.SyncServicePullProcedure, diaryv1connect.SyncServiceMarkReadProcedure:
		a.db.TouchDevice(id.DeviceID)
	}
	return study.NewContext(ctx, id), nil
}

func (a *authenticator) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a *authenticator) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (a *authenticator) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.authenticate(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}
