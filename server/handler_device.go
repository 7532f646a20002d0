package server

import (
	"context"
	"log/slog"
	"net"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type deviceHandler struct {
	db      study.Store
	log     *slog.Logger
	limiter *failureLimiter
}

func newDeviceHandler(db study.Store, log *slog.Logger, limiter *failureLimiter) diaryv1connect.DeviceServiceHandler {
	return &deviceHandler{db: db, log: log, limiter: limiter}
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
	key := peerKey(ctx)
	if ok, wait := h.limiter.Allow(key); !ok {
		return nil, connectError(ctx, h.log, syncengine.Errorf(syncengine.ERATELIMIT,
			"too many wrong enrolment codes from this address: try again in %s", wait.Round(time.Second)+time.Second))
	}
	if len(req.GetCode()) > study.MaxCodeBytes {
		h.limiter.Fail(key)
		return nil, connectError(ctx, h.log, study.ErrBadCode)
	}
	enr, err := h.db.Enroll(ctx, req.GetCode(), req.GetDeviceName())
	if err != nil {
		if syncengine.ErrorCode(err) == syncengine.EUNAUTHENTICATED {
			h.limiter.Fail(key)
		}
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device enrolled", "device", enr.Device, "study_code", enr.StudyCode, "role", enr.Role.String())
	return &diaryv1.EnrollResponse{
		DeviceId:     enr.Device,
		Token:        enr.Token,
		ReplicaId:    enr.Replica.String(),
		Role:         diaryv1.Role(enr.Role),
		StudyCode:    enr.StudyCode,
		DisplayName:  enr.DisplayName,
		ServerTime:   timestamppb.New(h.db.Now()),
		Capabilities: capabilities,
	}, nil
}
