package console

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/diarysync/diarysync/server/export"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// exportFormats are the export writers and how a download is named and
// typed.
var exportFormats = map[study.ExportFormat]struct {
	label, ext, contentType string
	write                   func(io.Writer, study.Manifest, study.Records) error
}{
	study.FormatCSV:   {"CSV (spreadsheets)", "csv", "text/csv; charset=utf-8", export.WriteCSV},
	study.FormatJSONL: {"JSON Lines", "jsonl", "application/x-ndjson", export.WriteJSONL},
	study.FormatQDPX:  {"REFI-QDA project (.qdpx: NVivo, ATLAS.ti, MAXQDA, QualCoder)", "qdpx", "application/zip", export.WriteQDPX},
}

type formatChoice struct {
	Value   int
	Label   string
	Checked bool
}

type exportData struct {
	Waves    []*study.Wave
	Wave     uint32
	Formats  []formatChoice
	Format   study.ExportFormat
	Manifest *study.Manifest
	Earlier  []*study.AuditEvent
	Next     string
}

func (c *Console) exportForm(r *http.Request, s *session, wave uint32, format study.ExportFormat) (*exportData, error) {
	d := &exportData{Wave: wave, Format: format}
	for tok := ""; ; {
		waves, next, err := c.db.ListWaves(r.Context(), study.MaxListPageSize, tok)
		if err != nil {
			return nil, err
		}
		d.Waves = append(d.Waves, waves...)
		if tok = next; tok == "" {
			break
		}
	}
	for _, f := range []study.ExportFormat{study.FormatQDPX, study.FormatCSV, study.FormatJSONL} {
		d.Formats = append(d.Formats, formatChoice{Value: int(f), Label: exportFormats[f].label, Checked: f == format})
	}
	earlier, next, err := c.db.QueryAudit(r.Context(), study.AuditQuery{Action: "export", PageSize: 20, PageToken: r.URL.Query().Get("page")})
	if err != nil {
		return nil, err
	}
	d.Earlier, d.Next = earlier, next
	return d, nil
}

func (c *Console) exportPage(w http.ResponseWriter, r *http.Request, s *session) {
	d, err := c.exportForm(r, s, 0, study.FormatQDPX)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.render(w, r, http.StatusOK, "export", &view{Title: "Export", Session: s, Data: d})
}

// exportChoice reads the wave and format of an export form.
func exportChoice(r *http.Request) (uint32, study.ExportFormat, error) {
	wave := uint64(0)
	if v := r.PostFormValue("wave"); v != "" && v != "all" {
		var err error
		if wave, err = strconv.ParseUint(v, 10, 32); err != nil {
			return 0, 0, syncengine.Errorf(syncengine.EINVALID, "choose a wave, or all waves")
		}
	}
	f, err := strconv.Atoi(r.PostFormValue("format"))
	if err != nil {
		return 0, 0, syncengine.Errorf(syncengine.EINVALID, "choose a format")
	}
	format := study.ExportFormat(f)
	if err := study.CheckExportFormat(format); err != nil {
		return 0, 0, err
	}
	return uint32(wave), format, nil
}

// errPreviewOnly stops an export after its manifest: the store then
// records nothing in the audit log, as for any export that did not
// complete.
var errPreviewOnly = errors.New("preview only")

// exportPreview shows what an export will hold, from the same snapshot
// reading the download makes (counts only), before anything is written.
func (c *Console) exportPreview(w http.ResponseWriter, r *http.Request, s *session) {
	wave, format, err := exportChoice(r)
	if err != nil {
		c.failExport(w, r, s, err)
		return
	}
	var m study.Manifest
	err = c.db.Export(r.Context(), study.ExportRequest{Wave: wave, Format: format}, func(got study.Manifest, _ study.Records) error {
		m = got
		return errPreviewOnly
	})
	if !errors.Is(err, errPreviewOnly) {
		if err == nil {
			err = errors.New("the export wrote nothing")
		}
		c.failExport(w, r, s, err)
		return
	}
	d, err := c.exportForm(r, s, wave, format)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d.Manifest = &m
	c.render(w, r, http.StatusOK, "export", &view{Title: "Export", Session: s, Data: d})
}

func (c *Console) failExport(w http.ResponseWriter, r *http.Request, s *session, err error) {
	code := syncengine.ErrorCode(err)
	if code != syncengine.EINVALID && code != syncengine.ENOTFOUND {
		c.fail(w, r, s, err)
		return
	}
	d, ferr := c.exportForm(r, s, 0, study.FormatQDPX)
	if ferr != nil {
		c.fail(w, r, s, ferr)
		return
	}
	c.render(w, r, statusOf[code], "export", &view{Title: "Export", Session: s, Error: upperFirst(syncengine.ErrorMessage(err)) + ".", Data: d})
}

// exportDownload streams the export as a file. A failure half way (the
// writer breaks, the store fails) aborts the connection, so the browser
// reports a failed download instead of saving half a file.
func (c *Console) exportDownload(w http.ResponseWriter, r *http.Request, s *session) {
	wave, format, err := exportChoice(r)
	if err != nil {
		c.failExport(w, r, s, err)
		return
	}
	f := exportFormats[format]
	started := false
	err = c.db.Export(r.Context(), study.ExportRequest{Wave: wave, Format: format}, func(m study.Manifest, records study.Records) error {
		name := fmt.Sprintf("diarysync-wave-%s-%s.%s", study.WaveName(m.Wave), m.ExportedAt.UTC().Format("20060102-150405"), f.ext)
		w.Header().Set("Content-Type", f.contentType)
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
		w.Header().Set("X-Diarysync-Entries", strconv.FormatUint(m.Entries, 10))
		started = true
		return f.write(w, m, records)
	})
	if err == nil {
		c.log.InfoContext(r.Context(), "console export", "wave", study.WaveName(wave), "format", format.String())
		return
	}
	if !started {
		c.failExport(w, r, s, err)
		return
	}
	c.log.ErrorContext(r.Context(), "console export failed half way", "err", err)
	panic(http.ErrAbortHandler)
}
