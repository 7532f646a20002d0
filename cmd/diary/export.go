package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diarysync/diarysync/client"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
)

func cmdExport(e *env, args []string) error {
	fs := e.flags()
	wave := fs.String("wave", "", "wave number, or all")
	format := fs.String("format", "", "csv, jsonl or qdpx")
	out := fs.String("out", "", "file to write, or - for standard output")
	if err := e.noArgs(fs, args); err != nil {
		return err
	}
	if *wave == "" || *format == "" || *out == "" {
		return usagef("export needs --wave N|all --format csv|jsonl|qdpx --out FILE (or --out - for standard output)")
	}
	var number uint32
	if *wave != "all" {
		n, err := strconv.ParseUint(*wave, 10, 32)
		if err != nil || n == 0 {
			return usagef("--wave must be a wave number or all, not %q", *wave)
		}
		number = uint32(n)
	}
	f, ok := map[string]diaryv1.ExportFormat{"csv": diaryv1.ExportFormat_EXPORT_FORMAT_CSV, "jsonl": diaryv1.ExportFormat_EXPORT_FORMAT_JSONL, "qdpx": diaryv1.ExportFormat_EXPORT_FORMAT_QDPX}[strings.ToLower(*format)]
	if !ok {
		return usagef("--format must be csv, jsonl or qdpx")
	}
	toStdout := *out == "-"
	return e.withClient(func(c *client.Client) error {
		svc, err := c.Research()
		if err != nil {
			return err
		}
		stream, err := svc.ExportWave(e.ctx, &diaryv1.ExportWaveRequest{Wave: number, Format: f})
		if err != nil {
			return rpcErr("export", err)
		}
		defer stream.Close()
		// A file is written beside the target and renamed at the end, so
		// an interrupted export never leaves half a file. Standard output
		// gets the bytes as they come; a failure is reported, and the
		// reader must not take what it got for a whole export.
		var dst io.Writer = e.stdout
		var tmp *os.File
		if !toStdout {
			if tmp, err = os.CreateTemp(filepath.Dir(*out), ".export-*"); err != nil {
				return fmt.Errorf("cannot create %s: %w", *out, err)
			}
			defer os.Remove(tmp.Name())
			defer tmp.Close()
			dst = tmp
		}
		var manifest *diaryv1.ExportManifest
		written := int64(0)
		progress := isTerminal(e.stderr)
		for stream.Receive() {
			msg := stream.Msg()
			if m := msg.GetManifest(); m != nil {
				manifest = m
				continue
			}
			n, err := dst.Write(msg.GetChunk())
			if err != nil {
				return fmt.Errorf("cannot write %s: %w", *out, err)
			}
			written += int64(n)
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
		where := "standard output"
		if !toStdout {
			if err := tmp.Sync(); err != nil {
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), *out); err != nil {
				return fmt.Errorf("cannot write %s: %w", *out, err)
			}
			where = *out
		}
		fmt.Fprintf(e.stderr, "Exported %d entries (position %d; left out: %d not shared, %d deleted, %d erased) to %s.\n",
			manifest.GetEntries(), manifest.GetPosition(), manifest.GetExcludedNotShared(), manifest.GetExcludedDeleted(), manifest.GetExcludedErased(), where)
		return nil
	})
}
