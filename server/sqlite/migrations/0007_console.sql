-- What kind of device a row is: 1, an app with a replica of its own and
-- a device token; 2, a browser signed in to the web console.
ALTER TABLE devices ADD COLUMN kind INTEGER NOT NULL DEFAULT 1 CHECK (kind IN (1, 2));

-- The lifetime of each web console session (a device of kind 2): it ends
-- at expires_at, or when unused for the idle timeout after last_seen_at,
-- or when revoked (devices.revoked_at), with end_reason saying why
-- ('' when revoked from a device list).
CREATE TABLE console_sessions (
	device_id    INTEGER PRIMARY KEY REFERENCES devices (id),
	expires_at   INTEGER NOT NULL,
	last_seen_at INTEGER NOT NULL,
	end_reason   TEXT NOT NULL DEFAULT ''
);

-- Web console passphrases, stored only as a memory-hard hash (argon2id,
-- in the PHC string format with its parameters and salt). Resetting a
-- person's console access deletes the row.
CREATE TABLE passphrases (
	user_id INTEGER PRIMARY KEY REFERENCES users (id),
	hash    TEXT NOT NULL,
	set_at  INTEGER NOT NULL
);

-- Wrong sign-in attempts per key (an account, a client address), kept in
-- the store so that every server process in front of it slows the same
-- guesses. Rows are forgotten a day after their last failure.
CREATE TABLE login_failures (
	key     TEXT PRIMARY KEY,
	count   INTEGER NOT NULL,
	last_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX login_failures_by_time ON login_failures (last_at);

-- Supervisors' read marks: a last-writer-wins register per (supervisor,
-- entry), ordered by the clock of the mark. A mark that changes moves
-- the supervisor's feed row of the entry to a new sequence number, so
-- their other devices pull the new read state.
CREATE TABLE read_marks (
	reader INTEGER NOT NULL,
	entry  INTEGER NOT NULL,
	read   INTEGER NOT NULL,
	clock  INTEGER NOT NULL,
	PRIMARY KEY (reader, entry)
) WITHOUT ROWID;
