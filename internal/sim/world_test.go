package sim

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/internal/storetest"
	"github.com/diarysync/diarysync/server"
	"github.com/diarysync/diarysync/server/postgres"
	"github.com/diarysync/diarysync/server/sqlite"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// epoch is where simulated time starts. Every clock in a run is derived
// from it, never from the machine's clock.
var epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// serverURL is what the replicas believe they talk to; no request leaves
// the process.
const serverURL = "http://sim"

// pcgReader turns a PCG source into an io.Reader, the form in which the
// server and the clients take their randomness (ids, tokens, codes).
type pcgReader struct {
	src *rand.PCG
	buf [8]byte
	n   int
}

func newPCGReader(seed, stream uint64) *pcgReader {
	return &pcgReader{src: rand.NewPCG(seed, stream)}
}

func (r *pcgReader) Read(p []byte) (int, error) {
	for i := range p {
		if r.n == 0 {
			binary.LittleEndian.PutUint64(r.buf[:], r.src.Uint64())
			r.n = 8
		}
		p[i] = r.buf[8-r.n]
		r.n--
	}
	return len(p), nil
}

// user is a person of the study's cast.
type user struct {
	code      string
	role      study.Role
	id        int64 // users.id on the server
	devices   []*device
	withdrawn bool // EraseNavigator was called for them
}

// savedRequest is a push as it went over the wire, kept so that the
// network can deliver it again later.
type savedRequest struct {
	url    string
	header http.Header
	body   []byte
}

// device is one enrolled replica and what the simulation knows of it.
type device struct {
	idx  int
	name string
	user *user
	path string
	c    *client.Client

	skew        time.Duration // how far the device's wall clock is from the server's
	rand        io.Reader     // survives restarts, so ids never repeat
	pushChanges int
	pageSize    uint32
	replica     syncengine.ReplicaID
	serverID    int64 // devices.id on the server

	offlineUntil int  // step at which the device is back online
	pending      bool // enrolled and waiting for approval (the server's devices.pending)

	// State of the sync in progress.
	sent     int  // requests sent so far
	cutAt    int  // the request at which the sync is cut (0: none)
	failed   bool // a request failed because of an injected fault
	noFaults bool // requests of the current call get no faults

	pool   []savedRequest // recent pushes, for replays
	script []fault        // faults for the next requests, in order (scripted tests)

	// writes holds the key of every change made on this device that the
	// client accepted locally (see changeKey).
	writes []string
}

func (d *device) clock(w *world) func() time.Time {
	return func() time.Time { return w.now.Add(d.skew) }
}

// ack is a change the server told a device it holds (applied or
// duplicate).
type ack struct {
	device int
	clock  syncengine.Timestamp
	entry  syncengine.EntryID
	key    string
	text   bool // a write to merged text (see textKey)
}

type ackKey struct {
	device int
	clock  syncengine.Timestamp
}

// bodyEdit is what one edit of a body, on one device, did to the words
// the body edits type (see words).
type bodyEdit struct {
	device         int
	added, removed []string
}

// world is one run of the simulation: a server store, the cast and their
// devices, the simulated clock, the seeded source of every decision, and
// what the run observed for the final checks. Only one goroutine ever
// touches a world.
type world struct {
	seed  uint64
	steps int
	rng   *rand.Rand
	dir   string
	now   time.Time
	step  int

	engine     string // storetest.SQLite or storetest.Postgres
	serverPath string // the SQLite file
	serverURL  string // the PostgreSQL database
	dropDB     func() error
	srvRand    io.Reader
	db         study.Store
	srv        *server.Server
	handler    http.Handler
	ro         *storetest.DB // the server's tables, read on the side for the checks

	users   []*user
	byCode  map[string]*user
	devices []*device

	faults bool // inject network faults
	acks   map[ackKey]ack
	// bodyEdits holds, for each entry, what every body edit did to its
	// words, for the no-lost-words check.
	bodyEdits map[syncengine.EntryID][]bodyEdit
	refused   map[ackKey]bool // changes a device was told were refused
	err       error           // first failure seen inside the transport
	counter   int             // makes written values unique
	withdraw  int             // step at which a navigator withdraws (0: never)

	stats map[string]int
	trace *trace
	tmpl  *templates
}

// trace keeps the run's log: all of it for one verbose seed, the last
// lines for a failure report, and a digest that two runs of one seed
// must share.
type trace struct {
	verbose func(string)
	tail    []string
	digest  hash.Hash
}

func newTrace(verbose func(string)) *trace {
	return &trace{verbose: verbose, digest: sha256.New()}
}

func (t *trace) add(line string) {
	t.digest.Write([]byte(line))
	t.digest.Write([]byte{'\n'})
	if t.verbose != nil {
		t.verbose(line)
	}
	const keep = 60
	if len(t.tail) == keep {
		t.tail = slices.Delete(t.tail, 0, 1)
	}
	t.tail = append(t.tail, line)
}

func (w *world) tracef(format string, args ...any) {
	w.trace.add(fmt.Sprintf("%4d %s ", w.step, w.now.Format("01-02T15:04:05.000")) + fmt.Sprintf(format, args...))
}

func (w *world) count(what string) { w.stats[what]++ }

// fail records the first failure seen where it cannot be returned (in
// the transport, under a client call).
func (w *world) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// cast is who takes part: three navigators with two devices each, two
// supervisors (one with two devices) whose navigators overlap, and a
// researcher; ten devices in all.
var cast = []struct {
	code    string
	role    study.Role
	devices int
}{
	{"PN-A", study.RoleNavigator, 2},
	{"PN-B", study.RoleNavigator, 2},
	{"PN-C", study.RoleNavigator, 2},
	{"SUP-1", study.RoleSupervisor, 2},
	{"SUP-2", study.RoleSupervisor, 1},
	{"RES-1", study.RoleResearcher, 1},
}

// castDevices returns how many devices the cast starts with.
func castDevices() []int {
	var out []int
	for _, m := range cast {
		for range m.devices {
			out = append(out, len(out))
		}
	}
	return out
}

var initialAssignments = [][2]string{{"SUP-1", "PN-A"}, {"SUP-1", "PN-B"}, {"SUP-2", "PN-B"}, {"SUP-2", "PN-C"}}

// templates are freshly migrated, empty store files. Each world starts
// from copies, which is much cheaper than applying the migrations to
// eleven new files per seed.
type templates struct {
	server, client []byte
}

func makeTemplates(ctx context.Context, dir string) (*templates, error) {
	fixed := func() time.Time { return epoch }
	sp, cp := filepath.Join(dir, "server.template"), filepath.Join(dir, "client.template")
	db, err := sqlite.Open(ctx, sp, sqlite.Options{Synchronous: "NORMAL", Now: fixed, Rand: newPCGReader(0, 0)})
	if err != nil {
		return nil, fmt.Errorf("cannot make the server template: %w", err)
	}
	if err := db.Close(); err != nil {
		return nil, fmt.Errorf("cannot make the server template: %w", err)
	}
	c, err := client.Open(ctx, cp, client.Options{Now: fixed, Synchronous: "NORMAL", Rand: newPCGReader(0, 0)})
	if err != nil {
		return nil, fmt.Errorf("cannot make the client template: %w", err)
	}
	if err := c.Close(); err != nil {
		return nil, fmt.Errorf("cannot make the client template: %w", err)
	}
	t := &templates{}
	if t.server, err = os.ReadFile(sp); err != nil {
		return nil, err
	}
	if t.client, err = os.ReadFile(cp); err != nil {
		return nil, err
	}
	return t, nil
}

// newWorld builds the server, the cast and their enrolled devices in dir.
func newWorld(ctx context.Context, seed uint64, steps int, dir string, tmpl *templates, verbose func(string)) (*world, error) {
	w := &world{
		seed:       seed,
		steps:      steps,
		rng:        rand.New(rand.NewPCG(seed, 0)),
		dir:        dir,
		now:        epoch,
		engine:     storetest.Engine(),
		serverPath: filepath.Join(dir, "server.db"),
		srvRand:    newPCGReader(seed, 1),
		byCode:     map[string]*user{},
		acks:       map[ackKey]ack{},
		bodyEdits:  map[syncengine.EntryID][]bodyEdit{},
		refused:    map[ackKey]bool{},
		stats:      map[string]int{},
		trace:      newTrace(verbose),
		tmpl:       tmpl,
	}
	ro := &storetest.DB{Engine: w.engine}
	var err error
	if w.engine == storetest.Postgres {
		// A real PostgreSQL is not deterministic (its own scheduling and
		// timing), so a failing seed may not replay exactly; it still
		// names the run and prints its trace.
		if w.serverURL, w.dropDB, err = storetest.CreateDatabase(ctx, *flagPostgres); err != nil {
			return nil, err
		}
		ro.DB, err = sql.Open("pgx", w.serverURL)
	} else {
		if err := os.WriteFile(w.serverPath, tmpl.server, 0o600); err != nil {
			return nil, fmt.Errorf("cannot copy the server template: %w", err)
		}
		ro.DB, err = sql.Open("sqlite", "file:"+w.serverPath+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	}
	if err != nil {
		w.close()
		return nil, fmt.Errorf("cannot open the server's tables for reading: %w", err)
	}
	ro.SetMaxOpenConns(1)
	w.ro = ro
	if err := w.openServer(ctx); err != nil {
		w.close()
		return nil, err
	}
	if err := w.enrolCast(ctx); err != nil {
		w.close()
		return nil, err
	}
	// A third of the runs see one navigator withdraw from the study part
	// way through, after which everything their devices push is refused.
	if w.rng.IntN(3) == 0 {
		w.withdraw = steps/4 + w.rng.IntN(steps/2+1)
	}
	return w, nil
}

func (w *world) openServer(ctx context.Context) error {
	now := func() time.Time { return w.now }
	var db study.Store
	var err error
	if w.engine == storetest.Postgres {
		db, err = postgres.Open(ctx, w.serverURL, postgres.Options{Now: now, Rand: w.srvRand, MaxConns: 4})
	} else {
		db, err = sqlite.Open(ctx, w.serverPath, sqlite.Options{Synchronous: "NORMAL", Readers: 2, Now: now, Rand: w.srvRand})
	}
	if err != nil {
		return fmt.Errorf("cannot open the server store: %w", err)
	}
	w.db = db
	w.srv = server.New(server.Config{Store: db})
	w.handler = w.srv.Handler()
	return nil
}

// restartServer closes the server store and opens it again on the same
// file or database, with a new Server: whatever the server kept only in
// memory is gone.
func (w *world) restartServer(ctx context.Context) error {
	w.srv.Close()
	if err := w.db.Close(); err != nil {
		return fmt.Errorf("cannot close the server store: %w", err)
	}
	return w.openServer(ctx)
}

// skews are the wall-clock errors a device may have, relative to the
// server: most are right, some a little off, a few far off.
var skews = []time.Duration{0, 0, 0, 0, 150 * time.Millisecond, -2 * time.Second, 40 * time.Second, 7 * time.Minute, -3 * time.Hour, 26 * time.Hour}

func (w *world) enrolCast(ctx context.Context) error {
	for _, m := range cast {
		u, err := w.db.CreateUser(ctx, m.code, m.role, "Sim "+m.code)
		if err != nil {
			return fmt.Errorf("cannot create %s: %w", m.code, err)
		}
		usr := &user{code: m.code, role: m.role, id: u.ID}
		w.users = append(w.users, usr)
		w.byCode[m.code] = usr
	}
	for _, a := range initialAssignments {
		if _, _, err := w.db.Assign(ctx, a[0], a[1]); err != nil {
			return fmt.Errorf("cannot assign %s to %s: %w", a[1], a[0], err)
		}
	}
	for i, m := range cast {
		u := w.users[i]
		for range m.devices {
			d, err := w.enrolDevice(ctx, u)
			if err != nil {
				return err
			}
			if d.pending {
				// Every device after a user's first waits for approval:
				// the first one approves it, as the person would.
				if err := w.approve(ctx, d); err != nil {
					return err
				}
				if d.pending {
					return fmt.Errorf("%s is still pending after its approval", d.name)
				}
			}
		}
	}
	return nil
}

// enrolDevice enrols a new device for u, with a code issued as an
// administrator would, and adds it to the cast. A user who had a device
// gets one that waits for approval.
func (w *world) enrolDevice(ctx context.Context, u *user) (*device, error) {
	d := &device{
		idx:  len(w.devices),
		name: fmt.Sprintf("%s/%d", u.code, len(u.devices)+1),
		user: u,
		path: filepath.Join(w.dir, fmt.Sprintf("device%d.db", len(w.devices))),
		skew: skews[w.rng.IntN(len(skews))],
		rand: newPCGReader(w.seed, uint64(100+len(w.devices))),
		// Small pages make syncs take several requests, so that
		// cutting one part way through means something.
		pushChanges: 1 + w.rng.IntN(12),
		pageSize:    uint32(1 + w.rng.IntN(8)),
	}
	if err := os.WriteFile(d.path, w.tmpl.client, 0o600); err != nil {
		return nil, fmt.Errorf("cannot copy the client template: %w", err)
	}
	if err := w.openDevice(ctx, d); err != nil {
		return nil, err
	}
	code, _, err := w.db.IssueEnrollmentCode(study.NewContext(ctx, &study.Identity{StudyCode: "ADMIN"}), u.code, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot issue a code for %s: %w", d.name, err)
	}
	d.noFaults = true
	_, err = d.c.Enroll(ctx, serverURL, code, d.name)
	d.noFaults = false
	if err != nil {
		return nil, fmt.Errorf("cannot enrol %s: %w", d.name, err)
	}
	p, _ := d.c.Profile()
	d.replica = p.Replica
	if err := w.ro.QueryRowContext(ctx, `SELECT id, pending FROM devices WHERE public_id = ?`, p.DeviceID).Scan(&d.serverID, &d.pending); err != nil {
		return nil, fmt.Errorf("cannot find %s on the server: %w", d.name, err)
	}
	u.devices = append(u.devices, d)
	w.devices = append(w.devices, d)
	w.tracef("enrol %s skew=%v push=%d page=%d pending=%v", d.name, d.skew, d.pushChanges, d.pageSize, d.pending)
	return d, nil
}

// approve has the first approved device of d's user approve d. The
// approval goes over the device's network, faults included; whether it
// took effect is read from the server's tables, not from the answer,
// which may have been lost.
func (w *world) approve(ctx context.Context, d *device) error {
	var by *device
	for _, o := range d.user.devices {
		if !o.pending {
			by = o
			break
		}
	}
	if by == nil {
		return fmt.Errorf("%s has no approved device to approve %s with", d.user.code, d.name)
	}
	p, _ := d.c.Profile()
	by.sent, by.failed = 0, false
	_, err := by.c.ApproveDevice(ctx, p.DeviceID)
	if w.err != nil {
		return w.err
	}
	if err != nil && !by.failed {
		return fmt.Errorf("%s could not approve %s with no fault injected: %w", by.name, d.name, err)
	}
	if err := w.ro.QueryRowContext(ctx, `SELECT pending FROM devices WHERE id = ?`, d.serverID).Scan(&d.pending); err != nil {
		return fmt.Errorf("cannot read %s on the server: %w", d.name, err)
	}
	w.count("approval")
	w.tracef("%s approves %s: pending=%v (%v)", by.name, d.name, d.pending, err)
	return nil
}

func (w *world) openDevice(ctx context.Context, d *device) error {
	c, err := client.Open(ctx, d.path, client.Options{
		Now:          d.clock(w),
		HTTPClient:   &http.Client{Transport: &transport{w: w, d: d}},
		Synchronous:  "NORMAL",
		PushChanges:  d.pushChanges,
		PullPageSize: d.pageSize,
		Rand:         d.rand,
	})
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", d.name, err)
	}
	d.c = c
	return nil
}

// close releases every file of the world.
func (w *world) close() error {
	var errs []error
	for _, d := range w.devices {
		if d.c != nil {
			errs = append(errs, d.c.Close())
		}
	}
	if w.ro != nil {
		errs = append(errs, w.ro.Close())
	}
	if w.srv != nil {
		w.srv.Close()
	}
	if w.db != nil {
		errs = append(errs, w.db.Close())
	}
	if w.dropDB != nil {
		errs = append(errs, w.dropDB())
	}
	return errors.Join(errs...)
}

// usersWith returns the users with the given role, withdrawn or not.
func (w *world) usersWith(role study.Role) []*user {
	var out []*user
	for _, u := range w.users {
		if u.role == role {
			out = append(out, u)
		}
	}
	return out
}

// devicesWith returns the devices of the users with the given role.
func (w *world) devicesWith(role study.Role) []*device {
	var out []*device
	for _, d := range w.devices {
		if d.user.role == role {
			out = append(out, d)
		}
	}
	return out
}

// pick returns a random element of s, which must not be empty.
func pick[T any](w *world, s []T) T { return s[w.rng.IntN(len(s))] }

// text returns a value no other write uses, so that a change can be
// recognised by what it wrote; now and then a common one instead, so that
// equal values from different devices meet.
func (w *world) text(prefix string) string {
	if w.rng.IntN(8) == 0 {
		return pick(w, []string{"same", "again"})
	}
	w.counter++
	s := fmt.Sprintf("%s %d", prefix, w.counter)
	if prefix == "body" && w.rng.IntN(10) == 0 {
		// Long enough to be compressed on the wire.
		s += " " + strings.Repeat("words on a long day ", 60+w.rng.IntN(200))
	}
	return s
}

func (w *world) date() string {
	return epoch.AddDate(0, 0, w.rng.IntN(30)-10).Format(time.DateOnly)
}

var tagPool = []string{"housing", "court", "family", "benefits", "health", "work"}
