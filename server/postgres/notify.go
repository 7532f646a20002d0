package postgres

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/jackc/pgx/v5"
)

// A notification's payload is "<instance> <owners>;<readers>", each list
// of user ids joined by commas, or "<instance> *" when every stream must
// look again. PostgreSQL limits a payload to 8000 bytes; longer lists are
// sent as "*", which wakes more streams than needed and loses nothing.
const maxPayload = 7900

// payload returns what t's commit announces, and false if nothing.
func (db *DB) payload(t *tx) (string, bool) {
	if !t.all && len(t.wake.Owners) == 0 && len(t.wake.Readers) == 0 {
		return "", false
	}
	all := db.instance + " *"
	if t.all {
		return all, true
	}
	var b strings.Builder
	b.WriteString(db.instance)
	b.WriteByte(' ')
	join := func(ids []int64) {
		ids = slices.Clone(ids)
		slices.Sort(ids)
		for i, id := range slices.Compact(ids) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(id, 10))
		}
	}
	join(t.wake.Owners)
	b.WriteByte(';')
	join(t.wake.Readers)
	if b.Len() > maxPayload {
		return all, true
	}
	return b.String(), true
}

// parsePayload reads a payload: whose commit it announces, and its
// wake-ups (nil for "every stream").
func parsePayload(p string) (instance string, w *study.Wakeups, err error) {
	instance, rest, ok := strings.Cut(p, " ")
	if !ok {
		return "", nil, errors.New("no instance")
	}
	if rest == "*" {
		return instance, nil, nil
	}
	owners, readers, ok := strings.Cut(rest, ";")
	if !ok {
		return "", nil, errors.New("no ';'")
	}
	w = &study.Wakeups{}
	for _, part := range []struct {
		s   string
		ids *[]int64
	}{{owners, &w.Owners}, {readers, &w.Readers}} {
		if part.s == "" {
			continue
		}
		for _, f := range strings.Split(part.s, ",") {
			id, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return "", nil, err
			}
			*part.ids = append(*part.ids, id)
		}
	}
	return instance, w, nil
}

// listenIdle is how long the listening connection waits for a
// notification before it checks that the database still answers, so that
// a connection lost without a word (a half-open TCP connection) is
// noticed within about this long.
const listenIdle = 20 * time.Second

// WatchCommits calls wake with the wake-ups of every commit another
// process makes, until ctx ends. It listens on one connection of its
// own; when that connection fails it connects again (waiting a little
// longer after each failure, up to 5 s) and then calls wake(nil), since
// notifications sent meanwhile were missed.
func (db *DB) WatchCommits(ctx context.Context, wake func(*study.Wakeups)) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		heard, err := db.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		db.log.Warn("lost the connection that hears other processes' commits; reconnecting", "err", err)
		if heard {
			backoff = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listenOnce listens until the connection fails or ctx ends, and reports
// whether it got as far as listening.
func (db *DB) listenOnce(ctx context.Context, wake func(*study.Wakeups)) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, db.listen)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+channel); err != nil {
		return false, err
	}
	// Whatever committed while nobody here listened is unknown: every
	// stream looks again.
	wake(nil)
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			if _, err := conn.Exec(ctx, `SELECT 1`); err != nil {
				return true, err
			}
			continue
		case err != nil:
			return true, err
		}
		instance, w, err := parsePayload(n.Payload)
		if err != nil {
			db.log.Warn("ignoring a notification that is not one of ours", "payload_bytes", len(n.Payload), "err", err)
			continue
		}
		if instance == db.instance {
			continue // this process woke its own streams already
		}
		wake(w)
	}
}
