package server

import (
	"context"
	"log/slog"
	"net"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type deviceHandler struct {
	db  study.Store
	log *slog.Logger
}

func newDeviceHandler(db study.Store, log *slog.Logger) diaryv1connect.DeviceServiceHandler {
	return &deviceHandler{db: db, log: log}
}

func peerKey(ctx context.Context) string {
	info, ok := connect.CallInfoForHandlerContext(ctx)
	if !ok {
		return ""
	}
	host, _, err := net.SplitHostPort(info.Peer().Addr)
	if err != nil {
		return info.Peer().Addr
	}
	return host
}

func (h *deviceHandler) Enroll(ctx context.Context, req *diaryv1.EnrollRequest) (*diaryv1.EnrollResponse, error) {
	// The attempt is spent before the code is looked at, so that
	// parallel guesses cannot together pass the limit; anything but a
	// wrong code gives it back.
	key := peerKey(ctx)
	if err := h.db.TakeEnrollAttempt(ctx, key); err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	if len(req.GetCode()) > study.MaxCodeBytes {
		return nil, connectError(ctx, h.log, study.ErrBadCode)
	}
	enr, err := h.db.Enroll(ctx, req.GetCode(), req.GetDeviceName())
	if err == nil || syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED {
		if rerr := h.db.ReturnEnrollAttempt(context.WithoutCancel(ctx), key); rerr != nil {
			h.log.WarnContext(ctx, "cannot give back an enrolment attempt", "err", rerr)
		}
	}
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device enrolled", "device", enr.Device, "study_code", enr.StudyCode, "role", enr.Role.String())
	return &diaryv1.EnrollResponse{
		DeviceId:    enr.Device,
		Token:       enr.Token,
		ReplicaId:   enr.Replica.String(),
		Role:        diaryv1.Role(enr.Role),
		StudyCode:   enr.StudyCode,
		DisplayName: enr.DisplayName,
		ServerTime:  timestamppb.New(h.db.Now()),
	}, nil
}
