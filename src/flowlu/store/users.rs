//! Per-account users, call settings and the user <-> PBX extension mapping.
//!
//! The mapping is what later stages read: `call.make` turns a Flowlu `user_id` into the
//! extension to ring ([`extension_for_user`]); PBX events turn an extension into the
//! Flowlu user to report ([`user_for_extension`]).

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::now;
use crate::db::DbError;

/// A Flowlu user of one integration, with their extension if mapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    /// True when the user opened the settings iframe; false when added by hand.
    pub seen: bool,
    pub extension: Option<String>,
}

/// Records a user Flowlu identified (core/user/get), keeping an admin-given name when
/// Flowlu's answer has none.
pub fn upsert_seen_user(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
    name: &str,
    email: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO flowlu_users (integration_id, user_id, name, email, seen, created_at,
             updated_at) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)
         ON CONFLICT (integration_id, user_id) DO UPDATE SET
             name = CASE WHEN excluded.name = '' THEN name ELSE excluded.name END,
             email = CASE WHEN excluded.email = '' THEN email ELSE excluded.email END,
             seen = 1, updated_at = excluded.updated_at",
        params![integration_id, user_id, name, email, now()],
    )?;
    Ok(())
}

/// Adds a user by hand (managers who never open the settings iframe). An existing user
/// keeps the name Flowlu gave; a hand-added one gets the new name.
pub fn add_user(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
    name: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO flowlu_users (integration_id, user_id, name, seen, created_at, updated_at)
         VALUES (?1, ?2, ?3, 0, ?4, ?4)
         ON CONFLICT (integration_id, user_id) DO UPDATE SET
             name = CASE WHEN seen = 1 OR excluded.name = '' THEN name ELSE excluded.name END,
             updated_at = excluded.updated_at",
        params![integration_id, user_id, name, now()],
    )?;
    Ok(())
}

/// Every user of the integration, with extensions, ordered by name.
pub fn users(conn: &Connection, integration_id: i64) -> Result<Vec<UserRow>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT u.user_id, u.name, u.email, u.seen, e.extension FROM flowlu_users u
         LEFT JOIN flowlu_extensions e
             ON e.integration_id = u.integration_id AND e.user_id = u.user_id
         WHERE u.integration_id = ?1 ORDER BY lower(u.name), u.user_id",
    )?;
    let rows = stmt
        .query_map([integration_id], |r| {
            Ok(UserRow {
                user_id: r.get(0)?,
                name: r.get(1)?,
                email: r.get(2)?,
                seen: r.get(3)?,
                extension: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Maps `user_id` (a user of this integration) to `extension`, or removes the mapping
/// with `None`. A user unknown to the integration changes nothing and returns false.
/// An extension already mapped to another user of the integration is a
/// `SqliteFailure(ConstraintViolation)`: callers check the whole mapping first.
pub fn set_extension(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
    extension: Option<&str>,
) -> Result<bool, DbError> {
    let known: bool = conn.query_row(
        "SELECT count(*) > 0 FROM flowlu_users WHERE integration_id = ?1 AND user_id = ?2",
        params![integration_id, user_id],
        |r| r.get(0),
    )?;
    if !known {
        return Ok(false);
    }
    match extension {
        Some(ext) => conn.execute(
            "INSERT INTO flowlu_extensions (integration_id, user_id, extension, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (integration_id, user_id) DO UPDATE SET
                 extension = excluded.extension, updated_at = excluded.updated_at",
            params![integration_id, user_id, ext, now()],
        )?,
        None => conn.execute(
            "DELETE FROM flowlu_extensions WHERE integration_id = ?1 AND user_id = ?2",
            params![integration_id, user_id],
        )?,
    };
    Ok(true)
}

/// The extension mapped to a Flowlu user of this integration.
pub fn extension_for_user(
    conn: &Connection,
    integration_id: i64,
    user_id: &str,
) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT extension FROM flowlu_extensions WHERE integration_id = ?1 AND user_id = ?2",
            params![integration_id, user_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// The Flowlu user of this integration that an extension belongs to.
pub fn user_for_extension(
    conn: &Connection,
    integration_id: i64,
    extension: &str,
) -> Result<Option<String>, DbError> {
    Ok(conn
        .prepare_cached(
            "SELECT user_id FROM flowlu_extensions WHERE integration_id = ?1 AND extension = ?2",
        )?
        .query_row(params![integration_id, extension], |r| r.get(0))
        .optional()?)
}

/// Every (user_id, extension) pair of this integration, ordered by extension.
pub fn mappings(conn: &Connection, integration_id: i64) -> Result<Vec<(String, String)>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT user_id, extension FROM flowlu_extensions WHERE integration_id = ?1
         ORDER BY extension",
    )?;
    let rows = stmt
        .query_map([integration_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Extensions that other accounts have mapped and this one has not. `employees.list`
/// leaves them out, so an account sharing the PBX never sees another's staff; only the
/// extension numbers cross accounts here, never users.
pub fn extensions_of_other_accounts(
    conn: &Connection,
    integration_id: i64,
) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT extension FROM flowlu_extensions WHERE integration_id != ?1
             AND extension NOT IN
                 (SELECT extension FROM flowlu_extensions WHERE integration_id = ?1)
         ORDER BY extension",
    )?;
    let rows = stmt
        .query_map([integration_id], |r| r.get(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Who decides which employee an incoming call rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncomingRouting {
    /// Ask Flowlu in `call.init`; the PBX's own routing stands when it does not answer.
    Crm,
    /// The PBX's dial plan decides.
    Pbx,
}

impl IncomingRouting {
    pub fn as_str(self) -> &'static str {
        match self {
            IncomingRouting::Crm => "crm",
            IncomingRouting::Pbx => "pbx",
        }
    }

    pub fn parse(s: &str) -> Option<IncomingRouting> {
        match s {
            "crm" => Some(IncomingRouting::Crm),
            "pbx" => Some(IncomingRouting::Pbx),
            _ => None,
        }
    }
}

/// Per-account call settings (defaults until an admin saves them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallSettings {
    /// The channel `name` sent to telephony/create; empty: a default is used.
    pub channel_name: String,
    /// Caller ID / trunk for outgoing calls when Flowlu names none; empty: PBX default.
    pub default_line: String,
    /// Country calling code (digits) for numbers without one; empty: numbers as dialled.
    pub default_country_code: String,
    pub record_calls: bool,
    pub incoming_routing: IncomingRouting,
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            channel_name: String::new(),
            default_line: String::new(),
            default_country_code: String::new(),
            record_calls: false,
            incoming_routing: IncomingRouting::Pbx,
        }
    }
}

pub fn settings(conn: &Connection, integration_id: i64) -> Result<CallSettings, DbError> {
    let found = conn
        .prepare_cached(
            "SELECT channel_name, default_line, default_country_code, record_calls,
                 incoming_routing FROM flowlu_settings WHERE integration_id = ?1",
        )?
        .query_row([integration_id], |r| {
            Ok(CallSettings {
                channel_name: r.get(0)?,
                default_line: r.get(1)?,
                default_country_code: r.get(2)?,
                record_calls: r.get(3)?,
                incoming_routing: IncomingRouting::parse(&r.get::<_, String>(4)?)
                    .unwrap_or(IncomingRouting::Pbx),
            })
        })
        .optional()?;
    Ok(found.unwrap_or_default())
}

/// The default country codes the accounts have saved, each once (start-up compiles their
/// numbering plans: `calls::phone::warm_up`).
pub fn default_countries(conn: &Connection) -> Result<Vec<String>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT default_country_code FROM flowlu_settings
         WHERE default_country_code != ''",
    )?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
}

pub fn save_settings(
    conn: &Connection,
    integration_id: i64,
    s: &CallSettings,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO flowlu_settings (integration_id, channel_name, default_line,
             default_country_code, record_calls, incoming_routing, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (integration_id) DO UPDATE SET
             channel_name = excluded.channel_name, default_line = excluded.default_line,
             default_country_code = excluded.default_country_code,
             record_calls = excluded.record_calls,
             incoming_routing = excluded.incoming_routing, updated_at = excluded.updated_at",
        params![
            integration_id,
            s.channel_name,
            s.default_line,
            s.default_country_code,
            s.record_calls,
            s.incoming_routing.as_str(),
            now(),
        ],
    )?;
    Ok(())
}
