-- Version 8: result callbacks (src/callbacks/): the admin's own HTTPS endpoints that get
-- each finished call's record, signed, with durable delivery. Times are unix milliseconds.

-- The caller's own id for a click-to-call (`call.make` `uuid`), echoed in callbacks.
ALTER TABLE calls ADD COLUMN client_uuid TEXT;

-- Per account: callbacks are off until the admin switches them on.
CREATE TABLE callback_settings (
    integration_id INTEGER PRIMARY KEY REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    enabled        INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE callbacks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id INTEGER NOT NULL REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    url            TEXT NOT NULL,
    -- An optional extra header sent with every delivery (e.g. Authorization); the value
    -- is a secret: shown masked, never logged.
    auth_header    TEXT,
    auth_value     TEXT,
    -- The HMAC-SHA256 key of X-Appliance-Signature (a secret; rotatable).
    secret         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX callbacks_by_integration ON callbacks (integration_id);

-- One row per (callback, event). 'pending' until a 2xx ('delivered') or the retry
-- schedule ran out ('failed'). The same delivery_id is sent with every attempt.
CREATE TABLE callback_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    callback_id     INTEGER NOT NULL REFERENCES callbacks (id) ON DELETE CASCADE,
    delivery_id     TEXT NOT NULL UNIQUE,
    -- 'call.completed', 'call.recording' or 'test'.
    kind            TEXT NOT NULL,
    call_id         TEXT,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- Set while an attempt is in flight; cleared at start-up.
    leased_until    INTEGER,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    last_status     INTEGER,
    last_error      TEXT
) STRICT;

CREATE INDEX callback_deliveries_due ON callback_deliveries (state, next_attempt_at);
CREATE INDEX callback_deliveries_by_callback ON callback_deliveries (callback_id, id);

-- Every attempt, for the delivery log on the settings page.
CREATE TABLE callback_attempts (
    id           INTEGER PRIMARY KEY,
    delivery_row INTEGER NOT NULL REFERENCES callback_deliveries (id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    -- HTTP status; NULL when no answer came (timeout, connection error).
    status       INTEGER,
    error        TEXT
) STRICT;

CREATE INDEX callback_attempts_by_delivery ON callback_attempts (delivery_row);
