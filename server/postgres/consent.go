package postgres

import (
	"context"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/diarysync/diarysync/syncengine"
)

// errNoConsent answers the device approval operations, which this store
// does not hold the tables for yet.
var errNoConsent = syncengine.Errorf(syncengine.EINTERNAL, "device approval is not available on PostgreSQL yet")

func deviceStateOf(revoked bool) study.DeviceState {
	if revoked {
		return study.DeviceRevoked
	}
	return study.DeviceActive
}

// ApproveDevice is not available yet.
func (db *DB) ApproveDevice(ctx context.Context, approver *study.Identity, publicID string) (*study.Device, *study.Wakeups, error) {
	return nil, nil, errNoConsent
}

// DenyDevice is not available yet.
func (db *DB) DenyDevice(ctx context.Context, who *study.Identity, publicID string) (*study.Device, error) {
	return nil, errNoConsent
}

// RevokeOwnDevice is not available yet.
func (db *DB) RevokeOwnDevice(ctx context.Context, who *study.Identity, publicID string) (*study.Device, error) {
	return nil, errNoConsent
}

// DevicesAwaitingApproval finds none: no device waits on this store yet.
func (db *DB) DevicesAwaitingApproval(ctx context.Context, userID int64, max int) ([]*study.Device, int, error) {
	return nil, 0, nil
}

// ResetUser is not available yet.
func (db *DB) ResetUser(ctx context.Context, studyCode string, ttl time.Duration) (*study.Reset, error) {
	return nil, errNoConsent
}

// ListActivity is not available yet.
func (db *DB) ListActivity(ctx context.Context, userID int64, size uint32, token string) ([]*study.AuditEvent, string, error) {
	return nil, "", errNoConsent
}
