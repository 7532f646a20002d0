package postgres

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/diarysync/diarysync/study"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestMigrateConsent opens a database as a diaryd before device approval
// left it (migrations 0001 and 0002, with revoked devices and audit rows)
// and checks what 0003_consent.sql makes of it: a device an administrator
// revoked is told so, one of a deactivated account is told that, and each
// person's activity lists the earlier events that name them or one of
// their devices, and nobody's lists an export of that time.
func TestMigrateConsent(t *testing.T) {
	ctx := context.Background()
	url := newTestDatabase(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	old := &DB{pool: pool, now: time.Now}
	if err := old.migrateTo(ctx, 2); err != nil {
		pool.Close()
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO users (id, study_code, role, active, created_at) VALUES (1, 'ADMIN', 4, true, 1), (2, 'PN-A', 1, true, 1), (3, 'PN-B', 1, false, 1)`,
		`INSERT INTO devices (id, public_id, user_id, replica_id, name, secret_hash, enrolled_at, revoked_at) VALUES
			(1, '00000000-0000-4000-8000-000000000001', 2, '\x01', 'phone', '\x00', 1, NULL),
			(2, '00000000-0000-4000-8000-000000000002', 2, '\x02', 'old phone', '\x00', 1, 5),
			(3, '00000000-0000-4000-8000-000000000003', 3, '\x03', 'tablet', '\x00', 1, 6)`,
		`INSERT INTO audit (id, at, actor, action, subject) VALUES
			(1, 1, 'ADMIN', 'user.create', 'PN-A'),
			(2, 2, 'PN-A', 'device.enrol', '00000000-0000-4000-8000-000000000001'),
			(3, 3, 'ADMIN', 'export', 'all waves'),
			(4, 5, 'ADMIN', 'device.revoke', '00000000-0000-4000-8000-000000000002'),
			(5, 6, 'ADMIN', 'user.deactivate', 'PN-B')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			pool.Close()
			t.Fatal(err)
		}
	}
	pool.Close()

	db, err := Open(ctx, url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tc := range []struct {
		device int64
		want   study.Revocation
	}{{2, study.RevokedByAdmin}, {3, study.RevokedDeactivated}} {
		var de *study.DeviceError
		if err := db.DeviceActive(ctx, tc.device); !errors.As(err, &de) || de.Revocation != tc.want {
			t.Errorf("device %d: %v, want revoked (%s)", tc.device, err, tc.want)
		}
	}
	if err := db.DeviceActive(ctx, 1); err != nil {
		t.Errorf("device 1: %v, want active", err)
	}
	for _, tc := range []struct {
		user int64
		want []string
	}{
		{1, nil},
		{2, []string{"device.revoke", "device.enrol", "user.create"}},
		{3, []string{"user.deactivate"}},
	} {
		events, _, err := db.ListActivity(ctx, tc.user, 100, "")
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range events {
			got = append(got, e.Action)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("user %d's activity: %v, want %v", tc.user, got, tc.want)
		}
	}
}
