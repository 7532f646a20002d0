package export

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeZip writes files (name, content pairs) with a zipStream to w.
func writeZip(t *testing.T, w io.Writer, mod time.Time, start uint64, files ...string) {
	t.Helper()
	z, err := newZipStream(w, mod)
	if err != nil {
		t.Fatal(err)
	}
	defer z.discard()
	z.written = start
	for i := 0; i+1 < len(files); i += 2 {
		f, err := z.create(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(f, files[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := z.close(); err != nil {
		t.Fatal(err)
	}
}

// readZip reads every file of an archive with archive/zip, which checks
// each file's CRC-32 and sizes.
func readZip(t *testing.T, r io.ReaderAt, size int64) ([]*zip.File, map[string]string) {
	t.Helper()
	zr, err := zip.NewReader(r, size)
	if err != nil {
		t.Fatalf("archive/zip cannot open the archive: %v", err)
	}
	got := make(map[string]string, len(zr.File))
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("cannot read %s: %v", f.Name, err)
		}
		got[f.Name] = string(data)
	}
	return zr.File, got
}

func TestZipStream(t *testing.T) {
	mod := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

	t.Run("ReadsBack", func(t *testing.T) {
		big := strings.Repeat("a diary line that repeats, ", 20_000) + "😀"
		files := []string{"sources/empty.txt", "", "sources/small.txt", "hello\n", "sources/big.txt", big, "project.qde", "<Project/>"}
		var b bytes.Buffer
		writeZip(t, &b, mod, 0, files...)
		zf, got := readZip(t, bytes.NewReader(b.Bytes()), int64(b.Len()))
		if len(zf) != len(files)/2 {
			t.Fatalf("%d files, want %d", len(zf), len(files)/2)
		}
		for i := 0; i < len(files); i += 2 {
			if got[files[i]] != files[i+1] {
				t.Errorf("%s holds %d bytes, want %d", files[i], len(got[files[i]]), len(files[i+1]))
			}
		}
		for _, f := range zf {
			if !f.Modified.Equal(mod) || f.Method != zip.Deflate {
				t.Errorf("%s: modified %v method %d, want %v deflated", f.Name, f.Modified, f.Method, mod)
			}
		}
		// A second, independent reader, where the machine has one.
		if unzip, err := exec.LookPath("unzip"); err == nil {
			path := filepath.Join(t.TempDir(), "a.zip")
			if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(unzip, "-tq", path).CombinedOutput(); err != nil {
				t.Fatalf("unzip -t: %v\n%s", err, out)
			}
		}
	})

	t.Run("SameBytesForSameFiles", func(t *testing.T) {
		var a, b bytes.Buffer
		writeZip(t, &a, mod, 0, "x.txt", "same", "y.txt", "content")
		writeZip(t, &b, mod, 0, "x.txt", "same", "y.txt", "content")
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatal("two archives of the same files differ")
		}
	})

	t.Run("Zip64FileCount", func(t *testing.T) {
		// More files than the classic end record can count: a study of
		// 100,000 entries has that many sources.
		n := 1<<16 + 1
		files := make([]string, 0, 2*n)
		for i := range n {
			files = append(files, fmt.Sprintf("sources/%06d.txt", i), "")
		}
		var b bytes.Buffer
		writeZip(t, &b, mod, 0, files...)
		zr, err := zip.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if len(zr.File) != n || zr.File[n-1].Name != files[2*n-2] {
			t.Fatalf("%d files, want %d", len(zr.File), n)
		}
		// archive/zip counts files modulo 65,536, so check the records
		// themselves: the classic end record says "see ZIP64", and the
		// ZIP64 locator precedes it.
		out := b.Bytes()
		end := out[len(out)-22:]
		if binary.LittleEndian.Uint32(end) != zipEndSig || binary.LittleEndian.Uint16(end[10:]) != 0xFFFF {
			t.Fatalf("end record %x does not defer to ZIP64", end)
		}
		if loc := out[len(out)-22-20:]; binary.LittleEndian.Uint32(loc) != zip64LocSig {
			t.Fatal("no ZIP64 end locator before the end record")
		}
	})

	t.Run("Zip64Offsets", func(t *testing.T) {
		// Files that start past 4 GiB, as bodies of a large study do.
		// The archive starts 5 GiB into a sparse file, so nothing that
		// large is written.
		const start = 5 << 30
		f, err := os.Create(filepath.Join(t.TempDir(), "big.zip"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		writeZip(t, f, mod, start, "a.txt", "first", "b.txt", "second")
		info, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		zf, got := readZip(t, f, info.Size())
		if len(zf) != 2 || got["a.txt"] != "first" || got["b.txt"] != "second" {
			t.Fatalf("read back %q", got)
		}
	})

	t.Run("ErrAfterClose", func(t *testing.T) {
		z, err := newZipStream(io.Discard, mod)
		if err != nil {
			t.Fatal(err)
		}
		defer z.discard()
		if err := z.close(); err != nil {
			t.Fatal(err)
		}
		if _, err := z.create("late.txt"); err == nil {
			t.Fatal("create after close succeeded")
		}
	})
}

func TestMsDosTime(t *testing.T) {
	for _, tt := range []struct {
		in         time.Time
		date, time uint16
	}{
		{time.Date(2024, 7, 1, 9, 30, 15, 0, time.UTC), 1<<5*7 + 1 + (2024-1980)<<9, 9<<11 + 30<<5 + 7},
		{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), 1<<5 + 1, 0},
		{time.Date(2024, 7, 1, 11, 30, 15, 0, time.FixedZone("CEST", 7200)), 1<<5*7 + 1 + (2024-1980)<<9, 9<<11 + 30<<5 + 7},
	} {
		d, tm := msDosTime(tt.in)
		if d != tt.date || tm != tt.time {
			t.Errorf("msDosTime(%v) = %#x %#x, want %#x %#x", tt.in, d, tm, tt.date, tt.time)
		}
	}
}
