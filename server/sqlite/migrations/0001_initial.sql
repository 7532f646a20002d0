-- The sequence orders everything a reader may pull. Every write
-- transaction that changes what some reader sees takes the next numbers
-- from here; SQLite's single writer makes them commit in order.
CREATE TABLE sequence (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	value INTEGER NOT NULL
);
INSERT INTO sequence (id, value) VALUES (1, 0);

CREATE TABLE users (
	id           INTEGER PRIMARY KEY,
	study_code   TEXT NOT NULL UNIQUE COLLATE NOCASE,
	role         INTEGER NOT NULL CHECK (role BETWEEN 1 AND 4),
	display_name TEXT NOT NULL DEFAULT '',
	active       INTEGER NOT NULL DEFAULT 1,
	created_at   INTEGER NOT NULL
);

CREATE TABLE assignments (
	supervisor_id INTEGER NOT NULL REFERENCES users (id),
	navigator_id  INTEGER NOT NULL REFERENCES users (id),
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (supervisor_id, navigator_id)
) WITHOUT ROWID;
CREATE INDEX assignments_by_navigator ON assignments (navigator_id, supervisor_id);

-- One-time enrolment codes, stored only as a SHA-256 of the normalised code.
CREATE TABLE enrollment_codes (
	code_hash  BLOB PRIMARY KEY,
	user_id    INTEGER NOT NULL REFERENCES users (id),
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	used_at    INTEGER
);

-- Devices hold a token whose secret part is stored only as a SHA-256.
CREATE TABLE devices (
	id           INTEGER PRIMARY KEY,
	public_id    TEXT NOT NULL UNIQUE,
	user_id      INTEGER NOT NULL REFERENCES users (id),
	replica_id   BLOB NOT NULL UNIQUE,
	name         TEXT NOT NULL,
	secret_hash  BLOB NOT NULL,
	enrolled_at  INTEGER NOT NULL,
	last_sync_at INTEGER,
	revoked_at   INTEGER
);
CREATE INDEX devices_by_user ON devices (user_id);

-- The merged state of each entry, in syncengine's canonical encoding,
-- with the columns that visibility and export need beside it. seq is the
-- sequence number at which the entry last changed for its owner. An
-- erased entry keeps its row (state NULL, erased_at set) so that its id is
-- remembered and old devices cannot bring it back.
CREATE TABLE entries (
	rid         INTEGER PRIMARY KEY,
	id          BLOB NOT NULL UNIQUE,
	owner_id    INTEGER NOT NULL REFERENCES users (id),
	seq         INTEGER NOT NULL,
	state       BLOB,
	date        TEXT NOT NULL DEFAULT '',
	sup_visible INTEGER NOT NULL DEFAULT 0,
	res_visible INTEGER NOT NULL DEFAULT 0,
	deleted     INTEGER NOT NULL DEFAULT 0,
	erased_at   INTEGER
);
CREATE INDEX entries_by_owner_seq ON entries (owner_id, seq);

-- What each non-owning reader may see: one row per (reader, entry) that
-- the reader has ever been able to see. reader is a supervisor's user id,
-- or 0 for the research team, who all see the same. A row whose visible
-- is 0 is a removal notice. seq orders the rows for Pull.
CREATE TABLE feed (
	reader  INTEGER NOT NULL,
	entry   INTEGER NOT NULL,
	seq     INTEGER NOT NULL,
	visible INTEGER NOT NULL,
	reason  INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (reader, entry)
) WITHOUT ROWID;
CREATE INDEX feed_by_reader_seq ON feed (reader, seq);
CREATE INDEX feed_by_entry ON feed (entry);

-- Every accepted change, append-only: the audit trail and the research
-- record of how an entry was edited. A device never makes two changes
-- with one clock, so (device_id, clock) identifies a change and makes
-- retries recognisable.
CREATE TABLE history (
	id          INTEGER PRIMARY KEY,
	entry       INTEGER NOT NULL,
	field       INTEGER NOT NULL,
	tag         TEXT NOT NULL DEFAULT '',
	feedback    BLOB,
	value,               -- no declared type: text and integers are stored as given
	clock       INTEGER NOT NULL,
	device_id   INTEGER NOT NULL,
	user_id     INTEGER NOT NULL,
	received_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX history_by_change ON history (device_id, clock);
CREATE INDEX history_by_entry ON history (entry);

CREATE TABLE waves (
	number     INTEGER PRIMARY KEY CHECK (number > 0),
	label      TEXT NOT NULL,
	start_date TEXT NOT NULL,
	end_date   TEXT NOT NULL
);
