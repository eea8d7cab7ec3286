-- Version 9: Flowlu entity webhooks, the local cache of CRM contacts, and the
-- call-handling rules (src/flowlu/crm/, src/http/entity_hooks.rs).
--
-- Times are unix milliseconds. Flowlu user and entity ids are kept as text.

-- Per-account switches and values; absent = everything off.
CREATE TABLE crm_rules (
    integration_id   INTEGER PRIMARY KEY
                     REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    -- POST /hooks/flowlu-entities/<integration>/<hook_secret> answers only when 1.
    entity_hooks     INTEGER NOT NULL DEFAULT 0,
    -- 32 random bytes, URL-safe base64; NULL until first switched on.
    hook_secret      TEXT,
    -- Route to the contact's responsible manager when Flowlu gives no decision in time.
    fallback_routing INTEGER NOT NULL DEFAULT 0,
    -- A follow-up task in Flowlu for a missed incoming call.
    missed_task      INTEGER NOT NULL DEFAULT 0,
    task_due_minutes INTEGER NOT NULL DEFAULT 60,
    -- Flowlu user id for tasks and new contacts when the cache names no manager.
    default_user_id  TEXT    NOT NULL DEFAULT '',
    -- A contact (and optionally a lead) for an incoming call from an unknown number.
    create_contact   INTEGER NOT NULL DEFAULT 0,
    create_lead      INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
) STRICT;

-- One row per CRM account (contact or organization) we have heard of. A deleted one is
-- kept as a tombstone (deleted = 1, no phones) so that a late update cannot bring it
-- back. `version` is the entity's own last-change time from the payload (NULL when it
-- carried none): an event older than or equal to it is ignored.
CREATE TABLE crm_contacts (
    integration_id INTEGER NOT NULL REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    contact_id     TEXT    NOT NULL,
    name           TEXT    NOT NULL DEFAULT '',
    manager_id     TEXT,
    version        INTEGER,
    deleted        INTEGER NOT NULL DEFAULT 0,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (integration_id, contact_id)
) STRICT;

-- A contact's numbers, as calls::phone::normalize gives them (E.164 digits).
CREATE TABLE crm_contact_phones (
    integration_id INTEGER NOT NULL,
    contact_id     TEXT    NOT NULL,
    phone          TEXT    NOT NULL,
    PRIMARY KEY (integration_id, contact_id, phone),
    FOREIGN KEY (integration_id, contact_id)
        REFERENCES crm_contacts (integration_id, contact_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX crm_contact_phones_by_phone ON crm_contact_phones (integration_id, phone);

-- What a crm.* outbox row created in Flowlu, so a retry after a lost answer or a crash
-- does not create it twice.
CREATE TABLE crm_created (
    event_id   TEXT PRIMARY KEY,
    entity     TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
