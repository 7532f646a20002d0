package client

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/diarysync/diarysync/client/internal/services"
	"github.com/diarysync/diarysync/internal/gzipmsg"
	"github.com/diarysync/diarysync/internal/litedb"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNotEnrolled is returned by calls that need a server when the replica
// has not enrolled yet.
var ErrNotEnrolled = syncengine.Errorf(syncengine.ECONFLICT, "this device is not enrolled: enrol it with a one-time code first")

// Options configures Open.
type Options struct {
	// Now is the wall clock (default time.Now). Tests use it to play a
	// device whose clock is wrong.
	Now func() time.Time
	// HTTPClient carries the RPCs (default: a client of its own, closed
	// by Close).
	HTTPClient *http.Client
	// ResponseTimeout is how long the client's own HTTP client waits for
	// the server's answer to begin once a request is sent (default 45 s).
	// A pooled connection that went half-open (a NAT forgot it) takes a
	// request and never answers; without this bound the call, and the
	// sync behind it, would wait for minutes. An HTTPClient passed in
	// brings its own timeouts.
	ResponseTimeout time.Duration
	// Logger receives what the client does (default: discard). It never
	// logs diary content.
	Logger *slog.Logger
	// Synchronous is SQLite's synchronous setting: FULL (the default)
	// makes every write durable before the call returns.
	Synchronous string
	// PushChanges is the most changes one Push carries (default and
	// maximum 1000, the server's limit).
	PushChanges int
	// PullPageSize is the page size asked of Pull (default 1000).
	PullPageSize uint32
	// Rand is the source of the random bits in new entry and feedback
	// ids (default crypto/rand). With Now, it makes a replica fully
	// deterministic, which simulations need.
	Rand io.Reader
	// MaxPageCount, for tests of a full disk only, caps the replica's
	// file at that many pages (of 4 KiB).
	MaxPageCount int
}

// Profile is who this replica belongs to and where it syncs.
type Profile struct {
	ServerURL   string
	DeviceID    string
	Replica     syncengine.ReplicaID
	Role        study.Role
	StudyCode   string
	DisplayName string
	EnrolledAt  time.Time
}

// Client is a local replica. Its methods are safe for concurrent use.
type Client struct {
	db    *litedb.DB
	clock *syncengine.Clock
	opts  Options
	log   *slog.Logger

	ownHTTP bool
	http    *http.Client

	mu      sync.Mutex // guards profile, token, revoked and the RPC clients
	profile *Profile
	token   string
	rpc     *rpcClients
	revoked *Revoked // set once the replica was wiped for a revocation

	revocation revocation // a revocation the server told of, not yet applied

	stampMu sync.Mutex                    // guards retired
	retired map[syncengine.Timestamp]bool // clocks never to be given again

	merged    atomic.Bool // the server merges text (profile.merged_text)
	confirmed atomic.Bool // an answer of the server in this sync said whether it does

	syncMu   sync.Mutex // one Sync at a time
	status   statusTracker
	watchers watchers
	kick     chan struct{} // a local write happened: Run should push

	lives   sync.WaitGroup               // goroutines of live queries (see WatchList)
	conn    connTracker                  // what Connectivity reports
	network netSignal                    // fired by NetworkChanged
	damaged atomic.Pointer[DamagedError] // set once the file was found damaged
	offline atomic.Pointer[string]       // why the server cannot be reached, as the last sync or stream found; nil when it can

	runMu     sync.Mutex
	runCancel context.CancelFunc
	runDone   chan struct{}
	closed    bool
}

type rpcClients struct {
	sync     diaryv1connect.SyncServiceClient
	device   diaryv1connect.DeviceServiceClient
	admin    diaryv1connect.AdminServiceClient
	research diaryv1connect.ResearchServiceClient
}

// Open opens the replica in the SQLite file at path, creating it if
// needed.
func Open(ctx context.Context, path string, opts Options) (*Client, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.PushChanges <= 0 || opts.PushChanges > 1000 {
		opts.PushChanges = 1000
	}
	if opts.PullPageSize == 0 {
		opts.PullPageSize = 1000
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	db, err := litedb.Open(ctx, path, litedb.Options{
		Synchronous: opts.Synchronous,
		Readers:     2,
		// An erased or unshared entry must leave no copy on the phone.
		SecureDelete: true,
		Migrations:   migrations,
		Dir:          "migrations",
		Now:          func() int64 { return opts.Now().UnixMilli() },
		MaxPageCount: opts.MaxPageCount,
		// Entries that left the replica leave the search index before
		// the transaction that removed them commits.
		BeforeCommit: forgetDeleted,
	})
	if errors.Is(err, litedb.ErrCorrupt) {
		return nil, &DamagedError{Path: path, Problem: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	// A damaged file can look fine to the queries a sync makes and fail
	// the next listing: it is checked whole, once, when it is opened.
	if err := db.QuickCheck(ctx); err != nil {
		db.Close()
		if errors.Is(err, litedb.ErrCorrupt) {
			return nil, &DamagedError{Path: path, Problem: err.Error()}
		}
		return nil, err
	}
	if err := backfillSearch(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	c := &Client{
		db:    db,
		clock: syncengine.NewClock(opts.Now),
		opts:  opts,
		log:   opts.Logger,
		http:  opts.HTTPClient,
		kick:  make(chan struct{}, 1),
	}
	c.conn.now, c.conn.notify = opts.Now, func() { c.watchers.notify(EventStatus) }
	if c.http == nil {
		c.ownHTTP = true
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.ResponseHeaderTimeout = opts.ResponseTimeout
		if tr.ResponseHeaderTimeout <= 0 {
			tr.ResponseHeaderTimeout = 45 * time.Second
		}
		c.http = &http.Client{Transport: tr}
	}
	var last, offset int64
	if err := db.Read.QueryRowContext(ctx, `SELECT last FROM clock WHERE id = 1`).Scan(&last); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot read clock: %w", err)
	}
	c.clock.Observe(syncengine.Timestamp(last))
	if c.retired, err = loadRetired(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	p, token, revoked, err := loadProfile(ctx, db.Read)
	if err != nil {
		db.Close()
		return nil, err
	}
	c.revoked = revoked
	if p != nil {
		var merged bool
		if err := db.Read.QueryRowContext(ctx, `SELECT clock_offset, merged_text FROM profile WHERE id = 1`).Scan(&offset, &merged); err != nil {
			db.Close()
			return nil, fmt.Errorf("cannot read clock offset: %w", err)
		}
		c.merged.Store(merged)
		c.clock.SetOffset(time.Duration(offset) * time.Millisecond)
		c.setProfile(p, token)
	}
	return c, nil
}

// Close stops Run if it is running, and closes the replica. No goroutine
// of the client is left running when Close returns.
func (c *Client) Close() error {
	c.runMu.Lock()
	c.closed = true
	cancel, done := c.runCancel, c.runDone
	c.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	c.syncMu.Lock() // wait for a Sync in progress
	defer c.syncMu.Unlock()
	// A call made through Admin or Research may have learnt that this
	// device was revoked: the replica is wiped before it is closed.
	c.wipeIfRevoked()
	c.watchers.closeAll()
	c.lives.Wait() // closing the watchers ends every live query
	if c.ownHTTP {
		c.http.CloseIdleConnections()
	}
	return c.db.Close()
}

// loadProfile reads the profile: who the replica belongs to, its token,
// and how it was revoked if it was (then its replica has been wiped).
func loadProfile(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (*Profile, string, *Revoked, error) {
	var (
		p         Profile
		token     string
		replica   []byte
		enrolled  int64
		state     study.DeviceState
		r         Revoked
		revokedAt sql.NullInt64
	)
	err := q.QueryRowContext(ctx, `SELECT server_url, token, device_id, replica_id, role, study_code, display_name, enrolled_at,
			device_state, revocation, revoked_by, revoked_at, revoked_message, lost_changes FROM profile WHERE id = 1`).
		Scan(&p.ServerURL, &token, &p.DeviceID, &replica, &p.Role, &p.StudyCode, &p.DisplayName, &enrolled,
			&state, &r.Reason, &r.By, &revokedAt, &r.Message, &r.LostChanges)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", nil, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("cannot read profile: %w", err)
	}
	copy(p.Replica[:], replica)
	p.EnrolledAt = time.UnixMilli(enrolled).UTC()
	if state != study.DeviceRevoked {
		return &p, token, nil, nil
	}
	if revokedAt.Valid {
		r.At = time.UnixMilli(revokedAt.Int64).UTC()
	}
	return &p, token, &r, nil
}

func (c *Client) setProfile(p *Profile, token string) {
	auth := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	})
	opts := []connect.ClientOption{
		connect.WithInterceptors(auth, streamAuth(token), revocationWatch{c}),
		gzipmsg.ClientOption(),
		connect.WithSendGzip(),
		connect.WithCompressMinBytes(1 << 10),
	}
	base := strings.TrimRight(p.ServerURL, "/")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.profile, c.token = p, token
	c.rpc = &rpcClients{
		sync:     diaryv1connect.NewSyncServiceClient(c.http, base, opts...),
		device:   diaryv1connect.NewDeviceServiceClient(c.http, base, opts...),
		admin:    diaryv1connect.NewAdminServiceClient(c.http, base, opts...),
		research: diaryv1connect.NewResearchServiceClient(c.http, base, opts...),
	}
}

// streamAuth adds the bearer token to streaming calls.
type streamAuth string

func (t streamAuth) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc { return next }

func (t streamAuth) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(t))
		return conn
	}
}

func (t streamAuth) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// newID returns a fresh UUIDv7 from the client's clock and random source.
func (c *Client) newID() ([16]byte, error) {
	c.mu.Lock() // Options.Rand need not be safe for concurrent use
	defer c.mu.Unlock()
	return syncengine.NewEntryIDFrom(c.opts.Now(), c.opts.Rand)
}

// Profile returns who this replica belongs to, and false if it has not
// enrolled.
func (c *Client) Profile() (Profile, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.profile == nil {
		return Profile{}, false
	}
	return *c.profile, true
}

func (c *Client) rpcs() (*rpcClients, *Profile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revoked != nil {
		return nil, nil, &RevokedError{*c.revoked}
	}
	if c.profile == nil {
		return nil, nil, ErrNotEnrolled
	}
	return c.rpc, c.profile, nil
}

// profileOf returns the profile whether or not the device was revoked.
func (c *Client) profileOf() *Profile {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.profile
}

func init() {
	// Administration and research go through client/operator, not this
	// package's API (see client/internal/services).
	services.Of = func(v any) (diaryv1connect.AdminServiceClient, diaryv1connect.ResearchServiceClient, error) {
		r, _, err := v.(*Client).rpcs()
		if err != nil {
			return nil, nil, err
		}
		return r.admin, r.research, nil
	}
}

// Enroll exchanges a one-time enrolment code for this device's
// credentials and stores them in the replica. A replica that was never
// enrolled may enrol as anyone; one whose device was revoked (and wiped)
// enrols again only as the same person, and the server refuses a code
// for anyone else before it is spent. An enrolled replica does not enrol
// again: Replace moves it to a new enrolment without losing anything.
//
// The new device may start waiting for approval (Status.DeviceState is
// study.DevicePending) when its user already had a device: it can write
// new entries and push them, and receives nothing until another of the
// person's devices approves it.
func (c *Client) Enroll(ctx context.Context, serverURL, code, deviceName string) (Profile, error) {
	serverURL, err := normalizeURL(serverURL)
	if err != nil {
		return Profile{}, err
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	c.mu.Lock()
	old, revoked := c.profile, c.revoked
	c.mu.Unlock()
	if err := checkEnrollable(old, revoked); err != nil {
		return Profile{}, err
	}
	forUser := ""
	if old != nil {
		forUser = old.StudyCode
	}
	resp, t0, t1, err := c.enrollRPC(ctx, serverURL, code, deviceName, forUser)
	if err != nil {
		return Profile{}, err
	}
	return c.storeEnrollment(ctx, serverURL, resp, t0, t1)
}

// enrollRPC asks the server for a new device; forUser, if set, is the
// study code the code must be for.
func (c *Client) enrollRPC(ctx context.Context, serverURL, code, deviceName, forUser string) (*diaryv1.EnrollResponse, time.Time, time.Time, error) {
	dev := diaryv1connect.NewDeviceServiceClient(c.http, serverURL)
	t0 := c.opts.Now()
	resp, err := dev.Enroll(ctx, &diaryv1.EnrollRequest{Code: code, DeviceName: deviceName, StudyCode: forUser})
	if err != nil {
		return nil, t0, t0, rpcError("enrol", err)
	}
	return resp, t0, c.opts.Now(), nil
}

// storeEnrollment keeps the credentials the server gave in one
// transaction. Changes not yet accepted are stamped again with the new
// replica id.
func (c *Client) storeEnrollment(ctx context.Context, serverURL string, resp *diaryv1.EnrollResponse, t0, t1 time.Time) (Profile, error) {
	replica, err := syncengine.ParseReplicaID(resp.GetReplicaId())
	if err != nil {
		return Profile{}, fmt.Errorf("server sent a bad replica id: %w", err)
	}
	p := &Profile{
		ServerURL:   serverURL,
		DeviceID:    resp.GetDeviceId(),
		Replica:     replica,
		Role:        study.Role(resp.GetRole()),
		StudyCode:   resp.GetStudyCode(),
		DisplayName: resp.GetDisplayName(),
		EnrolledAt:  t1.UTC(),
	}
	state := study.DeviceState(resp.GetState())
	if state != study.DevicePending {
		state = study.DeviceActive
	}
	offset := clockOffset(t0, t1, resp.GetServerTime().AsTime())
	if offset.Abs() < time.Second {
		// Below a second the estimate is the round trip's noise, as
		// saveOffset judges later ones: two devices on one clock would
		// otherwise start a few milliseconds (or, on a loaded machine,
		// hundreds) apart, and the later of two edits could lose.
		offset = 0
	}
	err = c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		old, _, _, err := loadProfile(ctx, tx)
		if err != nil {
			return err
		}
		if old != nil && !strings.EqualFold(old.StudyCode, p.StudyCode) {
			return syncengine.Errorf(syncengine.ECONFLICT, "this replica belongs to %s; enrol %s in a new profile", old.StudyCode, p.StudyCode)
		}
		merged := slices.Contains(resp.GetCapabilities(), diaryv1.Capability_CAPABILITY_MERGED_TEXT)
		if _, err := tx.ExecContext(ctx, `INSERT INTO profile (id, server_url, token, device_id, replica_id, role, study_code, display_name, enrolled_at, clock_offset, device_state, merged_text)
			VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO UPDATE SET server_url = excluded.server_url, token = excluded.token, device_id = excluded.device_id,
				replica_id = excluded.replica_id, role = excluded.role, study_code = excluded.study_code,
				display_name = excluded.display_name, enrolled_at = excluded.enrolled_at, clock_offset = excluded.clock_offset,
				device_state = excluded.device_state, revocation = 0, revoked_by = '', revoked_at = NULL, revoked_message = '',
				last_error = '', merged_text = excluded.merged_text`,
			p.ServerURL, resp.GetToken(), p.DeviceID, replica[:], p.Role, p.StudyCode, p.DisplayName, p.EnrolledAt.UnixMilli(), offset.Milliseconds(), state, merged); err != nil {
			return fmt.Errorf("cannot store profile: %w", err)
		}
		c.clock.SetOffset(offset)
		wasMerged := c.merged.Load()
		c.merged.Store(merged)
		if wasMerged && !merged {
			if err := c.flattenOutbox(ctx, tx); err != nil {
				return err
			}
		}
		if old != nil {
			// Changes not yet accepted carry the old replica id, which the
			// server does not accept from this device.
			touched, err := c.restampOutbox(ctx, tx, replica, 0)
			if err != nil {
				return err
			}
			return c.rebuildAll(ctx, tx, touched)
		}
		return nil
	})
	if err != nil {
		return Profile{}, err
	}
	c.mu.Lock()
	c.revoked = nil
	c.mu.Unlock()
	c.setProfile(p, resp.GetToken())
	c.watchers.notify(EventStatus)
	return *p, nil
}

// clockOffset estimates how far the local wall clock is behind the
// server's: the server answered at serverTime, somewhere between the
// local times sent and received, assumed half way.
func clockOffset(sent, received, serverTime time.Time) time.Duration {
	mid := sent.Add(received.Sub(sent) / 2)
	return serverTime.Sub(mid).Round(time.Millisecond)
}

// rpcError turns an RPC error into an error a person understands.
func rpcError(action string, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		// A call this device cancelled is neither the server's error nor
		// the network's.
		if !connect.IsWireError(err) && errors.Is(err, context.Canceled) {
			return fmt.Errorf("cannot %s: stopped before it finished: %w", action, context.Canceled)
		}
		// An error the server did not send is the network's: a refused,
		// reset or cut connection (which connect reports as Canceled), a
		// truncated answer, a timeout. Its text comes from the transport
		// and is shown only in brackets.
		if !connect.IsWireError(err) {
			return &NetworkError{Action: action, Err: err}
		}
		return &ServerError{Action: action, Code: serverCode(ce), Message: ce.Message(), cursorAhead: ce.Meta().Get(wire.ErrorReasonHeader) == wire.ReasonCursorAhead}
	}
	return &NetworkError{Action: action, Err: err}
}

// fromConnect is what a Connect code means when the server did not say
// the application's code (a server before it did, or a proxy's answer).
var fromConnect = map[connect.Code]syncengine.Code{
	connect.CodeInvalidArgument:    syncengine.EINVALID,
	connect.CodeOutOfRange:         syncengine.EINVALID,
	connect.CodeResourceExhausted:  syncengine.ETOOLARGE,
	connect.CodeNotFound:           syncengine.ENOTFOUND,
	connect.CodeAlreadyExists:      syncengine.EEXISTS,
	connect.CodeFailedPrecondition: syncengine.ECONFLICT,
	connect.CodeAborted:            syncengine.ECONFLICT,
	connect.CodePermissionDenied:   syncengine.EPERMISSION,
	connect.CodeUnauthenticated:    syncengine.EUNAUTHENTICATED,
	connect.CodeUnavailable:        syncengine.EUNAVAILABLE,
	connect.CodeDeadlineExceeded:   syncengine.EUNAVAILABLE,
	connect.CodeCanceled:           syncengine.EUNAVAILABLE,
}

// serverCode is the application's code of an error the server sent.
func serverCode(ce *connect.Error) syncengine.Code {
	if c := syncengine.Code(ce.Meta().Get(wire.ErrorCodeHeader)); c != "" {
		switch c {
		case syncengine.EINVALID, syncengine.ETOOLARGE, syncengine.ENOTFOUND, syncengine.EEXISTS, syncengine.ECONFLICT,
			syncengine.EPERMISSION, syncengine.EUNAUTHENTICATED, syncengine.ERATELIMIT, syncengine.EUNAVAILABLE,
			syncengine.ENOSPACE, syncengine.EINTERNAL:
			return c
		}
	}
	if c, ok := fromConnect[ce.Code()]; ok {
		return c
	}
	return syncengine.EINTERNAL
}

// ServerError is an error the server answered with. Code is the
// application's error code (the server sends it beside the transport's;
// from a server that does not, it is read from the transport's code).
type ServerError struct {
	Action  string
	Code    syncengine.Code
	Message string

	cursorAhead bool // the pull's cursor is beyond the server's position
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("cannot %s: %s", e.Action, e.Message)
}

// NetworkError is a failure to reach the server or to get its answer.
type NetworkError struct {
	Action string
	Err    error
}

func (e *NetworkError) Error() string {
	return fmt.Sprintf("cannot %s: the server cannot be reached (%v)", e.Action, e.Err)
}

func (e *NetworkError) Unwrap() error { return e.Err }

// ServerStateHash asks the server for the state hash of everything this
// user may see, and the position it reflects. A replica that has pulled
// up to that position and has nothing pending holds the same hash
// (see StateHash).
func (c *Client) ServerStateHash(ctx context.Context) (sum [32]byte, entries int, cursor uint64, err error) {
	rpc, _, err := c.rpcs()
	if err != nil {
		return sum, 0, 0, err
	}
	resp, err := rpc.sync.GetStateHash(ctx, &diaryv1.GetStateHashRequest{MergedText: true})
	if err != nil {
		return sum, 0, 0, rpcError("get the server's state hash", err)
	}
	copy(sum[:], resp.GetStateHash())
	return sum, int(resp.GetEntries()), resp.GetCursor(), nil
}

func loadRetired(ctx context.Context, db *litedb.DB) (map[syncengine.Timestamp]bool, error) {
	rows, err := db.Read.QueryContext(ctx, `SELECT clock FROM retired_clocks`)
	if err != nil {
		return nil, fmt.Errorf("cannot read retired clocks: %w", err)
	}
	defer rows.Close()
	out := map[syncengine.Timestamp]bool{}
	for rows.Next() {
		var c int64
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("cannot read retired clocks: %w", err)
		}
		out[syncengine.Timestamp(c)] = true
	}
	return out, rows.Err()
}

// stamp returns the clock for a new change: the next reading of the
// hybrid logical clock that is not retired.
func (c *Client) stamp() syncengine.Timestamp {
	c.stampMu.Lock()
	defer c.stampMu.Unlock()
	for {
		if t := c.clock.Now(); !c.retired[t] {
			return t
		}
	}
}

// retire records that clock must never be given to a change again.
func (c *Client) retire(ctx context.Context, tx *sql.Tx, clock syncengine.Timestamp) error {
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO retired_clocks (clock) VALUES (?)`, int64(clock)); err != nil {
		return fmt.Errorf("cannot retire clock: %w", err)
	}
	c.stampMu.Lock()
	c.retired[clock] = true
	c.stampMu.Unlock()
	return nil
}
