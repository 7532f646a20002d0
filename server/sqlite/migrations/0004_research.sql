-- A navigator's own dates for a study-wide wave: for that navigator they
-- replace the wave's dates (its label stays the study-wide one).
CREATE TABLE wave_dates (
	number       INTEGER NOT NULL REFERENCES waves (number),
	navigator_id INTEGER NOT NULL REFERENCES users (id),
	start_date   TEXT NOT NULL,
	end_date     TEXT NOT NULL,
	PRIMARY KEY (number, navigator_id)
) WITHOUT ROWID;

-- The de-identification setting: one row. patterns is JSON, NULL for the
-- default patterns. version grows with every change to the setting or to
-- the term list, so that a cached redactor can tell it is stale.
CREATE TABLE redaction (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	enabled  INTEGER NOT NULL,
	patterns TEXT,
	version  INTEGER NOT NULL
);
INSERT INTO redaction (id, enabled, patterns, version) VALUES (1, 1, NULL, 1);

-- The study's list of terms to redact; key is study.RedactTermKey(term).
CREATE TABLE redaction_terms (
	key      TEXT PRIMARY KEY,
	term     TEXT NOT NULL,
	marker   TEXT NOT NULL,
	added_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The write (one save on a device) a change belongs to: the clock of the
-- first change of that write, 0 when the device did not say.
ALTER TABLE history ADD COLUMN write_clock INTEGER NOT NULL DEFAULT 0;

-- Every research export made, with its manifest's summary (JSON, counts
-- and settings only, never content). complete is 0 while the export is
-- being made; an export that failed is deleted.
CREATE TABLE exports (
	id         INTEGER PRIMARY KEY,
	created_at INTEGER NOT NULL,
	actor      TEXT NOT NULL,
	position   INTEGER NOT NULL,
	complete   INTEGER NOT NULL DEFAULT 0,
	summary    TEXT NOT NULL DEFAULT '{}'
);

-- The entries each export held, with a SHA-256 of the text it exported,
-- so that a later export can say what was added, changed, withdrawn or
-- erased since. Erasing an entry clears its hashes.
CREATE TABLE export_entries (
	export_id   INTEGER NOT NULL REFERENCES exports (id),
	entry_id    BLOB NOT NULL,
	text_sha256 BLOB,
	PRIMARY KEY (export_id, entry_id)
) WITHOUT ROWID;

-- When the sequence last moved (Unix milliseconds): the time of the
-- snapshot an export reads, so that two exports of the same snapshot
-- with the same settings are the same bytes.
ALTER TABLE sequence ADD COLUMN changed_at INTEGER NOT NULL DEFAULT 0;
