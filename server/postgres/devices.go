package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
	"github.com/jackc/pgx/v5"
)

// syncTimes remembers when devices last synced, to be written in batches
// (and on shutdown) rather than on every Pull.
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

// FlushSyncTimes writes the remembered sync times in one statement. A
// time never moves back, whichever process wrote the later one first.
//
// It takes the write lock first, as every other writer of device rows
// does: a group of pushes holds the lock and then updates its devices'
// rows one push at a time (their counts of changes), so a statement that
// updated many device rows without the lock could hold one that the
// group wants next while it waits for one the group holds, a deadlock
// that PostgreSQL breaks only after deadlock_timeout by failing one side.
func (db *DB) FlushSyncTimes(ctx context.Context) error {
	db.syncTimes.mu.Lock()
	pending := db.syncTimes.pending
	db.syncTimes.pending = nil
	db.syncTimes.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(pending))
	times := make([]int64, 0, len(pending))
	for id, t := range pending {
		ids = append(ids, id)
		times = append(times, t)
	}
	err := db.writeTx(ctx, func(t *tx) error {
		_, err := t.Exec(ctx, `UPDATE devices d SET last_sync_at = greatest(coalesce(d.last_sync_at, 0), p.t)
			FROM unnest($1::bigint[], $2::bigint[]) AS p(id, t) WHERE d.id = p.id`, ids, times)
		return err
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
		return fmt.Errorf("cannot record sync times: %w", err)
	}
	return nil
}

const deviceColumns = `d.id, d.public_id, d.user_id, u.study_code, d.name, d.kind, d.enrolled_at, d.issued_by, d.approved_at, d.approved_by, d.last_sync_at, ` + deviceRecordColumns

func (db *DB) scanDevice(row pgx.Row) (*study.Device, error) {
	var d study.Device
	var enrolled int64
	var approved, last *int64
	var rec deviceRecord
	var kind int32
	if err := row.Scan(append([]any{&d.ID, &d.PublicID, &d.UserID, &d.StudyCode, &d.Name, &kind, &enrolled, &d.IssuedBy, &approved, &d.ApprovedBy, &last}, rec.dest()...)...); err != nil {
		return nil, err
	}
	d.Kind = study.DeviceKind(kind)
	d.Enrolled = time.UnixMilli(enrolled).UTC()
	if approved != nil {
		d.Approved = time.UnixMilli(*approved).UTC()
	}
	var lastMs int64
	if last != nil {
		lastMs = *last
	}
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
	rows, err := db.pool.Query(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id
		WHERE ($1::bigint = 0 OR d.id < $1) AND ($2::bigint = 0 OR d.user_id = $2) ORDER BY d.id DESC LIMIT $3`, before, userID, n+1)
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

// DevicesAwaitingApproval returns up to max devices of the user that wait
// for approval, newest first, and how many there are, in one snapshot.
func (db *DB) DevicesAwaitingApproval(ctx context.Context, userID int64, max int) ([]*study.Device, int, error) {
	var out []*study.Device
	var total int
	err := db.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, total, err = db.awaitingApproval(ctx, tx, userID, max)
		return err
	})
	return out, total, err
}

// awaitingApproval is DevicesAwaitingApproval in the transaction tx.
func (db *DB) awaitingApproval(ctx context.Context, tx pgx.Tx, userID int64, max int) ([]*study.Device, int, error) {
	var total int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM devices WHERE user_id = $1 AND pending AND revoked_at IS NULL`, userID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("cannot count devices waiting for approval: %w", err)
	}
	if total == 0 || max <= 0 {
		return nil, total, nil
	}
	rows, err := tx.Query(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id
		WHERE d.user_id = $1 AND d.pending AND d.revoked_at IS NULL ORDER BY d.id DESC LIMIT $2`, userID, max)
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
	d, err := db.scanDevice(q.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.public_id = $1`, publicID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, study.ErrUnknownDevice(publicID)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot look up device: %w", err)
	}
	return d, nil
}

// RevokeDevice revokes a device: its token stops working at once, on
// every process. Revoking a revoked device is not an error. The device
// is told that an administrator revoked it; what it wrote while pending,
// if it was, is erased.
func (db *DB) RevokeDevice(ctx context.Context, publicID string) (*study.Device, error) {
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	erased := 0
	err := db.writeTx(ctx, func(t *tx) error {
		var err error
		if d, err = db.deviceByPublicID(ctx, t, publicID); err != nil {
			return err
		}
		var n int
		n, erased, err = db.revokeDevices(ctx, t, `id = $1`, []any{d.ID}, study.RevokedByAdmin)
		if err != nil || n == 0 {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, t, publicID); err != nil {
			return err
		}
		return db.audit(ctx, t, "device.revoke", publicID, map[string]string{"user": d.StudyCode, "name": d.Name}, d.UserID)
	})
	if err != nil {
		return nil, err
	}
	if erased > 0 {
		db.scrub(ctx)
	}
	return d, nil
}

// revokeDevices revokes the devices that match cond (over table devices,
// whose arguments are $1, $2, ...: args) and are not revoked yet, for the
// given reason, by the caller; the entries that pending ones among them
// held back are erased, since nobody approved them. Open streams of the
// devices, on any process, end at commit. It returns how many devices it
// revoked and how many held entries it erased.
func (db *DB) revokeDevices(ctx context.Context, t *tx, cond string, args []any, why study.Revocation) (revoked, erased int, err error) {
	held, err := queryIDs(ctx, t, `SELECT id FROM devices WHERE revoked_at IS NULL AND pending AND `+cond, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot find devices to revoke: %w", err)
	}
	k := len(args)
	tag, err := t.Exec(ctx, fmt.Sprintf(`UPDATE devices SET revoked_at = $%d, revocation = $%d, revoked_by = $%d, pending = false WHERE revoked_at IS NULL AND `, k+1, k+2, k+3)+cond,
		append(append([]any{}, args...), db.nowMillis(), int32(why), study.ActorFrom(ctx))...)
	if err != nil {
		return 0, 0, fmt.Errorf("cannot revoke devices: %w", err)
	}
	for _, dev := range held {
		n, err := db.eraseHeld(ctx, t, dev)
		if err != nil {
			return 0, 0, err
		}
		erased += n
	}
	if tag.RowsAffected() > 0 {
		t.notifyAll()
	}
	return int(tag.RowsAffected()), erased, nil
}

// eraseHeld erases the entries a pending device created, which no reader
// has seen, and returns how many there were. Their ids stay known, so
// the entries cannot be pushed again; the owner's devices get removal
// notices for entries they never had, which cost them nothing.
func (db *DB) eraseHeld(ctx context.Context, t *tx, device int64) (int, error) {
	rids, err := queryIDs(ctx, t, `SELECT rid FROM entries WHERE held_by = $1 AND erased_at IS NULL ORDER BY rid`, device)
	if err != nil {
		return 0, fmt.Errorf("cannot find held entries: %w", err)
	}
	return len(rids), db.eraseRows(ctx, t, rids, &study.Wakeups{})
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
	err := db.writeTx(ctx, func(t *tx) error {
		*wake = study.Wakeups{}
		var err error
		if d, err = db.ownDevice(ctx, t, approver, publicID); err != nil {
			return err
		}
		if ok, err := study.CheckApprovable(d); err != nil || !ok {
			return err
		}
		if _, err := t.Exec(ctx, `UPDATE devices SET pending = false, approved_at = $1, approved_by = $2 WHERE id = $3`, db.nowMillis(), approver.Device, d.ID); err != nil {
			return fmt.Errorf("cannot approve device: %w", err)
		}
		n, err := db.releaseHeld(ctx, t, d.ID, wake)
		if err != nil {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, t, publicID); err != nil {
			return err
		}
		t.notify(wake)
		return db.audit(ctx, t, "device.approve", publicID,
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
func (db *DB) ownDevice(ctx context.Context, t *tx, approver *study.Identity, publicID string) (*study.Device, error) {
	var (
		me  string
		rec deviceRecord
	)
	err := t.QueryRow(ctx, `SELECT d.public_id, `+deviceRecordColumns+` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.id = $1`, approver.DeviceID).
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
	d, err := db.deviceByPublicID(ctx, t, publicID)
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
func (db *DB) releaseHeld(ctx context.Context, t *tx, device int64, wake *study.Wakeups) (int, error) {
	type held struct {
		rid, owner int64
		state      []byte
	}
	rows, err := t.Query(ctx, `SELECT rid, owner_id, state FROM entries WHERE held_by = $1 AND erased_at IS NULL ORDER BY rid`, device)
	if err != nil {
		return 0, fmt.Errorf("cannot find held entries: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (held, error) {
		var h held
		err := r.Scan(&h.rid, &h.owner, &h.state)
		return h, err
	})
	if err != nil {
		return 0, fmt.Errorf("cannot find held entries: %w", err)
	}
	if len(list) == 0 {
		return 0, nil
	}
	first, err := nextSeqs(ctx, t, len(list), db.nowMillis())
	if err != nil {
		return 0, err
	}
	n := len(list)
	rids, seqs := make([]int64, n), make([]int64, n)
	sup, res := make([]bool, n), make([]bool, n)
	supervisors := map[int64][]int64{}
	readers := map[int64]bool{}
	var feed []feedRow
	for i, h := range list {
		seq := first + int64(i)
		e, err := syncengine.DecodeEntryLazy(h.state)
		if err != nil {
			return 0, fmt.Errorf("held entry %d: stored state: %w", h.rid, err)
		}
		rids[i], seqs[i], sup[i], res[i] = h.rid, seq, study.SupervisorVisible(e), study.ResearchVisible(e)
		sups, ok := supervisors[h.owner]
		if !ok {
			if sups, err = supervisorsOf(ctx, t, h.owner); err != nil {
				return 0, err
			}
			supervisors[h.owner] = sups
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
	}
	if _, err := t.Exec(ctx, `UPDATE entries e SET held_by = NULL, seq = s.seq, sup_visible = s.sup, res_visible = s.res, echo_device = NULL
		FROM unnest($1::bigint[], $2::bigint[], $3::boolean[], $4::boolean[]) AS s(rid, seq, sup, res) WHERE e.rid = s.rid`,
		rids, seqs, sup, res); err != nil {
		return 0, fmt.Errorf("cannot release held entries: %w", err)
	}
	for owner := range supervisors {
		wake.Owners = append(wake.Owners, owner)
	}
	for r := range readers {
		wake.Readers = append(wake.Readers, r)
	}
	return n, upsertFeed(ctx, t, feed)
}

// DenyDevice refuses a pending device of the caller's user: it is revoked
// (and told it was denied) and the entries it wrote while pending are
// erased, and vacuumed away after the commit.
func (db *DB) DenyDevice(ctx context.Context, who *study.Identity, publicID string) (*study.Device, error) {
	// The device that acts is the actor of what is recorded, whatever
	// ctx carries.
	ctx = study.NewContext(ctx, who)
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	erased := 0
	err := db.writeTx(ctx, func(t *tx) error {
		erased = 0
		var err error
		if d, err = db.ownDevice(ctx, t, who, publicID); err != nil {
			return err
		}
		if ok, err := study.CheckDeniable(d); err != nil || !ok {
			return err
		}
		if erased, err = db.eraseHeld(ctx, t, d.ID); err != nil {
			return err
		}
		if _, _, err := db.revokeDevices(ctx, t, `id = $1`, []any{d.ID}, study.RevokedDenied); err != nil {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, t, publicID); err != nil {
			return err
		}
		return db.audit(ctx, t, "device.deny", publicID, map[string]string{"user": d.StudyCode, "name": d.Name, "denied_by": who.Device, "entries_erased": fmt.Sprint(erased)}, d.UserID)
	})
	if err != nil {
		return nil, err
	}
	if erased > 0 {
		db.scrub(ctx)
	}
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
	erased := 0
	err := db.writeTx(ctx, func(t *tx) error {
		erased = 0
		var err error
		if d, err = db.ownDevice(ctx, t, who, publicID); err != nil {
			return err
		}
		why := study.RevokedByUser
		if d.ID == who.DeviceID {
			why = study.RevokedSelf
		}
		var n int
		n, erased, err = db.revokeDevices(ctx, t, `id = $1`, []any{d.ID}, why)
		if err != nil || n == 0 {
			return err
		}
		if d, err = db.deviceByPublicID(ctx, t, publicID); err != nil {
			return err
		}
		return db.audit(ctx, t, "device.revoke", publicID, map[string]string{"user": d.StudyCode, "name": d.Name, "revoked_from": who.Device}, d.UserID)
	})
	if err != nil {
		return nil, err
	}
	if erased > 0 {
		db.scrub(ctx)
	}
	return d, nil
}
