//! The `pbx_settings` table: the PBX connection saved from the settings page.
//!
//! One PBX per appliance, while several Flowlu accounts may use the appliance: the
//! account that first saves the settings owns them, and only the owner can change them
//! (the check and the write are one statement, so two first saves cannot both win).
//! Saved settings take precedence over `[pbx]` in the config file at start-up.

use rusqlite::{Connection, OptionalExtension, params};

use super::DbError;
use crate::config::PbxType;
use crate::pbx::ConnectionSettings;
use crate::secret::Secret;

/// The saved PBX connection and the integration that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPbx {
    pub settings: ConnectionSettings,
    /// `None` when the owning integration was deleted (anyone may then take it over).
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

/// True when `integration_id` may change the PBX settings: nobody owns them yet, or it
/// is the owner.
pub fn may_edit(conn: &Connection, integration_id: i64) -> Result<bool, DbError> {
    Ok(match load(conn)? {
        None => true,
        Some(stored) => stored.owner.is_none_or(|owner| owner == integration_id),
    })
}

/// Saves `settings` on behalf of `integration_id`, which becomes the owner if there was
/// none. Returns false, changing nothing, when another integration owns them.
pub fn save(
    conn: &Connection,
    settings: &ConnectionSettings,
    integration_id: i64,
) -> Result<bool, DbError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let changed = conn.execute(
        "INSERT INTO pbx_settings (id, kind, host, port, username, secret,
             owner_integration_id, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, host = excluded.host,
             port = excluded.port, username = excluded.username, secret = excluded.secret,
             owner_integration_id = excluded.owner_integration_id,
             updated_at = excluded.updated_at
         WHERE owner_integration_id IS NULL OR owner_integration_id = excluded.owner_integration_id",
        params![
            settings.kind.as_str(),
            settings.host,
            settings.port,
            settings.user,
            settings.secret.expose(),
            integration_id,
            now,
        ],
    )?;
    Ok(changed == 1)
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
    fn first_saver_owns_and_others_cannot_change() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        super::super::migrate::migrate(&mut conn, super::super::migrate::MIGRATIONS).unwrap();
        for id in [1, 2] {
            crate::db::add_test_integration(&conn, id).unwrap();
        }
        assert_eq!(load(&conn).unwrap(), None);
        assert!(may_edit(&conn, 2).unwrap());
        assert!(save(&conn, &settings("10.0.0.1"), 1).unwrap());
        assert!(!may_edit(&conn, 2).unwrap());
        assert!(!save(&conn, &settings("10.6.6.6"), 2).unwrap());
        let stored = load(&conn).unwrap().unwrap();
        assert_eq!(stored.settings, settings("10.0.0.1"));
        assert_eq!(stored.owner, Some(1));
        assert!(save(&conn, &settings("10.0.0.2"), 1).unwrap());
        assert_eq!(load(&conn).unwrap().unwrap().settings.host, "10.0.0.2");
        // The owner goes away: the settings stay and anyone may take them over.
        conn.execute("DELETE FROM flowlu_integrations WHERE id = 1", [])
            .unwrap();
        let stored = load(&conn).unwrap().unwrap();
        assert_eq!(
            (stored.owner, stored.settings.host.as_str()),
            (None, "10.0.0.2")
        );
        assert!(save(&conn, &settings("10.0.0.3"), 2).unwrap());
        assert_eq!(load(&conn).unwrap().unwrap().owner, Some(2));
    }
}
