-- Baseline schema: database version 1.
--
-- This file is applied to a new, empty database. Every later change is a numbered
-- migration in src/db/migrations/ (NNNN_name.sql) that moves PRAGMA user_version up by
-- one; a database whose version is newer than the binary knows is refused untouched.

-- Small facts about this installation: when it was created, keys it generated.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
