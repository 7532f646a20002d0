-- Who did what and when: enrolments, revocations, user and assignment
-- changes, codes, waves, exports and erasures. Never diary content.
-- Append-only: the triggers refuse any change to a written row.
CREATE TABLE audit (
	id      INTEGER PRIMARY KEY,
	at      INTEGER NOT NULL,
	actor   TEXT NOT NULL,
	action  TEXT NOT NULL,
	subject TEXT NOT NULL DEFAULT '',
	details TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
BEGIN
	SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- A navigator who withdrew from the study: their entries were erased and
-- their later pushes are refused.
ALTER TABLE users ADD COLUMN withdrawn_at INTEGER;
