package gzipmsg

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
)

// compressWith is what gzip itself writes for msg at level.
func compressWith(t testing.TB, level int, msg []byte) []byte {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(msg)
	w.Close()
	return buf.Bytes()
}

func compress(w *Writer, msg []byte) []byte {
	var buf bytes.Buffer
	w.Reset(&buf)
	if _, err := w.Write(msg); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// words makes n bytes of text that compresses about as prose does.
func words(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	vocab := strings.Fields("the morning centre housing team phone stolen waited office supervision promise friday called stayed month again car park slept")
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(vocab[r.IntN(len(vocab))])
		b.WriteByte(' ')
	}
	return b.Bytes()[:n]
}

func TestLevelFollowsSize(t *testing.T) {
	w := New()
	// Alternate sizes, so each inner writer is reused after the other.
	for _, n := range []int{0, 100, FastBelow - 1, FastBelow, 200 << 10, 10, FastBelow + 1, 1} {
		msg := words(n)
		level, name := gzip.BestSpeed, "BestSpeed"
		if n >= FastBelow {
			level, name = gzip.DefaultCompression, "DefaultCompression"
		}
		got := compress(w, msg)
		if want := compressWith(t, level, msg); !bytes.Equal(got, want) {
			t.Errorf("%d bytes: output differs from gzip at %s", n, name)
		}
		zr, err := gzip.NewReader(bytes.NewReader(got))
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		back, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(back, msg) {
			t.Fatalf("%d bytes: round trip gave %d bytes, %v", n, len(back), err)
		}
	}
}

func TestCloseWithoutWriteIsAnEmptyStream(t *testing.T) {
	var buf bytes.Buffer
	w := New()
	w.Reset(&buf)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back, err := io.ReadAll(zr); err != nil || len(back) != 0 {
		t.Fatalf("read %q, %v; want an empty stream", back, err)
	}
}

func TestLaterWritesContinueTheStream(t *testing.T) {
	// A caller that writes in pieces gets one stream at the level its
	// first piece chose.
	msg := words(3 * FastBelow)
	var buf bytes.Buffer
	w := New()
	w.Reset(&buf)
	for _, part := range [][]byte{msg[:100], msg[100:FastBelow], msg[FastBelow:]} {
		if _, err := w.Write(part); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if want := compressWith(t, gzip.BestSpeed, msg); !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("a message written in pieces is not one BestSpeed stream")
	}
}

// pullPage is a PullResponse of n entries whose bodies are successive
// 600-byte pieces of a real English text: the paper of the
// automerge-paper trace (see ../shared/traces).
func pullPage(b *testing.B, n int) []byte {
	dir := os.Getenv("DIARYSYNC_TRACES")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "traces")
	}
	f, err := os.Open(filepath.Join(dir, "automerge-paper.json.gz"))
	if errors.Is(err, fs.ErrNotExist) {
		b.Skipf("editing traces not found in %s (set DIARYSYNC_TRACES): the page's text comes from automerge-paper.json.gz", dir)
	}
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		b.Fatal(err)
	}
	var trace struct {
		EndContent string `json:"endContent"`
	}
	if err := json.NewDecoder(zr).Decode(&trace); err != nil {
		b.Fatal(err)
	}
	text := trace.EndContent
	resp := &diaryv1.PullResponse{}
	replica := "0193a4f2-7c1e-7d2a-9b3c-5e6f7a8b9c0d"
	for i := range n {
		clock := uint64(1_764_000_000_000_000 + i)
		start := (i * 600) % (len(text) - 600)
		resp.Entries = append(resp.Entries, &diaryv1.Entry{
			Id:              fmt.Sprintf("0193a4f2-%04x-7d2a-9b3c-5e6f7a8b9c0d", i),
			Author:          "PN-A",
			CreatedClock:    clock,
			Title:           &diaryv1.TextRegister{Value: fmt.Sprintf("Visit %d", i), Clock: clock, ReplicaId: replica},
			Body:            &diaryv1.TextRegister{Value: text[start : start+600], Clock: clock, ReplicaId: replica},
			Date:            &diaryv1.TextRegister{Value: "2026-11-30", Clock: clock, ReplicaId: replica},
			Mood:            &diaryv1.NumberRegister{Value: 3, Clock: clock, ReplicaId: replica},
			ShareSupervisor: &diaryv1.FlagRegister{Value: true, Clock: clock, ReplicaId: replica},
		})
	}
	out, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// compressor is what a Writer and a gzip.Writer both are.
type compressor interface {
	Reset(io.Writer)
	io.WriteCloser
}

// BenchmarkPullPage compresses pull pages of 1, 10 and 100 entries with
// this package and with gzip's default level, which Connect uses, and
// reports the compressed size as a fraction of the message.
func BenchmarkPullPage(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		msg := pullPage(b, n)
		run := func(name string, w compressor) {
			b.Run(fmt.Sprintf("entries=%d/%s", n, name), func(b *testing.B) {
				var buf bytes.Buffer
				b.SetBytes(int64(len(msg)))
				for b.Loop() {
					buf.Reset()
					w.Reset(&buf)
					w.Write(msg)
					w.Close()
				}
				b.ReportMetric(float64(buf.Len())/float64(len(msg)), "ratio")
			})
		}
		run("by-size", New())
		def, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
		run("default", def)
	}
}
