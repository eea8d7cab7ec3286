-- Version 2: Flowlu accounts connected to this appliance, their users and OAuth tokens,
-- per-account call settings, the user <-> PBX extension mapping, and the appliance-wide
-- PBX connection settings saved from the settings page.
--
-- Times are Unix seconds (UTC). Every per-account row hangs off flowlu_integrations.id
-- and is deleted with it.

-- One row per Flowlu account (and MiniApp) using this appliance. The account id and
-- domain are plain columns: the account's subdomain can change, and the same account id
-- may exist on two Flowlu platforms (flowlu.com, flowlu.ru), hence `platform`.
CREATE TABLE flowlu_integrations (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    platform         TEXT NOT NULL,
    account_id       TEXT NOT NULL,
    app_id           TEXT NOT NULL,
    domain           TEXT NOT NULL,
    https            INTEGER NOT NULL DEFAULT 1,
    app_version      TEXT NOT NULL,
    placement_id     TEXT NOT NULL,
    placement_code   TEXT NOT NULL DEFAULT '',
    language         TEXT NOT NULL DEFAULT 'en',
    ratelimit        INTEGER NOT NULL,
    -- The Flowlu channel uuid from telephony/create; NULL while not connected.
    telephony_uuid   TEXT,
    -- The unguessable last path segment of the webhook_url registered with Flowlu.
    webhook_secret   TEXT NOT NULL,
    -- The Flowlu user whose OAuth token the appliance calls Flowlu with.
    token_user_id    TEXT,
    -- 1 when the token could not be refreshed: events are held until a fresh iframe POST.
    needs_reconnect  INTEGER NOT NULL DEFAULT 0,
    reconnect_reason TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (platform, account_id, app_id)
) STRICT;

-- Flowlu users seen in the iframe (core/user/get) or added by an admin for the mapping.
CREATE TABLE flowlu_users (
    integration_id INTEGER NOT NULL REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL,
    name           TEXT NOT NULL DEFAULT '',
    email          TEXT NOT NULL DEFAULT '',
    -- 1 when the user opened the settings iframe (identified by Flowlu), 0 when added by hand.
    seen           INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (integration_id, user_id)
) STRICT;

-- OAuth tokens, one row per (user, domain, app version) as Flowlu's article asks (and
-- per integration, should two MiniApps share an account); fast_hash =
-- sha256(access_token, domain, app_version) finds a known token without calling Flowlu.
CREATE TABLE flowlu_tokens (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    integration_id   INTEGER NOT NULL REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL,
    domain           TEXT NOT NULL,
    app_version      TEXT NOT NULL,
    access_token     TEXT NOT NULL,
    refresh_token    TEXT NOT NULL,
    expires_at       INTEGER NOT NULL,
    fast_hash        TEXT NOT NULL,
    -- Refresh bookkeeping: consecutive transient failures and when to try again.
    refresh_failures INTEGER NOT NULL DEFAULT 0,
    retry_at         INTEGER,
    updated_at       INTEGER NOT NULL,
    UNIQUE (integration_id, user_id, domain, app_version)
) STRICT;
CREATE INDEX flowlu_tokens_fast_hash ON flowlu_tokens (fast_hash);

-- Per-account call settings edited on the settings page.
CREATE TABLE flowlu_settings (
    integration_id       INTEGER PRIMARY KEY REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    channel_name         TEXT NOT NULL DEFAULT '',
    -- Caller ID / trunk used for outgoing calls when Flowlu names none.
    default_line         TEXT NOT NULL DEFAULT '',
    -- Country calling code (digits, e.g. 7, 1, 44) for numbers written without one.
    default_country_code TEXT NOT NULL DEFAULT '',
    record_calls         INTEGER NOT NULL DEFAULT 0,
    -- 'crm': ask Flowlu (call.init) who gets an incoming call; 'pbx': the PBX decides.
    incoming_routing     TEXT NOT NULL DEFAULT 'pbx' CHECK (incoming_routing IN ('crm', 'pbx')),
    updated_at           INTEGER NOT NULL
) STRICT;

-- Which PBX extension belongs to which Flowlu user, per account.
CREATE TABLE flowlu_extensions (
    integration_id INTEGER NOT NULL,
    user_id        TEXT NOT NULL,
    extension      TEXT NOT NULL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (integration_id, user_id),
    UNIQUE (integration_id, extension),
    FOREIGN KEY (integration_id, user_id)
        REFERENCES flowlu_users (integration_id, user_id) ON DELETE CASCADE
) STRICT;

-- The PBX connection saved from the settings page (one PBX per appliance). Takes
-- precedence over [pbx] in the config file. The account that first saved it owns it;
-- other accounts only see its state.
CREATE TABLE pbx_settings (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    kind                 TEXT NOT NULL CHECK (kind IN ('asterisk', 'freeswitch')),
    host                 TEXT NOT NULL,
    port                 INTEGER NOT NULL,
    username             TEXT NOT NULL,
    secret               TEXT NOT NULL,
    owner_integration_id INTEGER REFERENCES flowlu_integrations (id) ON DELETE SET NULL,
    updated_at           INTEGER NOT NULL
) STRICT;
