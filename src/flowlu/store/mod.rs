//! The Flowlu tables (migration 0002): integrations, users, tokens, per-account settings
//! and the user <-> extension mapping. Plain synchronous queries on a `Connection`; async
//! callers wrap them in `Db::run`.
//!
//! Isolation rule: every function that reads or writes per-account data takes the
//! integration id and filters by it; there is no query that reaches across accounts
//! except the appliance-wide counters for `/healthz` and the extension numbers other
//! accounts use ([`extensions_of_other_accounts`], so `employees.list` can leave them out).

mod tokens;
mod users;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::context::IframeContext;
use super::domain::CrmTarget;
use crate::db::DbError;
use crate::secret::{self, Secret};

pub use tokens::{
    TokenRow, delete_other_versions, due_for_refresh, find_by_fast_hash, next_due,
    record_refresh_failure, save_refreshed, token_for_user, upsert_token,
};
pub use users::{
    CallSettings, IncomingRouting, UserRow, add_user, default_countries, extension_for_user,
    extensions_of_other_accounts, mappings, save_settings, set_extension, settings,
    upsert_seen_user, user_for_extension, users,
};

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One Flowlu account (and MiniApp) served by this appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integration {
    pub id: i64,
    /// The allow-listed suffix the account lives under, e.g. `flowlu.com`.
    pub platform: String,
    pub account_id: String,
    pub app_id: String,
    /// The account's current host, e.g. `acme.flowlu.com`.
    pub domain: String,
    pub https: bool,
    pub app_version: String,
    /// The integration point id (`manifest_id`).
    pub placement_id: String,
    pub placement_code: String,
    pub language: String,
    /// Requests per second Flowlu allows this account (`ratelimit.limit`).
    pub ratelimit: u32,
    /// The registered channel's uuid; `None` while not connected.
    pub telephony_uuid: Option<String>,
    /// Last path segment of the webhook URL registered with Flowlu.
    pub webhook_secret: Secret,
    /// The Flowlu user whose token the appliance uses for API calls.
    pub token_user_id: Option<String>,
    pub needs_reconnect: bool,
    pub reconnect_reason: Option<String>,
}

impl Integration {
    /// Where this account's API calls go, re-checked against the current allow-list.
    pub fn target(
        &self,
        config: &crate::config::FlowluConfig,
    ) -> Result<CrmTarget, super::FlowluError> {
        super::domain::target(config, &self.domain, self.https)
    }

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Integration> {
        Ok(Integration {
            id: r.get("id")?,
            platform: r.get("platform")?,
            account_id: r.get("account_id")?,
            app_id: r.get("app_id")?,
            domain: r.get("domain")?,
            https: r.get("https")?,
            app_version: r.get("app_version")?,
            placement_id: r.get("placement_id")?,
            placement_code: r.get("placement_code")?,
            language: r.get("language")?,
            ratelimit: r.get("ratelimit")?,
            telephony_uuid: r.get("telephony_uuid")?,
            webhook_secret: Secret::new(r.get::<_, String>("webhook_secret")?),
            token_user_id: r.get("token_user_id")?,
            needs_reconnect: r.get("needs_reconnect")?,
            reconnect_reason: r.get("reconnect_reason")?,
        })
    }
}

const SELECT: &str = "SELECT * FROM flowlu_integrations";

/// The integration with this id.
pub fn integration(conn: &Connection, id: i64) -> Result<Option<Integration>, DbError> {
    Ok(conn
        .query_row(
            &format!("{SELECT} WHERE id = ?1"),
            [id],
            Integration::from_row,
        )
        .optional()?)
}

/// The integration whose webhook URL is `/hooks/flowlu/{id}/{secret}`; the secret is
/// compared in constant time. For the webhook handler.
pub fn integration_by_webhook(
    conn: &Connection,
    id: i64,
    secret: &str,
) -> Result<Option<Integration>, DbError> {
    let found = integration(conn, id)?;
    // An unknown id costs the same comparison as a wrong secret.
    let expected = found
        .as_ref()
        .map_or(UNKNOWN_SECRET, |i| i.webhook_secret.expose());
    let matches = secret::constant_time_eq(expected.as_bytes(), secret.as_bytes());
    Ok(found.filter(|_| matches))
}

/// Compared against when the integration id is unknown; never a valid secret (secrets
/// are URL-safe base64, which has no `!`).
const UNKNOWN_SECRET: &str = "!unknown-integration-never-matches!!!!!!!!!";

/// The integration for an account on a platform, if this appliance has one.
pub fn find_integration(
    conn: &Connection,
    platform: &str,
    account_id: &str,
    app_id: &str,
) -> Result<Option<Integration>, DbError> {
    Ok(conn
        .query_row(
            &format!("{SELECT} WHERE platform = ?1 AND account_id = ?2 AND app_id = ?3"),
            params![platform, account_id, app_id],
            Integration::from_row,
        )
        .optional()?)
}

/// Creates the integration for a verified iframe POST, or refreshes what the POST
/// tells us about an existing one (domain, version, placement, language, rate limit).
/// The caller has already decided that `ctx` belongs to this account.
pub fn upsert_integration(
    conn: &Connection,
    ctx: &IframeContext,
    target: &CrmTarget,
) -> Result<Integration, DbError> {
    let now = now();
    conn.execute(
        "INSERT INTO flowlu_integrations (platform, account_id, app_id, domain, https,
             app_version, placement_id, placement_code, language, ratelimit, webhook_secret,
             created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
         ON CONFLICT (platform, account_id, app_id) DO UPDATE SET
             domain = excluded.domain, https = excluded.https,
             app_version = excluded.app_version, placement_id = excluded.placement_id,
             placement_code = excluded.placement_code, language = excluded.language,
             ratelimit = excluded.ratelimit, updated_at = excluded.updated_at",
        params![
            target.platform,
            ctx.account_id,
            ctx.app_id,
            target.domain,
            ctx.https,
            ctx.app_version,
            ctx.placement_id,
            ctx.placement_code,
            ctx.language,
            ctx.ratelimit,
            secret::random_token(32),
            now,
        ],
    )?;
    Ok(
        find_integration(conn, &target.platform, &ctx.account_id, &ctx.app_id)?
            .expect("just upserted"),
    )
}

/// Stores (or, with `None`, forgets) the registered channel's uuid. Forgetting also
/// replaces the webhook secret, so the forgotten channel can no longer reach us.
pub fn set_telephony_uuid(conn: &Connection, id: i64, uuid: Option<&str>) -> Result<(), DbError> {
    match uuid {
        Some(uuid) => conn.execute(
            "UPDATE flowlu_integrations SET telephony_uuid = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, uuid, now()],
        )?,
        None => conn.execute(
            "UPDATE flowlu_integrations SET telephony_uuid = NULL, webhook_secret = ?2,
                 updated_at = ?3 WHERE id = ?1",
            params![id, secret::random_token(32), now()],
        )?,
    };
    Ok(())
}

/// Makes `user_id`'s token the one the appliance calls Flowlu with, and clears
/// "needs reconnect" (the caller holds a token Flowlu just accepted).
pub fn use_token_of(conn: &Connection, id: i64, user_id: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE flowlu_integrations SET token_user_id = ?2, needs_reconnect = 0,
             reconnect_reason = NULL, updated_at = ?3 WHERE id = ?1",
        params![id, user_id, now()],
    )?;
    Ok(())
}

pub fn mark_needs_reconnect(conn: &Connection, id: i64, reason: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE flowlu_integrations SET needs_reconnect = 1, reconnect_reason = ?2,
             updated_at = ?3 WHERE id = ?1",
        params![id, reason, now()],
    )?;
    Ok(())
}

pub fn clear_needs_reconnect(conn: &Connection, id: i64) -> Result<(), DbError> {
    conn.execute(
        "UPDATE flowlu_integrations SET needs_reconnect = 0, reconnect_reason = NULL,
             updated_at = ?2 WHERE id = ?1 AND needs_reconnect = 1",
        params![id, now()],
    )?;
    Ok(())
}

/// Appliance-wide counts for `/healthz`: (integrations, connected, needing reconnect).
pub fn health_counts(conn: &Connection) -> Result<(i64, i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT count(*), count(telephony_uuid), coalesce(sum(needs_reconnect), 0)
         FROM flowlu_integrations",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?)
}

#[cfg(test)]
mod tests;
