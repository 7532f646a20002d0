package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
)

// setupWorkers is how many administrative calls setup and cleanup make
// at once: enough to hide the round trips, few enough not to be a load
// of their own.
const setupWorkers = 8

// codePrefix starts the study code of every user diaryload creates, so
// that they are told apart from the study's own users and found again by
// --cleanup-only.
const codePrefix = "LOAD-"

// runIDAlphabet has no look-alike letters, as the server's enrolment
// codes do.
const runIDAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newRunID returns a fresh run id, so that two runs on one server create
// different users.
func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b)
	for i := range b {
		b[i] = runIDAlphabet[int(b[i])%len(runIDAlphabet)]
	}
	return string(b)
}

func navigatorCode(run string, i int) string  { return fmt.Sprintf("%s%s-N%05d", codePrefix, run, i+1) }
func supervisorCode(run string, j int) string { return fmt.Sprintf("%s%s-S%04d", codePrefix, run, j+1) }
func preloaderCode(run string) string         { return fmt.Sprintf("%s%s-P", codePrefix, run) }

// loadStudy is the users and devices of one run.
type loadStudy struct {
	runID        string
	navigators   []*device
	supervisors  []*device
	supervisorOf []int   // navigator index → supervisor index, -1 for none
	preloader    *device // the preloading navigator's device, or nil

	mu      sync.Mutex
	created []loadUser // users created so far, for cleanup
}

// loadUser is a user diaryload created.
type loadUser struct {
	code      string
	navigator bool
	active    bool
}

// setup creates the run's users, assigns navigators to supervisors
// (navigator i to supervisor i mod M) and enrols one device per user.
func (s *loadStudy) setup(ctx context.Context, cfg *config, t *target, pr *progress) error {
	var users []loadUser
	for i := range cfg.devices {
		users = append(users, loadUser{code: navigatorCode(s.runID, i), navigator: true})
	}
	for j := range cfg.supervisors {
		users = append(users, loadUser{code: supervisorCode(s.runID, j)})
	}
	if cfg.preload > 0 {
		users = append(users, loadUser{code: preloaderCode(s.runID), navigator: true})
	}
	pr.phase("creating users", len(users))
	err := parallel(ctx, len(users), setupWorkers, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
		defer cancel()
		u := users[i]
		role := diaryv1.Role_ROLE_SUPERVISOR
		if u.navigator {
			role = diaryv1.Role_ROLE_NAVIGATOR
		}
		if _, err := t.admin.CreateUser(ctx, &diaryv1.CreateUserRequest{StudyCode: u.code, Role: role, DisplayName: "diaryload " + u.code}); err != nil {
			return fmt.Errorf("cannot create user %s: %w", u.code, err)
		}
		s.mu.Lock()
		s.created = append(s.created, loadUser{code: u.code, navigator: u.navigator, active: true})
		s.mu.Unlock()
		pr.add(1)
		return nil
	})
	if err != nil {
		return err
	}

	s.supervisorOf = make([]int, cfg.devices)
	for i := range s.supervisorOf {
		s.supervisorOf[i] = -1
	}
	if cfg.supervisors > 0 {
		pr.phase("assigning navigators", cfg.devices)
		err := parallel(ctx, cfg.devices, setupWorkers, func(ctx context.Context, i int) error {
			ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
			defer cancel()
			j := i % cfg.supervisors
			if _, err := t.admin.AssignNavigator(ctx, &diaryv1.AssignNavigatorRequest{SupervisorCode: supervisorCode(s.runID, j), NavigatorCode: navigatorCode(s.runID, i)}); err != nil {
				return fmt.Errorf("cannot assign %s to %s: %w", navigatorCode(s.runID, i), supervisorCode(s.runID, j), err)
			}
			s.supervisorOf[i] = j
			pr.add(1)
			return nil
		})
		if err != nil {
			return err
		}
	}

	s.navigators = make([]*device, cfg.devices)
	s.supervisors = make([]*device, cfg.supervisors)
	n := len(users)
	pr.phase("enrolling devices", n)
	return parallel(ctx, n, setupWorkers, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
		defer cancel()
		d, err := t.enrol(ctx, users[i].code, "diaryload "+users[i].code)
		if err != nil {
			return err
		}
		switch {
		case i < cfg.devices:
			s.navigators[i] = d
		case i < cfg.devices+cfg.supervisors:
			s.supervisors[i-cfg.devices] = d
		default:
			s.preloader = d
		}
		pr.add(1)
		return nil
	})
}

// close closes every device's connection.
func (s *loadStudy) close() {
	for _, list := range [][]*device{s.navigators, s.supervisors, {s.preloader}} {
		for _, d := range list {
			if d != nil {
				d.close()
			}
		}
	}
}

// cleanupReport says what --cleanup did.
type cleanupReport struct {
	NavigatorsErased int    `json:"navigators_erased"`
	EntriesErased    uint64 `json:"entries_erased"`
	UsersDeactivated int    `json:"users_deactivated"`
}

// cleanup erases the entries of every navigator in users and then
// deactivates every active one, so that the load leaves no diary content
// and no working account behind. It goes on after a failure and returns
// every error.
func cleanup(ctx context.Context, cfg *config, t *target, users []loadUser, pr *progress) (*cleanupReport, error) {
	rep := &cleanupReport{}
	var mu sync.Mutex
	var errs []error
	pr.phase("cleaning up", len(users))
	parallel(ctx, len(users), setupWorkers, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
		defer cancel()
		u := users[i]
		var failed []error
		var erased uint64
		erasedOK, deactivated := false, false
		if u.navigator {
			if resp, err := t.admin.EraseNavigator(ctx, &diaryv1.EraseNavigatorRequest{StudyCode: u.code}); err != nil {
				failed = append(failed, fmt.Errorf("cannot erase the entries of %s: %w", u.code, err))
			} else {
				erased, erasedOK = resp.GetEntriesErased(), true
			}
		}
		if u.active {
			if _, err := t.admin.DeactivateUser(ctx, &diaryv1.DeactivateUserRequest{StudyCode: u.code}); err != nil {
				failed = append(failed, fmt.Errorf("cannot deactivate %s: %w", u.code, err))
			} else {
				deactivated = true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, failed...)
		if erasedOK {
			rep.NavigatorsErased++
			rep.EntriesErased += erased
		}
		if deactivated {
			rep.UsersDeactivated++
		}
		pr.add(1)
		return nil // go on with the others
	})
	if len(errs) > 0 {
		return rep, fmt.Errorf("cleanup: %w", errors.Join(errs...))
	}
	return rep, nil
}

// listLoadUsers lists, a page at a time, the users whose study code
// starts with prefix.
func listLoadUsers(ctx context.Context, cfg *config, t *target, prefix string) ([]loadUser, error) {
	var out []loadUser
	token := ""
	for {
		ctx, cancel := context.WithTimeout(ctx, cfg.rpcTimeout)
		resp, err := t.admin.ListUsers(ctx, &diaryv1.ListUsersRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("cannot list users: %w", err)
		}
		for _, u := range resp.GetUsers() {
			if strings.HasPrefix(u.GetStudyCode(), prefix) {
				out = append(out, loadUser{code: u.GetStudyCode(), navigator: u.GetRole() == diaryv1.Role_ROLE_NAVIGATOR, active: u.GetActive()})
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// cleanupOnly erases and deactivates the users of an earlier run, or of
// every run, on a server given with --server.
func cleanupOnly(ctx context.Context, cfg *config, stdout io.Writer, pr *progress) (err error) {
	t, err := openTarget(ctx, cfg, pr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, t.close()) }()
	prefix := codePrefix
	if cfg.cleanupOnly != "ALL" {
		prefix += cfg.cleanupOnly + "-"
	}
	pr.phase("listing users", 0)
	users, err := listLoadUsers(ctx, cfg, t, prefix)
	if err != nil {
		return err
	}
	rep, err := cleanup(ctx, cfg, t, users, pr)
	pr.stop()
	if cfg.json {
		werr := writeJSON(stdout, struct {
			Prefix string `json:"prefix"`
			Users  int    `json:"users"`
			*cleanupReport
		}{prefix, len(users), rep})
		return errors.Join(err, werr)
	}
	fmt.Fprintf(stdout, "users %s*: %d; entries erased of %d navigators: %d; users deactivated: %d\n",
		prefix, len(users), rep.NavigatorsErased, rep.EntriesErased, rep.UsersDeactivated)
	return err
}

// parallel calls fn for 0 to n-1 with at most workers calls at once. It
// stops at the first error and returns it.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel(err) })
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
