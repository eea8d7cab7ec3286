//! SQL for the CRM features: per-account rules (`crm_rules`), the contact cache
//! (`crm_contacts`, `crm_contact_phones`) and what the rules created (`crm_created`).
//! Synchronous functions over a connection, for `Db::run` or the engine's transaction.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{Account, Action, EntityEvent};
use crate::calls::phone;
use crate::db::DbError;
use crate::flowlu::store::now;
use crate::secret;

/// One account's switches (all off by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rules {
    pub entity_hooks: bool,
    /// Never rendered in full (see `http::settings`).
    #[serde(skip)]
    pub hook_secret: Option<String>,
    pub fallback_routing: bool,
    pub missed_task: bool,
    pub task_due_minutes: i64,
    pub default_user_id: String,
    pub create_contact: bool,
    pub create_lead: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            entity_hooks: false,
            hook_secret: None,
            fallback_routing: false,
            missed_task: false,
            task_due_minutes: 60,
            default_user_id: String::new(),
            create_contact: false,
            create_lead: false,
        }
    }
}

pub fn rules(conn: &Connection, integration_id: i64) -> Result<Rules, DbError> {
    // Prepared once per connection: read in the engine's write of every finished call.
    let found = conn
        .prepare_cached(
            "SELECT entity_hooks, hook_secret, fallback_routing, missed_task,
                    task_due_minutes, default_user_id, create_contact, create_lead
             FROM crm_rules WHERE integration_id = ?1",
        )?
        .query_row([integration_id], |r| {
            Ok(Rules {
                entity_hooks: r.get(0)?,
                hook_secret: r.get(1)?,
                fallback_routing: r.get(2)?,
                missed_task: r.get(3)?,
                task_due_minutes: r.get(4)?,
                default_user_id: r.get(5)?,
                create_contact: r.get(6)?,
                create_lead: r.get(7)?,
            })
        })
        .optional()?;
    Ok(found.unwrap_or_default())
}

/// Saves the switches. Switching the entity hooks on the first time creates their secret.
/// The secret itself is only changed by [`rotate_secret`].
pub fn save_rules(conn: &Connection, integration_id: i64, r: &Rules) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO crm_rules (integration_id, entity_hooks, fallback_routing, missed_task,
             task_due_minutes, default_user_id, create_contact, create_lead, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (integration_id) DO UPDATE SET
             entity_hooks = excluded.entity_hooks,
             fallback_routing = excluded.fallback_routing,
             missed_task = excluded.missed_task,
             task_due_minutes = excluded.task_due_minutes,
             default_user_id = excluded.default_user_id,
             create_contact = excluded.create_contact,
             create_lead = excluded.create_lead, updated_at = excluded.updated_at",
        params![
            integration_id,
            r.entity_hooks,
            r.fallback_routing,
            r.missed_task,
            r.task_due_minutes,
            r.default_user_id,
            r.create_contact,
            r.create_lead,
            now(),
        ],
    )?;
    if r.entity_hooks {
        conn.execute(
            "UPDATE crm_rules SET hook_secret = ?2
             WHERE integration_id = ?1 AND hook_secret IS NULL",
            params![integration_id, secret::random_token(32)],
        )?;
    }
    Ok(())
}

/// Replaces the entity-hook secret (the old URL stops working at once); returns the new one.
pub fn rotate_secret(conn: &Connection, integration_id: i64) -> Result<String, DbError> {
    let fresh = secret::random_token(32);
    conn.execute(
        "INSERT INTO crm_rules (integration_id, hook_secret, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (integration_id) DO UPDATE SET hook_secret = excluded.hook_secret,
             updated_at = excluded.updated_at",
        params![integration_id, fresh, now()],
    )?;
    Ok(fresh)
}

/// Compared against when there is no secret to match; never a valid one (URL-safe base64
/// has no `!`).
const NO_SECRET: &str = "!no-entity-hook-secret-never-matches!!!!!!!!";

/// Whether `/hooks/flowlu-entities/{id}/{secret}` is open: the hooks are on and the
/// secret matches (compared in constant time, the same work whatever is missing).
pub fn hook_open(conn: &Connection, integration_id: i64, given: &str) -> Result<bool, DbError> {
    let r = rules(conn, integration_id)?;
    let expected = r.hook_secret.as_deref().unwrap_or(NO_SECRET);
    let matches = secret::constant_time_eq(expected.as_bytes(), given.as_bytes());
    Ok(matches && r.entity_hooks && r.hook_secret.is_some())
}

/// What one webhook did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Stored,
    Deleted,
    /// Not newer than what the cache has (a duplicate or a late delivery).
    Stale,
    /// The account was deleted before: a late create/update does not bring it back.
    AlreadyDeleted,
}

/// Applies one webhook, in the caller's (IMMEDIATE) transaction so that two deliveries
/// of the same account cannot interleave. Numbers are normalized with `country`; ones
/// that do not normalize are left out.
pub fn apply(
    conn: &Connection,
    integration_id: i64,
    event: &EntityEvent,
    country: &str,
) -> Result<Applied, DbError> {
    let a = &event.account;
    let stored: Option<(Option<i64>, bool)> = conn
        .query_row(
            "SELECT version, deleted FROM crm_contacts
             WHERE integration_id = ?1 AND contact_id = ?2",
            params![integration_id, a.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if event.action == Action::Delete {
        conn.execute(
            "INSERT INTO crm_contacts (integration_id, contact_id, name, version, deleted,
                 updated_at)
             VALUES (?1, ?2, '', ?3, 1, ?4)
             ON CONFLICT (integration_id, contact_id) DO UPDATE SET deleted = 1,
                 manager_id = NULL, updated_at = excluded.updated_at",
            params![integration_id, a.id, a.version, now()],
        )?;
        set_phones(conn, integration_id, &a.id, &[])?;
        return Ok(match stored {
            Some((_, true)) => Applied::AlreadyDeleted,
            _ => Applied::Deleted,
        });
    }
    match stored {
        Some((_, true)) => return Ok(Applied::AlreadyDeleted),
        Some((Some(have), false)) if a.version.is_some_and(|v| v <= have) => {
            return Ok(Applied::Stale);
        }
        _ => {}
    }
    store_account(conn, integration_id, a, country)?;
    Ok(Applied::Stored)
}

/// Writes an account and its numbers (a webhook, or a contact the rules created); a
/// deleted account stays deleted.
pub fn store_account(
    conn: &Connection,
    integration_id: i64,
    a: &Account,
    country: &str,
) -> Result<(), DbError> {
    let deleted: Option<bool> = conn
        .query_row(
            "SELECT deleted FROM crm_contacts WHERE integration_id = ?1 AND contact_id = ?2",
            params![integration_id, a.id],
            |r| r.get(0),
        )
        .optional()?;
    if deleted == Some(true) {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO crm_contacts (integration_id, contact_id, name, manager_id, version,
             deleted, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
         ON CONFLICT (integration_id, contact_id) DO UPDATE SET name = excluded.name,
             manager_id = excluded.manager_id,
             version = coalesce(excluded.version, crm_contacts.version),
             updated_at = excluded.updated_at",
        params![integration_id, a.id, a.name, a.manager_id, a.version, now()],
    )?;
    let mut phones: Vec<String> = if a.retired {
        Vec::new()
    } else {
        a.phones
            .iter()
            .filter_map(|p| phone::normalize(p, country).ok())
            .collect()
    };
    phones.sort();
    phones.dedup();
    set_phones(conn, integration_id, &a.id, &phones)
}

fn set_phones(
    conn: &Connection,
    integration_id: i64,
    contact_id: &str,
    phones: &[String],
) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM crm_contact_phones WHERE integration_id = ?1 AND contact_id = ?2",
        params![integration_id, contact_id],
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO crm_contact_phones (integration_id, contact_id, phone)
         VALUES (?1, ?2, ?3)",
    )?;
    for p in phones {
        insert.execute(params![integration_id, contact_id, p])?;
    }
    Ok(())
}

/// A cached account for a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub contact_id: String,
    pub manager_id: Option<String>,
}

/// The account with this number (E.164 digits): one with a manager first, then the most
/// recently changed.
pub fn lookup(
    conn: &Connection,
    integration_id: i64,
    e164: &str,
) -> Result<Option<Known>, DbError> {
    Ok(conn
        .query_row(
            "SELECT c.contact_id, c.manager_id FROM crm_contact_phones p
             JOIN crm_contacts c USING (integration_id, contact_id)
             WHERE p.integration_id = ?1 AND p.phone = ?2 AND c.deleted = 0
             ORDER BY c.manager_id IS NULL, c.version IS NULL, c.version DESC,
                      c.updated_at DESC
             LIMIT 1",
            params![integration_id, e164],
            |r| {
                Ok(Known {
                    contact_id: r.get(0)?,
                    manager_id: r.get(1)?,
                })
            },
        )
        .optional()?)
}

/// Cached accounts (not deleted) and numbers, for the settings page.
pub fn cache_size(conn: &Connection, integration_id: i64) -> Result<(i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM crm_contacts WHERE integration_id = ?1 AND deleted = 0),
                (SELECT count(*) FROM crm_contact_phones WHERE integration_id = ?1)",
        [integration_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// The id of what the outbox row `event_id` created, if it did.
pub fn created(conn: &Connection, event_id: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT entity_id FROM crm_created WHERE event_id = ?1",
            [event_id],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn record_created(
    conn: &Connection,
    event_id: &str,
    entity: &str,
    entity_id: &str,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT OR IGNORE INTO crm_created (event_id, entity, entity_id, created_at)
         VALUES (?1, ?2, ?3, ?4)",
        params![event_id, entity, entity_id, now()],
    )?;
    Ok(())
}

/// Forgets what was created for outbox events that no longer exist (purged): only a retry
/// of such an event could need the record. Returns how many were removed.
pub fn prune_created(conn: &Connection) -> Result<usize, DbError> {
    Ok(conn.execute(
        "DELETE FROM crm_created
         WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = crm_created.event_id)",
        [],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(action: Action, id: &str, owner: &str, phone: &str, version: i64) -> EntityEvent {
        EntityEvent {
            action,
            account: Account {
                id: id.into(),
                name: "n".into(),
                manager_id: Some(owner.into()),
                phones: vec![phone.into()],
                version: Some(version),
                retired: false,
            },
        }
    }

    #[test]
    fn older_and_equal_updates_are_ignored_and_deletes_are_final() {
        let (_dir, db) = crate::db::test_db();
        let id = 1;
        db.with_conn(|c| {
            let e = |a, owner, v| event(a, "5", owner, "+7 916 123-45-67", v);
            assert_eq!(
                apply(c, id, &e(Action::Create, "1", 10), "7")?,
                Applied::Stored
            );
            assert_eq!(
                apply(c, id, &e(Action::Update, "2", 20), "7")?,
                Applied::Stored
            );
            assert_eq!(
                apply(c, id, &e(Action::Update, "3", 15), "7")?,
                Applied::Stale
            );
            assert_eq!(
                apply(c, id, &e(Action::Update, "3", 20), "7")?,
                Applied::Stale
            );
            let known = lookup(c, id, "79161234567")?.unwrap();
            assert_eq!(known.manager_id.as_deref(), Some("2"));
            assert_eq!(cache_size(c, id)?, (1, 1));
            assert_eq!(
                apply(c, id, &e(Action::Delete, "2", 20), "7")?,
                Applied::Deleted
            );
            assert_eq!(lookup(c, id, "79161234567")?, None);
            assert_eq!(
                apply(c, id, &e(Action::Update, "4", 99), "7")?,
                Applied::AlreadyDeleted
            );
            assert_eq!(lookup(c, id, "79161234567")?, None);
            store_account(c, id, &e(Action::Create, "5", 1).account, "7")?;
            assert_eq!(
                cache_size(c, id)?,
                (0, 0),
                "a created contact cannot revive it"
            );
            Ok::<_, DbError>(())
        })
        .unwrap();
    }

    #[test]
    fn rules_default_off_and_the_secret_appears_when_switched_on() {
        let (_dir, db) = crate::db::test_db();
        let id = 1;
        db.with_conn(|c| {
            assert_eq!(rules(c, id)?, Rules::default());
            assert!(!hook_open(c, id, "")?);
            let on = Rules {
                entity_hooks: true,
                ..Rules::default()
            };
            save_rules(c, id, &on)?;
            let secret = rules(c, id)?.hook_secret.unwrap();
            assert!(hook_open(c, id, &secret)?);
            assert!(!hook_open(c, id, "wrong")?);
            save_rules(c, id, &on)?;
            assert_eq!(rules(c, id)?.hook_secret.unwrap(), secret, "kept on save");
            let fresh = rotate_secret(c, id)?;
            assert!(!hook_open(c, id, &secret)? && hook_open(c, id, &fresh)?);
            save_rules(c, id, &Rules::default())?;
            assert!(!hook_open(c, id, &fresh)?, "off: closed");
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
