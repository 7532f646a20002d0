package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/diarysync/diarysync/study"
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
	_, err := db.pool.Exec(ctx, `UPDATE devices d SET last_sync_at = greatest(coalesce(d.last_sync_at, 0), p.t)
		FROM unnest($1::bigint[], $2::bigint[]) AS p(id, t) WHERE d.id = p.id`, ids, times)
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

const deviceColumns = `d.id, d.public_id, u.study_code, d.name, d.kind, d.enrolled_at, d.last_sync_at, d.revoked_at`

func (db *DB) scanDevice(row pgx.Row) (*study.Device, error) {
	var d study.Device
	var enrolled int64
	var last, revoked *int64
	var kind int32
	if err := row.Scan(&d.ID, &d.PublicID, &d.StudyCode, &d.Name, &kind, &enrolled, &last, &revoked); err != nil {
		return nil, err
	}
	d.Kind = study.DeviceKind(kind)
	d.Enrolled = time.UnixMilli(enrolled).UTC()
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
	if revoked != nil {
		d.Revoked = time.UnixMilli(*revoked).UTC()
	}
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

// RevokeDevice revokes a device: its token stops working at once, on
// every process.
func (db *DB) RevokeDevice(ctx context.Context, publicID string) (*study.Device, error) {
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	err := db.writeTx(ctx, func(t *tx) error {
		if _, err := t.Exec(ctx, `UPDATE devices SET revoked_at = $1 WHERE public_id = $2 AND revoked_at IS NULL`, db.nowMillis(), publicID); err != nil {
			return fmt.Errorf("cannot revoke device: %w", err)
		}
		var err error
		d, err = db.scanDevice(t.QueryRow(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.public_id = $1`, publicID))
		if errors.Is(err, pgx.ErrNoRows) {
			return study.ErrUnknownDevice(publicID)
		}
		if err != nil {
			return err
		}
		t.notifyAll() // an open stream of the device, on any process, ends
		return db.audit(ctx, t, "device.revoke", publicID, map[string]string{"user": d.StudyCode})
	})
	return d, err
}
