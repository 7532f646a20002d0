-- A new device of a user who has had a device waits for approval by one
-- of the user's active devices (pending = 1). Who issued the code it
-- enrolled with, who approved it and who revoked it, and why, are kept
-- beside it, so that every row of the audit log, and the device itself,
-- can name the person who really acted.
ALTER TABLE devices ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN issued_by TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN approved_at INTEGER;
ALTER TABLE devices ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';
-- study.Revocation; revocations made before this migration were all an
-- administrator's (revoking a device, or deactivating its user).
ALTER TABLE devices ADD COLUMN revocation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN revoked_by TEXT NOT NULL DEFAULT '';
UPDATE devices SET revocation = 3 WHERE revoked_at IS NOT NULL;
UPDATE devices SET revocation = 6 WHERE revoked_at IS NOT NULL AND user_id IN (SELECT id FROM users WHERE active = 0);

-- The administrator who issued a code is the actor of the enrolment it
-- makes. An approved code enrols its device without approval: the code
-- of an account reset, or one issued at the server's console.
ALTER TABLE enrollment_codes ADD COLUMN issued_by TEXT NOT NULL DEFAULT '';
ALTER TABLE enrollment_codes ADD COLUMN approved INTEGER NOT NULL DEFAULT 0;

-- An entry created by a pending device is held back from every reader
-- (held_by is that device's id) until the device is approved; its
-- sup_visible and res_visible stay 0 meanwhile.
ALTER TABLE entries ADD COLUMN held_by INTEGER;
CREATE INDEX entries_held ON entries (held_by) WHERE held_by IS NOT NULL;
-- The owner's pull reads "owner_id = ? AND held_by IS NULL AND seq > ?"
-- in seq order, and counts what remains after each page: with held_by
-- in the index, between the owner and the sequence, both stay index
-- scans that never read an entry they do not return.
DROP INDEX entries_by_owner_seq;
CREATE INDEX entries_by_owner_held_seq ON entries (owner_id, held_by, seq);

-- Which users each audit event concerns, so that a person can list what
-- was done with their account and data: devices, codes, resets,
-- erasures, exports that held their entries. Append-only like the log.
CREATE TABLE audit_subjects (
	user_id INTEGER NOT NULL,
	event   INTEGER NOT NULL,
	PRIMARY KEY (user_id, event)
) WITHOUT ROWID;
CREATE TRIGGER audit_subjects_append_only_update BEFORE UPDATE ON audit_subjects
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_subjects_append_only_delete BEFORE DELETE ON audit_subjects
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
-- Events written before this migration name their user as the subject
-- (a study code) or through a device; exports of that time did not list
-- whose entries they held.
INSERT OR IGNORE INTO audit_subjects (user_id, event)
	SELECT u.id, a.id FROM audit a JOIN users u ON u.study_code = a.subject;
INSERT OR IGNORE INTO audit_subjects (user_id, event)
	SELECT d.user_id, a.id FROM audit a JOIN devices d ON d.public_id = a.subject;
