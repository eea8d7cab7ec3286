-- Version 7: the click-to-call URL (`GET /c2c`, src/http/c2c/), one row per integration
-- once its admin first enabled it on the settings page. Off by default: no row, or
-- enabled = 0, and every /c2c request is refused.
--
-- The key lives in browser URLs and CRM links, so it is low-sensitivity by design (it
-- can place calls, not read anything). It is 32 random URL-safe characters, generated on
-- first enable, replaced by "rotate" (the old one stops working at once); kept when the
-- feature is switched off and on again. Unique: a request finds its integration by it.
CREATE TABLE c2c_settings (
    integration_id INTEGER PRIMARY KEY REFERENCES flowlu_integrations (id) ON DELETE CASCADE,
    enabled        INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    key            TEXT NOT NULL UNIQUE,
    -- Unix milliseconds.
    key_created_at INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
