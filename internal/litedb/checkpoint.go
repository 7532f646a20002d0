package litedb

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// Checkpoints, with Options.BackgroundCheckpoints. SQLite's own
// checkpoint runs inside the commit that takes the log past its
// threshold: with synchronous=FULL it copies the log's pages into the
// database file and syncs both while the writer, and every push waiting
// for that commit's answer, waits. Instead, a goroutine with a connection
// of its own checkpoints a short while after commits, in PASSIVE mode,
// which never waits for the writer or a reader and copies what it can.
// The writer keeps SQLite's checkpoint at a much higher threshold, so
// that the log stays bounded should this one fall behind.
const (
	// checkpointAfter is how long after a commit the background
	// checkpoint starts: a burst's commits are copied together, so a page
	// that every commit changes is written to the database file once
	// rather than once a commit.
	checkpointAfter = 100 * time.Millisecond
	// writerCheckpointPages is the writer's own threshold, in pages of
	// the log (SQLite's default is 1000).
	writerCheckpointPages = 16000
)

// checkpointer runs the background checkpoints of one database.
type checkpointer struct {
	conn *sql.DB
	kick chan struct{} // a commit happened; capacity 1
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex // one checkpoint at a time: SQLite refuses a second
	stopOnce sync.Once
}

func startCheckpointer(conn *sql.DB) *checkpointer {
	c := &checkpointer{
		conn: conn,
		kick: make(chan struct{}, 1),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go c.run()
	return c
}

// committed tells the checkpointer a commit happened; it never blocks.
// c is nil without BackgroundCheckpoints, and while the migrations run.
func (c *checkpointer) committed() {
	if c == nil {
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) run() {
	defer close(c.done)
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		select {
		case <-c.stop:
			return
		case <-time.After(checkpointAfter):
		}
		// An error (the database closing, a damaged file) leaves the log
		// to the writer's own checkpoint; the next commit tries again.
		c.checkpoint(context.Background(), c.conn, "PASSIVE")
	}
}

// checkpoint runs one checkpoint of mode on conn, after any under way.
func (c *checkpointer) checkpoint(ctx context.Context, conn *sql.DB, mode string) error {
	if c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA wal_checkpoint("+mode+")"); err != nil {
		return fmt.Errorf("cannot checkpoint: %w", Classify(err))
	}
	return nil
}

// close stops the goroutine and closes its connection; a second call
// does nothing more.
func (c *checkpointer) close() error {
	if c == nil {
		return nil
	}
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
	return c.conn.Close()
}

// TruncateLog checkpoints the whole log into the database file and
// truncates it to nothing, after any checkpoint under way. While a reader
// holds an older snapshot the log cannot be truncated and stays as it
// is; a later checkpoint overwrites it.
func (db *DB) TruncateLog(ctx context.Context) error {
	return db.ckpt.checkpoint(ctx, db.Write, "TRUNCATE")
}
