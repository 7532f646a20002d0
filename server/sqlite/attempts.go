package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
)

// TakeEnrollAttempt spends one enrolment attempt of the address; see
// study.Store. SQLite's one writer makes the read and the write of the
// bucket one step.
func (db *DB) TakeEnrollAttempt(ctx context.Context, from string) error {
	return db.updateAttempts(ctx, from, func(b study.Attempts, now time.Time) (study.Attempts, error) {
		return db.limit.Take(b, now)
	})
}

// ReturnEnrollAttempt gives back an attempt taken for a call that was not
// a wrong guess.
func (db *DB) ReturnEnrollAttempt(ctx context.Context, from string) error {
	return db.updateAttempts(ctx, from, func(b study.Attempts, now time.Time) (study.Attempts, error) {
		return db.limit.Give(b, now), nil
	})
}

func (db *DB) updateAttempts(ctx context.Context, from string, fn func(study.Attempts, time.Time) (study.Attempts, error)) error {
	key := study.AttemptKey(from)
	var ruleErr error
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		now := db.now()
		// Buckets that have refilled are forgotten, so the table does not
		// grow with every address ever seen.
		if _, err := tx.ExecContext(ctx, `DELETE FROM enroll_attempts WHERE updated_at <= ?`, db.limit.ForgetBefore(now).UnixMilli()); err != nil {
			return fmt.Errorf("cannot forget enrolment attempts: %w", err)
		}
		b := db.limit.Full(now)
		var updated int64
		err := tx.QueryRowContext(ctx, `SELECT attempts_left, updated_at FROM enroll_attempts WHERE addr = ?`, key).Scan(&b.Left, &updated)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("cannot read enrolment attempts: %w", err)
		default:
			b.Updated = time.UnixMilli(updated)
		}
		b, ruleErr = fn(b, now)
		if ruleErr != nil {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO enroll_attempts (addr, attempts_left, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (addr) DO UPDATE SET attempts_left = excluded.attempts_left, updated_at = excluded.updated_at`, key, b.Left, b.Updated.UnixMilli()); err != nil {
			return fmt.Errorf("cannot record enrolment attempt: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return ruleErr
}
