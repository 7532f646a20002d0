package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type adminHandler struct {
	db  study.Store
	hub *hub
	log *slog.Logger
}

func newAdminHandler(db study.Store, h *hub, log *slog.Logger) diaryv1connect.AdminServiceHandler {
	return &adminHandler{db: db, hub: h, log: log}
}

func userToProto(u *study.User) *diaryv1.User {
	return &diaryv1.User{StudyCode: u.StudyCode, Role: diaryv1.Role(u.Role), DisplayName: u.DisplayName, Active: u.Active, CreatedAt: timestamppb.New(u.CreatedAt)}
}

func deviceToProto(d *study.Device) *diaryv1.Device {
	return &diaryv1.Device{
		DeviceId:   d.PublicID,
		StudyCode:  d.StudyCode,
		Name:       d.Name,
		EnrolledAt: timestamppb.New(d.Enrolled),
		LastSyncAt: wire.Timestamp(d.LastSync),
		RevokedAt:  wire.Timestamp(d.Revoked),
		State:      diaryv1.DeviceState(d.State),
		IssuedBy:   d.IssuedBy,
		ApprovedAt: wire.Timestamp(d.Approved),
		ApprovedBy: d.ApprovedBy,
		Revocation: diaryv1.RevocationReason(d.Revocation),
		RevokedBy:  d.RevokedBy,
		Kind:       diaryv1.DeviceKind(d.Kind),
	}
}

func auditToProto(e *study.AuditEvent) *diaryv1.AuditEvent {
	return &diaryv1.AuditEvent{Id: uint64(e.ID), At: timestamppb.New(e.At), Actor: e.Actor, Action: e.Action, Subject: e.Subject, Details: e.Details}
}

func waveToProto(w *study.Wave) *diaryv1.Wave {
	return &diaryv1.Wave{Number: w.Number, Label: w.Label, StartDate: w.Start, EndDate: w.End, NavigatorCode: w.Navigator}
}

func waveFromProto(w *diaryv1.Wave) study.Wave {
	return study.Wave{Number: w.GetNumber(), Label: w.GetLabel(), Start: w.GetStartDate(), End: w.GetEndDate(), Navigator: w.GetNavigatorCode()}
}

func patternsToProto(ps []study.RedactPattern) []*diaryv1.RedactionPattern {
	out := make([]*diaryv1.RedactionPattern, len(ps))
	for i, p := range ps {
		out[i] = &diaryv1.RedactionPattern{Name: p.Name, Marker: p.Marker, Expression: p.Expr}
	}
	return out
}

func redactionToProto(r *study.Redaction) *diaryv1.Redaction {
	return &diaryv1.Redaction{Enabled: r.Enabled, Patterns: patternsToProto(r.Patterns), Terms: uint32(r.Terms)}
}

func (h *adminHandler) CreateUser(ctx context.Context, req *diaryv1.CreateUserRequest) (*diaryv1.CreateUserResponse, error) {
	u, err := h.db.CreateUser(ctx, req.GetStudyCode(), study.Role(req.GetRole()), req.GetDisplayName())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "user created", "study_code", u.StudyCode, "role", u.Role.String())
	return &diaryv1.CreateUserResponse{User: userToProto(u)}, nil
}

func (h *adminHandler) ListUsers(ctx context.Context, req *diaryv1.ListUsersRequest) (*diaryv1.ListUsersResponse, error) {
	users, next, err := h.db.ListUsers(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListUsersResponse{NextPageToken: next}
	for _, u := range users {
		resp.Users = append(resp.Users, userToProto(u))
	}
	return resp, nil
}

func (h *adminHandler) DeactivateUser(ctx context.Context, req *diaryv1.DeactivateUserRequest) (*diaryv1.DeactivateUserResponse, error) {
	u, n, err := h.db.DeactivateUser(ctx, req.GetStudyCode())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "user deactivated", "study_code", u.StudyCode, "devices_revoked", n)
	h.hub.wakeAll() // open streams of the user's devices end
	return &diaryv1.DeactivateUserResponse{User: userToProto(u), DevicesRevoked: uint32(n)}, nil
}

func (h *adminHandler) AssignNavigator(ctx context.Context, req *diaryv1.AssignNavigatorRequest) (*diaryv1.AssignNavigatorResponse, error) {
	created, sup, err := h.db.Assign(ctx, req.GetSupervisorCode(), req.GetNavigatorCode())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	if created {
		h.hub.notify(&study.Wakeups{Readers: []int64{sup}})
	}
	return &diaryv1.AssignNavigatorResponse{Created: created}, nil
}

func (h *adminHandler) UnassignNavigator(ctx context.Context, req *diaryv1.UnassignNavigatorRequest) (*diaryv1.UnassignNavigatorResponse, error) {
	removed, sup, err := h.db.Unassign(ctx, req.GetSupervisorCode(), req.GetNavigatorCode())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	if removed {
		h.hub.notify(&study.Wakeups{Readers: []int64{sup}})
	}
	return &diaryv1.UnassignNavigatorResponse{Removed: removed}, nil
}

func (h *adminHandler) ListAssignments(ctx context.Context, req *diaryv1.ListAssignmentsRequest) (*diaryv1.ListAssignmentsResponse, error) {
	list, next, err := h.db.ListAssignments(ctx, req.GetPageSize(), req.GetPageToken(), req.GetSupervisorCode())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListAssignmentsResponse{NextPageToken: next}
	for _, a := range list {
		resp.Assignments = append(resp.Assignments, &diaryv1.Assignment{SupervisorCode: a.SupervisorCode, NavigatorCode: a.NavigatorCode, CreatedAt: timestamppb.New(a.CreatedAt)})
	}
	return resp, nil
}

func (h *adminHandler) IssueEnrollmentCode(ctx context.Context, req *diaryv1.IssueEnrollmentCodeRequest) (*diaryv1.IssueEnrollmentCodeResponse, error) {
	ttl, err := durationOf(req.GetTtl())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	code, expires, err := h.db.IssueEnrollmentCode(ctx, req.GetStudyCode(), ttl)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "enrolment code issued", "study_code", req.GetStudyCode(), "expires", expires)
	return &diaryv1.IssueEnrollmentCodeResponse{Code: code, ExpiresAt: timestamppb.New(expires)}, nil
}

func (h *adminHandler) ListDevices(ctx context.Context, req *diaryv1.ListDevicesRequest) (*diaryv1.ListDevicesResponse, error) {
	devices, next, err := h.db.ListDevices(ctx, req.GetPageSize(), req.GetPageToken(), req.GetStudyCode())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListDevicesResponse{NextPageToken: next}
	for _, d := range devices {
		resp.Devices = append(resp.Devices, deviceToProto(d))
	}
	return resp, nil
}

func (h *adminHandler) RevokeDevice(ctx context.Context, req *diaryv1.RevokeDeviceRequest) (*diaryv1.RevokeDeviceResponse, error) {
	d, err := h.db.RevokeDevice(ctx, req.GetDeviceId())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "device revoked", "device", d.PublicID, "study_code", d.StudyCode)
	h.hub.wakeAll() // an open stream of the device ends
	return &diaryv1.RevokeDeviceResponse{Device: deviceToProto(d)}, nil
}

func (h *adminHandler) CreateWave(ctx context.Context, req *diaryv1.CreateWaveRequest) (*diaryv1.CreateWaveResponse, error) {
	w, err := h.db.CreateWave(ctx, waveFromProto(req.GetWave()))
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	return &diaryv1.CreateWaveResponse{Wave: waveToProto(w)}, nil
}

func (h *adminHandler) UpdateWave(ctx context.Context, req *diaryv1.UpdateWaveRequest) (*diaryv1.UpdateWaveResponse, error) {
	w, err := h.db.UpdateWave(ctx, waveFromProto(req.GetWave()))
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	return &diaryv1.UpdateWaveResponse{Wave: waveToProto(w)}, nil
}

func (h *adminHandler) ListWaves(ctx context.Context, req *diaryv1.ListWavesRequest) (*diaryv1.ListWavesResponse, error) {
	list := h.db.ListWaves
	if req.GetIncludeNavigatorDates() {
		list = h.db.ListWaveDefinitions
	}
	waves, next, err := list(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListWavesResponse{NextPageToken: next}
	for _, w := range waves {
		resp.Waves = append(resp.Waves, waveToProto(w))
	}
	return resp, nil
}

func (h *adminHandler) EraseEntry(ctx context.Context, req *diaryv1.EraseEntryRequest) (*diaryv1.EraseEntryResponse, error) {
	id, err := syncengine.ParseEntryID(req.GetEntryId())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	erased, wake, err := h.db.EraseEntry(ctx, id)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	if erased {
		h.log.InfoContext(ctx, "entry erased", "entry", id.String())
	}
	return &diaryv1.EraseEntryResponse{Erased: erased}, nil
}

func (h *adminHandler) EraseNavigator(ctx context.Context, req *diaryv1.EraseNavigatorRequest) (*diaryv1.EraseNavigatorResponse, error) {
	n, wake, err := h.db.EraseNavigator(ctx, req.GetStudyCode())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	h.log.InfoContext(ctx, "navigator erased", "study_code", req.GetStudyCode(), "entries", n)
	return &diaryv1.EraseNavigatorResponse{EntriesErased: uint64(n)}, nil
}

func (h *adminHandler) ListAuditEvents(ctx context.Context, req *diaryv1.ListAuditEventsRequest) (*diaryv1.ListAuditEventsResponse, error) {
	events, next, err := h.db.ListAudit(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListAuditEventsResponse{NextPageToken: next}
	for _, e := range events {
		resp.Events = append(resp.Events, auditToProto(e))
	}
	return resp, nil
}

func (h *adminHandler) ResetUser(ctx context.Context, req *diaryv1.ResetUserRequest) (*diaryv1.ResetUserResponse, error) {
	ttl, err := durationOf(req.GetTtl())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	r, err := h.db.ResetUser(ctx, req.GetStudyCode(), ttl)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "account reset", "study_code", r.User.StudyCode, "devices_revoked", r.DevicesRevoked)
	h.hub.wakeAll() // open streams of the account's devices end
	return &diaryv1.ResetUserResponse{User: userToProto(r.User), DevicesRevoked: uint32(r.DevicesRevoked), Code: r.Code, ExpiresAt: timestamppb.New(r.Expires)}, nil
}

// durationOf returns the duration a request carries (0 when unset).
func durationOf(d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, syncengine.Errorf(syncengine.EINVALID, "ttl is not a valid duration")
	}
	return d.AsDuration(), nil
}

func (h *adminHandler) DeleteWaveDates(ctx context.Context, req *diaryv1.DeleteWaveDatesRequest) (*diaryv1.DeleteWaveDatesResponse, error) {
	if err := h.db.DeleteWaveDates(ctx, req.GetNumber(), req.GetNavigatorCode()); err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	return &diaryv1.DeleteWaveDatesResponse{}, nil
}

func (h *adminHandler) GetRedaction(ctx context.Context, _ *diaryv1.GetRedactionRequest) (*diaryv1.GetRedactionResponse, error) {
	r, err := h.db.Redaction(ctx)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	return &diaryv1.GetRedactionResponse{Redaction: redactionToProto(r), DefaultPatterns: patternsToProto(study.DefaultRedactPatterns())}, nil
}

func (h *adminHandler) UpdateRedaction(ctx context.Context, req *diaryv1.UpdateRedactionRequest) (*diaryv1.UpdateRedactionResponse, error) {
	r := study.Redaction{Enabled: req.GetEnabled()}
	for _, p := range req.GetPatterns() {
		r.Patterns = append(r.Patterns, study.RedactPattern{Name: p.GetName(), Marker: p.GetMarker(), Expr: p.GetExpression()})
	}
	out, wake, err := h.db.SetRedaction(ctx, r)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	h.log.InfoContext(ctx, "redaction setting changed", "enabled", out.Enabled, "patterns", len(out.Patterns))
	return &diaryv1.UpdateRedactionResponse{Redaction: redactionToProto(out)}, nil
}

func (h *adminHandler) AddRedactionTerm(ctx context.Context, req *diaryv1.AddRedactionTermRequest) (*diaryv1.AddRedactionTermResponse, error) {
	wake, err := h.db.AddRedactTerm(ctx, study.RedactTerm{Term: req.GetTerm().GetTerm(), Marker: req.GetTerm().GetMarker()})
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	return &diaryv1.AddRedactionTermResponse{}, nil
}

func (h *adminHandler) RemoveRedactionTerm(ctx context.Context, req *diaryv1.RemoveRedactionTermRequest) (*diaryv1.RemoveRedactionTermResponse, error) {
	removed, wake, err := h.db.RemoveRedactTerm(ctx, req.GetTerm())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	return &diaryv1.RemoveRedactionTermResponse{Removed: removed}, nil
}

func (h *adminHandler) ListRedactionTerms(ctx context.Context, req *diaryv1.ListRedactionTermsRequest) (*diaryv1.ListRedactionTermsResponse, error) {
	terms, next, err := h.db.ListRedactTerms(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListRedactionTermsResponse{NextPageToken: next}
	for _, t := range terms {
		resp.Terms = append(resp.Terms, &diaryv1.RedactionTerm{Term: t.Term, Marker: t.Marker})
	}
	return resp, nil
}
