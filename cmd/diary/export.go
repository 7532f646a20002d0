package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/diarysync/diarysync/client"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
)

func cmdExport(e *env, args []string) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	wave := fs.String("wave", "", "wave number, or all")
	format := fs.String("format", "", "csv, jsonl or qdpx")
	out := fs.String("out", "", "file to write")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if len(pos) > 0 || *wave == "" || *format == "" || *out == "" {
		return usagef("export needs --wave N|all --format csv|jsonl|qdpx --out FILE")
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
		// Write to a temporary file beside the target and rename it at
		// the end, so an interrupted export never leaves half a file.
		tmp, err := os.CreateTemp(filepath.Dir(*out), ".export-*")
		if err != nil {
			return fmt.Errorf("cannot create %s: %w", *out, err)
		}
		defer os.Remove(tmp.Name())
		var manifest *diaryv1.ExportManifest
		written := int64(0)
		progress := isTerminal(e.stderr)
		for stream.Receive() {
			msg := stream.Msg()
			if m := msg.GetManifest(); m != nil {
				manifest = m
				continue
			}
			n, err := tmp.Write(msg.GetChunk())
			if err != nil {
				tmp.Close()
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
			tmp.Close()
			return rpcErr("export", err)
		}
		if manifest == nil {
			tmp.Close()
			return errors.New("cannot export: the server sent no manifest")
		}
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), *out); err != nil {
			return fmt.Errorf("cannot write %s: %w", *out, err)
		}
		fmt.Fprintf(e.stderr, "Exported %d entries (position %d; left out: %d not shared, %d deleted, %d erased) to %s.\n",
			manifest.GetEntries(), manifest.GetPosition(), manifest.GetExcludedNotShared(), manifest.GetExcludedDeleted(), manifest.GetExcludedErased(), *out)
		return nil
	})
}
