package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/diarysync/diarysync/study"
)

// TakeEnrollAttempt spends one enrolment attempt of the address; see
// study.Store. The bucket's row is locked for the read and the write, so
// parallel attempts through any number of processes queue on it and
// cannot together exceed the limit.
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
	err := db.plainTx(ctx, func(t *tx) error {
		now := db.now()
		full := db.limit.Full(now)
		// The row exists (full if new) and is locked before it is read.
		if _, err := t.Exec(ctx, `INSERT INTO enroll_attempts (addr, attempts_left, updated_at) VALUES ($1, $2, $3) ON CONFLICT (addr) DO NOTHING`,
			key, full.Left, now.UnixMilli()); err != nil {
			return fmt.Errorf("cannot record enrolment attempt: %w", err)
		}
		var b study.Attempts
		var updated int64
		if err := t.QueryRow(ctx, `SELECT attempts_left, updated_at FROM enroll_attempts WHERE addr = $1 FOR UPDATE`, key).Scan(&b.Left, &updated); err != nil {
			return fmt.Errorf("cannot read enrolment attempts: %w", err)
		}
		b.Updated = time.UnixMilli(updated)
		b, ruleErr = fn(b, now)
		if ruleErr != nil {
			return nil
		}
		if _, err := t.Exec(ctx, `UPDATE enroll_attempts SET attempts_left = $2, updated_at = $3 WHERE addr = $1`, key, b.Left, b.Updated.UnixMilli()); err != nil {
			return fmt.Errorf("cannot record enrolment attempt: %w", err)
		}
		// Buckets that have refilled are forgotten, so the table does not
		// grow with every address ever seen. SKIP LOCKED leaves rows other
		// attempts hold alone.
		if _, err := t.Exec(ctx, `DELETE FROM enroll_attempts WHERE addr IN (
			SELECT addr FROM enroll_attempts WHERE updated_at <= $1 AND addr <> $2 LIMIT 100 FOR UPDATE SKIP LOCKED)`,
			db.limit.ForgetBefore(now).UnixMilli(), key); err != nil {
			return fmt.Errorf("cannot forget enrolment attempts: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return ruleErr
}
