-- The web console, as in the SQLite store's 0007_console.sql: browser
-- sessions as devices of their own kind, console passphrases, sign-in
-- failures, and supervisors' read marks. (0003 is another change's.)

-- What kind of device a row is: 1, an app with a replica of its own and
-- a device token; 2, a browser signed in to the web console.
ALTER TABLE devices ADD COLUMN kind integer NOT NULL DEFAULT 1 CHECK (kind IN (1, 2));

-- The lifetime of each web console session (a device of kind 2): it ends
-- at expires_at, or when unused for the idle timeout after last_seen_at,
-- or when revoked (devices.revoked_at), with end_reason saying why
-- ('' when revoked from a device list).
CREATE TABLE console_sessions (
	device_id    bigint PRIMARY KEY REFERENCES devices (id),
	expires_at   bigint NOT NULL,
	last_seen_at bigint NOT NULL,
	end_reason   text NOT NULL DEFAULT ''
);

-- Web console passphrases, stored only as a memory-hard hash (argon2id,
-- in the PHC string format with its parameters and salt). Resetting a
-- person's console access deletes the row.
CREATE TABLE passphrases (
	user_id bigint PRIMARY KEY REFERENCES users (id),
	hash    text NOT NULL,
	set_at  bigint NOT NULL
);

-- Wrong sign-in attempts per key (an account, a client address), shared
-- by every server process, so that all of them slow the same guesses.
-- Rows are forgotten a day after their last failure.
CREATE TABLE login_failures (
	key     text COLLATE "C" PRIMARY KEY,
	count   bigint NOT NULL,
	last_at bigint NOT NULL
);
CREATE INDEX login_failures_by_time ON login_failures (last_at);

-- Supervisors' read marks: a last-writer-wins register per (supervisor,
-- entry), ordered by the clock of the mark. A mark that changes moves
-- the supervisor's feed row of the entry to a new sequence number, so
-- their other devices pull the new read state.
CREATE TABLE read_marks (
	reader bigint NOT NULL,
	entry  bigint NOT NULL,
	read   boolean NOT NULL,
	clock  bigint NOT NULL,
	PRIMARY KEY (reader, entry)
);
