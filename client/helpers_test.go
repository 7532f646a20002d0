package client

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// testServer is a real diarysync server on loopback with its own store.
type testServer struct {
	URL    string
	DB     *sqlite.DB
	Server *server.Server
	srv    *httptest.Server
	now    atomic.Pointer[time.Time] // nil: real time

	mu    sync.Mutex
	first map[string]*Client // each user's first device, which approves the others
}

func startServer(tb testing.TB) *testServer {
	tb.Helper()
	return startServerWith(tb, server.Config{})
}

// startServerWith starts a server configured by cfg (its store and
// heartbeat are the test's).
func startServerWith(tb testing.TB, cfg server.Config) *testServer {
	tb.Helper()
	ts := &testServer{first: map[string]*Client{}}
	path := filepath.Join(tb.TempDir(), "server.db")
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{Synchronous: "NORMAL", Now: ts.clock})
	if err != nil {
		tb.Fatal(err)
	}
	ts.DB = db
	cfg.Store, cfg.Heartbeat = db, 200*time.Millisecond
	ts.Server = server.New(cfg)
	ts.srv = httptest.NewServer(ts.Server.Handler())
	ts.URL = ts.srv.URL
	tb.Cleanup(func() {
		ts.srv.CloseClientConnections()
		ts.srv.Close()
		db.Close()
	})
	return ts
}

func (ts *testServer) clock() time.Time {
	if t := ts.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// user creates a user (if needed) and returns a fresh one-time code.
func (ts *testServer) code(tb testing.TB, role study.Role, study string) string {
	tb.Helper()
	ctx := context.Background()
	if _, err := ts.DB.UserByCode(ctx, study); err != nil {
		if _, err := ts.DB.CreateUser(ctx, study, role, "Test "+study); err != nil {
			tb.Fatal(err)
		}
	}
	code, _, err := ts.DB.IssueEnrollmentCode(ctx, study, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return code
}

func (ts *testServer) assign(tb testing.TB, sup, nav string) {
	tb.Helper()
	if _, _, err := ts.DB.Assign(context.Background(), sup, nav); err != nil {
		tb.Fatal(err)
	}
}

// MustOpen opens a client replica in a temporary directory.
func MustOpen(tb testing.TB, opts Options) *Client {
	tb.Helper()
	if opts.Synchronous == "" {
		opts.Synchronous = "NORMAL"
	}
	c, err := Open(context.Background(), filepath.Join(tb.TempDir(), "replica.db"), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// device opens a replica and enrols it for study (creating the user).
func (ts *testServer) device(tb testing.TB, role study.Role, study string, opts Options) *Client {
	tb.Helper()
	c := MustOpen(tb, opts)
	p, err := c.Enroll(context.Background(), ts.URL, ts.code(tb, role, study), "test "+study)
	if err != nil {
		tb.Fatal(err)
	}
	ts.mu.Lock()
	first := ts.first[study]
	if first == nil {
		ts.first[study] = c
	}
	ts.mu.Unlock()
	if first != nil {
		// A later device waits for approval: the person's first device
		// gives it.
		if _, err := first.ApproveDevice(context.Background(), p.DeviceID); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

func mustSync(tb testing.TB, c *Client) {
	tb.Helper()
	if err := c.Sync(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

func mustCreate(tb testing.TB, c *Client, d Draft) syncengine.EntryID {
	tb.Helper()
	id, err := c.Create(context.Background(), d)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func ptr[T any](v T) *T { return &v }
