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

func exportRequestFromProto(req *diaryv1.ExportWaveRequest) study.ExportRequest {
	return study.ExportRequest{
		Wave:           req.GetWave(),
		Format:         study.ExportFormat(req.GetFormat()),
		Navigator:      req.GetNavigatorCode(),
		From:           req.GetFromDate(),
		To:             req.GetToDate(),
		Since:          int64(min(req.GetSinceExportId(), 1<<62)),
		BOM:            req.GetBom(),
		NoFormulaGuard: req.GetNoFormulaGuard(),
	}
}

// manifestToProto converts a manifest's summary (never its lists).
func manifestToProto(m *study.Manifest) *diaryv1.ExportManifest {
	pm := &diaryv1.ExportManifest{
		ExportId:              uint64(m.ExportID),
		Position:              m.Position,
		ExportedAt:            timestamppb.New(m.ExportedAt),
		Wave:                  m.Wave,
		Format:                diaryv1.ExportFormat(m.Format),
		Entries:               m.Entries,
		ExcludedNotShared:     m.ExcludedNotShared,
		ExcludedDeleted:       m.ExcludedDeleted,
		ExcludedErased:        m.ExcludedErased,
		ExcludedNoWave:        m.ExcludedNoWave,
		NavigatorCode:         m.Navigator,
		FromDate:              m.From,
		ToDate:                m.To,
		RedactionEnabled:      m.Redaction.Enabled,
		RedactionTerms:        uint32(m.Redaction.Terms),
		RedactionReplacements: m.Redaction.Replacements,
		Bom:                   m.BOM,
		FormulaGuard:          m.FormulaGuard,
	}
	if !m.SnapshotAt.IsZero() {
		pm.SnapshotAt = timestamppb.New(m.SnapshotAt)
	}
	for _, p := range m.Redaction.Patterns {
		pm.RedactionMarkers = append(pm.RedactionMarkers, p.Marker)
	}
	for i := range m.Waves {
		pm.Waves = append(pm.Waves, waveToProto(&m.Waves[i]))
	}
	for i := range m.NavigatorWaves {
		pm.NavigatorWaves = append(pm.NavigatorWaves, waveToProto(&m.NavigatorWaves[i]))
	}
	if s := m.Since; s != nil {
		pm.Since = &diaryv1.ExportSince{
			ExportId:   uint64(s.ExportID),
			Position:   s.Position,
			ExportedAt: timestamppb.New(s.ExportedAt),
			Added:      s.Counts[study.SinceAdded],
			Changed:    s.Counts[study.SinceChanged],
			Withdrawn:  s.Counts[study.SinceWithdrawn],
			Erased:     s.Counts[study.SinceErased],
			Outside:    s.Counts[study.SinceOutside],
		}
	}
	return pm
}

func (h *researchHandler) ExportWave(ctx context.Context, req *diaryv1.ExportWaveRequest, stream *connect.ServerStream[diaryv1.ExportWaveResponse]) error {
	newChunks := func(part func([]byte) *diaryv1.ExportWaveResponse) *chunkWriter {
		return &chunkWriter{send: func(b []byte) error { return stream.Send(part(b)) }}
	}
	file := newChunks(func(b []byte) *diaryv1.ExportWaveResponse {
		return &diaryv1.ExportWaveResponse{Part: &diaryv1.ExportWaveResponse_Chunk{Chunk: b}}
	})
	manifest := newChunks(func(b []byte) *diaryv1.ExportWaveResponse {
		return &diaryv1.ExportWaveResponse{Part: &diaryv1.ExportWaveResponse_ManifestFile{ManifestFile: b}}
	})
	r := exportRequestFromProto(req)
	write := writers[r.Format]
	err := h.db.Export(ctx, r, func(m study.Manifest, records study.Records) error {
		if err := stream.Send(&diaryv1.ExportWaveResponse{Part: &diaryv1.ExportWaveResponse_Manifest{Manifest: manifestToProto(&m)}}); err != nil {
			return err
		}
		if err := write(file, m, records); err != nil {
			return err
		}
		if err := file.flush(); err != nil {
			return err
		}
		// The manifest file comes after the export file, read from the
		// same snapshot, so that the two always agree.
		if err := export.WriteManifest(manifest, m, records, false); err != nil {
			return err
		}
		return manifest.flush()
	})
	if err != nil {
		return connectError(ctx, h.log, err)
	}
	if r.Format == study.FormatCSV || r.Format == study.FormatJSONL {
		dict := newChunks(func(b []byte) *diaryv1.ExportWaveResponse {
			return &diaryv1.ExportWaveResponse{Part: &diaryv1.ExportWaveResponse_DataDictionary{DataDictionary: b}}
		})
		if err := export.WriteDictionary(dict, r.Format); err != nil {
			return connectError(ctx, h.log, err)
		}
		if err := dict.flush(); err != nil {
			return connectError(ctx, h.log, err)
		}
	}
	h.log.InfoContext(ctx, "export", "wave", req.GetWave(), "format", req.GetFormat().String(), "bytes", file.total)
	return nil
}

func (h *researchHandler) PreviewExport(ctx context.Context, req *diaryv1.PreviewExportRequest) (*diaryv1.PreviewExportResponse, error) {
	r := exportRequestFromProto(req.GetExport())
	r.Since = 0
	m, err := h.db.ExportPreview(ctx, r)
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	return &diaryv1.PreviewExportResponse{Manifest: manifestToProto(m)}, nil
}

func (h *researchHandler) ListExports(ctx context.Context, req *diaryv1.ListExportsRequest) (*diaryv1.ListExportsResponse, error) {
	list, next, err := h.db.ListExports(ctx, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, connectError(ctx, h.log, err)
	}
	resp := &diaryv1.ListExportsResponse{NextPageToken: next}
	for _, m := range list {
		resp.Exports = append(resp.Exports, manifestToProto(m))
	}
	return resp, nil
}

// writers are the export writers by format; the store refuses a format
// missing here.
var writers = map[study.ExportFormat]func(io.Writer, study.Manifest, study.Records) error{
	study.FormatCSV:   export.WriteCSV,
	study.FormatJSONL: export.WriteJSONL,
	study.FormatQDPX:  export.WriteQDPX,
	study.FormatQDC:   export.WriteQDC,
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
