-- How many of this device's changes the server holds, as this replica
-- knows it (PullRequest.own_changes), or NULL when it does not: a pull
-- leaves out the entries this replica holds as the server does only
-- while the server's count is the same. A cursor set back means the
-- replica is pulled again from there; what it knew no longer holds.
ALTER TABLE profile ADD COLUMN own_changes INTEGER;

CREATE TRIGGER profile_cursor_back AFTER UPDATE OF cursor ON profile
WHEN NEW.cursor < OLD.cursor
BEGIN
	UPDATE profile SET own_changes = NULL WHERE id = NEW.id;
END;
