//! The `pbx_settings` table: the PBX connection saved from the settings page.
//!
//! One PBX per appliance, while several Flowlu accounts may use the appliance: it belongs
//! to one admitted account ([`admission::pbx_owner`]: the marked owner, else the
//! earliest admitted account once a PBX is configured, else the first to save one), and
//! only that account can change it or see its address and user. Saved settings take
//! precedence over `[pbx]` in the config file at start-up.

use rusqlite::{Connection, OptionalExtension, params};

use super::{admission, store};
use crate::config::PbxType;
use crate::db::DbError;
use crate::pbx::ConnectionSettings;
use crate::secret::Secret;

/// The saved PBX connection and the integration that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPbx {
    pub settings: ConnectionSettings,
    /// The integration that last saved it (`None` once deleted); who may change it is
    /// decided by [`may_edit`], not by this.
    pub owner: Option<i64>,
}

pub fn load(conn: &Connection) -> Result<Option<StoredPbx>, DbError> {
    let row = conn
        .query_row(
            "SELECT kind, host, port, username, secret, owner_integration_id
             FROM pbx_settings WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u16>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            },
        )
        .optional()?;
    Ok(row.and_then(|(kind, host, port, user, secret, owner)| {
        Some(StoredPbx {
            settings: ConnectionSettings {
                kind: PbxType::parse(&kind)?,
                host,
                port,
                user,
                secret: Secret::new(secret),
            },
            owner,
        })
    }))
}

/// True when `integration_id` may change (and see the address and user of) the PBX
/// connection: its account is admitted and owns the PBX ([`admission::pbx_owner`]), or
/// no PBX is configured at all and no account owns one yet. `config_pbx`: `[pbx] type`
/// is set in the config file.
pub fn may_edit(conn: &Connection, integration_id: i64, config_pbx: bool) -> Result<bool, DbError> {
    let Some(integration) = store::integration(conn, integration_id)? else {
        return Ok(false);
    };
    if !admission::is_admitted(conn, &integration.domain)? {
        return Ok(false);
    }
    let configured = config_pbx || load(conn)?.is_some();
    Ok(match admission::pbx_owner(conn, configured)? {
        Some(owner) => owner == integration.domain,
        None => true,
    })
}

/// Saves `settings` on behalf of `integration_id`, whose account becomes the marked PBX
/// owner if none was. Returns false, changing nothing, when it may not ([`may_edit`]);
/// the check and the write are one transaction.
pub fn save(
    conn: &mut Connection,
    settings: &ConnectionSettings,
    integration_id: i64,
    config_pbx: bool,
) -> Result<bool, DbError> {
    let tx = conn.transaction()?;
    if !may_edit(&tx, integration_id, config_pbx)? {
        return Ok(false);
    }
    if let Some(integration) = store::integration(&tx, integration_id)? {
        admission::take_pbx_if_unowned(&tx, &integration.domain)?;
    }
    tx.execute(
        "INSERT INTO pbx_settings (id, kind, host, port, username, secret,
             owner_integration_id, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, host = excluded.host,
             port = excluded.port, username = excluded.username, secret = excluded.secret,
             owner_integration_id = excluded.owner_integration_id,
             updated_at = excluded.updated_at",
        params![
            settings.kind.as_str(),
            settings.host,
            settings.port,
            settings.user,
            settings.secret.expose(),
            integration_id,
            store::now(),
        ],
    )?;
    tx.commit()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str) -> ConnectionSettings {
        ConnectionSettings {
            kind: PbxType::Asterisk,
            host: host.into(),
            port: 5038,
            user: "appliance".into(),
            secret: Secret::new("s3cret"),
        }
    }

    #[test]
    fn only_the_admitted_owner_may_change() {
        let (_dir, db) = crate::db::test_db();
        db.with_conn(|conn| {
            for (id, domain) in [(2, "b.flowlu.com"), (3, "c.flowlu.com")] {
                crate::db::add_test_integration(conn, id)?;
                conn.execute(
                    "UPDATE flowlu_integrations SET domain = ?2 WHERE id = ?1",
                    rusqlite::params![id, domain],
                )?;
            }
            // Integration 1 (test.flowlu.com) is not admitted: never.
            admission::admit(conn, "b.flowlu.com", "cli")?;
            admission::admit(conn, "c.flowlu.com", "cli")?;
            assert!(!may_edit(conn, 1, false)?);
            assert!(!save(conn, &settings("10.6.6.6"), 1, false)?);
            assert_eq!(load(conn)?, None);
            // A PBX from the config file belongs to the earliest admitted account.
            assert!(may_edit(conn, 2, true)? && !may_edit(conn, 3, true)?);
            assert!(!save(conn, &settings("10.6.6.6"), 3, true)?);
            // No PBX anywhere: the first admitted account to save one owns it.
            assert!(save(conn, &settings("10.0.0.1"), 3, false)?);
            assert!(!may_edit(conn, 2, false)?);
            assert!(!save(conn, &settings("10.6.6.6"), 2, true)?);
            let stored = load(conn)?.unwrap();
            assert_eq!(stored.settings, settings("10.0.0.1"));
            assert!(save(conn, &settings("10.0.0.2"), 3, true)?);
            // Revoked: the owner loses it, and the earliest admitted account has it.
            admission::revoke(conn, "c.flowlu.com")?;
            assert!(!may_edit(conn, 3, true)? && may_edit(conn, 2, true)?);
            assert_eq!(load(conn)?.unwrap().settings.host, "10.0.0.2");
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
