-- New devices need the person's consent, as in the SQLite store's
-- 0006_consent.sql: a new device of a user who has had a device waits for
-- approval by one of the user's active devices (pending). Who issued the
-- code it enrolled with, who approved it and who revoked it, and why, are
-- kept beside it, so that every row of the audit log, and the device
-- itself, can name the person who really acted.
ALTER TABLE devices ADD COLUMN pending boolean NOT NULL DEFAULT false;
ALTER TABLE devices ADD COLUMN issued_by text NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN approved_at bigint;
ALTER TABLE devices ADD COLUMN approved_by text NOT NULL DEFAULT '';
-- study.Revocation; revocations made before this migration were all an
-- administrator's (revoking a device, or deactivating its user).
ALTER TABLE devices ADD COLUMN revocation integer NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN revoked_by text NOT NULL DEFAULT '';
UPDATE devices SET revocation = 3 WHERE revoked_at IS NOT NULL;
UPDATE devices SET revocation = 6 WHERE revoked_at IS NOT NULL AND user_id IN (SELECT id FROM users WHERE NOT active);

-- The administrator who issued a code is the actor of the enrolment it
-- makes. An approved code enrols its device without approval: the code
-- of an account reset, or one issued at the server's console.
ALTER TABLE enrollment_codes ADD COLUMN issued_by text NOT NULL DEFAULT '';
ALTER TABLE enrollment_codes ADD COLUMN approved boolean NOT NULL DEFAULT false;

-- An entry created by a pending device is held back from every reader
-- (held_by is that device's id) until the device is approved; its
-- sup_visible and res_visible stay false meanwhile.
ALTER TABLE entries ADD COLUMN held_by bigint;
CREATE INDEX entries_held ON entries (held_by) WHERE held_by IS NOT NULL;
-- The owner's pull reads "owner_id = $1 AND seq > $2 AND held_by IS NULL"
-- in seq order, and counts what remains after each page. With held_by
-- among the index's included columns, both stay index-only scans in seq
-- order; held rows are few and are filtered out of the index itself.
DROP INDEX entries_by_owner_seq;
CREATE INDEX entries_by_owner_seq ON entries (owner_id, seq) INCLUDE (held_by);

-- Which users each audit event concerns, so that a person can list what
-- was done with their account and data: devices, codes, resets,
-- erasures, exports that held their entries. Append-only like the log.
CREATE TABLE audit_subjects (
	user_id bigint NOT NULL,
	event   bigint NOT NULL,
	PRIMARY KEY (user_id, event)
);
CREATE TRIGGER audit_subjects_append_only_row BEFORE UPDATE OR DELETE ON audit_subjects
	FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_subjects_append_only_truncate BEFORE TRUNCATE ON audit_subjects
	FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
-- Events written before this migration name their user as the subject
-- (a study code) or through a device; exports of that time did not list
-- whose entries they held.
INSERT INTO audit_subjects (user_id, event)
	SELECT u.id, a.id FROM audit a JOIN users u ON u.study_code = a.subject
	ON CONFLICT DO NOTHING;
INSERT INTO audit_subjects (user_id, event)
	SELECT d.user_id, a.id FROM audit a JOIN devices d ON d.public_id = a.subject
	ON CONFLICT DO NOTHING;
