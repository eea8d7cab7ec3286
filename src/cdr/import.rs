//! History import: a period's calls that Flowlu does not have yet, from the PBX's
//! records (`appliance history import --since 7d`, and the settings page's button).
//!
//! The same plan and write as a back-fill ([`super::backfill::apply`]), over
//! `[now - since, now)`: calls already stored (seen live, back-filled or imported before)
//! are never sent again, so a second run sends nothing. The outbox delivers at Flowlu's
//! rate limit; [`progress`] counts the run's events still to go.

use rusqlite::{Connection, params};

use super::backfill::{Plan, apply};
use super::{CdrError, Source};
use crate::calls::tracker::Rules;
use crate::config::Config;
use crate::engine::Recorded;

/// Imports (or with `dry_run`, plans) the calls of the last `since_ms`.
pub fn run(
    conn: &mut Connection,
    config: &Config,
    since_ms: i64,
    now: i64,
    dry_run: bool,
) -> Result<(Plan, Vec<Recorded>), CdrError> {
    let source = Source::from_config(&config.cdr)?.ok_or(CdrError::NotConfigured)?;
    let rules = Rules::new(&config.calls);
    apply(
        conn,
        &source,
        &rules,
        "import",
        (now - since_ms, now),
        dry_run,
    )
}

/// Of the outbox events of `call_ids`: (delivered or given up, all).
pub fn progress(conn: &Connection, call_ids: &[String]) -> rusqlite::Result<(u64, u64)> {
    let mut done = 0;
    let mut all = 0;
    let mut stmt = conn.prepare_cached(
        "SELECT count(*), coalesce(sum(state != 'pending'), 0) FROM outbox WHERE call_key = ?1",
    )?;
    for id in call_ids {
        let (n, d): (i64, i64) = stmt.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        all += n as u64;
        done += d as u64;
    }
    Ok((done, all))
}
