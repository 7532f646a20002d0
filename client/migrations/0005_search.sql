-- Full-text search over the entries this replica holds: their titles,
-- bodies and tags. The client writes an entry's row in the transaction
-- that writes the entry; deleting the entry deletes its row (trigger),
-- whatever deletes it (erasure, un-sharing, a reset). secure-delete makes
-- FTS5 take a deleted row's terms out of its index at once instead of
-- leaving them until segments merge, so that with the file's own
-- secure_delete no word of an erased entry stays in the file.
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
INSERT INTO entry_search (entry_search, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER entries_search_delete AFTER DELETE ON entries BEGIN
	DELETE FROM entry_search WHERE rowid = (SELECT row FROM search_rows WHERE entry = old.id);
	DELETE FROM search_rows WHERE entry = old.id;
END;

-- Set when the replica held entries before the index existed: opening it
-- indexes them (entries keep their text inside an encoded state, which
-- SQL cannot read).
CREATE TABLE search_backfill (
	id INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO search_backfill (id) SELECT 1 WHERE EXISTS (SELECT 1 FROM entries);
