package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"

	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/jackc/pgx/v5"
)

// migrate copies a stopped SQLite study into an empty PostgreSQL
// database, row for row: ids, sequence numbers, feeds, history, the audit
// log and whom each event concerns, kept refusals, device secrets' hashes
// with the devices' approval and revocation, entries held back for a
// device waiting for approval, navigators' own wave dates, the redaction
// setting and terms, and the exports made with their entries (so that
// --since still compares with them). Devices therefore keep their tokens
// and cursors and carry on syncing against the new server without
// enrolling again, and without missing or repeating anything.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("diaryd migrate", "--from DIR --database postgres://...", stdout)
	from := fs.String("from", "", "the data directory of the SQLite study to copy; its server must be stopped")
	database := databaseFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" || *database == "" {
		return usagef("migrate needs --from DIR and --database postgres://...")
	}
	if _, err := os.Stat(dbFile(*from)); err != nil {
		return fmt.Errorf("no diarysync database in %s", *from)
	}
	// A server still running could commit after the copy was read.
	release, err := lockData(*from)
	if err != nil {
		return err
	}
	defer release()

	// Opening each store applies its migrations, so both schemas are
	// the ones this copy knows.
	lite, err := sqlite.Open(ctx, dbFile(*from), sqlite.Options{})
	if err != nil {
		return err
	}
	lite.Close()
	pg, err := openDatabase(ctx, *database, nil)
	if err != nil {
		return err
	}
	pg.Close()

	src, err := sql.Open("sqlite", "file:"+dbFile(*from)+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", dbFile(*from), err)
	}
	defer src.Close()
	rtx, err := src.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", dbFile(*from), err)
	}
	defer rtx.Rollback()

	conn, err := pgx.Connect(ctx, *database)
	if err != nil {
		return fmt.Errorf("cannot connect to the PostgreSQL database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	counts, err := copyStudy(ctx, rtx, conn)
	if err != nil {
		return err
	}
	// Statistics for the copied tables, so that the server's first plans
	// are costed with their real sizes rather than autovacuum's next
	// visit deciding them.
	if _, err := conn.Exec(ctx, `ANALYZE`, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("copied the study, but cannot analyze its tables (run ANALYZE on the database before starting diaryd): %w", err)
	}
	fmt.Fprintf(stdout, "Copied %s to PostgreSQL: %d users, %d devices, %d entries, %d history rows, %d feed rows, %d audit events, sequence at %d.\n",
		*from, counts["users"], counts["devices"], counts["entries"], counts["history"], counts["feed"], counts["audit"], counts["sequence"])
	fmt.Fprintf(stdout, "Start diaryd with --database and point the devices' address at it; keep %s as a backup until you are sure.\n", *from)
	return nil
}

// copyTable is one table to copy: its columns in the SQLite file, and
// for each a conversion to what the PostgreSQL column takes.
type copyTable struct {
	name    string
	columns []string // SQLite columns, read in this order
	to      []string // PostgreSQL columns, written in this order
	convert func(row []any) []any
}

func asBool(v any) any {
	if v == nil {
		return nil
	}
	n, _ := v.(int64)
	return n != 0
}

// copyTables are the study's tables in an order that keeps references
// valid. The enrolment attempts and the console's sign-in failures are
// not copied: they only slow guessing for a while. The one-row tables
// (sequence, redaction) are written by copyStudy. TestCopyTables checks
// that every column of both schemas is here.
var copyTables = []copyTable{
	{name: "users", columns: []string{"id", "study_code", "role", "display_name", "active", "created_at", "withdrawn_at"},
		convert: func(r []any) []any { r[4] = asBool(r[4]); return r }},
	{name: "assignments", columns: []string{"supervisor_id", "navigator_id", "created_at"}},
	{name: "enrollment_codes", columns: []string{"code_hash", "user_id", "created_at", "expires_at", "used_at", "issued_by", "approved"},
		convert: func(r []any) []any { r[6] = asBool(r[6]); return r }},
	{name: "devices", columns: []string{"id", "public_id", "user_id", "replica_id", "name", "secret_hash", "enrolled_at", "last_sync_at", "revoked_at",
		"pending", "issued_by", "approved_at", "approved_by", "revocation", "revoked_by", "kind", "applied_changes"},
		convert: func(r []any) []any { r[9] = asBool(r[9]); return r }},
	// Web console sessions (devices of kind 2) and passphrases, so that
	// people stay signed in and sign in again as before.
	{name: "console_sessions", columns: []string{"device_id", "expires_at", "last_seen_at", "end_reason"}},
	{name: "passphrases", columns: []string{"user_id", "hash", "set_at"}},
	{name: "entries", columns: []string{"rid", "id", "owner_id", "seq", "state", "date", "sup_visible", "res_visible", "deleted", "erased_at", "held_by", "echo_device"},
		convert: func(r []any) []any { r[6], r[7], r[8] = asBool(r[6]), asBool(r[7]), asBool(r[8]); return r }},
	{name: "feed", columns: []string{"reader", "entry", "seq", "visible", "reason"},
		convert: func(r []any) []any { r[3] = asBool(r[3]); return r }},
	// SQLite keeps a change's value in one untyped column; PostgreSQL in
	// text_value, int_value or, for a text edit (which SQLite holds as a
	// blob, its canonical encoding), text_change.
	{name: "history", columns: []string{"id", "entry", "field", "tag", "feedback", "value", "clock", "device_id", "user_id", "received_at", "write_clock"},
		to: []string{"id", "entry", "field", "tag", "feedback", "text_value", "int_value", "text_change", "clock", "device_id", "user_id", "received_at", "write_clock"},
		convert: func(r []any) []any {
			var text, number, edit any
			switch v := r[5].(type) {
			case string:
				text = v
			case []byte:
				edit = v
			case int64:
				number = v
			case bool:
				number = map[bool]int64{false: 0, true: 1}[v]
			}
			return append(r[:5:5], append([]any{text, number, edit}, r[6:]...)...)
		}},
	{name: "waves", columns: []string{"number", "label", "start_date", "end_date"}},
	{name: "wave_dates", columns: []string{"number", "navigator_id", "start_date", "end_date"}},
	{name: "audit", columns: []string{"id", "at", "actor", "action", "subject", "details"}},
	{name: "audit_subjects", columns: []string{"user_id", "event"}},
	{name: "refusals", columns: []string{"device_id", "clock", "reason", "message"}},
	{name: "redaction_terms", columns: []string{"key", "term", "marker", "added_at"}},
	// An incomplete export was being made when the server stopped; the
	// SQLite store dropped it when this copy opened the file.
	{name: "exports", columns: []string{"id", "created_at", "actor", "position", "complete", "summary"},
		convert: func(r []any) []any { r[4] = asBool(r[4]); return r }},
	{name: "export_entries", columns: []string{"export_id", "entry_id", "text_sha256"}},
	{name: "read_marks", columns: []string{"reader", "entry", "read", "clock"},
		convert: func(r []any) []any { r[2] = asBool(r[2]); return r }},
}

// identities are the generated columns whose next values must follow the
// copied rows.
var identities = [][2]string{{"users", "id"}, {"devices", "id"}, {"entries", "rid"}, {"history", "id"}, {"audit", "id"}, {"exports", "id"}}

// copyStudy copies every table in one PostgreSQL transaction, so that a
// failed copy leaves the database as it was, and returns the rows copied
// per table.
func copyStudy(ctx context.Context, src *sql.Tx, conn *pgx.Conn) (map[string]int64, error) {
	counts := map[string]int64{}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var users, entries int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM entries)`).Scan(&users, &entries); err != nil {
			return fmt.Errorf("cannot read the PostgreSQL database: %w", err)
		}
		if users > 0 || entries > 0 {
			return fmt.Errorf("the PostgreSQL database already holds a study (%d users, %d entries): migrate into an empty database", users, entries)
		}
		for _, t := range copyTables {
			n, err := copyRows(ctx, src, tx, t)
			if err != nil {
				return err
			}
			counts[t.name] = n
		}
		// The one-row tables exist on both sides already: their row is
		// replaced.
		var seq, changedAt int64
		if err := src.QueryRowContext(ctx, `SELECT value, changed_at FROM sequence WHERE id = 1`).Scan(&seq, &changedAt); err != nil {
			return fmt.Errorf("cannot read the sequence: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE sequence SET value = $1, changed_at = $2 WHERE id = 1`, seq, changedAt); err != nil {
			return fmt.Errorf("cannot write the sequence: %w", err)
		}
		counts["sequence"] = seq
		var (
			enabled  bool
			patterns sql.NullString
			version  int64
		)
		if err := src.QueryRowContext(ctx, `SELECT enabled, patterns, version FROM redaction WHERE id = 1`).Scan(&enabled, &patterns, &version); err != nil {
			return fmt.Errorf("cannot read the redaction setting: %w", err)
		}
		var stored *string
		if patterns.Valid {
			stored = &patterns.String
		}
		if _, err := tx.Exec(ctx, `UPDATE redaction SET enabled = $1, patterns = $2, version = $3 WHERE id = 1`, enabled, stored, version); err != nil {
			return fmt.Errorf("cannot write the redaction setting: %w", err)
		}
		for _, id := range identities {
			if _, err := tx.Exec(ctx, fmt.Sprintf(`SELECT setval(pg_get_serial_sequence('%[1]s', '%[2]s'), coalesce((SELECT max(%[2]s) FROM %[1]s), 0) + 1, false)`, id[0], id[1])); err != nil {
				return fmt.Errorf("cannot move on the ids of %s: %w", id[0], err)
			}
		}
		return nil
	})
	return counts, err
}

func copyRows(ctx context.Context, src *sql.Tx, dst pgx.Tx, t copyTable) (int64, error) {
	rows, err := src.QueryContext(ctx, `SELECT `+joinColumns(t.columns)+` FROM `+t.name)
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %w", t.name, err)
	}
	defer rows.Close()
	to := t.to
	if to == nil {
		to = t.columns
	}
	n, err := dst.CopyFrom(ctx, pgx.Identifier{t.name}, to, &rowSource{rows: rows, cols: len(t.columns), convert: t.convert})
	if err != nil {
		return 0, fmt.Errorf("cannot copy %s: %w", t.name, err)
	}
	return n, nil
}

func joinColumns(cols []string) string {
	out := ""
	for i, c := range cols {
		if i > 0 {
			out += ", "
		}
		out += c
	}
	return out
}

// rowSource streams SQLite rows into COPY, one at a time, so memory does
// not grow with the size of the study.
type rowSource struct {
	rows    *sql.Rows
	cols    int
	convert func([]any) []any
	vals    []any
	err     error
}

func (r *rowSource) Next() bool {
	if !r.rows.Next() {
		return false
	}
	vals := make([]any, r.cols)
	ptrs := make([]any, r.cols)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if r.err = r.rows.Scan(ptrs...); r.err != nil {
		return false
	}
	if r.convert != nil {
		vals = r.convert(vals)
	}
	r.vals = vals
	return true
}

func (r *rowSource) Values() ([]any, error) { return r.vals, r.err }

func (r *rowSource) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.rows.Err()
}
