package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/client/operator"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/syncengine"
)

var exportFormats = map[string]diaryv1.ExportFormat{
	"csv":   diaryv1.ExportFormat_EXPORT_FORMAT_CSV,
	"jsonl": diaryv1.ExportFormat_EXPORT_FORMAT_JSONL,
	"qdpx":  diaryv1.ExportFormat_EXPORT_FORMAT_QDPX,
	"qdc":   diaryv1.ExportFormat_EXPORT_FORMAT_QDC,
}

// maxManifestFileBytes bounds an old manifest read for --since: it is
// read only for its export id.
const maxManifestFileBytes = 512 << 20

func cmdExport(e *env, args []string) error {
	fs := e.flags()
	wave := fs.String("wave", "", "wave number, or all")
	format := fs.String("format", "", "csv, jsonl, qdpx or qdc")
	out := fs.String("out", "", "file to write, or - for standard output")
	manifestPath := fs.String("manifest", "", "where to write the manifest (default FILE.manifest.json beside a CSV or JSON Lines file)")
	navigator := fs.String("navigator", "", "only this navigator's entries (study code)")
	from := fs.String("from", "", "only entries dated on or after this day, YYYY-MM-DD")
	to := fs.String("to", "", "only entries dated on or before this day, YYYY-MM-DD")
	since := fs.String("since", "", "compare with an earlier export: its id (diary export list) or its FILE.manifest.json")
	bom := fs.Bool("bom", false, "CSV: start with a UTF-8 byte order mark, so that Excel opens the file correctly")
	noGuard := fs.Bool("no-formula-guard", false, "CSV: do not put a quote before cells that start with = + - @ (for R and pandas)")
	if pos, err := e.parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *wave == "" || *format == "" || *out == "" {
		return usagef("export needs --wave N|all --format csv|jsonl|qdpx|qdc --out FILE")
	}
	req, err := exportRequest(*wave, *format, *navigator, *from, *to)
	if err != nil {
		return err
	}
	req.Bom, req.NoFormulaGuard = *bom, *noGuard
	if *since != "" {
		if req.SinceExportId, err = sinceExportID(*since); err != nil {
			return err
		}
	}
	toStdout := *out == "-"
	if toStdout && *manifestPath == "" {
		return usagef("export --out - writes the export to standard output: give --manifest PATH for its manifest")
	}
	tabular := req.Format == diaryv1.ExportFormat_EXPORT_FORMAT_CSV || req.Format == diaryv1.ExportFormat_EXPORT_FORMAT_JSONL
	mpath := *manifestPath
	if mpath == "" && tabular {
		mpath = *out + ".manifest.json"
	}
	dictPath := ""
	if tabular && !toStdout {
		dictPath = *out + ".dictionary.md"
	}
	return e.withClient(func(c *client.Client) error {
		svc, err := operator.Research(c)
		if err != nil {
			return err
		}
		// Every file goes to a temporary file beside its target and is
		// renamed at the end, so an interrupted export never leaves half a
		// file or a manifest that does not match its export. The files
		// are made before the export is asked for: a file that cannot be
		// made must not leave an export the server made and kept.
		var files []*pending
		defer func() {
			for _, p := range files {
				p.discard()
			}
		}()
		open := func(path string) (*pending, error) {
			p, err := newPending(path)
			if err == nil {
				files = append(files, p)
			}
			return p, err
		}
		var data io.Writer = e.stdout
		if !toStdout {
			p, err := open(*out)
			if err != nil {
				return err
			}
			data = p
		}
		var manifestOut, dictOut io.Writer = io.Discard, io.Discard
		if mpath != "" {
			p, err := open(mpath)
			if err != nil {
				return err
			}
			manifestOut = p
		}
		if dictPath != "" {
			p, err := open(dictPath)
			if err != nil {
				return err
			}
			dictOut = p
		}
		stream, err := svc.ExportWave(e.ctx, req)
		if err != nil {
			return rpcErr("export", err)
		}
		defer stream.Close()
		var manifest *diaryv1.ExportManifest
		written := int64(0)
		progress := isTerminal(e.stderr) && !toStdout
		for stream.Receive() {
			msg := stream.Msg()
			var w io.Writer
			var b []byte
			switch part := msg.GetPart().(type) {
			case *diaryv1.ExportWaveResponse_Manifest:
				manifest = part.Manifest
				continue
			case *diaryv1.ExportWaveResponse_Chunk:
				w, b = data, part.Chunk
				written += int64(len(b))
			case *diaryv1.ExportWaveResponse_ManifestFile:
				w, b = manifestOut, part.ManifestFile
			case *diaryv1.ExportWaveResponse_DataDictionary:
				w, b = dictOut, part.DataDictionary
			default:
				continue // a part a newer server sends
			}
			if _, err := w.Write(b); err != nil {
				return fmt.Errorf("cannot write the export: %w", err)
			}
			if progress {
				fmt.Fprintf(e.stderr, "\rexporting: %d KiB", written>>10)
			}
		}
		if progress {
			fmt.Fprint(e.stderr, "\r\033[K")
		}
		if err := stream.Err(); err != nil {
			return rpcErr("export", err)
		}
		if manifest == nil {
			return errors.New("cannot export: the server sent no manifest")
		}
		for _, p := range files {
			if err := p.commit(); err != nil {
				return err
			}
		}
		files = nil
		where := *out
		if toStdout {
			where = "standard output"
		}
		fmt.Fprintf(e.stderr, "Export %d: %d entries (position %d; left out: %d not shared, %d deleted, %d erased, %d in no wave) to %s.\n",
			manifest.GetExportId(), manifest.GetEntries(), manifest.GetPosition(), manifest.GetExcludedNotShared(), manifest.GetExcludedDeleted(),
			manifest.GetExcludedErased(), manifest.GetExcludedNoWave(), where)
		if manifest.GetEntries() == 0 {
			fmt.Fprintln(e.stderr, "The export holds no entries: nothing in its selection is shared for research.")
		}
		if manifest.GetRedactionEnabled() {
			fmt.Fprintf(e.stderr, "De-identified: %d replacements (%s, and %d listed terms).\n", manifest.GetRedactionReplacements(), strings.Join(manifest.GetRedactionMarkers(), " "), manifest.GetRedactionTerms())
		} else {
			fmt.Fprintln(e.stderr, "Warning: de-identification is OFF for this study; texts are as the navigators wrote them.")
		}
		if s := manifest.GetSince(); s != nil {
			fmt.Fprintf(e.stderr, "Since export %d: %d added, %d changed, %d withdrawn, %d erased (purge your copies), %d now outside the selection.\n",
				s.GetExportId(), s.GetAdded(), s.GetChanged(), s.GetWithdrawn(), s.GetErased(), s.GetOutside())
		}
		if mpath != "" {
			fmt.Fprintf(e.stderr, "Manifest: %s\n", mpath)
		}
		if dictPath != "" {
			fmt.Fprintf(e.stderr, "Data dictionary: %s\n", dictPath)
		}
		return nil
	})
}

// exportRequest checks the flags every export command shares.
func exportRequest(wave, format, navigator, from, to string) (*diaryv1.ExportWaveRequest, error) {
	var number uint32
	if wave != "all" {
		n, err := strconv.ParseUint(wave, 10, 32)
		if err != nil || n == 0 {
			return nil, usagef("--wave must be a wave number or all, not %q", wave)
		}
		number = uint32(n)
	}
	f, ok := exportFormats[strings.ToLower(format)]
	if !ok {
		return nil, usagef("--format must be csv, jsonl, qdpx or qdc")
	}
	if navigator != "" {
		if err := checkStudyCode("--navigator", navigator); err != nil {
			return nil, err
		}
	}
	for _, d := range []struct{ name, value string }{{"--from", from}, {"--to", to}} {
		if d.value == "" {
			continue
		}
		if err := syncengine.ValidateDate(d.value); err != nil {
			return nil, usagef("%s %q: %s", d.name, d.value, syncengine.ErrorMessage(err))
		}
	}
	return &diaryv1.ExportWaveRequest{Wave: number, Format: f, NavigatorCode: navigator, FromDate: from, ToDate: to}, nil
}

// sinceExportID reads --since: an export id, or a manifest file holding
// one.
func sinceExportID(s string) (uint64, error) {
	if n, err := strconv.ParseUint(s, 10, 64); err == nil && n > 0 {
		return n, nil
	}
	f, err := os.Open(s)
	if err != nil {
		return 0, fmt.Errorf("--since must be an export id or a manifest file: %w", err)
	}
	defer f.Close()
	var m struct {
		ExportID uint64 `json:"export_id"`
	}
	if err := json.NewDecoder(io.LimitReader(f, maxManifestFileBytes)).Decode(&m); err != nil {
		return 0, fmt.Errorf("--since %s: not a manifest file: %w", s, err)
	}
	if m.ExportID == 0 {
		return 0, fmt.Errorf("--since %s: the manifest has no export id (the one inside a .qdpx leaves it out); give the id from diary export list", s)
	}
	return m.ExportID, nil
}

func cmdExportList(e *env, args []string) error {
	fs := e.flags()
	jsonOut := fs.Bool("json", false, "print JSON, one export per line")
	limit := fs.Int("limit", 50, "at most this many exports (0: all)")
	if pos, err := e.parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *limit < 0 {
		return usagef("export list takes --json and --limit N")
	}
	return e.withClient(func(c *client.Client) error {
		svc, err := operator.Research(c)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		if !*jsonOut {
			fmt.Fprintln(tw, "ID\tEXPORTED\tFORMAT\tWAVE\tPOSITION\tENTRIES\tREDACTION\tFILTERS")
		}
		n := 0
		for tok := ""; ; {
			resp, err := svc.ListExports(e.ctx, &diaryv1.ListExportsRequest{PageSize: 100, PageToken: tok})
			if err != nil {
				return rpcErr("list exports", err)
			}
			for _, m := range resp.GetExports() {
				if *limit > 0 && n == *limit {
					return tw.Flush()
				}
				n++
				wave := "all"
				if m.GetWave() != 0 {
					wave = strconv.FormatUint(uint64(m.GetWave()), 10)
				}
				format := strings.ToLower(strings.TrimPrefix(m.GetFormat().String(), "EXPORT_FORMAT_"))
				if *jsonOut {
					writeJSON(e.stdout, map[string]any{
						"export_id": m.GetExportId(), "exported_at": m.GetExportedAt().AsTime(), "format": format, "wave": wave,
						"position": m.GetPosition(), "entries": m.GetEntries(), "redaction": m.GetRedactionEnabled(),
						"navigator": m.GetNavigatorCode(), "from": m.GetFromDate(), "to": m.GetToDate(), "since": m.GetSince().GetExportId(),
					})
					continue
				}
				var filters []string
				for _, f := range []struct{ k, v string }{{"navigator", m.GetNavigatorCode()}, {"from", m.GetFromDate()}, {"to", m.GetToDate()}} {
					if f.v != "" {
						filters = append(filters, f.k+"="+f.v)
					}
				}
				if s := m.GetSince(); s != nil {
					filters = append(filters, "since="+strconv.FormatUint(s.GetExportId(), 10))
				}
				red := "on"
				if !m.GetRedactionEnabled() {
					red = "OFF"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", m.GetExportId(), m.GetExportedAt().AsTime().Format("2006-01-02 15:04"),
					format, wave, m.GetPosition(), m.GetEntries(), red, strings.Join(filters, " "))
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if !*jsonOut {
			return tw.Flush()
		}
		return nil
	})
}

func cmdExportPreview(e *env, args []string) error {
	fs := e.flags()
	wave := fs.String("wave", "", "wave number, or all")
	navigator := fs.String("navigator", "", "only this navigator's entries")
	from := fs.String("from", "", "only entries dated on or after this day")
	to := fs.String("to", "", "only entries dated on or before this day")
	if pos, err := e.parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *wave == "" {
		return usagef("export preview needs --wave N|all")
	}
	req, err := exportRequest(*wave, "jsonl", *navigator, *from, *to)
	if err != nil {
		return err
	}
	return e.withClient(func(c *client.Client) error {
		svc, err := operator.Research(c)
		if err != nil {
			return err
		}
		resp, err := svc.PreviewExport(e.ctx, &diaryv1.PreviewExportRequest{Export: req})
		if err != nil {
			return rpcErr("preview export", err)
		}
		m := resp.GetManifest()
		fmt.Fprintf(e.stdout, "Would export %d entries at position %d (left out: %d not shared, %d deleted, %d erased, %d in no wave).\n",
			m.GetEntries(), m.GetPosition(), m.GetExcludedNotShared(), m.GetExcludedDeleted(), m.GetExcludedErased(), m.GetExcludedNoWave())
		if m.GetRedactionEnabled() {
			fmt.Fprintf(e.stdout, "De-identification: on (%s, and %d listed terms).\n", strings.Join(m.GetRedactionMarkers(), " "), m.GetRedactionTerms())
		} else {
			fmt.Fprintln(e.stdout, "De-identification: OFF.")
		}
		return nil
	})
}

// pending is a file being written under a temporary name beside its
// target.
type pending struct {
	f      *os.File
	target string
}

func newPending(target string) (*pending, error) {
	f, err := os.CreateTemp(filepath.Dir(target), ".export-*")
	if err != nil {
		return nil, fmt.Errorf("cannot create %s: %w", target, err)
	}
	return &pending{f: f, target: target}, nil
}

func (p *pending) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	if err != nil {
		return n, fmt.Errorf("cannot write %s: %w", p.target, err)
	}
	return n, nil
}

// commit makes the file durable and gives it its name.
func (p *pending) commit() error {
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("cannot write %s: %w", p.target, err)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", p.target, err)
	}
	if err := os.Rename(p.f.Name(), p.target); err != nil {
		return fmt.Errorf("cannot write %s: %w", p.target, err)
	}
	p.f = nil
	return nil
}

// discard removes a file that was not committed.
func (p *pending) discard() {
	if p.f != nil {
		p.f.Close()
		os.Remove(p.f.Name())
	}
}
