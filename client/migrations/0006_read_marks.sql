-- A supervisor's read marks are kept on the server, so that an entry read
-- on one device (or in the web console) is read on all of them. Each
-- entry keeps the clock of the mark it shows; marks made here wait in
-- read_outbox until the server has them.
ALTER TABLE entries ADD COLUMN read_clock INTEGER NOT NULL DEFAULT 0;

CREATE TABLE read_outbox (
	entry BLOB PRIMARY KEY,
	read  INTEGER NOT NULL,
	clock INTEGER NOT NULL
) WITHOUT ROWID;
