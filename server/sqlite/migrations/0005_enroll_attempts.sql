-- Enrolment attempts left per client address (see study.AttemptLimit),
-- kept in the store so that the limit survives a restart. A row whose
-- bucket has refilled is deleted: no row means every attempt left.
CREATE TABLE enroll_attempts (
	addr          TEXT PRIMARY KEY,
	attempts_left REAL NOT NULL,
	updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX enroll_attempts_by_time ON enroll_attempts (updated_at);
