package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestStorageFull checks which of PostgreSQL's errors say its storage is
// full: disk_full, and configuration_limit_exceeded when temp_file_limit
// was reached. They become ENOSPACE with the server's words kept for the
// log; every other error, 53400 for other limits included, stays as it
// is. A full disk cannot be made in a test without a small file system
// of its own, so 53100 is checked as PostgreSQL sends it
// (TestStorageFull_TempFileLimit makes a real 53400).
func TestStorageFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		full bool
	}{
		{"DiskFull", &pgconn.PgError{Code: "53100", Message: `could not extend file "base/16384/16397": No space left on device`}, true},
		{"DiskFullWrapped", fmt.Errorf("cannot write entries: %w", &pgconn.PgError{Code: "53100", Message: "could not write to file \"pg_wal/xlogtemp.123\": No space left on device"}), true},
		{"TempFileLimit", &pgconn.PgError{Code: "53400", Message: "temporary file size exceeds temp_file_limit (64kB)"}, true},
		{"OtherLimit", &pgconn.PgError{Code: "53400", Message: "too many background workers"}, false},
		{"OutOfMemory", &pgconn.PgError{Code: "53200", Message: "out of memory"}, false},
		{"UniqueViolation", &pgconn.PgError{Code: "23505", Message: "duplicate key value violates unique constraint"}, false},
		{"NotPostgres", errors.New("connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := storageFull(tc.err)
			if !tc.full {
				if got != tc.err {
					t.Fatalf("storageFull(%v) = %v, want it unchanged", tc.err, got)
				}
				return
			}
			if syncengine.ErrorCode(got) != syncengine.ENOSPACE || !strings.Contains(syncengine.ErrorMessage(got), "the server's storage is full") {
				t.Fatalf("storageFull(%v) = %v (code %s), want ENOSPACE saying the storage is full", tc.err, got, syncengine.ErrorCode(got))
			}
			var pe *pgconn.PgError
			errors.As(tc.err, &pe)
			if !strings.Contains(got.Error(), pe.Message) {
				t.Fatalf("%q does not keep the server's words %q for the log", got, pe.Message)
			}
		})
	}
	if storageFull(nil) != nil {
		t.Fatal("storageFull(nil) is not nil")
	}
}

// TestStorageFull_TempFileLimit has PostgreSQL itself run out of the
// space a write may take: inside a write transaction that has created a
// user, a sort larger than work_mem spills to a temporary file past
// temp_file_limit. The store answers ENOSPACE and the transaction is
// rolled back: the user is not there.
func TestStorageFull_TempFileLimit(t *testing.T) {
	db := openTestDB(t)
	ctx := context.Background()
	err := db.writeTx(ctx, func(t *tx) error {
		if _, err := db.createUser(ctx, t, "PN-FULL", study.RoleNavigator, ""); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `SET LOCAL work_mem = '64kB'`); err != nil {
			return err
		}
		if _, err := t.Exec(ctx, `SET LOCAL temp_file_limit = '64kB'`); err != nil {
			return err
		}
		var n int64
		return t.QueryRow(ctx, `SELECT count(*) FROM (SELECT md5(g::text) FROM generate_series(1, 100000) g ORDER BY 1) s`).Scan(&n)
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		t.Skipf("temp_file_limit needs a superuser: %v", err)
	}
	if syncengine.ErrorCode(err) != syncengine.ENOSPACE || !strings.Contains(err.Error(), "temp_file_limit") {
		t.Fatalf("got %v (code %s), want ENOSPACE from temp_file_limit", err, syncengine.ErrorCode(err))
	}
	if _, err := db.UserByCode(ctx, "PN-FULL"); syncengine.ErrorCode(err) != syncengine.ENOTFOUND {
		t.Fatalf("the user created before the storage was full: %v, want it rolled back", err)
	}
}
