-- Version 10: which Flowlu accounts this appliance serves (issue 12).
--
-- The operator admits accounts by their host name (`appliance accounts admit
-- company.flowlu.com`, `appliance --init --admit`, or a one-time claim code typed into the
-- settings page); the iframe POST of any other account is refused before anything is
-- stored for it. Times are Unix seconds (UTC).

CREATE TABLE flowlu_admissions (
    -- The account's host name, e.g. company.flowlu.com (lower case, checked against
    -- [flowlu] allowed_domains when admitted).
    domain      TEXT PRIMARY KEY,
    -- 1 for the account that owns the PBX connection (at most one row). Without such a
    -- row a configured PBX belongs to the earliest admitted account.
    pbx_owner   INTEGER NOT NULL DEFAULT 0 CHECK (pbx_owner IN (0, 1)),
    -- How it was admitted: upgrade, init, cli, claim, settings, renamed.
    source      TEXT NOT NULL,
    admitted_at INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX flowlu_admissions_one_pbx_owner ON flowlu_admissions (pbx_owner)
    WHERE pbx_owner = 1;

-- The pending one-time claim code printed by `appliance --init` (at most one): only its
-- SHA-256 is kept; it admits one account, once, before it expires.
CREATE TABLE flowlu_claim_code (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    code_hash  TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;

-- Upgrade: accounts already connected (a registered channel or a stored token) stay
-- admitted, in the order they were first seen.
INSERT INTO flowlu_admissions (domain, source, admitted_at)
    SELECT i.domain, 'upgrade', min(i.created_at)
    FROM flowlu_integrations i
    WHERE i.telephony_uuid IS NOT NULL
       OR EXISTS (SELECT 1 FROM flowlu_tokens t WHERE t.integration_id = i.id)
    GROUP BY i.domain
    ORDER BY min(i.created_at), i.domain;

-- The account that saved the PBX connection on the settings page keeps owning it.
UPDATE flowlu_admissions SET pbx_owner = 1
    WHERE domain = (SELECT i.domain FROM pbx_settings p
                    JOIN flowlu_integrations i ON i.id = p.owner_integration_id
                    WHERE p.id = 1);
