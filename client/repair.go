package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/syncengine"
)

// DamagedError says the replica's file is damaged: SQLite's quick_check
// failed when it was opened, or a read or write found a damaged page.
// Nothing more is read from or written to it; Repair rebuilds it.
type DamagedError struct {
	Path    string
	Problem string
}

func (e *DamagedError) Error() string {
	return fmt.Sprintf("this device's copy of the diary (%s) is damaged (%s): repair it (diary repair), which rebuilds it from the server and keeps every unsynced change it can still read", e.Path, e.Problem)
}

// errDeviceFull is what a write that found the device's storage full
// answers: its transaction was rolled back, nothing of it was written.
var errDeviceFull = syncengine.Errorf(syncengine.ENOSPACE, "this device's storage is full: nothing was written; free some space and try again")

// damage records that the replica is damaged, if err says so, and returns
// the error to give: a *DamagedError then, ENOSPACE for a full disk, err
// otherwise.
func (c *Client) damage(err error) error {
	if err == nil {
		return nil
	}
	if errors.As(err, new(*DamagedError)) {
		return err
	}
	if errors.Is(litedb.Classify(err), litedb.ErrFull) {
		return fmt.Errorf("%w (%v)", errDeviceFull, err)
	}
	if !errors.Is(litedb.Classify(err), litedb.ErrCorrupt) {
		return err
	}
	d := &DamagedError{Path: c.db.Path, Problem: err.Error()}
	c.damaged.CompareAndSwap(nil, d)
	c.log.Error("the replica is damaged", "err", err)
	return c.damaged.Load()
}

// checkDamaged returns the *DamagedError once the replica was found
// damaged, and nil before.
func (c *Client) checkDamaged() error {
	if d := c.damaged.Load(); d != nil {
		return d
	}
	return nil
}

// RepairReport says what Repair kept.
type RepairReport struct {
	// Kept is how many changes not yet on the server it read and kept;
	// Unreadable how many rows it found and could not read (they are
	// lost). A damaged page of the table's index can also hide rows that
	// no count finds.
	Kept, Unreadable int
	// RefusedKept is how many refused changes (kept for the person to
	// see) it read and kept.
	RefusedKept int
	// ReadsKept is how many of a supervisor's read marks not yet on the
	// server it read and kept.
	ReadsKept int
	// DamagedCopy is where the damaged file was moved. It still holds
	// diary text: delete it once nothing more is wanted from it.
	DamagedCopy string
}

// Repair rebuilds the damaged replica at path: it reads from it what it
// still can (the profile and token, the clock, every unsynced change it
// can read, refused changes, read marks), writes them into a new replica
// whose position is the start, moves the damaged file aside and puts the
// new one in its place. The next Sync then pulls everything again from
// the server and pushes the unsynced changes. A replica whose profile
// cannot be read cannot be repaired: enrol a new profile instead.
func Repair(ctx context.Context, path string, opts Options) (*RepairReport, error) {
	s, err := salvage(ctx, path)
	if err != nil {
		return nil, err
	}
	fresh := path + ".repairing"
	for _, f := range []string{fresh, fresh + "-wal", fresh + "-shm"} {
		os.Remove(f)
	}
	if err := s.write(ctx, fresh, opts); err != nil {
		os.Remove(fresh)
		return nil, err
	}
	report := &RepairReport{Kept: len(s.outbox), Unreadable: s.unreadable, RefusedKept: len(s.refused), ReadsKept: len(s.reads)}
	report.DamagedCopy = fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405"))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Rename(path+suffix, report.DamagedCopy+suffix); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("cannot move the damaged replica aside: %w", err)
		}
	}
	if err := os.Rename(fresh, path); err != nil {
		return nil, fmt.Errorf("cannot put the repaired replica in place: %w", err)
	}
	return report, nil
}

// salvaged is what could be read from a damaged replica.
type salvaged struct {
	profile    []any // the profile row, column by column (profileColumns)
	last       int64 // the clock's last value
	known      int64
	retired    []int64
	outbox     []salvagedChange
	unreadable int
	refused    [][]any // refusedColumns
	reads      []salvagedRead
}

// salvagedRead is a read mark made on the device and not yet sent.
type salvagedRead struct {
	entry []byte
	read  bool
	clock int64
}

type salvagedChange struct {
	seq, clock int64
	entry      []byte
	change     []byte
	uncertain  bool
	// The merged-text columns (migration 0004): a text edit must not be
	// stamped again, and a held text keeps the text it was made on.
	text, hold bool
	base       sql.NullString
	rebuilds   int64
}

const (
	profileColumns = `server_url, token, device_id, replica_id, role, study_code, display_name, enrolled_at, clock_offset, device_state, revocation, revoked_by, revoked_at, revoked_message, lost_changes, merged_text`
	refusedColumns = `seq, entry, change, reason, message, refused_at, text`
)

// salvage reads what it can of a damaged replica, row by row where a
// whole table cannot be read. A supervisor's read marks not yet sent are
// kept like unsynced changes: they are sent before the next pull, which
// then brings the entries back with the marks the server now holds.
func salvage(ctx context.Context, path string) (*salvaged, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot repair %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		return nil, fmt.Errorf("cannot open %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	s := &salvaged{}
	s.profile = make([]any, 16)
	ptrs := make([]any, len(s.profile))
	for i := range s.profile {
		ptrs[i] = &s.profile[i]
	}
	if err := db.QueryRowContext(ctx, `SELECT `+profileColumns+` FROM profile WHERE id = 1`).Scan(ptrs...); err != nil {
		return nil, fmt.Errorf("cannot repair %s: its profile cannot be read (%v): enrol this device in a new profile; what it had not synced is lost", path, err)
	}
	if err := db.QueryRowContext(ctx, `SELECT last, known FROM clock WHERE id = 1`).Scan(&s.last, &s.known); err != nil {
		s.last, s.known = 0, 0 // made safe below from the clocks that can be read
	}
	if ids, err := readAll(ctx, db, `SELECT clock FROM retired_clocks`); err == nil {
		s.retired = ids
	}
	s.readOutbox(ctx, db)
	s.readRefused(ctx, db)
	s.readMarks(ctx, db)
	// The clock must never go back below a clock this device used: the
	// server knows its changes by (device, clock).
	floor := max(s.last, s.known)
	for _, c := range s.retired {
		floor = max(floor, c)
	}
	for _, c := range s.outbox {
		floor = max(floor, c.clock)
	}
	for _, r := range s.reads {
		floor = max(floor, r.clock)
	}
	if s.last == 0 {
		// The clock row was lost: nothing says which clocks the server
		// holds beyond those read, so none below the floor is used again.
		s.known = floor
	}
	s.last = floor
	return s, nil
}

func readAll(ctx context.Context, db *sql.DB, query string) ([]int64, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// readOutbox reads the outbox in order; when the scan breaks on a damaged
// page, it goes on row by row up to the last sequence number handed out.
func (s *salvaged) readOutbox(ctx context.Context, db *sql.DB) {
	const cols = `seq, entry, clock, change, uncertain, text, hold, base, rebuilds`
	scan := func(row interface{ Scan(...any) error }) (salvagedChange, error) {
		var c salvagedChange
		err := row.Scan(&c.seq, &c.entry, &c.clock, &c.change, &c.uncertain, &c.text, &c.hold, &c.base, &c.rebuilds)
		return c, err
	}
	last := int64(0)
	rows, err := db.QueryContext(ctx, `SELECT `+cols+` FROM outbox ORDER BY seq`)
	if err == nil {
		for rows.Next() {
			c, err := scan(rows)
			if err != nil {
				break
			}
			s.outbox, last = append(s.outbox, c), c.seq
		}
		err = rows.Err()
		rows.Close()
		if err == nil {
			return
		}
	}
	var top int64
	if db.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`).Scan(&top) != nil {
		top = last + 100000
	}
	for seq := last + 1; seq <= top; seq++ {
		c, err := scan(db.QueryRowContext(ctx, `SELECT `+cols+` FROM outbox WHERE seq = ?`, seq))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			s.unreadable++
		default:
			s.outbox = append(s.outbox, c)
		}
	}
}

// readMarks reads the read marks not yet sent; a mark that cannot be
// read is lost (the entry shows as the server last knew it).
func (s *salvaged) readMarks(ctx context.Context, db *sql.DB) {
	rows, err := db.QueryContext(ctx, `SELECT entry, read, clock FROM read_outbox ORDER BY clock`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var r salvagedRead
		if rows.Scan(&r.entry, &r.read, &r.clock) != nil {
			s.unreadable++
			continue
		}
		s.reads = append(s.reads, r)
	}
	if rows.Err() != nil {
		s.unreadable++
	}
}

// readRefused reads the refused changes, row by row if it must.
func (s *salvaged) readRefused(ctx context.Context, db *sql.DB) {
	row := func() ([]any, []any) {
		v := make([]any, 7)
		p := make([]any, 7)
		for i := range v {
			p[i] = &v[i]
		}
		return v, p
	}
	rows, err := db.QueryContext(ctx, `SELECT `+refusedColumns+` FROM refused ORDER BY seq`)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		v, p := row()
		if rows.Scan(p...) != nil {
			return
		}
		s.refused = append(s.refused, v)
	}
}

// write makes a new replica at path from what was salvaged: its position
// is the start, so the next sync pulls everything, and its entries are
// rebuilt from the unsynced changes until then.
func (s *salvaged) write(ctx context.Context, path string, opts Options) error {
	c, err := Open(ctx, path, opts)
	if err != nil {
		return err
	}
	err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO profile (id, `+profileColumns+`) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, s.profile...); err != nil {
			return fmt.Errorf("cannot restore the profile: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE clock SET last = ?, known = ? WHERE id = 1`, s.last, s.known); err != nil {
			return fmt.Errorf("cannot restore the clock: %w", err)
		}
		for _, r := range s.retired {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO retired_clocks (clock) VALUES (?)`, r); err != nil {
				return fmt.Errorf("cannot restore retired clocks: %w", err)
			}
		}
		for _, o := range s.outbox {
			if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (seq, entry, clock, change, uncertain, text, hold, base, rebuilds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				o.seq, o.entry, o.clock, o.change, o.uncertain, o.text, o.hold, o.base, o.rebuilds); err != nil {
				return fmt.Errorf("cannot restore an unsynced change: %w", err)
			}
		}
		for _, r := range s.refused {
			if _, err := tx.ExecContext(ctx, `INSERT INTO refused (`+refusedColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)`, r...); err != nil {
				return fmt.Errorf("cannot restore a refused change: %w", err)
			}
		}
		for _, r := range s.reads {
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO read_outbox (entry, read, clock) VALUES (?, ?, ?)`, r.entry, r.read, r.clock); err != nil {
				return fmt.Errorf("cannot restore a read mark: %w", err)
			}
		}
		return nil
	})
	c.Close()
	if err != nil {
		return err
	}
	// Opened again, the replica knows its profile and clock; the entries
	// with unsynced changes are rebuilt from them.
	c, err = Open(ctx, path, opts)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		touched := map[syncengine.EntryID]bool{}
		for _, o := range s.outbox {
			touched[syncengine.EntryID(o.entry)] = true
		}
		if err := c.rebuildAll(ctx, tx, touched); err != nil {
			return err
		}
		return nil
	})
}
