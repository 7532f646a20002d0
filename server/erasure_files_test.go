package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/diarysync/diarysync/internal/storetest"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// storeFiles returns, by name, the bytes of every file that holds the
// store's tables: on SQLite the database file and its write-ahead log;
// on PostgreSQL, after a CHECKPOINT (so that what the store did is in the
// files, not only in shared buffers), the files of every table, TOAST
// table and index of the store's schema, found with pg_relation_filepath
// under the server's data directory. Reading them needs the test to run
// on the database's machine as a user who may read its files (.ci/run
// runs as root); it skips otherwise.
func storeFiles(tb testing.TB, db *storetest.Store) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	if !onPostgres(db) {
		for _, f := range []string{db.Path, db.Path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil && !os.IsNotExist(err) {
				tb.Fatal(err)
			}
			out[filepath.Base(f)] = b
		}
		return out
	}
	raw := rawDB(db)
	if _, err := raw.Exec(`CHECKPOINT`); err != nil {
		tb.Fatalf("CHECKPOINT (the test needs a superuser): %v", err)
	}
	var dir string
	if err := raw.QueryRow(`SELECT current_setting('data_directory')`).Scan(&dir); err != nil {
		tb.Fatal(err)
	}
	rows, err := raw.Query(`SELECT c.relname, pg_relation_filepath(c.oid) FROM pg_class c
		WHERE c.relkind IN ('r', 't', 'i') AND pg_relation_filepath(c.oid) IS NOT NULL
		AND (c.relnamespace = 'public'::regnamespace
			OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
			OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT reltoastrelid FROM pg_class WHERE relnamespace = 'public'::regnamespace)))`)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, path string
		if err := rows.Scan(&name, &path); err != nil {
			tb.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, path))
		if os.IsPermission(err) || os.IsNotExist(err) {
			tb.Skipf("cannot read the database's files (%v): run the test on the database's machine as a user who may read %s", err, dir)
		}
		if err != nil {
			tb.Fatal(err)
		}
		out[name] = b
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	if len(out) < 10 {
		tb.Fatalf("found only the files of %d relations", len(out))
	}
	return out
}

// assertNotInFiles fails the test if any file of the store holds text.
func assertNotInFiles(tb testing.TB, db *storetest.Store, text string) {
	tb.Helper()
	for name, b := range storeFiles(tb, db) {
		if bytes.Contains(b, []byte(text)) {
			tb.Fatalf("%q is still in the store's file %s", text, name)
		}
	}
}

// TestErasure_Files checks on the files themselves that erasure leaves no
// copy of the text: an entry's title and a long body (kept out of line,
// in PostgreSQL's TOAST table, since random text does not compress), in
// its state and in every edit of its history, once the erasure has
// returned.
func TestErasure_Files(t *testing.T) {
	ctx := context.Background()
	db := MustOpenDB(t)
	nav := MustEnroll(t, db, study.RoleNavigator, "PN-A")
	clock := syncengine.NewClock(nil)
	random := make([]byte, 12<<10)
	rand.Read(random)
	body := "LONG-BODY-MARK " + base64.StdEncoding.EncodeToString(random)
	id := syncengine.NewEntryID()
	var in []study.Incoming
	for i, c := range []syncengine.Change{
		{Field: syncengine.FieldTitle, Text: "TITLE-MARK first"},
		{Field: syncengine.FieldBody, Text: body},
		{Field: syncengine.FieldTitle, Text: "TITLE-MARK second"},
		{Field: syncengine.FieldBody, Text: body + " edited"},
	} {
		c.Entry, c.Replica, c.Clock = id, nav.Replica, clock.Now()
		in = append(in, study.Incoming{Change: c})
		// Each edit in its own push, so every version of the row exists.
		MustPush(t, db, nav, in[i:i+1])
	}
	// Another entry that stays, so the files are not simply empty.
	MustPush(t, db, nav, entryChanges(nav.Replica, clock, false, false))
	found := false
	for _, b := range storeFiles(t, db) {
		found = found || bytes.Contains(b, []byte("TITLE-MARK"))
	}
	if !found {
		t.Fatal("the title is in no file before the erasure: the check below could not fail")
	}
	if erased, _, err := db.EraseEntry(ctx, id); err != nil || !erased {
		t.Fatalf("EraseEntry: %v %v", erased, err)
	}
	assertNotInFiles(t, db, "TITLE-MARK")
	assertNotInFiles(t, db, "LONG-BODY-MARK")
	assertNotInFiles(t, db, base64.StdEncoding.EncodeToString(random[4096:4128]))
}
