package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
)

// Backup writes a consistent copy of the database file at from to the
// new file to (mode 0600), while servers go on using it: SQLite's VACUUM
// INTO reads one snapshot in a read transaction, which in WAL mode blocks
// no writer, and writes a compact file that holds no freed pages (so no
// erased text that the source still had in free space). The copy is
// checked with PRAGMA integrity_check before Backup returns. to must not
// exist.
func Backup(ctx context.Context, from, to string) error {
	if _, err := os.Stat(from); err != nil {
		return fmt.Errorf("cannot back up %s: %w", from, err)
	}
	if _, err := os.Lstat(to); err == nil {
		return fmt.Errorf("cannot back up to %s: the file exists", to)
	}
	src, err := sql.Open("sqlite", "file:"+from+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", from, err)
	}
	defer src.Close()
	// The copy is created empty with mode 0600 first: VACUUM INTO would
	// create it with the process's umask, readable by others.
	f, err := os.OpenFile(to, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w", to, err)
	}
	f.Close()
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, to); err != nil {
		os.Remove(to)
		return fmt.Errorf("cannot back up %s: %w", from, err)
	}
	dst, err := sql.Open("sqlite", "file:"+to+"?mode=ro")
	if err != nil {
		return fmt.Errorf("cannot check %s: %w", to, err)
	}
	defer dst.Close()
	var result string
	if err := dst.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&result); err != nil || result != "ok" {
		return errors.Join(fmt.Errorf("the backup %s failed its integrity check: %s", to, result), err)
	}
	return nil
}
