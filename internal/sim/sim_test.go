package sim

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diarysync/diarysync/internal/storetest"
)

var (
	flagSeeds = flag.Int("sim.seeds", 0, "number of seeds to run (default 200; 20 under the race detector or -short; .ci/run runs 1000)")
	flagSeed  = flag.Int64("sim.seed", -1, "run only this seed and print its trace")
	flagSoak  = flag.Duration("sim.soak", 0, "run new seeds until this much time has passed")
	flagSteps = flag.Int("sim.steps", defaultSteps, "random steps per seed before the quiet phase")
	// With DIARYSYNC_TEST_STORE=postgres the server store is PostgreSQL:
	// a database of its own per seed on this server.
	flagPostgres = flag.String("sim.postgres", os.Getenv("DIARYSYNC_TEST_POSTGRES"), "PostgreSQL server for DIARYSYNC_TEST_STORE=postgres (default $DIARYSYNC_TEST_POSTGRES)")
)

const defaultSteps = 200

// reproduce is the command that runs one seed again.
func reproduce(seed uint64) string {
	cmd := fmt.Sprintf("go test ./internal/sim -run 'TestSimulation$' -sim.seed %d -v", seed)
	if storetest.Engine() == storetest.Postgres {
		cmd = "DIARYSYNC_TEST_STORE=postgres " + cmd + " (PostgreSQL is not deterministic: the replay may differ)"
	}
	if *flagSteps != defaultSteps {
		cmd += fmt.Sprintf(" -sim.steps %d", *flagSteps)
	}
	return cmd
}

// result is what one seed's run left.
type result struct {
	seed   uint64
	err    error
	tail   []string
	stats  map[string]int
	digest string
}

// runSeed runs one seed in a directory of its own under root, which it
// removes unless the run failed.
func runSeed(ctx context.Context, root string, tmpl *templates, seed uint64, steps int, verbose func(string)) result {
	res := result{seed: seed}
	dir, err := os.MkdirTemp(root, fmt.Sprintf("seed%d-", seed))
	if err != nil {
		res.err = err
		return res
	}
	w, err := newWorld(ctx, seed, steps, dir, tmpl, verbose)
	if err != nil {
		res.err = err
		return res
	}
	res.err = w.run(ctx)
	if cerr := w.close(); cerr != nil && res.err == nil {
		res.err = fmt.Errorf("cannot close the world: %w", cerr)
	}
	res.tail, res.stats = w.trace.tail, w.stats
	res.digest = fmt.Sprintf("%x", w.trace.digest.Sum(nil))
	if res.err == nil {
		os.RemoveAll(dir)
	}
	return res
}

// run plays the random phase, then the quiet phase, then checks every
// law.
func (w *world) run(ctx context.Context) error {
	w.faults = true
	for w.step = 1; w.step <= w.steps; w.step++ {
		if w.step == w.withdraw {
			if err := w.withdrawNavigator(ctx); err != nil {
				return fmt.Errorf("step %d: %w", w.step, err)
			}
		}
		o := w.pickOp()
		w.count("op." + o.name)
		if err := o.run(ctx, w); err != nil {
			return fmt.Errorf("step %d (%s): %w", w.step, o.name, err)
		}
		if w.err != nil {
			return fmt.Errorf("step %d (%s): %w", w.step, o.name, w.err)
		}
	}
	// The quiet phase: every device online, no faults, syncs in rounds
	// until every replica holds its user's view (feedback written in one
	// round reaches navigators in the next).
	w.faults = false
	for _, d := range w.devices {
		d.offlineUntil = 0
	}
	w.tracef("quiet phase")
	// Every device still waiting is approved, so each holds its user's
	// view at the end.
	for _, d := range w.devices {
		if d.pending {
			if err := w.approve(ctx, d); err != nil {
				return fmt.Errorf("quiet phase: %w", err)
			}
			if d.pending {
				return fmt.Errorf("quiet phase: %s is still pending after its approval", d.name)
			}
		}
	}
	for round := 1; ; round++ {
		for _, d := range w.devices {
			if err := w.sync(ctx, d); err != nil {
				return fmt.Errorf("quiet round %d: %w", round, err)
			}
		}
		settled, err := w.settled(ctx)
		if err != nil {
			return err
		}
		if settled {
			w.stats["quiet_rounds"] += round
			break
		}
		if round == 4 {
			return fmt.Errorf("law 2: replicas still differ from the server after %d quiet rounds", round)
		}
	}
	if err := w.checkFinal(ctx); err != nil {
		return fmt.Errorf("after the quiet phase: %w", err)
	}
	for _, d := range w.devices {
		h, n, err := d.c.StateHash(ctx)
		if err != nil {
			return err
		}
		w.tracef("%s final: %d entries, hash %x", d.name, n, h[:8])
	}
	return nil
}

// settled reports whether every replica's state hash equals the
// server's for its user.
func (w *world) settled(ctx context.Context) (bool, error) {
	for _, d := range w.devices {
		local, _, err := d.c.StateHash(ctx)
		if err != nil {
			return false, err
		}
		d.noFaults = true
		remote, _, _, err := d.c.ServerStateHash(ctx)
		d.noFaults = false
		if err != nil {
			return false, fmt.Errorf("cannot get the server's state hash for %s: %w", d.name, err)
		}
		if local != remote {
			return false, nil
		}
	}
	return true, nil
}

func defaultSeeds() int {
	switch {
	case *flagSeeds > 0:
		return *flagSeeds
	case raceEnabled, testing.Short():
		return 20
	}
	// .ci/run asks for 1000 seeds; a plain "go test ./..." runs fewer so
	// that it stays quick.
	return 200
}

// TestSimulation runs the simulation for many seeds in parallel, one
// seed per goroutine at a time; each seed is a world of its own driven
// by one goroutine. A failure names its seed and the command that
// replays it.
func TestSimulation(t *testing.T) {
	ctx := context.Background()
	if storetest.Engine() == storetest.Postgres {
		storetest.PostgresURL(t)
	}
	steps := *flagSteps
	root := t.TempDir()
	tmpl, err := makeTemplates(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if *flagSeed >= 0 {
		seed := uint64(*flagSeed)
		res := runSeed(ctx, root, tmpl, seed, steps, func(s string) { t.Log(s) })
		report(t, res)
		t.Logf("seed %d: %s", seed, summary(res.stats, 1))
		return
	}
	first, n, deadline := uint64(1), defaultSeeds(), time.Time{}
	if *flagSoak > 0 {
		// A soak explores seeds no earlier run has tried.
		first, n = uint64(time.Now().UnixNano()&(1<<40-1)), 1<<62
		deadline = time.Now().Add(*flagSoak)
		t.Logf("soak for %v from seed %d", *flagSoak, first)
	}
	// Each world allocates a lot and keeps little; collecting less often
	// buys a fifth of the run time for a little memory.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	start := time.Now()
	seeds := make(chan uint64)
	results := make(chan result)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range seeds {
				results <- runSeed(ctx, root, tmpl, s, steps, nil)
			}
		}()
	}
	go func() {
		defer close(seeds)
		for i := range n {
			if !deadline.IsZero() && time.Now().After(deadline) {
				return
			}
			seeds <- first + uint64(i)
		}
	}()
	go func() { wg.Wait(); close(results) }()

	total := map[string]int{}
	ran, failed := 0, 0
	for res := range results {
		ran++
		for k, v := range res.stats {
			total[k] += v
		}
		if res.err != nil {
			failed++
			if failed <= 5 {
				report(t, res)
			}
		}
	}
	t.Logf("%d seeds, %d failed, in %v (GOMAXPROCS %d, race detector %v)", ran, failed, time.Since(start).Round(time.Millisecond), runtime.GOMAXPROCS(0), raceEnabled)
	t.Logf("%s", summary(total, ran))
}

// report fails t with a seed's error, the last lines of its trace and
// the command that reproduces it.
func report(t *testing.T, res result) {
	t.Helper()
	if res.err == nil {
		return
	}
	t.Errorf("seed %d failed: %v\nlast steps:\n\t%s\nreproduce with:\n\t%s", res.seed, res.err, strings.Join(res.tail, "\n\t"), reproduce(res.seed))
}

// summary formats the counters of a set of runs.
func summary(stats map[string]int, seeds int) string {
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "counts over %d seeds (%d steps each):", seeds, *flagSteps)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n\t%-40s %9d", k, stats[k])
	}
	return b.String()
}

// TestSeedReproduces runs seeds twice and compares their traces: a seed
// names one run exactly, which is what makes a failing seed worth
// printing.
func TestSeedReproduces(t *testing.T) {
	ctx := context.Background()
	if storetest.Engine() == storetest.Postgres {
		t.Skip("a real PostgreSQL is not deterministic: seeds replay exactly on SQLite only")
	}
	root := t.TempDir()
	tmpl, err := makeTemplates(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	for _, seed := range []uint64{7, 8} {
		a := runSeed(ctx, root, tmpl, seed, 60, nil)
		b := runSeed(ctx, root, tmpl, seed, 60, nil)
		report(t, a)
		if a.digest != b.digest {
			t.Fatalf("seed %d ran differently twice: trace digests %s and %s", seed, a.digest[:12], b.digest[:12])
		}
		if a.stats["sync.ok"] == 0 || a.stats["changes_written"] == 0 {
			t.Fatalf("seed %d did nothing worth comparing: %v", seed, a.stats)
		}
	}
}
