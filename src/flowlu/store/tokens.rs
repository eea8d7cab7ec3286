//! Rows of `flowlu_tokens`: OAuth tokens per (user, domain, app version).

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::now;
use crate::db::DbError;
use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: i64,
    pub integration_id: i64,
    pub user_id: String,
    pub domain: String,
    pub app_version: String,
    pub access_token: Secret,
    pub refresh_token: Secret,
    /// Unix seconds (UTC, as we read Flowlu's zone-less time).
    pub expires_at: i64,
    pub refresh_failures: i64,
    pub retry_at: Option<i64>,
}

impl TokenRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<TokenRow> {
        Ok(TokenRow {
            id: r.get("id")?,
            integration_id: r.get("integration_id")?,
            user_id: r.get("user_id")?,
            domain: r.get("domain")?,
            app_version: r.get("app_version")?,
            access_token: Secret::new(r.get::<_, String>("access_token")?),
            refresh_token: Secret::new(r.get::<_, String>("refresh_token")?),
            expires_at: r.get("expires_at")?,
            refresh_failures: r.get("refresh_failures")?,
            retry_at: r.get("retry_at")?,
        })
    }
}

/// The token whose fast-path hash is `hash`.
pub fn find_by_fast_hash(conn: &Connection, hash: &str) -> Result<Option<TokenRow>, DbError> {
    Ok(conn
        .query_row(
            "SELECT * FROM flowlu_tokens WHERE fast_hash = ?1",
            [hash],
            TokenRow::from_row,
        )
        .optional()?)
}

/// Saves tokens Flowlu just handed us for (user, domain, version), replacing that key's
/// previous row, and resetting refresh bookkeeping.
#[allow(clippy::too_many_arguments)]
pub fn upsert_token(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
    domain: &str,
    app_version: &str,
    access_token: &Secret,
    refresh_token: &Secret,
    expires_at: i64,
    fast_hash: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO flowlu_tokens (integration_id, user_id, domain, app_version,
             access_token, refresh_token, expires_at, fast_hash, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (integration_id, user_id, domain, app_version) DO UPDATE SET
             access_token = excluded.access_token, refresh_token = excluded.refresh_token,
             expires_at = excluded.expires_at, fast_hash = excluded.fast_hash,
             refresh_failures = 0, retry_at = NULL, updated_at = excluded.updated_at",
        params![
            integration_id,
            user_id,
            domain,
            app_version,
            access_token.expose(),
            refresh_token.expose(),
            expires_at,
            fast_hash,
            now(),
        ],
    )?;
    Ok(())
}

/// Removes this user's tokens for other app versions and old domains of the same
/// integration: the POST just received names the version installed now. Returns how
/// many rows went.
pub fn delete_other_versions(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
    domain: &str,
    app_version: &str,
) -> Result<usize, DbError> {
    Ok(conn.execute(
        "DELETE FROM flowlu_tokens WHERE integration_id = ?1 AND user_id = ?2
             AND NOT (domain = ?3 AND app_version = ?4)",
        params![integration_id, user_id, domain, app_version],
    )?)
}

/// The current token of `user_id` in this integration (its domain and app version).
pub fn token_for_user(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
) -> Result<Option<TokenRow>, DbError> {
    Ok(conn
        .query_row(
            "SELECT t.* FROM flowlu_tokens t JOIN flowlu_integrations i
                 ON i.id = t.integration_id AND i.domain = t.domain
                 AND i.app_version = t.app_version
             WHERE t.integration_id = ?1 AND t.user_id = ?2",
            params![integration_id, user_id],
            TokenRow::from_row,
        )
        .optional()?)
}

/// Tokens the appliance uses (each integration's token user) that expire within
/// `margin` seconds of `now` and are not waiting for a retry, skipping integrations
/// already marked "needs reconnect" by a refused refresh (`retry_at` NULL there).
pub fn due_for_refresh(conn: &Connection, now: i64, margin: i64) -> Result<Vec<TokenRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT t.* FROM flowlu_tokens t JOIN flowlu_integrations i
             ON i.id = t.integration_id AND i.token_user_id = t.user_id
             AND i.domain = t.domain AND i.app_version = t.app_version
         WHERE (i.needs_reconnect = 0 OR t.retry_at IS NOT NULL)
           AND t.expires_at - ?2 <= ?1
           AND (t.retry_at IS NULL OR t.retry_at <= ?1)
         ORDER BY t.expires_at",
    )?;
    let rows = stmt
        .query_map(params![now, margin], TokenRow::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The soonest moment a token becomes due, for the refresh worker's sleep.
pub fn next_due(conn: &Connection, margin: i64) -> Result<Option<i64>, DbError> {
    Ok(conn.query_row(
        "SELECT min(coalesce(t.retry_at, t.expires_at - ?1)) FROM flowlu_tokens t
         JOIN flowlu_integrations i
             ON i.id = t.integration_id AND i.token_user_id = t.user_id
             AND i.domain = t.domain AND i.app_version = t.app_version
         WHERE i.needs_reconnect = 0 OR t.retry_at IS NOT NULL",
        [margin],
        |r| r.get(0),
    )?)
}

/// Stores a successful refresh of row `id`, unless the row changed meanwhile (a fresh
/// iframe POST won the race: its tokens stay). Returns whether it was stored.
pub fn save_refreshed(
    conn: &Connection,
    row: &TokenRow,
    access_token: &Secret,
    refresh_token: &Secret,
    expires_at: i64,
    fast_hash: &str,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE flowlu_tokens SET access_token = ?3, refresh_token = ?4, expires_at = ?5,
             fast_hash = ?6, refresh_failures = 0, retry_at = NULL, updated_at = ?7
         WHERE id = ?1 AND access_token = ?2",
        params![
            row.id,
            row.access_token.expose(),
            access_token.expose(),
            refresh_token.expose(),
            expires_at,
            fast_hash,
            now(),
        ],
    )?;
    Ok(n == 1)
}

/// Records a failed refresh: `retry_at` `None` means "do not retry" (Flowlu refused).
pub fn record_refresh_failure(
    conn: &Connection,
    id: i64,
    retry_at: Option<i64>,
) -> Result<(), DbError> {
    conn.execute(
        "UPDATE flowlu_tokens SET refresh_failures = refresh_failures + 1, retry_at = ?2,
             updated_at = ?3 WHERE id = ?1",
        params![id, retry_at, now()],
    )?;
    Ok(())
}
