//! SQL for callbacks: the per-account switch, the callbacks themselves, their deliveries
//! and every attempt. Synchronous functions over a connection handed in, so the call
//! engine can queue deliveries inside the transaction that ends a call.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use crate::secret::Secret;
use crate::util::now_ms;

/// Callbacks one account may have.
pub const MAX_PER_ACCOUNT: usize = 5;

/// Whether the account's callbacks get call records (off until switched on).
pub fn enabled(conn: &Connection, integration: i64) -> rusqlite::Result<bool> {
    // Prepared once per connection: asked in the engine's write of every finished call.
    Ok(conn
        .prepare_cached("SELECT enabled FROM callback_settings WHERE integration_id = ?1")?
        .query_row([integration], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

pub fn set_enabled(conn: &Connection, integration: i64, on: bool) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO callback_settings (integration_id, enabled, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (integration_id) DO UPDATE SET enabled = excluded.enabled,
                                                    updated_at = excluded.updated_at",
        params![integration, on, now_ms()],
    )?;
    Ok(())
}

/// One callback as stored.
#[derive(Debug, Clone)]
pub struct Callback {
    pub id: i64,
    pub integration_id: i64,
    pub url: String,
    pub auth: Option<(String, Secret)>,
    pub secret: Secret,
    pub created_at: i64,
}

const CALLBACK_COLUMNS: &str =
    "id, integration_id, url, auth_header, auth_value, secret, created_at";

fn callback_from(r: &Row<'_>) -> rusqlite::Result<Callback> {
    let name: Option<String> = r.get(3)?;
    let value: Option<String> = r.get(4)?;
    Ok(Callback {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        url: r.get(2)?,
        auth: name.zip(value).map(|(n, v)| (n, Secret::new(v))),
        secret: Secret::new(r.get::<_, String>(5)?),
        created_at: r.get(6)?,
    })
}

pub fn list(conn: &Connection, integration: i64) -> rusqlite::Result<Vec<Callback>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE integration_id = ?1 ORDER BY id"
    ))?;
    stmt.query_map([integration], callback_from)?.collect()
}

/// A callback of `integration` (never another account's).
pub fn get(conn: &Connection, integration: i64, id: i64) -> rusqlite::Result<Option<Callback>> {
    conn.query_row(
        &format!("SELECT {CALLBACK_COLUMNS} FROM callbacks WHERE id = ?1 AND integration_id = ?2"),
        params![id, integration],
        callback_from,
    )
    .optional()
}

/// Adds a callback; `None` when the account already has [`MAX_PER_ACCOUNT`].
pub fn add(
    conn: &mut Connection,
    integration: i64,
    url: &str,
    auth: Option<(String, String)>,
    secret: &str,
) -> rusqlite::Result<Option<i64>> {
    let tx = conn.transaction()?;
    let count: i64 = tx.query_row(
        "SELECT count(*) FROM callbacks WHERE integration_id = ?1",
        [integration],
        |r| r.get(0),
    )?;
    if count as usize >= MAX_PER_ACCOUNT {
        return Ok(None);
    }
    let (name, value) = auth.unzip();
    let now = now_ms();
    tx.execute(
        "INSERT INTO callbacks (integration_id, url, auth_header, auth_value, secret, created_at,
                                updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![integration, url, name, value, secret, now],
    )?;
    let id = tx.last_insert_rowid();
    tx.commit()?;
    Ok(Some(id))
}

/// Deletes a callback and its deliveries. False when it is not the account's.
pub fn delete(conn: &Connection, integration: i64, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM callbacks WHERE id = ?1 AND integration_id = ?2",
        params![id, integration],
    )? == 1)
}

/// Replaces the signing secret: deliveries still pending are signed with the new one.
pub fn rotate(
    conn: &Connection,
    integration: i64,
    id: i64,
    secret: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE callbacks SET secret = ?3, updated_at = ?4 WHERE id = ?1 AND integration_id = ?2",
        params![id, integration, secret, now_ms()],
    )? == 1)
}

/// The caller's own id of a click-to-call (`call.make` `uuid`).
pub fn set_call_uuid(conn: &Connection, call_id: &str, uuid: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE calls SET client_uuid = ?2 WHERE id = ?1",
        params![call_id, uuid],
    )?;
    Ok(())
}

pub fn call_uuid(conn: &Connection, call_id: &str) -> rusqlite::Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT client_uuid FROM calls WHERE id = ?1",
            [call_id],
            |r| r.get::<_, Option<String>>(0),
        )
        .optional()?
        .flatten())
}

/// Queues one delivery of `payload` to callback `callback_id`, due now. Returns its row.
pub fn enqueue(
    conn: &Connection,
    callback_id: i64,
    kind: &str,
    call_id: Option<&str>,
    payload: &str,
    leased_until: Option<i64>,
) -> rusqlite::Result<i64> {
    let now = now_ms();
    let delivery_id = format!("dl_{}", crate::secret::random_token(15));
    conn.execute(
        "INSERT INTO callback_deliveries (callback_id, delivery_id, kind, call_id, payload,
                                          next_attempt_at, leased_until, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
        params![
            callback_id,
            delivery_id,
            kind,
            call_id,
            payload,
            now,
            leased_until
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// A delivery taken for one attempt, with what sending it needs.
#[derive(Debug, Clone)]
pub struct Lease {
    pub row: i64,
    pub delivery_id: String,
    pub kind: String,
    pub payload: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub callback_id: i64,
    pub url: String,
    pub auth: Option<(String, Secret)>,
    pub secret: Secret,
}

/// A call's deliveries to one callback go out in order (`call.recording` never overtakes
/// `call.completed`): only the first pending one of each (callback, call) is due.
const HEAD: &str = "NOT EXISTS (SELECT 1 FROM callback_deliveries p
    WHERE p.callback_id = d.callback_id AND p.call_id = d.call_id
      AND p.state = 'pending' AND p.id < d.id)";

const LEASE_SELECT: &str = "SELECT d.id, d.delivery_id, d.kind, d.payload, d.attempts,
        c.id, c.url, c.auth_header, c.auth_value, c.secret
    FROM callback_deliveries d JOIN callbacks c ON c.id = d.callback_id";

fn lease_from(r: &Row<'_>) -> rusqlite::Result<Lease> {
    let name: Option<String> = r.get(7)?;
    let value: Option<String> = r.get(8)?;
    Ok(Lease {
        row: r.get(0)?,
        delivery_id: r.get(1)?,
        kind: r.get(2)?,
        payload: r.get(3)?,
        attempts: r.get(4)?,
        callback_id: r.get(5)?,
        url: r.get(6)?,
        auth: name.zip(value).map(|(n, v)| (n, Secret::new(v))),
        secret: Secret::new(r.get::<_, String>(9)?),
    })
}

/// Nothing is in flight when the process starts: forget leases a crash left behind.
pub fn clear_leases(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE callback_deliveries SET leased_until = NULL WHERE leased_until IS NOT NULL",
        [],
    )
}

/// Leases up to `limit` due pending deliveries for `lease_ms`.
pub fn lease_due(
    conn: &mut Connection,
    now: i64,
    limit: usize,
    lease_ms: i64,
) -> rusqlite::Result<Vec<Lease>> {
    let due = |c: &Connection, limit: usize| -> rusqlite::Result<Vec<Lease>> {
        c.prepare_cached(&format!(
            "{LEASE_SELECT}
             WHERE d.state = 'pending' AND d.next_attempt_at <= ?1
               AND (d.leased_until IS NULL OR d.leased_until <= ?1) AND {HEAD}
             ORDER BY d.next_attempt_at, d.id LIMIT ?2"
        ))?
        .query_map(params![now, limit as i64], lease_from)?
        .collect()
    };
    // The worker is woken by every finished call, most often with nothing to send: look
    // first without the write lock (which the call engine's writer needs meanwhile).
    if due(conn, 1)?.is_empty() {
        return Ok(Vec::new());
    }
    let tx = conn.transaction()?;
    let leases = due(&tx, limit)?;
    for lease in &leases {
        tx.execute(
            "UPDATE callback_deliveries SET leased_until = ?2 WHERE id = ?1",
            params![lease.row, now + lease_ms],
        )?;
    }
    tx.commit()?;
    Ok(leases)
}

/// One pending delivery by row (the "send test event" button sends it itself).
pub fn lease_one(conn: &Connection, row: i64) -> rusqlite::Result<Option<Lease>> {
    conn.query_row(
        &format!("{LEASE_SELECT} WHERE d.id = ?1 AND d.state = 'pending'"),
        [row],
        lease_from,
    )
    .optional()
}

/// When the next pending delivery becomes due, if any.
pub fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        &format!(
            "SELECT min(max(d.next_attempt_at, coalesce(d.leased_until, 0)))
             FROM callback_deliveries d WHERE d.state = 'pending' AND {HEAD}"
        ),
        [],
        |r| r.get(0),
    )
}

/// One attempt as stored.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// What an attempt does to its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    RetryAt(i64),
    Failed,
}

/// Stores an attempt and its effect on the delivery, in one transaction.
pub fn record(
    conn: &mut Connection,
    row: i64,
    attempt: &Attempt,
    outcome: Outcome,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO callback_attempts (delivery_row, attempt, started_at, duration_ms, status,
                                        error)
         VALUES (?1, (SELECT count(*) + 1 FROM callback_attempts WHERE delivery_row = ?1), ?2,
                 ?3, ?4, ?5)",
        params![
            row,
            attempt.started_at,
            attempt.duration_ms,
            attempt.status,
            attempt.error
        ],
    )?;
    let now = now_ms();
    let last_error = crate::outbox::attempt_error(attempt.error.as_deref(), attempt.status);
    match outcome {
        Outcome::Delivered => tx.execute(
            "UPDATE callback_deliveries SET state = 'delivered', finished_at = ?2,
                 leased_until = NULL, attempts = attempts + 1, last_status = ?3,
                 last_error = NULL
             WHERE id = ?1",
            params![row, now, attempt.status],
        )?,
        Outcome::RetryAt(at) => tx.execute(
            "UPDATE callback_deliveries SET next_attempt_at = ?2, leased_until = NULL,
                 attempts = attempts + 1, last_status = ?3, last_error = ?4
             WHERE id = ?1",
            params![row, at, attempt.status, last_error],
        )?,
        Outcome::Failed => tx.execute(
            "UPDATE callback_deliveries SET state = 'failed', finished_at = ?2,
                 leased_until = NULL, attempts = attempts + 1, last_status = ?3, last_error = ?4
             WHERE id = ?1",
            params![row, now, attempt.status, last_error],
        )?,
    };
    tx.commit()
}

/// One line of a callback's delivery log: an attempt and the delivery it belongs to.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    pub delivery_id: String,
    pub kind: String,
    pub call_id: Option<String>,
    /// The delivery's state now: pending, delivered or failed.
    pub state: String,
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
}

/// The last `limit` attempts to callback `callback_id`, newest first.
pub fn log(conn: &Connection, callback_id: i64, limit: usize) -> rusqlite::Result<Vec<LogLine>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.delivery_id, d.kind, d.call_id, d.state, a.attempt, a.started_at,
                a.duration_ms, a.status, a.error
         FROM callback_attempts a JOIN callback_deliveries d ON d.id = a.delivery_row
         WHERE d.callback_id = ?1 ORDER BY a.id DESC LIMIT ?2",
    )?;
    stmt.query_map(params![callback_id, limit as i64], |r| {
        Ok(LogLine {
            delivery_id: r.get(0)?,
            kind: r.get(1)?,
            call_id: r.get(2)?,
            state: r.get(3)?,
            attempt: r.get(4)?,
            started_at: r.get(5)?,
            duration_ms: r.get(6)?,
            status: r.get(7)?,
            error: r.get(8)?,
        })
    })?
    .collect()
}

/// Deletes finished (delivered or failed) deliveries that finished before `before_ms`,
/// with their attempts. Pending ones are never purged.
pub fn purge(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM callback_deliveries WHERE state != 'pending' AND finished_at < ?1",
        [before_ms],
    )
}

/// Deliveries of a callback still waiting (first attempt or a retry).
pub fn pending_count(conn: &Connection, callback_id: i64) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM callback_deliveries WHERE callback_id = ?1 AND state = 'pending'",
        [callback_id],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{Call, CallState, CallStatus, Direction};
    use crate::db::Db;

    fn call(id: &str) -> Call {
        Call {
            id: id.into(),
            integration_id: Some(1),
            crm_call_id: Some("crm-1".into()),
            pbx_call: "p".into(),
            phone: "79990001122".into(),
            extension: Some("100".into()),
            user_id: Some("u1".into()),
            state: CallState::Ended,
            status: Some(CallStatus::Answered),
            answered_at: Some(2_000),
            ended_at: Some(9_000),
            duration: Some(7),
            wait: Some(1),
            ..Call::new(Direction::Outgoing, 1_000)
        }
    }

    #[test]
    fn queue_lease_retry_fail_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        db.with_conn(|c| {
            crate::db::add_test_integration(c, 1)?;
            let cb = add(c, 1, "https://h.example/", None, "whsec_x")?.unwrap();
            crate::calls::store::save(c, &call("c1"), 0)?;
            set_call_uuid(c, "c1", "order-1")?;
            // Off by default: nothing queued.
            assert_eq!(
                crate::callbacks::enqueue_call(c, 1, &call("c1"), "call.completed", None)?,
                0
            );
            set_enabled(c, 1, true)?;
            assert_eq!(
                crate::callbacks::enqueue_call(c, 1, &call("c1"), "call.completed", None)?,
                1
            );
            let url = Some("https://a.example/recordings/x");
            assert_eq!(
                crate::callbacks::enqueue_call(c, 1, &call("c1"), "call.recording", url)?,
                1
            );
            let now = now_ms();
            let leases = lease_due(c, now, 10, 60_000)?;
            assert_eq!(leases.len(), 1, "call.recording waits for call.completed");
            assert_eq!(leases[0].kind, "call.completed");
            let body: serde_json::Value = serde_json::from_str(&leases[0].payload).unwrap();
            assert_eq!(body["call"]["uuid"], "order-1");
            assert!(lease_due(c, now, 10, 60_000)?.is_empty(), "leased");
            // A crash: leases are cleared at start-up and the row is due again.
            clear_leases(c)?;
            let lease = lease_due(c, now, 10, 60_000)?.remove(0);
            let failed = Attempt {
                started_at: now,
                duration_ms: 5,
                status: Some(500),
                error: None,
            };
            record(c, lease.row, &failed, Outcome::RetryAt(now + 1_000))?;
            assert!(lease_due(c, now, 10, 60_000)?.is_empty(), "not due yet");
            assert_eq!(next_due(c)?, Some(now + 1_000));
            let lease = lease_due(c, now + 1_000, 10, 60_000)?.remove(0);
            assert_eq!(lease.attempts, 1);
            record(c, lease.row, &failed, Outcome::Failed)?;
            // The call's next delivery is free now.
            let next = lease_due(c, now + 1_000, 10, 60_000)?.remove(0);
            assert_eq!(next.kind, "call.recording");
            record(c, next.row, &failed, Outcome::Failed)?;
            assert_eq!(next_due(c)?, None);
            let log = log(c, cb, 10)?;
            assert_eq!(log.len(), 3);
            assert_eq!((log[1].attempt, log[1].state.as_str()), (2, "failed"));
            assert_eq!(purge(c, now_ms() - 60_000)?, 0, "finished just now: kept");
            assert_eq!(purge(c, now_ms() + 1)?, 2);
            // Another account cannot touch it.
            assert!(get(c, 2, cb)?.is_none() && !delete(c, 2, cb)? && !rotate(c, 2, cb, "x")?);
            Ok::<_, crate::db::DbError>(())
        })
        .unwrap();
    }
}
