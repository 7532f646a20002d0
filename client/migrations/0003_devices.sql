-- What this device knows of its own standing with the server: waiting
-- for approval (1), active (2) or revoked (3, study.DeviceState), and,
-- once revoked, by whom and how many unsynced changes were lost when the
-- replica was wiped.
ALTER TABLE profile ADD COLUMN device_state INTEGER NOT NULL DEFAULT 2;
ALTER TABLE profile ADD COLUMN revocation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile ADD COLUMN revoked_by TEXT NOT NULL DEFAULT '';
ALTER TABLE profile ADD COLUMN revoked_at INTEGER;
ALTER TABLE profile ADD COLUMN revoked_message TEXT NOT NULL DEFAULT '';
ALTER TABLE profile ADD COLUMN lost_changes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile ADD COLUMN awaiting_count INTEGER NOT NULL DEFAULT 0;

-- Devices of this account waiting for approval, as the last pull said:
-- the person sees the request at their next sync.
CREATE TABLE awaiting_approval (
	device_id   TEXT PRIMARY KEY,
	name        TEXT NOT NULL,
	enrolled_at INTEGER NOT NULL,
	issued_by   TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
