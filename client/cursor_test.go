package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// conflictingPulls answers every Pull with a FailedPrecondition while on,
// naming the application's code and, if set, a reason, as diaryd does.
type conflictingPulls struct {
	next   http.Handler
	on     atomic.Bool
	reason string
}

func (p *conflictingPulls) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.on.Load() || !strings.HasSuffix(r.URL.Path, "/Pull") {
		p.next.ServeHTTP(w, r)
		return
	}
	ce := connect.NewError(connect.CodeFailedPrecondition, errors.New("the server refuses this pull"))
	ce.Meta().Set(wire.ErrorCodeHeader, string(syncengine.ECONFLICT))
	if p.reason != "" {
		ce.Meta().Set(wire.ErrorReasonHeader, p.reason)
	}
	connect.NewErrorWriter().Write(w, r, ce)
}

// TestCursorAheadOnly: a replica forgets what it pulled only when the
// server says its cursor is beyond the server's position; any other
// conflict on a pull leaves it as it was. Either way the entry written
// before the failed sync reaches the server and comes back.
func TestCursorAheadOnly(t *testing.T) {
	for _, tc := range []struct {
		reason string
		forget bool
	}{
		{reason: "", forget: false},
		{reason: "something-else", forget: false},
		{reason: wire.ReasonCursorAhead, forget: true},
	} {
		t.Run("reason="+tc.reason, func(t *testing.T) {
			ctx := context.Background()
			ts := startServer(t)
			p := &conflictingPulls{next: ts.srv.Config.Handler, reason: tc.reason}
			ts.srv.Config.Handler = p
			nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
			for range 3 {
				mustCreate(t, nav, Draft{Title: "synced"})
			}
			mustSync(t, nav)
			unsynced := mustCreate(t, nav, Draft{Title: "not on the server yet"})
			before, _ := nav.Status(ctx)

			p.on.Store(true)
			err := nav.Sync(ctx)
			var se *ServerError
			if !errors.As(err, &se) || se.Code != syncengine.ECONFLICT {
				t.Fatalf("sync against a refusing server: %v, want a ServerError with code conflict", err)
			}
			after, _ := nav.Status(ctx)
			page, err := nav.List(ctx, ListOptions{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if tc.forget {
				// The sync pushed the new entry before it pulled; then
				// the replica forgot everything the server holds.
				if after.Cursor != 0 || len(page.Entries) != 0 || after.Pending != 0 {
					t.Fatalf("after cursor-ahead: cursor %d, %d entries, %d pending; want an empty replica at cursor 0", after.Cursor, len(page.Entries), after.Pending)
				}
			} else if after.Cursor != before.Cursor || len(page.Entries) != 4 {
				t.Fatalf("after another conflict: cursor %d (was %d), %d entries; want the replica as it was", after.Cursor, before.Cursor, len(page.Entries))
			}

			p.on.Store(false)
			mustSync(t, nav)
			if page, err := nav.List(ctx, ListOptions{Limit: 100}); err != nil || len(page.Entries) != 4 {
				t.Fatalf("after the server answers again: %d entries (%v), want 4", len(page.Entries), err)
			}
			if e, err := nav.Get(ctx, unsynced); err != nil || e.Pending != 0 || e.Title != "not on the server yet" {
				t.Fatalf("the entry written before the failed pull: %+v, %v", e, err)
			}
			assertConverged(t, nav)
		})
	}
}
