-- Whether the server announced that it merges text (CAPABILITY_MERGED_TEXT)
-- in its latest answer: only then are body edits queued as text changes.
ALTER TABLE profile ADD COLUMN merged_text INTEGER NOT NULL DEFAULT 0;

-- text: the change is a text edit of a body or feedback body; it cannot be
-- stamped again (its ids carry its clock), so when it cannot be sent as it
-- is the client writes the text it held anew instead.
-- hold: the change waits until the next pull: it holds the text an edit
-- the server could not take had left, and base the text that edit was
-- made on; after the pull it becomes the edit from base to it, made on the
-- server's text (rebuilds counts how often that happened).
ALTER TABLE outbox ADD COLUMN text INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN hold INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN base TEXT;
ALTER TABLE outbox ADD COLUMN rebuilds INTEGER NOT NULL DEFAULT 0;

-- For a refused text edit: the whole text the body held here when it was
-- refused, so that the person who wrote it keeps their words.
ALTER TABLE refused ADD COLUMN text TEXT;
