//! The `c2c_settings` table (migration 7): per account, whether the click-to-call URL is
//! on and its key. Nothing here knows HTTP.

use rusqlite::{Connection, OptionalExtension, params};

use crate::db::DbError;

/// Characters of randomness in a key: 24 random bytes, URL-safe base64 (192 bits).
const KEY_BYTES: usize = 24;

/// An account's click-to-call settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct C2c {
    pub enabled: bool,
    /// `None` until first enabled.
    pub key: Option<String>,
}

/// The account's settings (off, no key, when never enabled).
pub fn load(conn: &Connection, integration_id: i64) -> Result<C2c, DbError> {
    let row: Option<(bool, String)> = conn
        .query_row(
            "SELECT enabled, key FROM c2c_settings WHERE integration_id = ?1",
            [integration_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        Some((enabled, key)) => C2c {
            enabled,
            key: Some(key),
        },
        None => C2c {
            enabled: false,
            key: None,
        },
    })
}

/// Switches the URL on or off. The first switch-on generates the key; later ones keep it.
pub fn set_enabled(
    conn: &Connection,
    integration_id: i64,
    enabled: bool,
    now_ms: i64,
) -> Result<C2c, DbError> {
    conn.execute(
        "INSERT INTO c2c_settings (integration_id, enabled, key, key_created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (integration_id) DO UPDATE SET enabled = ?2, updated_at = ?4",
        params![
            integration_id,
            enabled,
            crate::secret::random_token(KEY_BYTES),
            now_ms
        ],
    )?;
    load(conn, integration_id)
}

/// Replaces the key (the old one stops working with this write); creates the row, off,
/// when there is none.
pub fn rotate(conn: &Connection, integration_id: i64, now_ms: i64) -> Result<C2c, DbError> {
    conn.execute(
        "INSERT INTO c2c_settings (integration_id, enabled, key, key_created_at, updated_at)
         VALUES (?1, 0, ?2, ?3, ?3)
         ON CONFLICT (integration_id) DO UPDATE SET key = ?2, key_created_at = ?3, updated_at = ?3",
        params![
            integration_id,
            crate::secret::random_token(KEY_BYTES),
            now_ms
        ],
    )?;
    load(conn, integration_id)
}

/// The account a key belongs to, when the URL is on for it and the account's channel is
/// connected (as the webhook, whose secret Disconnect replaces). A key of an account
/// that switched the URL off or disconnected is as unknown as a made-up one.
pub fn integration_for_key(conn: &Connection, key: &str) -> Result<Option<i64>, DbError> {
    // Keys are generated with a fixed shape; anything else cannot be one (and is not
    // worth a query).
    if key.len() != 32
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT s.integration_id FROM c2c_settings s
             JOIN flowlu_integrations i ON i.id = s.integration_id
             WHERE s.key = ?1 AND s.enabled = 1 AND i.telephony_uuid IS NOT NULL",
            [key],
            |r| r.get(0),
        )
        .optional()?)
}

/// The Flowlu user `agent` names in this account: a mapped Flowlu user id, or else the
/// extension of a mapped user. `Err(())` when it is both, for two different users.
pub fn resolve_agent(
    conn: &Connection,
    integration_id: i64,
    agent: &str,
) -> Result<Result<Option<String>, ()>, DbError> {
    use crate::flowlu::store::{extension_for_user, user_for_extension};
    let as_user = extension_for_user(conn, integration_id, agent)?.map(|_| agent.to_string());
    let as_extension = user_for_extension(conn, integration_id, agent)?;
    Ok(match (as_user, as_extension) {
        (Some(u), Some(e)) if u != e => Err(()),
        (Some(u), _) => Ok(Some(u)),
        (None, e) => Ok(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        crate::db::migrate::migrate(&mut c, crate::db::migrate::MIGRATIONS).unwrap();
        for id in [1, 2] {
            crate::db::add_test_integration(&c, id).unwrap();
        }
        c.execute_batch(
            "UPDATE flowlu_integrations SET telephony_uuid = 'ch-' || id;
             INSERT INTO flowlu_users (integration_id, user_id, created_at, updated_at)
             VALUES (1, '17', 0, 0), (1, '101', 0, 0), (1, '5', 0, 0);
             INSERT INTO flowlu_extensions (integration_id, user_id, extension, updated_at)
             VALUES (1, '17', '101', 0), (1, '101', '102', 0), (1, '5', '5', 0);",
        )
        .unwrap();
        c
    }

    #[test]
    fn key_is_made_on_first_enable_kept_across_off_and_replaced_by_rotate() {
        let c = db();
        assert_eq!(
            load(&c, 1).unwrap(),
            C2c {
                enabled: false,
                key: None
            }
        );
        let on = set_enabled(&c, 1, true, 1).unwrap();
        let key = on.key.clone().unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(integration_for_key(&c, &key).unwrap(), Some(1));
        assert_eq!(set_enabled(&c, 1, false, 2).unwrap().key, Some(key.clone()));
        assert_eq!(integration_for_key(&c, &key).unwrap(), None, "off");
        assert_eq!(set_enabled(&c, 1, true, 3).unwrap().key, Some(key.clone()));
        let rotated = rotate(&c, 1, 4).unwrap();
        assert!(rotated.enabled);
        let new = rotated.key.unwrap();
        assert_ne!(new, key);
        assert_eq!(integration_for_key(&c, &key).unwrap(), None, "old key");
        assert_eq!(integration_for_key(&c, &new).unwrap(), Some(1));
        assert_eq!(integration_for_key(&c, "").unwrap(), None);
        assert_eq!(integration_for_key(&c, "x' OR 1=1 --").unwrap(), None);
        // Another account's key is its own.
        let other = set_enabled(&c, 2, true, 5).unwrap().key.unwrap();
        assert_ne!(other, new);
        assert_eq!(integration_for_key(&c, &other).unwrap(), Some(2));
        // A disconnected account's key does not work until it connects again.
        c.execute(
            "UPDATE flowlu_integrations SET telephony_uuid = NULL WHERE id = 2",
            [],
        )
        .unwrap();
        assert_eq!(integration_for_key(&c, &other).unwrap(), None);
    }

    #[test]
    fn agents_are_user_ids_or_unambiguous_extensions() {
        let c = db();
        assert_eq!(resolve_agent(&c, 1, "17").unwrap(), Ok(Some("17".into())));
        assert_eq!(resolve_agent(&c, 1, "102").unwrap(), Ok(Some("101".into())));
        // "101" is user 101 and the extension of user 17.
        assert_eq!(resolve_agent(&c, 1, "101").unwrap(), Err(()));
        // User 5 has extension 5: the same person either way.
        assert_eq!(resolve_agent(&c, 1, "5").unwrap(), Ok(Some("5".into())));
        assert_eq!(resolve_agent(&c, 1, "999").unwrap(), Ok(None));
        assert_eq!(resolve_agent(&c, 2, "17").unwrap(), Ok(None));
    }
}
