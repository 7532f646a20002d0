package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
)

// audit appends an event to the audit log in tx, so that it commits or
// rolls back with the action it records. The actor is the caller's study
// code, or "system" when the server acts on its own. users are the ids of
// the people the event concerns, who see it in their activity. details
// must never hold diary content.
func (db *DB) audit(ctx context.Context, tx *sql.Tx, action, subject string, details map[string]string, users ...int64) error {
	return db.auditAs(ctx, tx, study.ActorFrom(ctx), action, subject, details, users...)
}

// auditAs appends an event done by actor (for calls made without a
// device token, such as an enrolment, whose actor is the administrator
// who issued the code).
func (db *DB) auditAs(ctx context.Context, tx *sql.Tx, actor, action, subject string, details map[string]string, users ...int64) error {
	if details == nil {
		details = map[string]string{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return fmt.Errorf("cannot encode audit details: %w", err)
	}
	var id int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO audit (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?) RETURNING id`,
		db.nowMillis(), actor, action, subject, string(b)).Scan(&id); err != nil {
		return fmt.Errorf("cannot write the audit log: %w", err)
	}
	for _, u := range users {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO audit_subjects (user_id, event) VALUES (?, ?)`, u, id); err != nil {
			return fmt.Errorf("cannot write the audit log: %w", err)
		}
	}
	return nil
}

// ListAudit returns a page of the audit log, newest first.
func (db *DB) ListAudit(ctx context.Context, size uint32, token string) ([]*study.AuditEvent, string, error) {
	before, err := study.DecodeIntPageToken(token)
	if err != nil {
		return nil, "", err
	}
	n := study.ListPageSize(size)
	rows, err := db.read.QueryContext(ctx, `SELECT id, at, actor, action, subject, details FROM audit WHERE (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?`, before, before, n+1)
	return scanAudit(rows, err, n)
}

// ListActivity returns a page of the audit events that concern the user,
// newest first.
func (db *DB) ListActivity(ctx context.Context, userID int64, size uint32, token string) ([]*study.AuditEvent, string, error) {
	before, err := study.DecodeIntPageToken(token)
	if err != nil {
		return nil, "", err
	}
	n := study.ListPageSize(size)
	rows, err := db.read.QueryContext(ctx, `SELECT a.id, a.at, a.actor, a.action, a.subject, a.details
		FROM audit_subjects s JOIN audit a ON a.id = s.event
		WHERE s.user_id = ? AND (? = 0 OR s.event < ?) ORDER BY s.event DESC LIMIT ?`, userID, before, before, n+1)
	return scanAudit(rows, err, n)
}

// scanAudit reads up to n events of a query that asked for n+1, and the
// token of the next page.
func scanAudit(rows *sql.Rows, err error, n int) ([]*study.AuditEvent, string, error) {
	if err != nil {
		return nil, "", fmt.Errorf("cannot read the audit log: %w", err)
	}
	defer rows.Close()
	var out []*study.AuditEvent
	for rows.Next() {
		var (
			e       study.AuditEvent
			at      int64
			details string
		)
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Subject, &details); err != nil {
			return nil, "", fmt.Errorf("cannot read the audit log: %w", err)
		}
		e.At = time.UnixMilli(at).UTC()
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			return nil, "", fmt.Errorf("audit event %d: %w", e.ID, err)
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot read the audit log: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		next = study.EncodeIntPageToken(out[n-1].ID)
	}
	return out, next, nil
}

// listAudit reads up to n events that pass where, newest first, and the
// token of the next page.
func (db *DB) listAudit(ctx context.Context, where string, args []any, n int) ([]*study.AuditEvent, string, error) {
	rows, err := db.read.QueryContext(ctx, `SELECT id, at, actor, action, subject, details FROM audit WHERE `+where+` ORDER BY id DESC LIMIT ?`, append(args, n+1)...)
	return scanAudit(rows, err, n)
}
