package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/diarysync/diarysync/study"
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

const deviceColumns = `d.id, d.public_id, u.study_code, d.name, d.kind, d.enrolled_at, d.last_sync_at, d.revoked_at`

func (db *DB) scanDevice(row interface{ Scan(...any) error }) (*study.Device, error) {
	var d study.Device
	var enrolled int64
	var last, revoked sql.NullInt64
	if err := row.Scan(&d.ID, &d.PublicID, &d.StudyCode, &d.Name, &d.Kind, &enrolled, &last, &revoked); err != nil {
		return nil, err
	}
	d.Enrolled = time.UnixMilli(enrolled).UTC()
	lastMs := last.Int64
	if p, ok := db.pendingSyncTime(d.ID); ok && p > lastMs {
		lastMs = p
	}
	if lastMs > 0 {
		d.LastSync = time.UnixMilli(lastMs).UTC()
	}
	if revoked.Valid {
		d.Revoked = time.UnixMilli(revoked.Int64).UTC()
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

// RevokeDevice revokes a device: its token stops working at once.
// Revoking a revoked device is not an error.
func (db *DB) RevokeDevice(ctx context.Context, publicID string) (*study.Device, error) {
	if err := study.CheckDevicePublicID(publicID); err != nil {
		return nil, err
	}
	var d *study.Device
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE devices SET revoked_at = ? WHERE public_id = ? AND revoked_at IS NULL`, db.nowMillis(), publicID); err != nil {
			return fmt.Errorf("cannot revoke device: %w", err)
		}
		var err error
		d, err = db.scanDevice(tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices d JOIN users u ON u.id = d.user_id WHERE d.public_id = ?`, publicID))
		if errors.Is(err, sql.ErrNoRows) {
			return study.ErrUnknownDevice(publicID)
		}
		if err != nil {
			return err
		}
		return db.audit(ctx, tx, "device.revoke", publicID, map[string]string{"user": d.StudyCode})
	})
	return d, err
}
