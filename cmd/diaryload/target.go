package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/diarysync/diarysync/client"
	"github.com/diarysync/diarysync/client/operator"
	"github.com/diarysync/diarysync/internal/gzipmsg"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/proto/diary/v1/diaryv1connect"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// target is the server under load and an administrator's access to it.
type target struct {
	url   string
	admin diaryv1connect.AdminServiceClient

	started bool   // diaryload started the server
	sync    string // the started server's synchronous setting
	dataDir string // the started server's data directory; kept only if given with --data

	child   *diarydProcess  // the diaryd diaryload started, or nil
	adminTr *http.Transport // the started server's admin connection, or nil
	profile *client.Client  // the --admin-home profile, or nil
	tmpDirs []string        // removed by close

	rss     *rssSampler     // the child's resident memory, or nil
	metrics *metricsSampler // the server's /metrics, or nil
	memory  *memoryReading  // set by readMemory
}

// memoryReading is what was learnt of the server's memory.
type memoryReading struct {
	rss       uint64
	rssSource string
	heap      uint64
	hasRSS    bool
	hasHeap   bool
}

// openTarget starts diaryd, or opens the administrator profile for
// --server, and returns the target with an admin client.
func openTarget(ctx context.Context, cfg *config, pr *progress) (t *target, err error) {
	t = &target{}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.close())
			t = nil
		}
	}()
	if cfg.server != "" {
		if err := t.openProfile(ctx, cfg); err != nil {
			return t, err
		}
		if cfg.metrics != "" {
			if t.metrics, err = sampleMetrics(ctx, cfg.metrics); err != nil {
				return t, err
			}
		}
		return t, nil
	}
	t.started = true
	if cfg.database == "" {
		t.sync = cfg.synchronous
	}
	tmp, err := os.MkdirTemp("", "diaryload-")
	if err != nil {
		return t, err
	}
	t.tmpDirs = append(t.tmpDirs, tmp)
	pr.phase("finding diaryd", 0)
	bin, err := findDiaryd(ctx, cfg.diaryd, tmp)
	if err != nil {
		return t, err
	}
	t.dataDir = cfg.data
	if t.dataDir == "" {
		t.dataDir = filepath.Join(tmp, "data")
	}
	pr.phase("starting diaryd", 0)
	child, code, err := startDiaryd(ctx, bin, t.dataDir, cfg.synchronous, cfg.database)
	if err != nil {
		return t, err
	}
	t.child, t.url = child, child.url
	t.rss = sampleRSS(child.cmd.Process.Pid)
	t.adminTr = newTransport(t.url)
	enrolled, err := diaryv1connect.NewDeviceServiceClient(&http.Client{Transport: t.adminTr}, t.url).
		Enroll(ctx, &diaryv1.EnrollRequest{Code: code, DeviceName: "diaryload"})
	if err != nil {
		return t, fmt.Errorf("cannot enrol an administrator device on the new study: %w", err)
	}
	t.admin = diaryv1connect.NewAdminServiceClient(&http.Client{Transport: t.adminTr}, t.url, connect.WithInterceptors(bearer(enrolled.GetToken())))
	if t.metrics, err = sampleMetrics(ctx, t.url+"/metrics"); err != nil {
		return t, err
	}
	return t, nil
}

// openProfile opens the administrator's diary profile and checks that it
// is an administrator's on the server given.
func (t *target) openProfile(ctx context.Context, cfg *config) error {
	path := filepath.Join(cfg.adminHome, "replica.db")
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no diary profile in %s: enrol an administrator there first with \"diary --home %s enrol --server %s --code CODE\"", cfg.adminHome, cfg.adminHome, cfg.server)
	}
	c, err := client.Open(ctx, path, client.Options{})
	if err != nil {
		return fmt.Errorf("cannot open the diary profile in %s: %w", cfg.adminHome, err)
	}
	t.profile = c
	p, ok := c.Profile()
	switch {
	case !ok:
		return fmt.Errorf("the diary profile in %s is not enrolled", cfg.adminHome)
	case p.Role != study.RoleAdmin:
		return fmt.Errorf("the diary profile in %s belongs to %s, a %s: an administrator's profile is needed to create users", cfg.adminHome, p.StudyCode, p.Role)
	case !sameServer(p.ServerURL, cfg.server):
		return fmt.Errorf("the diary profile in %s is enrolled with %s, not with --server %s", cfg.adminHome, p.ServerURL, cfg.server)
	}
	if t.admin, err = operator.Admin(c); err != nil {
		return err
	}
	t.url = cfg.server
	return nil
}

// sameServer reports whether two server URLs name the same server.
func sameServer(a, b string) bool {
	ua, err1 := url.Parse(strings.TrimRight(a, "/"))
	ub, err2 := url.Parse(strings.TrimRight(b, "/"))
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) && ua.Path == ub.Path
}

// readMemory stops the memory samplers and keeps what they found. It is
// called once, while the server still runs.
func (t *target) readMemory() *memoryReading {
	if t.memory != nil {
		return t.memory
	}
	m := &memoryReading{}
	if t.rss != nil {
		m.rss, m.hasRSS = t.rss.stop()
		m.rssSource = "VmHWM of the diaryd process"
		t.rss = nil
	}
	if t.metrics != nil {
		peaks := t.metrics.stop()
		t.metrics = nil
		if v, ok := peaks[metricHeap]; ok {
			m.heap, m.hasHeap = v, true
		}
		if v, ok := peaks[metricRSS]; ok && !m.hasRSS {
			m.rss, m.hasRSS, m.rssSource = v, true, metricRSS+" from metrics"
		}
	}
	t.memory = m
	return m
}

// close stops what openTarget started: the samplers, the diaryd child,
// the admin profile, and the temporary directories.
func (t *target) close() error {
	t.readMemory()
	var errs []error
	if t.child != nil {
		errs = append(errs, t.child.stop())
	}
	if t.adminTr != nil {
		t.adminTr.CloseIdleConnections()
	}
	if t.profile != nil {
		errs = append(errs, t.profile.Close())
	}
	for _, d := range t.tmpDirs {
		errs = append(errs, os.RemoveAll(d))
	}
	return errors.Join(errs...)
}

// newTransport returns the transport of one device: HTTP/2 over TLS for
// https, unencrypted HTTP/2 (h2c) for http, as a gRPC or Connect client
// of diaryd does. It never goes through a proxy, so diaryload sends
// traffic only to the server it was given.
func newTransport(serverURL string) *http.Transport {
	tr := &http.Transport{
		Protocols:           new(http.Protocols),
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
	}
	if strings.HasPrefix(serverURL, "https://") {
		tr.Protocols.SetHTTP2(true)
	} else {
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	return tr
}

// bearer sets a device token on every call, unary and streaming.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// device is one enrolled device, speaking the API directly.
type device struct {
	code    string // the user's study code
	id      string // the device's public id
	pending bool   // it waits for approval by another device of its user
	sync    diaryv1connect.SyncServiceClient
	devices diaryv1connect.DeviceServiceClient
	replica syncengine.ReplicaID
	clock   *syncengine.Clock
	tr      *http.Transport
	// merged says the server merges text: bodies go as text edits, as
	// the client library sends them, not as whole texts.
	merged bool
	// own is how many of the device's changes the server holds, as the
	// device knows it (PullRequest.own_changes), once a last page has
	// said; with it the server leaves out the device's echoes.
	own *uint64
	// pullBytes counts the bytes of the answers to its pulls, as they
	// came over the connection (compressed).
	pullBytes atomic.Int64
}

// countPulls is a transport that counts the bytes of the Pull answers
// it reads into n.
type countPulls struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countPulls) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, diaryv1connect.SyncServicePullProcedure) {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

// enrol issues a one-time code for the user and enrols a device with it,
// on a connection of its own.
func (t *target) enrol(ctx context.Context, code, name string) (*device, error) {
	ic, err := t.admin.IssueEnrollmentCode(ctx, &diaryv1.IssueEnrollmentCodeRequest{StudyCode: code})
	if err != nil {
		return nil, fmt.Errorf("cannot issue an enrolment code for %s: %w", code, err)
	}
	d := &device{code: code, tr: newTransport(t.url), clock: syncengine.NewClock(nil)}
	hc := &http.Client{Transport: countPulls{rt: d.tr, n: &d.pullBytes}}
	sent := time.Now()
	resp, err := diaryv1connect.NewDeviceServiceClient(hc, t.url).Enroll(ctx, &diaryv1.EnrollRequest{Code: ic.GetCode(), DeviceName: name})
	if err != nil {
		d.tr.CloseIdleConnections()
		return nil, fmt.Errorf("cannot enrol a device for %s: %w", code, err)
	}
	received := time.Now()
	if d.replica, err = syncengine.ParseReplicaID(resp.GetReplicaId()); err != nil {
		d.tr.CloseIdleConnections()
		return nil, fmt.Errorf("enrolment of %s: %w", code, err)
	}
	// Stamp changes with the server's time, as the client library does,
	// so that a server whose clock differs from this machine's does not
	// refuse them as being in the future.
	if st := resp.GetServerTime(); st != nil {
		d.clock.SetOffset(st.AsTime().Sub(sent.Add(received.Sub(sent) / 2)))
	}
	d.id, d.pending = resp.GetDeviceId(), resp.GetState() == diaryv1.DeviceState_DEVICE_STATE_PENDING
	d.merged = slices.Contains(resp.GetCapabilities(), diaryv1.Capability_CAPABILITY_MERGED_TEXT)
	d.sync = diaryv1connect.NewSyncServiceClient(hc, t.url,
		connect.WithInterceptors(bearer(resp.GetToken())),
		gzipmsg.ClientOption(),
		connect.WithSendGzip(),
		connect.WithCompressMinBytes(1<<10),
	)
	d.devices = diaryv1connect.NewDeviceServiceClient(hc, t.url, connect.WithInterceptors(bearer(resp.GetToken())))
	return d, nil
}

// approve lets other, a new device of d's user that waits for approval,
// sync, as the person would from the device they already have.
func (d *device) approve(ctx context.Context, other *device) error {
	if _, err := d.devices.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: other.id}); err != nil {
		return fmt.Errorf("cannot approve the new device of %s: %w", d.code, err)
	}
	other.pending = false
	return nil
}

// close closes the device's connection.
func (d *device) close() { d.tr.CloseIdleConnections() }
