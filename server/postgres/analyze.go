package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Plans for a growing study. pgx prepares each statement once on each
// connection, and after a few runs PostgreSQL may keep one generic plan
// for it, costed with the table sizes its statistics gave then. A study
// starts empty, and a plan made while entries held a few pages reads the
// whole table to look up a push's ten entries by id: at 200 devices
// every push of a new study did so until autovacuum came by, and pushes
// per second fell to a quarter in the runs where it came late. Analyzing
// a table makes every connection plan its statements on it again.
// Autovacuum analyzes too, but on its own schedule (once a minute at
// most, after a tenth of the table changed, or never where it is turned
// off), and a morning's burst of syncs in a new study is over before
// then. So the store analyzes the tables that pushes grow each time this
// process has written as many changes as the history held at the last
// analysis: a plan is never made with sizes below half of what they are.
//
// Each process counts only its own writes; with several, the tables grow
// further between analyses, and autovacuum's still come.

// analyzeFloor is the number of changes written before the first
// analysis: below it a whole-table scan costs about what the index does.
const analyzeFloor = 2000

// analyzeTimeout bounds one ANALYZE, which samples a fixed number of
// rows whatever the tables' size.
const analyzeTimeout = 5 * time.Minute

// growth counts the changes written since the last analysis.
type growth struct {
	mu      sync.Mutex
	written int64 // changes written since the last analysis began
	next    int64 // written at which the next analysis starts
	running bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// initGrowth sets the first threshold from the history's size as the
// statistics know it (none for a new database).
func (db *DB) initGrowth(ctx context.Context) error {
	rows, err := db.historyRows(ctx)
	if err != nil {
		return err
	}
	g := &db.growth
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.next = max(analyzeFloor, rows)
	return nil
}

// historyRows is the history's number of rows as the statistics give it
// (-1 before any analysis).
func (db *DB) historyRows(ctx context.Context) (int64, error) {
	var tuples float64
	err := db.pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'history'::regclass`).Scan(&tuples)
	return int64(tuples), err
}

// grew records that changes were committed, and starts an analysis in
// the background when they reach the threshold and none is under way.
func (db *DB) grew(changes int) {
	g := &db.growth
	g.mu.Lock()
	g.written += int64(changes)
	if g.running || g.written < g.next || g.ctx.Err() != nil {
		g.mu.Unlock()
		return
	}
	g.running = true
	g.written = 0
	g.wg.Add(1)
	g.mu.Unlock()
	go db.analyze()
}

// analyze analyzes the tables pushes grow, and sets the next threshold
// from the history's size.
func (db *DB) analyze() {
	g := &db.growth
	defer g.wg.Done()
	ctx, cancel := context.WithTimeout(g.ctx, analyzeTimeout)
	defer cancel()
	start := time.Now()
	_, err := db.pool.Exec(ctx, `ANALYZE entries, history, feed`, pgx.QueryExecModeSimpleProtocol)
	var rows int64
	if err == nil {
		rows, err = db.historyRows(ctx)
	}
	g.mu.Lock()
	g.running = false
	if err == nil {
		g.next = max(analyzeFloor, rows)
	}
	g.mu.Unlock()
	switch {
	case err != nil && g.ctx.Err() == nil:
		// It is tried again once as many changes are written again.
		db.log.Warn("cannot analyze the growing tables; plans may stay those of a smaller study until autovacuum analyzes them", "err", err)
	case err == nil:
		db.log.Debug("analyzed the growing tables", "history_rows", rows, "took", time.Since(start))
	}
}

// stopGrowth stops an analysis under way and waits for it.
func (db *DB) stopGrowth() {
	g := &db.growth
	if g.cancel == nil {
		return
	}
	g.mu.Lock()
	g.cancel()
	g.mu.Unlock()
	g.wg.Wait()
}
