-- Clocks of changes the server refused as ahead of its own and that were
-- stamped again. The server keeps those refusals, so this replica must
-- never give another change one of these clocks.
CREATE TABLE retired_clocks (
	clock INTEGER PRIMARY KEY
) WITHOUT ROWID;
