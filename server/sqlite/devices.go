package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// syncTimes remembers when devices last synced. Writing the time on every
// Pull would turn reads into writes; instead it is kept here and written
// in batches (and on shutdown), so "last sync" may lag by a few seconds.
type syncTimes struct {
	mu      sync.Mutex
	pending map[int64]int64 // device id → Unix ms
}

// TouchDevice records that the device synced now.
func (db *DB) TouchDevice(device int64) {
	db.syncTimes.mu.Lock()
	defer db.syncTimes.mu.Unlock()
	if db.syncTimes.pending == nil {
		db.syncTimes.pending = map[int64]int64{}
	}
	db.syncTimes.pending[device] = db.nowMillis()
}

func (db *DB) pendingSyncTime(device int64) (int64, bool) {
	db.syncTimes.mu.Lock()
	defer db.syncTimes.mu.Unlock()
	t, ok := db.syncTimes.pending[device]
	return t, ok
}

// FlushSyncTimes writes the remembered sync times.
func (db *DB) FlushSyncTimes(ctx context.Context) error {
	db.syncTimes.mu.Lock()
	pending := db.syncTimes.pending
	db.syncTimes.pending = nil
	db.syncTimes.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		for id, t := range pending {
			if _, err := tx.ExecContext(ctx, `UPDATE devices SET last_sync_at = max(coalesce(last_sync_at, 0), ?) WHERE id = ?`, t, id); err != nil {
				return fmt.Errorf("cannot record sync times: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		// Put them back so the next flush tries again.
		db.syncTimes.mu.Lock()
		if db.syncTimes.pending == nil {
			db.syncTimes.pending = map[int64]int64{}
		}
		for id, t := range pending {
			db.syncTimes.pending[id] = max(db.syncTimes.pending[id], t)
		}
		db.syncTimes.mu.Unlock()
	}
	return err
}

const deviceColumns = `d.id, d.public_id, d.user_id, u.study_code, d.name, d.kind, d.enrolled_at, d.issued_by, d.approved_at, d.approved_by, d.last_sync_at, ` + deviceRecordColumns

func (db *DB) scanDevice(row interface{ Scan(...any) error }) (*study.Device, error) {
	var d study.Device
	var enrolled int64
	var approved, last sql.NullInt64
	var rec deviceRecord
	if err := row.Scan(append([]any{&d.ID, &d.PublicID, &d.UserID, &d.StudyCode, &d.Name, &d.Kind, &enrolled, &d.IssuedBy, &approved, &d.ApprovedBy, &last}, rec.dest()...)...); err != nil {
		return nil, err
	}
	d.Enrolled = time.UnixMilli(enrolled).UTC()
	if approved.Valid {
		d.Approved = time.UnixMilli(approved.Int64).UTC()
	}
	lastMs := last.Int64
	if p, ok := db.pendingSyncTime(d.ID); ok && p > lastMs {
		lastMs = p
	}
	if lastMs > 0 {
		d.LastSync = time.UnixMilli(lastMs).UTC()
	}
	r := rec.record(d.PublicID)
	d.State, d.Revocation, d.RevokedBy, d.Revoked = r.State, r.Revocation, r.RevokedBy, r.RevokedAt
	return &d, nil
}

// ListDevices returns a page of devices, newest enrolment first,
// optionally only one user's.
func (db *DB) ListDevices(ctx context.Context, size uint32, token, studyCode string) ([]*study.Device, string, error) {
	before, err := study.DecodeIntPageToken(token)
	if err != nil {
		return nil, "", err
	}
	var userID int64
	if studyCode != "" {
		u, err := db.UserByCode(ctx, studyCode)
		if err != nil {
			return nil, "", err
		}
		userID = u.ID
	}
	n := study.ListPageSize(size)
	rows, err := db.read.QueryContext(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id
		WHERE (? = 0 OR d.id < ?) AND (? = 0 OR d.user_id = ?) ORDER BY d.id DESC LIMIT ?`, before, before, userID, userID, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("cannot list devices: %w", err)
	}
	defer rows.Close()
	var out []*study.Device
	for rows.Next() {
		d, err := db.scanDevice(rows)
		if err != nil {
			return nil, "", fmt.Errorf("cannot list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("cannot list devices: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		next = study.EncodeIntPageToken(out[n-1].ID)
	}
	return out, next, nil
}

var (
	qAwaitingCount = readQuery(`SELECT count(*) FROM devices WHERE user_id = ? AND pending = 1 AND revoked_at IS NULL`)
	qAwaitingList  = readQuery(`SELECT ` + deviceColumns + ` FROM devices d JOIN users u ON u.id = d.user_id
			WHERE d.user_id = ? AND d.pending = 1 AND d.revoked_at IS NULL ORDER BY d.id DESC LIMIT ?`)
)

// DevicesAwaitingApproval returns up to max devices of the user that wait
// for approval, newest first, and how many there are.
func (db *DB) DevicesAwaitingApproval(ctx context.Context, userID int64, max int) ([]*study.Device, int, error) {
	var out []*study.Device
	var total int
	err := db.readTx(ctx, func(rtx *sql.Tx) error {
		var err error
		out, total, err = db.awaitingApproval(ctx, db.rq.in(rtx), userID, max)
		return err
	})
	return out, total, err
}

// awaitingApproval is DevicesAwaitingApproval in the transaction tx.
func (db *DB) awaitingApproval(ctx context.Context, tx querier, userID int64, max int) ([]*study.Device, int, error) {
	var total int
	if err := tx.QueryRowContext(ctx, qAwaitingCount, userID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("cannot count devices waiting for approval: %w", err)
	}
	if total == 0 || max <= 0 {
		return nil, total, nil
	}
	rows, err := tx.QueryContext(ctx, qAwaitingList, userID, max)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list devices waiting for approval: %w", err)
	}
	defer rows.Close()
	var out []*study.Device
	for rows.Next() {
		d, err := db.scanDevice(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("cannot list devices waiting for approval: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("cannot list devices waiting for approval: %w", err)
	}
	return out, total, nil
}

func (db *DB) deviceByPublicID(ctx context.Context, q querier, publicID string) (*study.Device, error) {
	d, err := db.scanDevice(q.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.public_id = ?`, publicID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, study.ErrUnknownDevice(publicID)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up device: %w", err)
	}
	return d, nil
}

// RevokeDevice revokes a device: its token stops working at once.
// Revoking a revoked device is not an error. The device is told that an
// administrator revoked it.
func (db *DB) RevokeDevice(ctx context.Context, publicID string) (*study.Device, error) {
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if d, err = db.deviceByPublicID(ctx, tx, publicID); err != nil {
			return err
		}
		n, err := db.revokeDevices(ctx, tx, `id = ?`, []any{d.ID}, study.RevokedByAdmin)
		if err != nil || n == 0 {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, tx, publicID); err != nil {
			return err
		}
		return db.audit(ctx, tx, "device.revoke", publicID, map[string]string{"user": d.StudyCode, "name": d.Name}, d.UserID)
	})
	return d, err
}

// revokeDevices revokes the devices that match cond (over table devices,
// with args) and are not revoked yet, for the given reason, by the
// caller; the entries that pending ones among them held back are erased,
// since nobody approved them. It returns how many it revoked.
func (db *DB) revokeDevices(ctx context.Context, tx *sql.Tx, cond string, args []any, why study.Revocation) (int, error) {
	held, err := queryIDs(ctx, tx, `SELECT id FROM devices WHERE revoked_at IS NULL AND pending = 1 AND `+cond, args...)
	if err != nil {
		return 0, fmt.Errorf("cannot find devices to revoke: %w", err)
	}
	res, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ?, revocation = ?, revoked_by = ?, pending = 0 WHERE revoked_at IS NULL AND `+cond,
		append([]any{db.nowMillis(), why, study.ActorFrom(ctx)}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("cannot revoke devices: %w", err)
	}
	n, _ := res.RowsAffected()
	for _, dev := range held {
		if _, err := db.eraseHeld(ctx, tx, dev); err != nil {
			return 0, err
		}
	}
	return int(n), nil
}

// eraseHeld erases the entries a pending device created, which no reader
// has seen, and returns how many there were. Their ids stay known, so
// the entries cannot be pushed again; the owner's devices get removal
// notices for entries they never had, which cost them nothing.
func (db *DB) eraseHeld(ctx context.Context, tx *sql.Tx, device int64) (int, error) {
	rids, err := queryIDs(ctx, tx, `SELECT rid FROM entries WHERE held_by = ? AND erased_at IS NULL`, device)
	if err != nil {
		return 0, fmt.Errorf("cannot find held entries: %w", err)
	}
	return len(rids), eraseRows(ctx, tx, rids, &study.Wakeups{}, db.nowMillis())
}

// ApproveDevice lets a pending device of the approver's user act. The
// entries it wrote while pending reach their readers now, each at a new
// sequence number.
func (db *DB) ApproveDevice(ctx context.Context, approver *study.Identity, publicID string) (*study.Device, *study.Wakeups, error) {
	// The device that acts is the actor of what is recorded, whatever
	// ctx carries.
	ctx = study.NewContext(ctx, approver)
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, nil, err
	}
	var d *study.Device
	wake := &study.Wakeups{}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		*wake = study.Wakeups{}
		var err error
		if d, err = db.ownDevice(ctx, tx, approver, publicID); err != nil {
			return err
		}
		if ok, err := study.CheckApprovable(d); err != nil || !ok {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET pending = 0, approved_at = ?, approved_by = ? WHERE id = ?`, db.nowMillis(), approver.Device, d.ID); err != nil {
			return fmt.Errorf("cannot approve device: %w", err)
		}
		n, err := db.releaseHeld(ctx, tx, d.ID, wake)
		if err != nil {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, tx, publicID); err != nil {
			return err
		}
		return db.audit(ctx, tx, "device.approve", publicID,
			map[string]string{"user": d.StudyCode, "name": d.Name, "approved_by": approver.Device, "entries_released": fmt.Sprint(n)}, d.UserID)
	})
	if err != nil {
		return nil, nil, err
	}
	return d, wake, nil
}

// ownDevice returns the device with publicID if it belongs to the
// approver's user and the approver may act on it (see CheckApproval). It
// reads the approver's own state again: the identity may be older than a
// revocation.
func (db *DB) ownDevice(ctx context.Context, tx *sql.Tx, approver *study.Identity, publicID string) (*study.Device, error) {
	var (
		me  string
		rec deviceRecord
	)
	err := tx.QueryRowContext(ctx, `SELECT d.public_id, `+deviceRecordColumns+` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = ?`, approver.DeviceID).
		Scan(append([]any{&me}, rec.dest()...)...)
	if err != nil {
		return nil, fmt.Errorf("cannot look up device: %w", err)
	}
	r := rec.record(me)
	if err := study.CheckDevice(r); err != nil {
		return nil, err
	}
	who := *approver
	who.Pending = r.State == study.DevicePending
	d, err := db.deviceByPublicID(ctx, tx, publicID)
	if syncengine.ErrorCode(err) == syncengine.ENOTFOUND {
		return nil, syncengine.Errorf(syncengine.ENOTFOUND, "none of your devices has the id %s", publicID)
	}
	if err != nil {
		return nil, err
	}
	if err := study.CheckApproval(&who, d, d.UserID); err != nil {
		return nil, err
	}
	return d, nil
}

// releaseHeld lets the entries a device held back reach their readers:
// each gets a new sequence number (so that the owner's other devices
// pull it) and the feed rows FeedChanges gives an entry that is new to
// its readers. It returns how many it released.
func (db *DB) releaseHeld(ctx context.Context, tx *sql.Tx, device int64, wake *study.Wakeups) (int, error) {
	type held struct {
		rid, owner int64
		state      []byte
	}
	rows, err := tx.QueryContext(ctx, `SELECT rid, owner_id, state FROM entries WHERE held_by = ? AND erased_at IS NULL ORDER BY rid`, device)
	if err != nil {
		return 0, fmt.Errorf("cannot find held entries: %w", err)
	}
	var list []held
	for rows.Next() {
		var h held
		if err := rows.Scan(&h.rid, &h.owner, &h.state); err != nil {
			rows.Close()
			return 0, fmt.Errorf("cannot find held entries: %w", err)
		}
		list = append(list, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("cannot find held entries: %w", err)
	}
	if len(list) == 0 {
		return 0, nil
	}
	first, err := nextSeqs(ctx, tx, len(list), db.nowMillis())
	if err != nil {
		return 0, err
	}
	readers := map[int64]bool{}
	var feed []feedRow
	for i, h := range list {
		seq := first + int64(i)
		e, err := syncengine.DecodeEntryLazy(h.state)
		if err != nil {
			return 0, fmt.Errorf("held entry %d: stored state: %w", h.rid, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE entries SET held_by = NULL, seq = ?, sup_visible = ?, res_visible = ?, echo_device = NULL WHERE rid = ?`,
			seq, study.SupervisorVisible(e), study.ResearchVisible(e), h.rid); err != nil {
			return 0, fmt.Errorf("cannot release held entry: %w", err)
		}
		sups, err := supervisorsOf(ctx, tx, h.owner)
		if err != nil {
			return 0, err
		}
		for _, fc := range study.FeedChanges(nil, e) {
			ids := sups
			if fc.Audience == syncengine.AudienceResearch {
				ids = []int64{study.ResearchReader}
			}
			for _, r := range ids {
				feed = append(feed, feedRow{reader: r, entry: h.rid, seq: seq, visible: true})
				readers[r] = true
			}
		}
		wake.Owners = append(wake.Owners, h.owner)
	}
	for r := range readers {
		wake.Readers = append(wake.Readers, r)
	}
	return len(list), db.upsertFeed(ctx, tx, feed)
}

// DenyDevice refuses a pending device of the caller's user: it is revoked
// (and told it was denied) and the entries it wrote while pending are
// erased.
func (db *DB) DenyDevice(ctx context.Context, who *study.Identity, publicID string) (*study.Device, error) {
	// The device that acts is the actor of what is recorded, whatever
	// ctx carries.
	ctx = study.NewContext(ctx, who)
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if d, err = db.ownDevice(ctx, tx, who, publicID); err != nil {
			return err
		}
		if ok, err := study.CheckDeniable(d); err != nil || !ok {
			return err
		}
		held, err := db.eraseHeld(ctx, tx, d.ID)
		if err != nil {
			return err
		}
		if _, err := db.revokeDevices(ctx, tx, `id = ?`, []any{d.ID}, study.RevokedDenied); err != nil {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, tx, publicID); err != nil {
			return err
		}
		return db.audit(ctx, tx, "device.deny", publicID, map[string]string{"user": d.StudyCode, "name": d.Name, "denied_by": who.Device, "entries_erased": fmt.Sprint(held)}, d.UserID)
	})
	if err != nil {
		return nil, err
	}
	db.scrubWAL(ctx)
	return d, nil
}

// RevokeOwnDevice revokes one of the caller's user's devices: another
// one, or the calling device itself. Revoking a revoked device is not an
// error.
func (db *DB) RevokeOwnDevice(ctx context.Context, who *study.Identity, publicID string) (*study.Device, error) {
	// The device that acts is the actor of what is recorded, whatever
	// ctx carries.
	ctx = study.NewContext(ctx, who)
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if d, err = db.ownDevice(ctx, tx, who, publicID); err != nil {
			return err
		}
		why := study.RevokedByUser
		if d.ID == who.DeviceID {
			why = study.RevokedSelf
		}
		n, err := db.revokeDevices(ctx, tx, `id = ?`, []any{d.ID}, why)
		if err != nil || n == 0 {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, tx, publicID); err != nil {
			return err
		}
		return db.audit(ctx, tx, "device.revoke", publicID, map[string]string{"user": d.StudyCode, "name": d.Name, "revoked_from": who.Device}, d.UserID)
	})
	return d, err
}
