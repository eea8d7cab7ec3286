-- Version 6: answers to Flowlu webhook requests that change something (call.make,
-- call.redirect), kept for [webhook] replay_window so that the same request delivered
-- twice is answered from here instead of placing a second call (src/http/webhook/replay.rs).
--
-- A request claims its keys first (a 'pending' row, in one IMMEDIATE transaction), acts,
-- then stores its answer ('done'). The primary key makes a concurrent duplicate find the
-- claim instead of acting too; it then waits for the answer. Times are unix milliseconds.
CREATE TABLE webhook_requests (
    integration_id INTEGER NOT NULL REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    -- 'request:<X-Request-Id>' or 'call:<Flowlu call_id>'.
    key            TEXT NOT NULL,
    -- The request type and a hash of what it asked (a reused X-Request-Id with another
    -- request is refused).
    kind           TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    -- The appliance process that claimed it: a pending row of an earlier process was cut
    -- short by a restart and may be taken over.
    owner          TEXT NOT NULL,
    status         INTEGER,
    body           TEXT,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (integration_id, key)
) STRICT;

CREATE INDEX webhook_requests_by_age ON webhook_requests (created_at);
