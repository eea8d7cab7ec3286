//! The back-fill's own tables (`cdr_seen`, `cdr_runs`, migration 12) and matching call
//! records to calls already stored.

use rusqlite::{Connection, OptionalExtension, params};

use crate::calls::{Call, store};

/// Remembers that the PBX was seen alive at `at_ms`.
pub fn set_seen(conn: &Connection, at_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO cdr_seen (id, last_seen_ms) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
        [at_ms],
    )?;
    Ok(())
}

/// When the PBX was last seen alive: the last event or disconnect noted, else the last
/// change to any call (a database from before back-fill existed).
pub fn last_seen(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let seen: Option<i64> = conn
        .query_row("SELECT last_seen_ms FROM cdr_seen WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    match seen {
        Some(s) => Ok(Some(s)),
        None => conn.query_row("SELECT max(updated_at) FROM calls", [], |r| r.get(0)),
    }
}

/// The stored call any of `ids` (PBX call ids) belongs to.
pub fn known(conn: &Connection, ids: &[String]) -> rusqlite::Result<Option<Call>> {
    for id in ids {
        let found: Option<String> = conn
            .query_row(
                "SELECT id FROM calls WHERE pbx_call = ?1 ORDER BY started_at LIMIT 1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(found) = found {
            return store::get(conn, &found);
        }
    }
    Ok(None)
}

/// One back-fill or history import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    pub kind: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub found: i64,
    pub reported: i64,
    pub corrected: i64,
    pub error: Option<String>,
}

pub fn start_run(
    conn: &Connection,
    kind: &str,
    from: i64,
    to: i64,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO cdr_runs (kind, started_at, from_ms, to_ms) VALUES (?1, ?2, ?3, ?4)",
        params![kind, now, from, to],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn finish_run(conn: &Connection, id: i64, run: &Run, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE cdr_runs SET finished_at = ?2, found = ?3, reported = ?4, corrected = ?5,
             error = ?6 WHERE id = ?1",
        params![id, now, run.found, run.reported, run.corrected, run.error],
    )?;
    Ok(())
}

/// The newest run of `kind` ("backfill" or "import").
pub fn last_run(conn: &Connection, kind: &str) -> rusqlite::Result<Option<Run>> {
    conn.query_row(
        "SELECT kind, started_at, finished_at, from_ms, to_ms, found, reported, corrected,
                error
         FROM cdr_runs WHERE kind = ?1 ORDER BY id DESC LIMIT 1",
        [kind],
        |r| {
            Ok(Run {
                kind: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                from_ms: r.get(3)?,
                to_ms: r.get(4)?,
                found: r.get(5)?,
                reported: r.get(6)?,
                corrected: r.get(7)?,
                error: r.get(8)?,
            })
        },
    )
    .optional()
}
