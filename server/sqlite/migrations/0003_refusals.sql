-- Refusals that depend on when or in what state a change arrived (a clock
-- ahead of the server's, an entry not shared with the writer, a limit
-- reached), kept so that the same change sent again gets the same
-- answer. Without them a delayed copy of a refused push could be accepted
-- later, after the device had already stamped the change again.
CREATE TABLE refusals (
	device_id INTEGER NOT NULL,
	clock     INTEGER NOT NULL,
	reason    INTEGER NOT NULL,
	message   TEXT NOT NULL,
	PRIMARY KEY (device_id, clock)
) WITHOUT ROWID;
