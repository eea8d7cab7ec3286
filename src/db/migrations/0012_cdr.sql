-- Version 15: back-fill from the PBX's own call records (src/cdr/, issue 14).

-- A call reported from the PBX's call records (back-fill or history import) rather than
-- seen live.
ALTER TABLE calls ADD COLUMN backfilled INTEGER NOT NULL DEFAULT 0;

-- When the appliance last saw the PBX alive (an event, or the connection's end): where
-- the next back-fill starts reading. One row.
CREATE TABLE cdr_seen (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    last_seen_ms INTEGER NOT NULL
) STRICT;

-- Each back-fill and history import: the period read and what came of it.
CREATE TABLE cdr_runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('backfill', 'import')),
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    from_ms     INTEGER NOT NULL,
    to_ms       INTEGER NOT NULL,
    -- Calls in the records of the period, reported as new, and corrected.
    found       INTEGER NOT NULL DEFAULT 0,
    reported    INTEGER NOT NULL DEFAULT 0,
    corrected   INTEGER NOT NULL DEFAULT 0,
    error       TEXT
) STRICT;
