-- Version 4: calls as the appliance reports them to Flowlu (src/calls/).
--
-- One row per call (not per PBX channel). The row and the outbox events describing a
-- change to it are written in one transaction. Times are unix milliseconds.
CREATE TABLE calls (
    -- Our id: stable, sent as call.id in every event.
    id             TEXT PRIMARY KEY,
    -- The account the call is reported to; NULL while it cannot be attributed.
    integration_id INTEGER REFERENCES flowlu_integrations (id) ON DELETE SET NULL,
    -- Flowlu's own id when Flowlu started the call (call.make).
    crm_call_id    TEXT,
    -- The PBX's id for the call (Asterisk Linkedid, FreeSWITCH call UUID).
    pbx_call       TEXT NOT NULL,
    direction      TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing', 'internal')),
    -- The customer's number (the other employee's extension for internal calls).
    phone          TEXT NOT NULL DEFAULT '',
    -- The DID called (incoming) or the caller ID / trunk used (outgoing).
    line           TEXT NOT NULL DEFAULT '',
    -- The employee on the call: the one who talked, else the last one who rang.
    extension      TEXT,
    user_id        TEXT,
    state          TEXT NOT NULL CHECK (state IN ('ringing', 'connected', 'ended')),
    status         TEXT CHECK (status IN ('answered', 'missed', 'busy', 'no_answer', 'failed',
                                          'canceled')),
    started_at     INTEGER NOT NULL,
    answered_at    INTEGER,
    ended_at       INTEGER,
    -- Talk time and ring/wait time, whole seconds.
    duration       INTEGER,
    wait           INTEGER,
    hangup_cause   TEXT,
    -- The recording as the PBX wrote it, and the token of its URL once reported.
    recording_path TEXT,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX calls_by_time ON calls (integration_id, started_at);
CREATE UNIQUE INDEX calls_by_crm_id ON calls (integration_id, crm_call_id)
    WHERE crm_call_id IS NOT NULL;
CREATE INDEX calls_open ON calls (state) WHERE state != 'ended';
CREATE INDEX calls_by_pbx_call ON calls (pbx_call);
