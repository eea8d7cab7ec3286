-- Version 3: durable delivery of call events to Flowlu (src/outbox/).
--
-- One row per event. A row is 'pending' until Flowlu answers 2xx ('delivered') or it
-- gives up ('failed': a 4xx other than 401/429, or the retry schedule ran out). Rows of
-- one (integration, call) are delivered strictly in id order. Times are unix milliseconds.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id  INTEGER NOT NULL REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    call_key        TEXT    NOT NULL,
    event_id        TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- Set while a delivery is in flight; cleared at start-up (nothing is in flight then).
    leased_until    INTEGER,
    -- 1 while the account cannot take deliveries (needs reconnect, not connected): the
    -- row waits without using up its retry schedule and is released with the account.
    held            INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    last_status     INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX outbox_pending ON outbox (state, next_attempt_at);
CREATE INDEX outbox_per_call ON outbox (integration_id, call_key, state, id);

-- Every delivery attempt, for the admin and for `appliance outbox show`.
CREATE TABLE outbox_attempts (
    id            INTEGER PRIMARY KEY,
    outbox_id     INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    -- HTTP status, NULL when no answer came (timeout, connection error).
    status        INTEGER,
    error         TEXT,
    -- The start of the answer's body, cut to 4 KiB.
    response_body TEXT
) STRICT;

CREATE INDEX outbox_attempts_by_event ON outbox_attempts (outbox_id);
