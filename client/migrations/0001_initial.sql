-- The device's credentials and sync position: one row, once enrolled.
CREATE TABLE profile (
	id            INTEGER PRIMARY KEY CHECK (id = 1),
	server_url    TEXT NOT NULL,
	token         TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	replica_id    BLOB NOT NULL,
	role          INTEGER NOT NULL,
	study_code    TEXT NOT NULL,
	display_name  TEXT NOT NULL DEFAULT '',
	enrolled_at   INTEGER NOT NULL,
	cursor        INTEGER NOT NULL DEFAULT 0,
	clock_offset  INTEGER NOT NULL DEFAULT 0, -- ms added to the wall clock
	last_sync_at  INTEGER,
	last_error    TEXT NOT NULL DEFAULT '',
	last_error_at INTEGER
);

-- The hybrid logical clock's last value, and the greatest clock the
-- server is known to hold (from pulled entries and acknowledged changes):
-- the floor a clock correction may rewind to.
CREATE TABLE clock (
	id    INTEGER PRIMARY KEY CHECK (id = 1),
	last  INTEGER NOT NULL,
	known INTEGER NOT NULL
);
INSERT INTO clock (id, last, known) VALUES (1, 0, 0);

-- Entries as the app sees them. base is the last state pulled from the
-- server (NULL for an entry the server has not sent yet); state is base
-- merged with the changes still in the outbox. The other columns are
-- copies of state for listing and filtering.
CREATE TABLE entries (
	id               BLOB PRIMARY KEY,
	base             BLOB,
	state            BLOB NOT NULL,
	author           TEXT NOT NULL DEFAULT '',
	date             TEXT NOT NULL DEFAULT '',
	deleted          INTEGER NOT NULL DEFAULT 0,
	share_supervisor INTEGER NOT NULL DEFAULT 0,
	share_research   INTEGER NOT NULL DEFAULT 0,
	created          INTEGER NOT NULL DEFAULT 0,
	updated          INTEGER NOT NULL DEFAULT 0,
	pending          INTEGER NOT NULL DEFAULT 0,
	received_at      INTEGER NOT NULL DEFAULT 0, -- when this replica first got it
	read_at          INTEGER                     -- when the user marked it read (inbox)
);
CREATE INDEX entries_by_date ON entries (date, id);

CREATE TABLE entry_tags (
	tag   TEXT NOT NULL,
	entry BLOB NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
	PRIMARY KEY (tag, entry)
) WITHOUT ROWID;
CREATE INDEX entry_tags_by_entry ON entry_tags (entry);

-- Changes made here and not yet accepted by the server, in the order they
-- were made. uncertain is set when a change was sent and no answer came
-- back: the server may hold it.
CREATE TABLE outbox (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	entry     BLOB NOT NULL,
	clock     INTEGER NOT NULL,
	change    BLOB NOT NULL, -- a diary.v1.Change message
	uncertain INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_by_entry ON outbox (entry);

-- Changes the server refused, kept so the person who wrote them can see
-- them (and their words) with the reason.
CREATE TABLE refused (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	entry      BLOB NOT NULL,
	change     BLOB NOT NULL,
	reason     INTEGER NOT NULL,
	message    TEXT NOT NULL,
	refused_at INTEGER NOT NULL
);

-- Entries the server said were erased: never rebuilt from local changes.
CREATE TABLE erased (
	id BLOB PRIMARY KEY
) WITHOUT ROWID;
