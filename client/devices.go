package client

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/diarysync/diarysync/internal/wire"
	diaryv1 "github.com/diarysync/diarysync/proto/diary/v1"
	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// Device is one device of this replica's account, as the account's
// device list shows it.
type Device struct {
	ID         string
	Name       string
	State      study.DeviceState
	This       bool // the device this replica is
	EnrolledAt time.Time
	// IssuedBy is the study code of whoever issued the code the device
	// enrolled with: an administrator, or "system" for the server's
	// console.
	IssuedBy   string
	ApprovedAt time.Time // zero if it never waited for approval, or still waits
	ApprovedBy string    // the id of the device that approved it
	LastSyncAt time.Time
	RevokedAt  time.Time
	Revocation study.Revocation
	RevokedBy  string // study code of whoever revoked it
}

func deviceFromProto(d *diaryv1.Device) Device {
	at := func(t interface{ AsTime() time.Time }, set bool) time.Time {
		if !set {
			return time.Time{}
		}
		return t.AsTime().UTC()
	}
	return Device{
		ID:         d.GetDeviceId(),
		Name:       d.GetName(),
		State:      study.DeviceState(d.GetState()),
		This:       d.GetCurrent(),
		EnrolledAt: at(d.GetEnrolledAt(), d.GetEnrolledAt() != nil),
		IssuedBy:   d.GetIssuedBy(),
		ApprovedAt: at(d.GetApprovedAt(), d.GetApprovedAt() != nil),
		ApprovedBy: d.GetApprovedBy(),
		LastSyncAt: at(d.GetLastSyncAt(), d.GetLastSyncAt() != nil),
		RevokedAt:  at(d.GetRevokedAt(), d.GetRevokedAt() != nil),
		Revocation: study.Revocation(d.GetRevocation()),
		RevokedBy:  d.GetRevokedBy(),
	}
}

// Devices returns a page of this account's devices, newest enrolment
// first, and the token of the next page ("" on the last). A device that
// waits for approval cannot list them.
func (c *Client) Devices(ctx context.Context, pageToken string) ([]Device, string, error) {
	rpc, _, err := c.rpcs()
	if err != nil {
		return nil, "", err
	}
	resp, err := rpc.device.ListMyDevices(ctx, &diaryv1.ListMyDevicesRequest{PageSize: 100, PageToken: pageToken})
	if err != nil {
		return nil, "", c.settle(rpcError("list devices", err))
	}
	out := make([]Device, len(resp.GetDevices()))
	for i, d := range resp.GetDevices() {
		out[i] = deviceFromProto(d)
	}
	return out, resp.GetNextPageToken(), nil
}

// ApproveDevice lets a device of this account that waits for approval
// sync: it then receives the account's entries, and what it wrote while
// waiting reaches its readers. Only an approved device may approve.
func (c *Client) ApproveDevice(ctx context.Context, id string) (Device, error) {
	rpc, _, err := c.rpcs()
	if err != nil {
		return Device{}, err
	}
	resp, err := rpc.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: id})
	if err != nil {
		return Device{}, c.settle(rpcError("approve the device", err))
	}
	c.forgetAwaiting(ctx, id)
	return deviceFromProto(resp.GetDevice()), nil
}

// DenyDevice refuses a device of this account that waits for approval:
// it is revoked, and what it wrote while waiting is erased.
func (c *Client) DenyDevice(ctx context.Context, id string) (Device, error) {
	rpc, _, err := c.rpcs()
	if err != nil {
		return Device{}, err
	}
	resp, err := rpc.device.DenyDevice(ctx, &diaryv1.DenyDeviceRequest{DeviceId: id})
	if err != nil {
		return Device{}, c.settle(rpcError("deny the device", err))
	}
	c.forgetAwaiting(ctx, id)
	return deviceFromProto(resp.GetDevice()), nil
}

// RevokeDevice revokes a device of this account: another one (a lost
// phone), or this one (then this replica is wiped at once, as any
// revoked device's is).
func (c *Client) RevokeDevice(ctx context.Context, id string) (Device, error) {
	rpc, p, err := c.rpcs()
	if err != nil {
		return Device{}, err
	}
	resp, err := rpc.device.RevokeMyDevice(ctx, &diaryv1.RevokeMyDeviceRequest{DeviceId: id})
	if err != nil {
		return Device{}, c.settle(rpcError("revoke the device", err))
	}
	d := deviceFromProto(resp.GetDevice())
	c.forgetAwaiting(ctx, id)
	if id == p.DeviceID {
		c.noteRevoked(&diaryv1.DeviceStatus{DeviceId: id, State: diaryv1.DeviceState_DEVICE_STATE_REVOKED, Revocation: diaryv1.RevocationReason_REVOCATION_REASON_SELF,
			RevokedBy: d.RevokedBy, RevokedAt: wire.Timestamp(d.RevokedAt)}, "this device was signed out from itself")
		c.settle(nil)
	}
	return d, nil
}

// forgetAwaiting drops a device from the list of devices waiting for
// approval, so that Status stops showing a request already answered.
func (c *Client) forgetAwaiting(ctx context.Context, id string) {
	c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM awaiting_approval WHERE device_id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			_, err = tx.ExecContext(ctx, `UPDATE profile SET awaiting_count = max(awaiting_count - 1, 0) WHERE id = 1`)
		}
		return err
	})
	c.watchers.notify(EventStatus)
}

// Activity is one thing done with this account or its data, from the
// server's audit log: devices enrolled (with who issued the code),
// approved, denied and revoked; codes issued; resets; assignments to
// supervisors; erasures; exports that held the account's entries.
type Activity struct {
	ID      int64
	At      time.Time
	Actor   string // study code of who did it, or "system"
	Action  string // such as "device.enrol", "export", "user.reset"
	Subject string
	Details map[string]string
}

// Activity returns a page of what was done with this account, newest
// first, and the token of the next page ("" on the last). limit is the
// page size (0: 100; at most 1000).
func (c *Client) Activity(ctx context.Context, pageToken string, limit int) ([]Activity, string, error) {
	rpc, _, err := c.rpcs()
	if err != nil {
		return nil, "", err
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	resp, err := rpc.device.ListMyActivity(ctx, &diaryv1.ListMyActivityRequest{PageSize: uint32(limit), PageToken: pageToken})
	if err != nil {
		return nil, "", c.settle(rpcError("list the account's activity", err))
	}
	out := make([]Activity, len(resp.GetEvents()))
	for i, e := range resp.GetEvents() {
		out[i] = Activity{ID: int64(e.GetId()), At: e.GetAt().AsTime().UTC(), Actor: e.GetActor(), Action: e.GetAction(), Subject: e.GetSubject(), Details: e.GetDetails()}
	}
	return out, resp.GetNextPageToken(), nil
}

// Revoked says how this device was revoked, and what was lost with it.
type Revoked struct {
	Reason  study.Revocation
	By      string // study code of whoever revoked it, or "system"
	At      time.Time
	Message string // the server's words, for a person
	// LostChanges is how many changes this device held that the server
	// never accepted (unsynced, or refused and kept for the person to
	// see): a revoked device cannot push, and its replica is wiped, so
	// they are gone. The person is told how many.
	LostChanges int
}

// RevokedError is the error of a call on a device that was revoked. Its
// replica has been wiped.
type RevokedError struct{ Revoked }

func (e *RevokedError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "this device was revoked"
	}
	msg += "; this device's copy of the diary was deleted"
	if e.LostChanges > 0 {
		msg += fmt.Sprintf(", with %d change(s) the server never received", e.LostChanges)
	}
	return msg
}

// revocation is a revocation the server told of, waiting to be applied
// to the replica (see settle).
type revocation struct {
	mu      sync.Mutex
	status  *diaryv1.DeviceStatus
	message string
}

// noteRevoked records that the server said this device is revoked. The
// replica is wiped by settle, where no sync is writing to it.
func (c *Client) noteRevoked(st *diaryv1.DeviceStatus, message string) {
	c.revocation.mu.Lock()
	defer c.revocation.mu.Unlock()
	if c.revocation.status == nil {
		c.revocation.status, c.revocation.message = st, message
	}
}

// settle wipes the replica if the server said this device is revoked,
// and returns the error to give for err: a *RevokedError then, err
// otherwise. It waits for a sync in progress to end.
func (c *Client) settle(err error) error {
	if !c.revocationNoted() {
		return err
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	if rerr := c.wipeIfRevoked(); rerr != nil {
		return rerr
	}
	return err
}

func (c *Client) revocationNoted() bool {
	c.revocation.mu.Lock()
	defer c.revocation.mu.Unlock()
	return c.revocation.status != nil
}

// wipeIfRevoked wipes the replica if a revocation was noted; the caller
// holds syncMu. It returns the *RevokedError to report, or nil.
func (c *Client) wipeIfRevoked() error {
	c.revocation.mu.Lock()
	st, msg := c.revocation.status, c.revocation.message
	c.revocation.status = nil
	c.revocation.mu.Unlock()
	if st == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := Revoked{Reason: study.Revocation(st.GetRevocation()), By: st.GetRevokedBy(), Message: msg}
	if st.GetRevokedAt() != nil {
		r.At = st.GetRevokedAt().AsTime().UTC()
	}
	err := c.db.WriteTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM refused)`).Scan(&r.LostChanges); err != nil {
			return fmt.Errorf("cannot count unsynced changes: %w", err)
		}
		// Everything that holds diary text goes; the clock (and the clocks
		// never to be used again) stays, so a new enrolment of this
		// replica never reuses a clock.
		for _, table := range []string{"entry_tags", "entries", "outbox", "refused", "erased", "awaiting_approval"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+table); err != nil {
				return fmt.Errorf("cannot wipe the replica: %w", err)
			}
		}
		var at any
		if !r.At.IsZero() {
			at = r.At.UnixMilli()
		}
		_, err := tx.ExecContext(ctx, `UPDATE profile SET token = '', cursor = 0, own_changes = NULL, device_state = ?, revocation = ?, revoked_by = ?, revoked_at = ?,
			revoked_message = ?, lost_changes = lost_changes + ?, awaiting_count = 0, last_error = ?, last_error_at = ? WHERE id = 1`,
			study.DeviceRevoked, r.Reason, r.By, at, msg, r.LostChanges, msg, c.opts.Now().UnixMilli())
		if err != nil {
			return fmt.Errorf("cannot record the revocation: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// secure_delete has zeroed the freed pages; the log still holds old
	// copies of them until it is checkpointed and truncated.
	c.db.Write.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	c.log.Warn("device revoked; replica wiped", "reason", r.Reason.String(), "lost_changes", r.LostChanges)
	c.mu.Lock()
	c.token, c.rpc = "", nil
	c.revoked = &r
	c.mu.Unlock()
	c.watchers.notify(EventEntries)
	c.watchers.notify(EventStatus)
	return &RevokedError{r}
}

// statusOf returns the DeviceStatus detail of a server error, or nil.
func statusOf(err error) *diaryv1.DeviceStatus {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return nil
	}
	for _, d := range ce.Details() {
		if v, derr := d.Value(); derr == nil {
			if st, ok := v.(*diaryv1.DeviceStatus); ok {
				return st
			}
		}
	}
	return nil
}

// awaitingApproval reports whether err says this device waits for
// approval.
func awaitingApproval(err error) bool {
	st := statusOf(err)
	return st != nil && st.GetState() == diaryv1.DeviceState_DEVICE_STATE_PENDING
}

// revocationWatch is a client interceptor that notes every answer saying
// this device was revoked, whichever call got it: sync, device
// management, administration or export.
type revocationWatch struct{ c *Client }

func (w revocationWatch) check(err error) {
	if st := statusOf(err); st != nil && st.GetState() == diaryv1.DeviceState_DEVICE_STATE_REVOKED {
		var ce *connect.Error
		msg := ""
		if errors.As(err, &ce) {
			msg = ce.Message()
		}
		w.c.noteRevoked(st, msg)
	}
}

func (w revocationWatch) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		resp, err := next(ctx, req)
		if err != nil {
			w.check(err)
		}
		return resp, err
	}
}

func (w revocationWatch) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return &watchedStream{StreamingClientConn: next(ctx, spec), w: w}
	}
}

func (w revocationWatch) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

type watchedStream struct {
	connect.StreamingClientConn
	w revocationWatch
}

func (s *watchedStream) Receive(msg any) error {
	err := s.StreamingClientConn.Receive(msg)
	if err != nil && !errors.Is(err, context.Canceled) {
		s.w.check(err)
	}
	return err
}

// Replace enrols this profile again as a new device of the same person,
// with a one-time code, and ends the device it was: it first pushes
// every change the old device still holds (and refuses to go on if it
// cannot, so nothing is lost), then enrols the new device, approves it
// from the old one (which is the person's own device), and revokes the
// old one. The replica keeps its entries and position. Use it to move a
// profile to a new enrolment; a profile that is not enrolled, or was
// revoked, uses Enroll.
func (c *Client) Replace(ctx context.Context, code, deviceName string) (Profile, error) {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	rpc, old, err := c.rpcs()
	if err != nil {
		return Profile{}, err
	}
	oldRPC, oldProfile := rpc, *old
	if err := c.push(ctx, rpc, old); err != nil {
		if rerr := c.wipeIfRevoked(); rerr != nil {
			return Profile{}, rerr
		}
		return Profile{}, fmt.Errorf("cannot replace this device before its changes are on the server: %w", err)
	}
	resp, t0, t1, err := c.enrollRPC(ctx, oldProfile.ServerURL, code, deviceName, oldProfile.StudyCode)
	if err != nil {
		return Profile{}, err
	}
	if study.DeviceState(resp.GetState()) == study.DevicePending {
		if _, err := oldRPC.device.ApproveDevice(ctx, &diaryv1.ApproveDeviceRequest{DeviceId: resp.GetDeviceId()}); err != nil {
			c.wipeIfRevoked()
			return Profile{}, fmt.Errorf("enrolled the new device %s, but could not approve it from this one (%v): this profile stays the old device; deny the new one with \"diary device deny %s\"",
				resp.GetDeviceId(), rpcError("approve the new device", err), resp.GetDeviceId())
		}
		resp.State = diaryv1.DeviceState_DEVICE_STATE_ACTIVE
	}
	_, revokeErr := oldRPC.device.RevokeMyDevice(ctx, &diaryv1.RevokeMyDeviceRequest{DeviceId: oldProfile.DeviceID})
	p, err := c.storeEnrollment(ctx, oldProfile.ServerURL, resp, t0, t1)
	if err != nil {
		return Profile{}, err
	}
	if revokeErr != nil {
		return p, fmt.Errorf("enrolled this profile as device %s, but could not revoke the old device %s (%v): revoke it with \"diary device revoke %s\"",
			p.DeviceID, oldProfile.DeviceID, rpcError("revoke the old device", revokeErr), oldProfile.DeviceID)
	}
	return p, nil
}

// checkEnrollable refuses to enrol a profile that is enrolled and not
// revoked: that would silently make a second device and leave the first
// one working.
func checkEnrollable(old *Profile, revoked *Revoked) error {
	if old != nil && revoked == nil {
		return syncengine.Errorf(syncengine.ECONFLICT, "this profile is already enrolled as %s (device %s): to enrol it again, replace that device (diary enrol --replace), which sends its unsynced changes first and then revokes it",
			old.StudyCode, old.DeviceID)
	}
	return nil
}

// normalizeURL checks a server URL and trims it.
func normalizeURL(serverURL string) (string, error) {
	serverURL = strings.TrimRight(strings.TrimSpace(serverURL), "/")
	if !strings.HasPrefix(serverURL, "http://") && !strings.HasPrefix(serverURL, "https://") {
		return "", syncengine.Errorf(syncengine.EINVALID, "server URL %q must start with http:// or https://", serverURL)
	}
	return serverURL, nil
}
