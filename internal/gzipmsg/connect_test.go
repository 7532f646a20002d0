package gzipmsg

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
)

type echoSync struct {
	diaryv1connect.UnimplementedSyncServiceHandler
	page *diaryv1.PullResponse
}

func (echoSync) Push(context.Context, *diaryv1.PushRequest) (*diaryv1.PushResponse, error) {
	return &diaryv1.PushResponse{}, nil
}

func (e echoSync) Pull(context.Context, *diaryv1.PullRequest) (*diaryv1.PullResponse, error) {
	return e.page, nil
}

// bodies records the raw bodies of requests and of responses.
type bodies struct {
	mu       sync.Mutex
	requests [][]byte
	replies  [][]byte
}

func (b *bodies) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.replies = append(b.replies, raw)
	b.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(raw))
	return resp, nil
}

// TestThroughConnect checks, on the wire of a real Connect client and
// handler on loopback, that both directions compress with a Writer: a
// small request and a large reply are exactly what gzip writes at the
// levels their sizes choose.
func TestThroughConnect(t *testing.T) {
	text := string(words(600))
	page := &diaryv1.PullResponse{}
	for range 60 {
		page.Entries = append(page.Entries, &diaryv1.Entry{Body: &diaryv1.TextRegister{Value: text}})
	}
	push := &diaryv1.PushRequest{}
	for range 4 {
		push.Changes = append(push.Changes, &diaryv1.Change{Value: &diaryv1.Change_Text{Text: text}})
	}

	rec := &bodies{}
	path, h := diaryv1connect.NewSyncServiceHandler(echoSync{page: page},
		connect.WithCompression("gzip",
			func() connect.Decompressor { return new(gzip.Reader) },
			func() connect.Compressor { return New() }),
		connect.WithCompressMinBytes(1<<10))
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
		}
		rec.mu.Lock()
		rec.requests = append(rec.requests, raw)
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		h.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	c := diaryv1connect.NewSyncServiceClient(&http.Client{Transport: rec}, srv.URL,
		ClientOption(), connect.WithSendGzip(), connect.WithCompressMinBytes(1<<10))
	ctx := context.Background()
	if _, err := c.Push(ctx, push); err != nil {
		t.Fatal(err)
	}
	got, err := c.Pull(ctx, &diaryv1.PullRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetEntries()) != len(page.Entries) {
		t.Fatalf("pulled %d entries, want %d", len(got.GetEntries()), len(page.Entries))
	}

	pushBytes, _ := proto.Marshal(push)
	pageBytes, _ := proto.Marshal(page)
	if len(pushBytes) >= FastBelow || len(pageBytes) < FastBelow {
		t.Fatalf("push %d and page %d bytes do not straddle %d", len(pushBytes), len(pageBytes), FastBelow)
	}
	if want := compressWith(t, gzip.BestSpeed, pushBytes); !bytes.Equal(rec.requests[0], want) {
		t.Errorf("the push's body (%d bytes) is not gzip at BestSpeed (%d bytes)", len(rec.requests[0]), len(want))
	}
	if want := compressWith(t, gzip.DefaultCompression, pageBytes); !bytes.Equal(rec.replies[1], want) {
		t.Errorf("the page's body (%d bytes) is not gzip at the default level (%d bytes)", len(rec.replies[1]), len(want))
	}
}
