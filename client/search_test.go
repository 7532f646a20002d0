package client

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

func searchTitles(t *testing.T, c *Client, o SearchOptions) []string {
	t.Helper()
	var out []string
	for {
		p, err := c.Search(context.Background(), o)
		if err != nil {
			t.Fatalf("search %q: %v", o.Query, err)
		}
		for _, h := range p.Hits {
			out = append(out, h.Entry.Title)
		}
		if p.Next == "" {
			return out
		}
		o.PageToken = p.Next
	}
}

func TestSearch(t *testing.T) {
	ts := startServer(t)
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ctx := context.Background()
	mustCreate(t, nav, Draft{Title: "Court", Body: "Went with J. to the magistrates' court; the hearing was moved.", Date: "2026-11-02", Tags: []string{"court"}})
	mustCreate(t, nav, Draft{Title: "Hostel", Body: "Café on the corner gave us tea. Housing officer was kind.", Date: "2026-11-03", Tags: []string{"housing"}})
	gone := mustCreate(t, nav, Draft{Title: "Deleted", Body: "Hearing notes I threw away.", Date: "2026-11-04"})
	if err := nav.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		mustCreate(t, nav, Draft{Title: fmt.Sprint("Outreach ", i), Body: "Outreach round in the park.", Date: fmt.Sprintf("2026-10-%02d", i+1), Tags: []string{"outreach"}})
	}

	t.Run("OK", func(t *testing.T) {
		for _, tc := range []struct {
			query string
			o     ListOptions
			want  []string
		}{
			{"hearing", ListOptions{}, []string{"Court"}},
			{"HEARING", ListOptions{Deleted: WithDeleted}, []string{"Deleted", "Court"}},
			{"cafe", ListOptions{}, []string{"Hostel"}},         // accents do not matter
			{"hous", ListOptions{}, []string{"Hostel"}},         // the last word as typed so far
			{"hous ", ListOptions{}, nil},                       // a finished word is a whole word
			{"court hearing", ListOptions{}, []string{"Court"}}, // every word, anywhere
			{"court tea", ListOptions{}, nil},
			{"housing", ListOptions{Tag: "court"}, nil},
			{`"hearing" OR NEAR(tea`, ListOptions{}, nil}, // query syntax is only words
			{"outreach", ListOptions{Limit: 3, From: "2026-10-03"}, []string{"Outreach 6", "Outreach 5", "Outreach 4", "Outreach 3", "Outreach 2"}},
		} {
			if got := searchTitles(t, nav, SearchOptions{Query: tc.query, ListOptions: tc.o}); !slices.Equal(got, tc.want) {
				t.Errorf("search %q %+v: %v, want %v", tc.query, tc.o, got, tc.want)
			}
		}
	})
	t.Run("Snippet", func(t *testing.T) {
		p, err := nav.Search(ctx, SearchOptions{Query: "officer", MarkStart: "<b>", MarkEnd: "</b>"})
		if err != nil || len(p.Hits) != 1 {
			t.Fatalf("%+v %v", p, err)
		}
		if s := p.Hits[0].Snippet; !strings.Contains(s, "<b>officer</b>") {
			t.Fatalf("snippet %q", s)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, q := range []string{"", "   ", "?!", `""`} {
			if _, err := nav.Search(ctx, SearchOptions{Query: q}); syncengine.ErrorCode(err) != syncengine.EINVALID {
				t.Errorf("search %q: %v, want EINVALID", q, err)
			}
		}
		if _, err := nav.Search(ctx, SearchOptions{Query: "x", ListOptions: ListOptions{PageToken: "garbage"}}); syncengine.ErrorCode(err) != syncengine.EINVALID {
			t.Errorf("bad token: %v", err)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		for _, q := range []string{strings.Repeat("a", maxSearchBytes+1), strings.Repeat("a ", maxSearchWords+1)} {
			if _, err := nav.Search(ctx, SearchOptions{Query: q}); syncengine.ErrorCode(err) != syncengine.ETOOLARGE {
				t.Errorf("search of %d bytes: %v, want ETOOLARGE", len(q), err)
			}
		}
	})
}

// assertIndexMatches checks that the full-text index holds, for every
// entry of the replica, exactly its title, body and tags, and nothing
// else: one row per entry, no row for an entry gone, and an index that
// FTS5's own integrity check finds consistent with those rows.
func assertIndexMatches(t *testing.T, c *Client) {
	t.Helper()
	ctx := context.Background()
	var entries, rows, indexed int
	if err := c.db.Read.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM entries), (SELECT count(*) FROM search_rows), (SELECT count(*) FROM entry_search)`).Scan(&entries, &rows, &indexed); err != nil {
		t.Fatal(err)
	}
	if entries != rows || entries != indexed {
		t.Fatalf("%d entries, %d search rows, %d indexed rows", entries, rows, indexed)
	}
	r, err := c.db.Read.QueryContext(ctx, `SELECT entries.state, entry_search.title, entry_search.body, entry_search.tags
		FROM entries JOIN search_rows ON search_rows.entry = entries.id JOIN entry_search ON entry_search.rowid = search_rows.row`)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	n := 0
	for r.Next() {
		var state []byte
		var title, body, tags string
		if err := r.Scan(&state, &title, &body, &tags); err != nil {
			t.Fatal(err)
		}
		e, err := syncengine.DecodeEntry(state)
		if err != nil {
			t.Fatal(err)
		}
		if title != e.Title.Value || body != e.Body.Value || tags != strings.Join(e.TagNames(), " ") {
			t.Fatalf("entry %s indexed as %q %q %q; it holds %q %q %v", e.ID, title, body, tags, e.Title.Value, e.Body.Value, e.TagNames())
		}
		n++
	}
	if n != entries {
		t.Fatalf("%d of %d entries are indexed under their own id", n, entries)
	}
	if _, err := c.db.Write.ExecContext(ctx, `INSERT INTO entry_search (entry_search, rank) VALUES ('integrity-check', 1)`); err != nil {
		t.Fatalf("the index does not match its rows: %v", err)
	}
}

// fileHolds reports whether the replica's file, after a checkpoint that
// empties its write-ahead log, holds word anywhere.
func fileHolds(t *testing.T, c *Client, word string) bool {
	t.Helper()
	if _, err := c.db.Write.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{c.db.Path, c.db.Path + "-wal"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(word)) {
			return true
		}
	}
	return false
}

// TestSearchIndexFollowsReplica: the index never holds text the replica
// no longer holds: not an edited body's old words, not an entry un-shared
// from a supervisor, not an erased entry; and no word of an erased entry
// stays anywhere in the file.
func TestSearchIndexFollowsReplica(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	ts.code(t, study.RoleSupervisor, "SUP-1")
	nav := ts.device(t, study.RoleNavigator, "PN-A", Options{})
	ts.assign(t, "SUP-1", "PN-A")
	sup := ts.device(t, study.RoleSupervisor, "SUP-1", Options{})
	// Words no other text here shares, long enough that the index's
	// prefix compression cannot hide them.
	const (
		oldWord    = "thermoluminescent"
		sharedWord = "phantasmagorical"
		erasedWord = "quizzicalityzest"
	)
	edited := mustCreate(t, nav, Draft{Title: "edited", Body: "a " + oldWord + " morning"})
	shared := mustCreate(t, nav, Draft{Title: "shared", Body: "a " + sharedWord + " evening", ShareSupervisor: true})
	erased := mustCreate(t, nav, Draft{Title: "to be erased", Body: "words: " + erasedWord, Tags: []string{"court"}, ShareSupervisor: true})
	for i := range 50 {
		mustCreate(t, nav, Draft{Title: fmt.Sprint("filler ", i), Body: "an ordinary day of outreach", Tags: []string{"outreach"}})
	}
	if err := nav.Update(ctx, edited, Edit{Body: ptr("a quiet morning")}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	mustSync(t, sup)
	assertIndexMatches(t, nav)
	assertIndexMatches(t, sup)
	if got := searchTitles(t, nav, SearchOptions{Query: oldWord}); len(got) != 0 {
		t.Fatalf("an edited body's old words are still found: %v", got)
	}
	if got := searchTitles(t, sup, SearchOptions{Query: sharedWord}); !slices.Equal(got, []string{"shared"}) {
		t.Fatalf("the supervisor's search: %v", got)
	}

	// Un-shared: gone from the supervisor's replica and its index.
	if err := nav.SetSharing(ctx, shared, false, false); err != nil {
		t.Fatal(err)
	}
	mustSync(t, nav)
	mustSync(t, sup)
	if got := searchTitles(t, sup, SearchOptions{Query: sharedWord}); len(got) != 0 {
		t.Fatalf("an un-shared entry is still found on the supervisor's replica: %v", got)
	}
	assertIndexMatches(t, sup)

	// Erased: gone from every replica, its index and its file.
	for _, c := range []*Client{nav, sup} {
		if !fileHolds(t, c, erasedWord) {
			t.Fatal("the word to erase is not in the file before erasure: the check below could not fail")
		}
	}
	if _, _, err := ts.DB.EraseEntry(ctx, erased); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{nav, sup} {
		mustSync(t, c)
		if got := searchTitles(t, c, SearchOptions{Query: erasedWord, ListOptions: ListOptions{Deleted: WithDeleted}}); len(got) != 0 {
			t.Fatalf("an erased entry is still found: %v", got)
		}
		assertIndexMatches(t, c)
		if fileHolds(t, c, erasedWord) {
			t.Fatal("a word of the erased entry is still in the replica's file")
		}
	}
	if got := searchTitles(t, nav, SearchOptions{Query: "outreach"}); len(got) != 50 {
		t.Fatalf("the other entries: %d found, want 50", len(got))
	}
}

// TestSearchBackfill: a replica that held entries before it had an index
// indexes them when it is opened.
func TestSearchBackfill(t *testing.T) {
	ts := startServer(t)
	ctx := context.Background()
	path := t.TempDir() + "/replica.db"
	c, err := Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enroll(ctx, ts.URL, ts.code(t, study.RoleNavigator, "PN-A"), "phone"); err != nil {
		t.Fatal(err)
	}
	for i := range backfillBatch + 10 {
		mustCreate(t, c, Draft{Title: fmt.Sprint("entry ", i), Body: "kept before the index"})
	}
	// As a replica from before the index: no rows, and the mark the
	// migration leaves.
	if _, err := c.db.Write.ExecContext(ctx, `DELETE FROM entry_search; DELETE FROM search_rows; INSERT INTO search_backfill (id) VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c, err = Open(ctx, path, Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := searchTitles(t, c, SearchOptions{Query: "before index", ListOptions: ListOptions{Limit: 1000}}); len(got) != backfillBatch+10 {
		t.Fatalf("%d entries found after the backfill, want %d", len(got), backfillBatch+10)
	}
	assertIndexMatches(t, c)
	var left int
	if err := c.db.Read.QueryRow(`SELECT count(*) FROM search_backfill`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("backfill mark left: %d %v", left, err)
	}
}
