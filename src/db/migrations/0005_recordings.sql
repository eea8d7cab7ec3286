-- Version 5: recording links handed to Flowlu (src/recordings/).
--
-- One row per published URL. The URL's token is never stored, only its SHA-256, so the
-- database (or a backup of it) does not hand out working links. Times are unix
-- milliseconds.
CREATE TABLE recording_links (
    -- SHA-256 of the token in the URL (32 bytes).
    token_hash   BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
    -- The call the recording belongs to (calls.id; not a foreign key: links outlive
    -- purged calls until they expire).
    call_id      TEXT NOT NULL,
    -- The file, canonical (symlinks resolved) when it was published.
    path         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    -- Size when published (the file is served as it is on disk at request time).
    size         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX recording_links_by_expiry ON recording_links (expires_at);
CREATE INDEX recording_links_by_call ON recording_links (call_id);
