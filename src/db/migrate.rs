//! Schema versioning: `schema.sql` is version 1, each file in `src/db/migrations/` adds one.
//!
//! Every step runs in its own transaction together with its `PRAGMA user_version` bump, so
//! a crash leaves the database at a whole version. A database newer than this binary is
//! refused before anything is written to it.

use rusqlite::Connection;

use super::DbError;

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All schema steps, in order. Add new ones at the end; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "baseline (schema.sql)",
        sql: include_str!("../../schema.sql"),
    },
    Migration {
        version: 2,
        name: "flowlu",
        sql: include_str!("migrations/0002_flowlu.sql"),
    },
    Migration {
        version: 3,
        name: "outbox",
        sql: include_str!("migrations/0003_outbox.sql"),
    },
    Migration {
        version: 4,
        name: "calls",
        sql: include_str!("migrations/0004_calls.sql"),
    },
    Migration {
        version: 5,
        name: "recordings",
        sql: include_str!("migrations/0005_recordings.sql"),
    },
    Migration {
        version: 6,
        name: "webhook requests",
        sql: include_str!("migrations/0006_webhook_requests.sql"),
    },
    Migration {
        version: 7,
        name: "click-to-call URL",
        sql: include_str!("migrations/0007_c2c.sql"),
    },
    Migration {
        version: 8,
        name: "result callbacks",
        sql: include_str!("migrations/0008_callbacks.sql"),
    },
    Migration {
        version: 9,
        name: "crm cache and rules",
        sql: include_str!("migrations/0009_crm_cache.sql"),
    },
    Migration {
        version: 10,
        name: "admitted Flowlu accounts",
        sql: include_str!("migrations/0010_admission.sql"),
    },
    Migration {
        version: 11,
        name: "outbox call.init first",
        sql: include_str!("migrations/0011_outbox_init_first.sql"),
    },
    Migration {
        version: 12,
        name: "call records back-fill",
        sql: include_str!("migrations/0012_cdr.sql"),
    },
    Migration {
        version: 13,
        name: "call queue or ring group",
        sql: include_str!("migrations/0013_call_queue.sql"),
    },
    Migration {
        version: 14,
        name: "outbox heads indexed",
        sql: include_str!("migrations/0014_outbox_ready.sql"),
    },
];

/// The schema version this binary writes.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

pub fn user_version(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Refuses databases this binary must not touch: newer versions, and files that are
/// SQLite databases but not ours.
pub fn check_compatible(conn: &Connection, migrations: &[Migration]) -> Result<(), DbError> {
    let found = user_version(conn)?;
    let supported = migrations.last().map_or(0, |m| m.version);
    if found > supported {
        return Err(DbError::Newer { found, supported });
    }
    if found == 0 {
        let tables: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
        if tables > 0 {
            return Err(DbError::Foreign);
        }
    }
    Ok(())
}

/// Brings the database up to the newest version in `migrations`.
pub fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), DbError> {
    check_compatible(conn, migrations)?;
    let current = user_version(conn)?;
    for step in migrations.iter().filter(|m| m.version > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(step.sql)
            .map_err(|source| DbError::Migration {
                version: step.version,
                name: step.name,
                source,
            })?;
        tx.pragma_update(None, "user_version", step.version)?;
        tx.commit()?;
        log::info!(
            "database migrated to version {} ({})",
            step.version,
            step.name
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            version: 1,
            name: "one",
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            version: 2,
            name: "two",
            sql: "ALTER TABLE a ADD COLUMN y TEXT;",
        },
        Migration {
            version: 3,
            name: "broken",
            sql: "CREATE TABLE b (z INTEGER); THIS IS NOT SQL;",
        },
    ];

    #[test]
    fn migrates_step_by_step_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &STEPS[..1]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 1);
        conn.execute("INSERT INTO a (x) VALUES (7)", []).unwrap();
        migrate(&mut conn, &STEPS[..2]).unwrap();
        migrate(&mut conn, &STEPS[..2]).unwrap();
        assert_eq!(user_version(&conn).unwrap(), 2);
        let (x, y): (i64, Option<String>) = conn
            .query_row("SELECT x, y FROM a", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((x, y), (7, None));
    }

    #[test]
    fn a_failing_step_leaves_the_previous_version_whole() {
        let mut conn = Connection::open_in_memory().unwrap();
        let e = migrate(&mut conn, STEPS).unwrap_err();
        assert!(e.to_string().contains("migration 3"), "{e}");
        assert_eq!(user_version(&conn).unwrap(), 2);
        let b: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 0, "the failed step's table must be rolled back");
    }

    #[test]
    fn refuses_a_newer_database_without_touching_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &STEPS[..2]).unwrap();
        let e = migrate(&mut conn, &STEPS[..1]).unwrap_err();
        assert!(
            matches!(
                e,
                DbError::Newer {
                    found: 2,
                    supported: 1
                }
            ),
            "{e}"
        );
        assert_eq!(user_version(&conn).unwrap(), 2);
    }

    #[test]
    fn refuses_a_foreign_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE theirs (x);").unwrap();
        assert!(matches!(migrate(&mut conn, STEPS), Err(DbError::Foreign)));
    }

    #[test]
    fn the_real_migrations_apply_to_an_empty_database() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(user_version(&conn).unwrap(), latest_version());
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert_eq!(versions, (1..=latest_version()).collect::<Vec<_>>());
    }
}
