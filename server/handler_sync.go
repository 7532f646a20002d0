package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultHeartbeat is how often an idle Subscribe stream gets a
// heartbeat.
const DefaultHeartbeat = 15 * time.Second

// capabilities is what this server understands beyond the first version
// of the API; every Enroll, Push and Pull answer says so, and devices send
// what needs a capability only to a server whose latest answer named it.
var capabilities = []diaryv1.Capability{diaryv1.Capability_CAPABILITY_MERGED_TEXT}

type syncHandler struct {
	db        study.Store
	hub       *hub
	log       *slog.Logger
	metrics   *Metrics
	streams   *streamLimiter
	heartbeat time.Duration
}

func newSyncHandler(db study.Store, h *hub, log *slog.Logger, m *Metrics, streams *streamLimiter, heartbeat time.Duration) diaryv1connect.SyncServiceHandler {
	return &syncHandler{db: db, hub: h, log: log, metrics: m, streams: streams, heartbeat: heartbeat}
}

func (h *syncHandler) Push(ctx context.Context, req *diaryv1.PushRequest) (*diaryv1.PushResponse, error) {
	who := study.IdentityFrom(ctx)
	if err := study.CheckPushSize(len(req.GetChanges())); err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	if req.GetCursor() > 1<<62 {
		return nil, connectError(ctx, h.log, syncengine.Errorf(syncengine.EINVALID, "cursor %d is not one this server issued", req.GetCursor()))
	}
	in := make([]study.Incoming, len(req.GetChanges()))
	for i, p := range req.GetChanges() {
		in[i].Change, in[i].Invalid = wire.ChangeFromProto(p)
		in[i].Write = p.GetWrite()
		in[i].Seen = int64(req.GetCursor())
	}
	results, wake, err := h.db.Push(ctx, who, in)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	resp := &diaryv1.PushResponse{Results: make([]*diaryv1.ChangeResult, len(results)), ServerTime: timestamppb.New(h.db.Now()), Capabilities: capabilities}
	for i, r := range results {
		resp.Results[i] = &diaryv1.ChangeResult{Outcome: diaryv1.ChangeOutcome(r.Outcome), Reason: diaryv1.RefusalReason(r.Reason), Message: r.Message}
		switch r.Outcome {
		case study.OutcomeApplied:
			h.metrics.changes.WithLabelValues("applied").Inc()
		case study.OutcomeDuplicate:
			h.metrics.changes.WithLabelValues("duplicate").Inc()
		default:
			h.metrics.changes.WithLabelValues("refused").Inc()
		}
	}
	return resp, nil
}

func (h *syncHandler) Pull(ctx context.Context, req *diaryv1.PullRequest) (*diaryv1.PullResponse, error) {
	who := study.IdentityFrom(ctx)
	if req.GetCursor() > 1<<62 {
		return nil, connectError(ctx, h.log, syncengine.Errorf(syncengine.EINVALID, "cursor %d is not one this server issued", req.GetCursor()))
	}
	if req.OwnChanges != nil && req.GetOwnChanges() > 1<<62 {
		return nil, connectError(ctx, h.log, syncengine.Errorf(syncengine.EINVALID, "own_changes %d is not a count this server gave", req.GetOwnChanges()))
	}
	page, err := h.db.Pull(ctx, who, study.PullRequest{Cursor: int64(req.GetCursor()), PageSize: req.GetPageSize(), CountRemaining: req.GetCountRemaining(), MergedText: req.GetMergedText(), AwaitingApproval: true,
		OwnChanges: int64(req.GetOwnChanges()), OwnChangesKnown: req.OwnChanges != nil})
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.PullResponse{
		Entries:        make([]*diaryv1.Entry, len(page.Entries)),
		NextCursor:     uint64(page.Next),
		More:           page.More,
		Remaining:      uint64(page.Remaining),
		RemainingExact: page.RemainingExact,
		ServerTime:     timestamppb.New(h.db.Now()),
		Capabilities:   capabilities,
	}
	if page.OwnChangesSet {
		resp.OwnChanges = proto.Uint64(uint64(page.OwnChanges))
	}
	for i, e := range page.Entries {
		resp.Entries[i] = wire.EntryToProto(e)
	}
	h.metrics.pullLag.Observe(float64(len(page.Entries) + len(page.Removals) + int(page.Remaining)))
	for _, r := range page.Removals {
		resp.Removals = append(resp.Removals, &diaryv1.Removal{EntryId: r.Entry.String(), Reason: diaryv1.RemovalReason(r.Reason)})
	}
	for _, r := range page.Reads {
		resp.Reads = append(resp.Reads, &diaryv1.ReadState{EntryId: r.Entry.String(), Read: r.Read, Clock: uint64(r.Clock)})
	}
	// A sync ends with its last page: the person sees there that a new
	// device asks to join their account.
	resp.DevicesAwaitingApprovalCount = uint32(page.AwaitingCount)
	for _, d := range page.Awaiting {
		resp.DevicesAwaitingApproval = append(resp.DevicesAwaitingApproval, deviceToProto(d))
	}
	return resp, nil
}

func (h *syncHandler) MarkRead(ctx context.Context, req *diaryv1.MarkReadRequest) (*diaryv1.MarkReadResponse, error) {
	who := study.IdentityFrom(ctx)
	if err := study.CheckReadMarksSize(len(req.GetMarks())); err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	marks := make([]study.ReadMark, 0, len(req.GetMarks()))
	bad := map[int]study.ChangeResult{} // marks that do not even decode
	for i, m := range req.GetMarks() {
		id, err := syncengine.ParseEntryID(m.GetEntryId())
		if err != nil {
			bad[i] = study.ChangeResult{Outcome: study.OutcomeRefused, Reason: study.RefusedInvalid, Message: syncengine.ErrorMessage(err)}
			continue
		}
		marks = append(marks, study.ReadMark{Entry: id, Read: m.GetRead(), Clock: syncengine.Timestamp(m.GetClock())})
	}
	results, wake, err := h.db.MarkRead(ctx, who, marks)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	h.hub.notify(wake)
	resp := &diaryv1.MarkReadResponse{Results: make([]*diaryv1.ChangeResult, len(req.GetMarks())), ServerTime: timestamppb.New(h.db.Now())}
	k := 0
	for i := range resp.Results {
		r, ok := bad[i]
		if !ok {
			r = results[k]
			k++
		}
		resp.Results[i] = &diaryv1.ChangeResult{Outcome: diaryv1.ChangeOutcome(r.Outcome), Reason: diaryv1.RefusalReason(r.Reason), Message: r.Message}
	}
	return resp, nil
}

func (h *syncHandler) Subscribe(ctx context.Context, req *diaryv1.SubscribeRequest, stream *connect.ServerStream[diaryv1.SubscribeResponse]) error {
	who := study.IdentityFrom(ctx)
	rd, err := study.ReaderFor(who)
	if err != nil {
		return connectError(ctx, h.log, err)
	}
	release, err := h.streams.acquire("device:"+who.Device, "this device")
	if err != nil {
		return connectError(ctx, h.log, err)
	}
	defer release()
	wake, cancel := h.hub.subscribe(keyFor(rd))
	defer cancel()
	h.metrics.activeStreams.Inc()
	defer h.metrics.activeStreams.Dec()

	sent := int64(req.GetCursor())
	send := func(heartbeat bool) error {
		return stream.Send(&diaryv1.SubscribeResponse{Cursor: uint64(sent), Heartbeat: heartbeat, ServerTime: timestamppb.New(h.db.Now())})
	}
	check := func() error {
		// A stream outlives the authentication of its call: a device
		// revoked since must stop hearing when its readers' data changes.
		if err := h.db.DeviceActive(ctx, who.DeviceID); err != nil {
			return connectError(ctx, h.log, err)
		}
		head, err := h.db.Head(ctx, who)
		if err != nil {
			return connectError(ctx, h.log, err)
		}
		if head > sent {
			sent = head
			return send(false)
		}
		return nil
	}
	// Subscribing registers before reading the position, so a commit
	// between the two still wakes the loop below.
	if err := check(); err != nil {
		return err
	}
	// A first heartbeat at once tells the client the stream is open.
	if err := send(true); err != nil {
		return err
	}
	ticker := time.NewTicker(h.heartbeat)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.hub.done():
			return connect.NewError(connect.CodeUnavailable, errors.New("the server is shutting down: reconnect"))
		case <-wake:
			if err := check(); err != nil {
				return err
			}
		case <-ticker.C:
			if err := h.db.DeviceActive(ctx, who.DeviceID); err != nil {
				return connectError(ctx, h.log, err)
			}
			if err := send(true); err != nil {
				return err
			}
		}
	}
}

func (h *syncHandler) GetStateHash(ctx context.Context, req *diaryv1.GetStateHashRequest) (*diaryv1.GetStateHashResponse, error) {
	sh, err := h.db.StateHash(ctx, study.IdentityFrom(ctx), study.StateHashRequest{MergedText: req.GetMergedText()})
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	return &diaryv1.GetStateHashResponse{StateHash: sh.Sum[:], Entries: uint64(sh.Entries), Cursor: uint64(sh.Cursor)}, nil
}
