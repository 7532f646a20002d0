package server

import (
	"context"
	"io"
	"log/slog"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/server/export"
	"github.com/diarysync/diarysync/study"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type researchHandler struct {
	db  study.Store
	log *slog.Logger
}

func newResearchHandler(db study.Store, log *slog.Logger) diaryv1connect.ResearchServiceHandler {
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
	cw := &chunkWriter{send: func(b []byte) error {
		return stream.Send(&diaryv1.ExportWaveResponse{Part: &diaryv1.ExportWaveResponse_Chunk{Chunk: b}})
	}}
	sendManifest := func(m study.Manifest) error {
		pm := &diaryv1.ExportManifest{
			Position:          m.Position,
			ExportedAt:        timestamppb.New(m.ExportedAt),
			Wave:              m.Wave,
			Format:            req.GetFormat(),
			Entries:           m.Entries,
			ExcludedNotShared: m.ExcludedNotShared,
			ExcludedDeleted:   m.ExcludedDeleted,
			ExcludedErased:    m.ExcludedErased,
			ExcludedNoWave:    m.ExcludedNoWave,
		}
		for _, w := range m.Waves {
			pm.Waves = append(pm.Waves, &diaryv1.Wave{Number: w.Number, Label: w.Label, StartDate: w.Start, EndDate: w.End})
		}
		return stream.Send(&diaryv1.ExportWaveResponse{Part: &diaryv1.ExportWaveResponse_Manifest{Manifest: pm}})
	}
	format := study.ExportFormat(req.GetFormat())
	write := writers[format]
	err := h.db.Export(ctx, study.ExportRequest{Wave: req.GetWave(), Format: format}, func(m study.Manifest, records study.Records) error {
		if err := sendManifest(m); err != nil {
			return err
		}
		return write(cw, m, records)
	})
	if err != nil {
		return connectError(ctx, h.log, err)
	}
	if err := cw.flush(); err != nil {
		return connectError(ctx, h.log, err)
	}
	h.log.InfoContext(ctx, "export", "wave", req.GetWave(), "format", req.GetFormat().String(), "bytes", cw.total)
	return nil
}

// writers are the export writers by format; the store refuses a format
// missing here.
var writers = map[study.ExportFormat]func(io.Writer, study.Manifest, study.Records) error{
	study.FormatCSV:   export.WriteCSV,
	study.FormatJSONL: export.WriteJSONL,
	study.FormatQDPX:  export.WriteQDPX,
}

// exportChunkBytes is the size of one chunk of an export stream.
const exportChunkBytes = 64 << 10

// chunkWriter cuts what is written into messages of exportChunkBytes.
type chunkWriter struct {
	send  func([]byte) error
	buf   []byte
	total int64
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, exportChunkBytes)
		}
		k := min(len(p), exportChunkBytes-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == exportChunkBytes {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.total += int64(len(w.buf))
	err := w.send(w.buf)
	w.buf = w.buf[:0]
	return err
}
