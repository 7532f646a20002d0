package server

import (
	"context"
	"log/slog"
	"net/netip"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type deviceHandler struct {
	db      study.Store
	hub     *hub
	log     *slog.Logger
	trusted []netip.Prefix
}

func newDeviceHandler(db study.Store, h *hub, log *slog.Logger, trusted []netip.Prefix) diaryv1connect.DeviceServiceHandler {
	return &deviceHandler{db: db, hub: h, log: log, trusted: trusted}
}

// peerKey returns the address a call comes from (see clientAddr).
func (h *deviceHandler) peerKey(ctx context.Context) string {
	info, ok := connect.CallInfoForHandlerContext(ctx)
	if !ok {
		return ""
	}
	return clientAddr(info.Peer().Addr, info.RequestHeader().Values("X-Forwarded-For"), h.trusted)
}

func (h *deviceHandler) Enroll(ctx context.Context, req *diaryv1.EnrollRequest) (*diaryv1.EnrollResponse, error) {
	// The attempt is spent before the code is looked at, so that
	// parallel guesses cannot together pass the limit; anything but a
	// wrong code gives it back.
	key := h.peerKey(ctx)
	if err := h.db.TakeEnrollAttempt(ctx, key); err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	if len(req.GetCode()) > study.MaxCodeBytes {
		return nil, connectError(ctx, h.log, study.ErrBadCode)
	}
	enr, err := h.db.Enroll(ctx, study.EnrollRequest{Code: req.GetCode(), DeviceName: req.GetDeviceName(), ForUser: req.GetStudyCode()})
	if err == nil || syncengine.ErrorCode(err) != syncengine.EUNAUTHENTICATED {
		if rerr := h.db.ReturnEnrollAttempt(context.WithoutCancel(ctx), key); rerr != nil {
			h.log.WarnContext(ctx, "cannot give back an enrolment attempt", "err", rerr)
		}
	}
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device enrolled", "device", enr.Device, "study_code", enr.StudyCode, "role", enr.Role.String(), "state", enr.State.String())
	return &diaryv1.EnrollResponse{
		DeviceId:     enr.Device,
		Token:        enr.Token,
		ReplicaId:    enr.Replica.String(),
		Role:         diaryv1.Role(enr.Role),
		StudyCode:    enr.StudyCode,
		DisplayName:  enr.DisplayName,
		ServerTime:   timestamppb.New(h.db.Now()),
		State:        diaryv1.DeviceState(enr.State),
		Capabilities: capabilities,
	}, nil
}

func (h *deviceHandler) ListMyDevices(ctx context.Context, req *diaryv1.ListMyDevicesRequest) (*diaryv1.ListMyDevicesResponse, error) {
	who := study.IdentityFrom(ctx)
	devices, next, err := h.db.ListDevices(ctx, req.GetPageSize(), req.GetPageToken(), who.StudyCode)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListMyDevicesResponse{NextPageToken: next}
	for _, d := range devices {
		pd := deviceToProto(d)
		pd.Current = d.ID == who.DeviceID
		resp.Devices = append(resp.Devices, pd)
	}
	return resp, nil
}

func (h *deviceHandler) ApproveDevice(ctx context.Context, req *diaryv1.ApproveDeviceRequest) (*diaryv1.ApproveDeviceResponse, error) {
	d, wake, err := h.db.ApproveDevice(ctx, study.IdentityFrom(ctx), req.GetDeviceId())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device approved", "device", d.PublicID, "study_code", d.StudyCode)
	h.hub.notify(wake)
	return &diaryv1.ApproveDeviceResponse{Device: deviceToProto(d)}, nil
}

func (h *deviceHandler) DenyDevice(ctx context.Context, req *diaryv1.DenyDeviceRequest) (*diaryv1.DenyDeviceResponse, error) {
	d, err := h.db.DenyDevice(ctx, study.IdentityFrom(ctx), req.GetDeviceId())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device denied", "device", d.PublicID, "study_code", d.StudyCode)
	return &diaryv1.DenyDeviceResponse{Device: deviceToProto(d)}, nil
}

func (h *deviceHandler) RevokeMyDevice(ctx context.Context, req *diaryv1.RevokeMyDeviceRequest) (*diaryv1.RevokeMyDeviceResponse, error) {
	d, err := h.db.RevokeOwnDevice(ctx, study.IdentityFrom(ctx), req.GetDeviceId())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device revoked", "device", d.PublicID, "study_code", d.StudyCode)
	h.hub.wakeAll() // an open stream of the device ends
	return &diaryv1.RevokeMyDeviceResponse{Device: deviceToProto(d)}, nil
}

func (h *deviceHandler) ListMyActivity(ctx context.Context, req *diaryv1.ListMyActivityRequest) (*diaryv1.ListMyActivityResponse, error) {
	events, next, err := h.db.ListActivity(ctx, study.IdentityFrom(ctx).UserID, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListMyActivityResponse{NextPageToken: next}
	for _, e := range events {
		resp.Events = append(resp.Events, auditToProto(e))
	}
	return resp, nil
}
