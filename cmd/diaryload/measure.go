package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
)

// cleanupTimeout bounds --cleanup, which runs even after the run was
// interrupted.
const cleanupTimeout = 5 * time.Minute

// load runs the whole measurement: it opens the target, sets up the
// study, preloads, runs the load, times the full pull, and cleans up. On
// an interruption it returns what it measured so far with the error.
func load(ctx context.Context, cfg *config, pr *progress) (rep *report, err error) {
	t, err := openTarget(ctx, cfg, pr)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, t.close()) }()

	if t.child != nil {
		// Once the server diaryload started is gone every call fails:
		// end the run at once and say why.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-t.child.exited:
				cancel(fmt.Errorf("diaryd exited during the run: %v\n%s", t.child.waitErr, t.child.log))
			case <-ctx.Done():
			}
		}()
	}

	s := &loadStudy{runID: newRunID()}
	defer s.close()
	if !t.started && !cfg.cleanup {
		defer func() {
			s.mu.Lock()
			n := len(s.created)
			s.mu.Unlock()
			if err != nil && n > 0 {
				err = fmt.Errorf("%w\n(this run created %d users %s%s-*; --cleanup-only %s erases and deactivates them)", err, n, codePrefix, s.runID, s.runID)
			}
		}()
	}
	rep = &report{
		RunID:           s.runID,
		Server:          t.url,
		StartedServer:   t.started,
		Devices:         cfg.devices,
		Supervisors:     cfg.supervisors,
		PushesPerDevice: cfg.pushes,
		EntriesPerPush:  cfg.entries,
		Shared:          cfg.share,
		Errors:          map[string]int{},
		Refused:         map[string]int{},
	}
	if t.started {
		rep.Store, rep.Synchronous, rep.Data = "sqlite", t.sync, cfg.data
		if cfg.database != "" {
			rep.Store = "postgres"
		}
	}
	if cfg.cleanup {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			s.mu.Lock()
			users := slices.Clone(s.created)
			s.mu.Unlock()
			c, cerr := cleanup(cctx, cfg, t, users, pr)
			if rep != nil {
				rep.Cleanup = c
			}
			err = errors.Join(err, cerr)
		}()
	}

	if err := s.setup(ctx, cfg, t, pr); err != nil {
		return nil, err
	}
	if cfg.preload > 0 {
		if rep.Preload, err = preload(ctx, cfg, s.preloader, pr); err != nil {
			return nil, err
		}
	}

	// Supervisors subscribe before the first push, so that every push
	// can wake them.
	wctx, stopWatchers := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	stopAll := func() { stopWatchers(); wwg.Wait() }
	defer stopAll()
	watchers := make([]*watcher, cfg.supervisors)
	for j := range watchers {
		w := newWatcher(cfg, s.supervisors[j])
		watchers[j] = w
		wwg.Go(func() { w.run(wctx, pr) })
	}
	pr.phase("opening Subscribe streams", len(watchers))
	for _, w := range watchers {
		select {
		case <-w.opened:
			pr.add(1)
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-time.After(cfg.rpcTimeout):
			return nil, fmt.Errorf("the Subscribe stream of %s did not open within %s", w.dev.code, cfg.rpcTimeout)
		}
	}

	pr.phase("pushing", cfg.devices*cfg.pushes)
	stop, stopLoad := context.WithTimeout(ctx, cfg.duration)
	results := make([]*navigatorResult, cfg.devices)
	var wg sync.WaitGroup
	cpuStart := markCPU(ctx, t)
	groupStart, groupsKnown := markGroups(ctx, t)
	start := time.Now()
	for i, d := range s.navigators {
		wg.Go(func() { results[i] = runNavigator(ctx, stop, cfg, i, d, pr) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpuEnd := markCPU(ctx, t)
	if groupEnd, ok := markGroups(ctx, t); ok && groupsKnown {
		rep.GroupCommit = groupsSince(groupStart, groupEnd)
	}
	stopLoad()

	targets := make([]uint64, len(watchers))
	if cfg.share {
		for _, r := range results {
			for _, a := range r.acks {
				if j := s.supervisorOf[a.navigator]; j >= 0 {
					targets[j] = max(targets[j], a.seq)
				}
			}
		}
	}
	pr.phase("waiting for supervisors to catch up", 0)
	drain(ctx, watchers, targets, cfg.rpcTimeout)
	stopAll()

	rep.fill(cfg, s, results, watchers, elapsed)
	rep.CPU = cpuSince(cpuStart, cpuEnd, t, rep.Pushes)
	if err := context.Cause(ctx); err != nil {
		rep.Interrupted = true
		rep.memory(t.readMemory())
		return rep, err
	}
	if cfg.fullPull {
		if rep.FullPull, err = fullPull(ctx, cfg, t, s, results, pr); err != nil {
			return nil, err
		}
	}
	rep.memory(t.readMemory())
	if t.child != nil {
		rep.ServerLogErrors = int(t.child.logErrors.Load())
	}
	return rep, nil
}

// drain waits, at most limit, until every supervisor has been woken for
// and has pulled the last push of its navigators.
func drain(ctx context.Context, watchers []*watcher, targets []uint64, limit time.Duration) {
	deadline := time.After(limit)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for j, w := range watchers {
			if !w.caughtUp(targets[j]) {
				done = false
				w.nudge()
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-tick.C:
		}
	}
}

// retryable reports whether a failed push may be sent again in the hope
// that it works: the server was busy or the answer was lost.
func retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeUnknown:
		return true
	}
	return false
}

// preloadReport says how the database was filled before the load.
type preloadReport struct {
	StudyCode        string   `json:"study_code"`
	Entries          int      `json:"entries"`
	Pushes           int      `json:"pushes"`
	Retries          int      `json:"retries"`
	Seconds          float64  `json:"seconds"`
	EntriesPerSecond float64  `json:"entries_per_second"`
	PushLatency      *latency `json:"push_latency_ms"`
}

// preload pushes cfg.preload new entries from d, as many a push as the
// server takes. A push that fails for a passing reason is sent again
// (retries are free: a change the server has is a duplicate), at most
// twice; anything else ends the run.
func preload(ctx context.Context, cfg *config, d *device, pr *progress) (*preloadReport, error) {
	rep := &preloadReport{StudyCode: d.code}
	var took []time.Duration
	pr.phase("preloading entries", cfg.preload)
	start := time.Now()
	for sent := 0; sent < cfg.preload; {
		n := min(preloadPerPush, cfg.preload-sent)
		changes := d.newEntries(n, false)
		for attempt := 0; ; attempt++ {
			rctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
			t0 := time.Now()
			resp, err := d.sync.Push(rctx, &diaryv1.PushRequest{Changes: changes})
			took = append(took, time.Since(t0))
			cancel()
			if err != nil {
				if ctx.Err() != nil || attempt == 2 || !retryable(err) {
					return nil, fmt.Errorf("preload: push of entries %d to %d: %w", sent+1, sent+n, err)
				}
				rep.Retries++
				continue
			}
			for k, r := range resp.GetResults() {
				o := r.GetOutcome()
				if o == diaryv1.ChangeOutcome_CHANGE_OUTCOME_APPLIED || (attempt > 0 && o == diaryv1.ChangeOutcome_CHANGE_OUTCOME_DUPLICATE) {
					continue
				}
				return nil, fmt.Errorf("preload: change %d of the push of entries %d to %d was not applied: %s %s", k+1, sent+1, sent+n, o, r.GetMessage())
			}
			if len(resp.GetResults()) != len(changes) {
				return nil, fmt.Errorf("preload: the server answered %d results for %d changes", len(resp.GetResults()), len(changes))
			}
			break
		}
		rep.Pushes++
		sent += n
		rep.Entries = sent
		pr.add(n)
	}
	elapsed := time.Since(start)
	rep.Seconds = seconds(elapsed)
	rep.EntriesPerSecond = rate(rep.Entries, elapsed)
	rep.PushLatency = summarize(took)
	return rep, nil
}

// fullPullReport says how long a fresh device took to pull everything.
type fullPullReport struct {
	StudyCode        string   `json:"study_code"`
	Expected         int      `json:"expected_entries"`
	Entries          int      `json:"entries"`
	Removals         int      `json:"removals"`
	Pages            int      `json:"pages"`
	PageSize         int      `json:"page_size"`
	Seconds          float64  `json:"seconds"`
	EntriesPerSecond float64  `json:"entries_per_second"`
	PageLatency      *latency `json:"page_latency_ms"`
}

// fullPull enrols a fresh device for the preloading navigator (or, without
// a preload, the first navigator) and times its pull of everything from
// cursor 0, a full page at a time.
func fullPull(ctx context.Context, cfg *config, t *target, s *loadStudy, results []*navigatorResult, pr *progress) (*fullPullReport, error) {
	rep := &fullPullReport{PageSize: pullPageSize}
	owner := s.preloader
	if owner != nil {
		rep.StudyCode, rep.Expected = s.preloader.code, cfg.preload
	} else {
		owner = s.navigators[0]
		rep.StudyCode, rep.Expected = owner.code, results[0].entries
	}
	ectx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
	defer cancel()
	d, err := t.enrol(ectx, rep.StudyCode, "diaryload fresh device")
	if err != nil {
		return nil, err
	}
	defer d.close()
	// The navigator has a device already: the fresh one waits until that
	// one approves it, as a person's new phone does.
	if d.pending {
		if err := owner.approve(ectx, d); err != nil {
			return nil, err
		}
	}
	cancel()
	pr.phase("full pull", rep.Expected)
	var took []time.Duration
	cursor := uint64(0)
	start := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
		t0 := time.Now()
		page, err := d.sync.Pull(rctx, &diaryv1.PullRequest{Cursor: cursor, PageSize: pullPageSize})
		took = append(took, time.Since(t0))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("full pull: page %d: %w", rep.Pages+1, err)
		}
		rep.Pages++
		rep.Entries += len(page.GetEntries())
		rep.Removals += len(page.GetRemovals())
		pr.add(len(page.GetEntries()))
		cursor = page.GetNextCursor()
		if !page.GetMore() {
			break
		}
	}
	elapsed := time.Since(start)
	rep.Seconds = seconds(elapsed)
	rep.EntriesPerSecond = rate(rep.Entries, elapsed)
	rep.PageLatency = summarize(took)
	return rep, nil
}
