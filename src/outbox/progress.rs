//! How far the delivery of given calls' events got (the settings page's history import).

use rusqlite::{Connection, params};

/// Of `calls` (integration id, call key), how many have no event waiting (delivered
/// or given up). One lookup per call through the per-call index.
pub fn calls_sent(conn: &Connection, calls: &[(i64, String)]) -> rusqlite::Result<u64> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM outbox
                        WHERE integration_id = ?1 AND call_key = ?2 AND state = 'pending')",
    )?;
    let mut sent = 0;
    for (integration_id, call_key) in calls {
        let waiting: bool = stmt.query_row(params![integration_id, call_key], |r| r.get(0))?;
        sent += u64::from(!waiting);
    }
    Ok(sent)
}
