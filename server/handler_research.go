package server

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
)

type researchHandler struct {
	db  *DB
	log *slog.Logger
}

func newResearchHandler(db *DB, log *slog.Logger) diaryv1connect.ResearchServiceHandler {
	return &researchHandler{db: db, log: log}
}

func (h *researchHandler) ListWaves(ctx context.Context, req *diaryv1.ResearchServiceListWavesRequest) (*diaryv1.ResearchServiceListWavesResponse, error) {
	waves, next, err := h.db.ListWaves(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ResearchServiceListWavesResponse{NextPageToken: next}
	for _, w := range waves {
		resp.Waves = append(resp.Waves, waveToProto(w))
	}
	return resp, nil
}

func (h *researchHandler) ExportWave(ctx context.Context, req *diaryv1.ExportWaveRequest, stream *connect.ServerStream[diaryv1.ExportWaveResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("export is not available on this server yet"))
}
