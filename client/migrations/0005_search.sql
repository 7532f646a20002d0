-- Full-text search over the entries this replica holds: their titles,
-- bodies and tags. The client writes an entry's row in the transaction
-- that writes the entry; deleting the entry deletes its row (trigger),
-- whatever deletes it (erasure, un-sharing, a reset). FTS5 keeps a
-- deleted row's terms in its index until segments merge, so the trigger
-- also notes in search_forget that rows left: the transaction then merges
-- the index into one segment ('optimize'), which drops them, and with the
-- file's own secure_delete no word of an erased entry stays in the file.
-- (FTS5's own 'secure-delete' option would do this row by row, but with
-- it the index failed its integrity check after some sequences of
-- writes.)
--
-- search_rows gives each entry a stable integer for the index's rowid:
-- the entries table's own rowid is implicit, and VACUUM may renumber it.
CREATE TABLE search_rows (
	row   INTEGER PRIMARY KEY,
	entry BLOB NOT NULL UNIQUE
);

CREATE VIRTUAL TABLE entry_search USING fts5 (
	title, body, tags,
	tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE search_forget (
	id INTEGER PRIMARY KEY CHECK (id = 1)
);

CREATE TRIGGER entries_search_delete AFTER DELETE ON entries BEGIN
	DELETE FROM entry_search WHERE rowid = (SELECT row FROM search_rows WHERE entry = old.id);
	DELETE FROM search_rows WHERE entry = old.id;
	INSERT OR IGNORE INTO search_forget (id) VALUES (1);
END;

-- Set when the replica held entries before the index existed: opening it
-- indexes them (entries keep their text inside an encoded state, which
-- SQL cannot read).
CREATE TABLE search_backfill (
	id INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO search_backfill (id) SELECT 1 WHERE EXISTS (SELECT 1 FROM entries);
