//! SQL for the outbox tables. Synchronous functions over a connection, so callers can
//! run them inside their own transaction (the call engine) or through `Db::run`.

use rusqlite::{Connection, OptionalExtension, Row as SqlRow, params};
use serde::Serialize;

use super::{HELD, NewEvent, State, now_ms};

/// Appends an event. Call inside the transaction that writes the call change it reports.
pub fn enqueue(conn: &Connection, ev: &NewEvent) -> rusqlite::Result<i64> {
    enqueue_reserved(conn, ev, None)
}

/// Appends an event the caller will deliver itself ([`Outbox::deliver_now`](super::Outbox::deliver_now))
/// until `reserved_until` (unix ms): the worker leaves it alone until then, and sends it
/// as usual if nobody did.
pub fn enqueue_reserved(
    conn: &Connection,
    ev: &NewEvent,
    reserved_until: Option<i64>,
) -> rusqlite::Result<i64> {
    let now = now_ms();
    // Prepared once per connection: written for every event.
    conn.prepare_cached(
        "INSERT INTO outbox (integration_id, call_key, event_id, kind, payload, state,
                             next_attempt_at, leased_until, created_at, blocked)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?6,
                 EXISTS (SELECT 1 FROM outbox p
                         WHERE p.integration_id = ?1 AND p.call_key = ?2
                           AND p.state = 'pending'))",
    )?
    .execute(params![
        ev.integration_id,
        ev.call_key,
        ev.event_id,
        ev.kind,
        ev.payload.to_string(),
        now,
        reserved_until
    ])?;
    Ok(conn.last_insert_rowid())
}

/// A row handed to the worker for one attempt.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub id: i64,
    pub integration_id: i64,
    pub event_id: String,
    /// The row's kind: the transport picks the request by it (`call.*`, `crm.*`).
    pub kind: String,
    pub payload: String,
    /// Failed attempts so far (the schedule position).
    pub attempts: u32,
    /// When the event was written (unix ms): delivery latency is measured from it.
    pub created_at: i64,
}

/// Rows of a call that are not yet delivered block the ones after them: this selects the
/// first pending row of every (integration, call), its head. `blocked` says whether a
/// pending row has an earlier pending row of its call, kept right by `enqueue` and the
/// triggers of migration 14; the partial indexes `outbox_ready` and `outbox_ready_init`
/// hold exactly the rows this selects, so a lease reads heads only, however many later
/// events wait behind them.
const HEAD: &str = "o.state = 'pending' AND o.blocked = 0";

/// What `blocked` stands for, computed from scratch (tests check the two agree).
#[cfg(test)]
pub(crate) const HEAD_BY_SCAN: &str = "o.state = 'pending'
    AND NOT EXISTS (SELECT 1 FROM outbox p
                    WHERE p.integration_id = o.integration_id AND p.call_key = o.call_key
                      AND p.state = 'pending' AND p.id < o.id)";

fn lease_from(row: &SqlRow<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        id: row.get(0)?,
        integration_id: row.get(1)?,
        event_id: row.get(2)?,
        payload: row.get(3)?,
        attempts: row.get(4)?,
        created_at: row.get(5)?,
        kind: row.get(6)?,
    })
}

/// Nothing is in flight when the process starts: forget leases a crash left behind.
pub(crate) fn clear_leases(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET leased_until = NULL WHERE leased_until IS NOT NULL",
        [],
    )
}

/// Accounts whose rows are not leased now (paused after a 429), as the JSON array the
/// queries below read with `json_each`.
pub(crate) fn id_list(ids: &[i64]) -> String {
    serde_json::to_string(ids).expect("integers serialize")
}

/// The due heads not in flight (?1: now, ?2: how many, ?3: paused accounts), only calls'
/// `call.init` rows when `only_init`. Through the partial index `outbox_ready_init` or
/// `outbox_ready` (migration 14), named because SQLite without statistics would take
/// `outbox_pending` and read every pending row: only heads are read, and the rows in
/// flight (at most `max_in_flight`) skipped.
pub(crate) fn due_heads_sql(only_init: bool) -> String {
    let (index, only_init) = if only_init {
        ("outbox_ready_init", "AND o.kind = 'call.init'")
    } else {
        ("outbox_ready", "")
    };
    format!(
        "SELECT o.id, o.integration_id, o.event_id, o.payload, o.attempts, o.created_at,
                o.kind
         FROM outbox o INDEXED BY {index}
         WHERE {HEAD} {only_init} AND o.next_attempt_at <= ?1
           AND (o.leased_until IS NULL OR o.leased_until <= ?1)
           AND o.integration_id NOT IN (SELECT value FROM json_each(?3))
         ORDER BY o.next_attempt_at, o.id LIMIT ?2"
    )
}

/// Leases (in the caller's transaction) up to `limit` due head rows for `lease_ms`, none
/// of the accounts in `paused` (an [`id_list`]). Calls' first events (`call.init`, the one Flowlu answers with a
/// routing decision while the caller waits) come first: a new call never waits behind
/// other calls' later events. Per-call order is untouched: only head rows are leased.
fn lease_due_in(
    tx: &Connection,
    now: i64,
    limit: usize,
    lease_ms: i64,
    paused: &str,
) -> rusqlite::Result<Vec<Lease>> {
    let mut leases = Vec::new();
    for only_init in [true, false] {
        let room = limit - leases.len();
        if room == 0 {
            break;
        }
        let found = {
            let mut stmt = tx.prepare_cached(&due_heads_sql(only_init))?;
            let rows = stmt.query_map(params![now, room as i64, paused], lease_from)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        let mut lease = tx.prepare_cached("UPDATE outbox SET leased_until = ?2 WHERE id = ?1")?;
        for row in &found {
            lease.execute(params![row.id, now + lease_ms])?;
        }
        leases.extend(found);
    }
    Ok(leases)
}

/// Leases (in the caller's transaction) one specific row if it is the head of its call
/// (whatever lease it holds: the caller reserved it).
pub(crate) fn lease_one(
    tx: &Connection,
    id: i64,
    now: i64,
    lease_ms: i64,
) -> rusqlite::Result<Option<Lease>> {
    let lease = tx
        .query_row(
            &format!(
                "SELECT o.id, o.integration_id, o.event_id, o.payload, o.attempts, o.created_at,
                    o.kind
             FROM outbox o
                 WHERE o.id = ?1 AND {HEAD}"
            ),
            params![id],
            lease_from,
        )
        .optional()?;
    if lease.is_some() {
        tx.execute(
            "UPDATE outbox SET leased_until = ?2 WHERE id = ?1",
            params![id, now + lease_ms],
        )?;
    }
    Ok(lease)
}

/// When the next head row becomes due (leased rows and the accounts in `paused`, an
/// [`id_list`], excluded), if any.
pub(crate) fn next_due(conn: &Connection, paused: &str) -> rusqlite::Result<Option<i64>> {
    // The first head not in flight, in due order (`outbox_ready`) ...
    let queued: Option<i64> = conn
        .prepare_cached(&format!(
            "SELECT o.next_attempt_at FROM outbox o INDEXED BY outbox_ready
             WHERE {HEAD} AND o.leased_until IS NULL
               AND o.integration_id NOT IN (SELECT value FROM json_each(?1))
             ORDER BY o.next_attempt_at, o.id LIMIT 1"
        ))?
        .query_row([paused], |r| r.get(0))
        .optional()?;
    // ... and the first lease or reservation to end (`outbox_leased`): a reserved
    // `call.init` nobody sent is the worker's then. Leases already over are leasable
    // now (or blocked, and then not due): the query above or `lease_due_in` has them.
    let lease_end: Option<i64> = conn
        .prepare_cached(
            "SELECT min(leased_until) FROM outbox INDEXED BY outbox_leased
             WHERE leased_until IS NOT NULL AND leased_until > ?1 AND state = 'pending'",
        )?
        .query_row([now_ms()], |r| r.get(0))?;
    Ok(queued.into_iter().chain(lease_end).min())
}

/// One attempt as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub attempt: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// What an attempt does to its row.
#[derive(Debug, Clone)]
pub(crate) enum Update {
    Delivered,
    /// Retry at this time; `failure` moves the schedule position on.
    Retry {
        at: i64,
        failure: bool,
    },
    Failed(String),
    /// The account went on hold during the attempt (refresh refused): wait for release.
    Held {
        at: i64,
    },
    /// Sent again at once by the same delivery (after a token refresh): the row keeps its
    /// lease so nothing else picks it up meanwhile.
    Resending,
}

/// The first 4 KiB of an answer, cut at a character boundary.
pub(crate) fn cut_body(body: &str) -> String {
    const MAX: usize = 4096;
    if body.len() <= MAX {
        return body.to_string();
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &body[..end])
}

/// Runs one statement through the connection's statement cache (the worker's statements
/// run for every delivered event).
fn cached<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Stores an attempt and its effect on the row (inside the caller's transaction).
fn record_in(tx: &Connection, id: i64, attempt: &Attempt, update: &Update) -> rusqlite::Result<()> {
    cached(
        tx,
        "INSERT INTO outbox_attempts (outbox_id, attempt, started_at, duration_ms, status, error,
                                      response_body)
         VALUES (?1, (SELECT count(*) + 1 FROM outbox_attempts WHERE outbox_id = ?1), ?2, ?3, ?4,
                 ?5, ?6)",
        params![
            id,
            attempt.started_at,
            attempt.duration_ms,
            attempt.status,
            attempt.error,
            attempt.response_body
        ],
    )?;
    let now = now_ms();
    let last_error = super::attempt_error(attempt.error.as_deref(), attempt.status);
    match update {
        Update::Delivered => cached(
            tx,
            "UPDATE outbox SET state = 'delivered', finished_at = ?2, leased_until = NULL,
                               held = 0, last_status = ?3, last_error = NULL
             WHERE id = ?1",
            params![id, now, attempt.status],
        )?,
        Update::Retry { at, failure } => cached(
            tx,
            "UPDATE outbox SET next_attempt_at = ?2, leased_until = NULL, held = 0,
                               attempts = attempts + ?3, last_status = ?4, last_error = ?5
             WHERE id = ?1",
            params![id, at, i64::from(*failure), attempt.status, last_error],
        )?,
        Update::Resending => cached(
            tx,
            "UPDATE outbox SET last_status = ?2, last_error = ?3 WHERE id = ?1",
            params![id, attempt.status, last_error],
        )?,
        Update::Held { at } => cached(
            tx,
            "UPDATE outbox SET next_attempt_at = ?2, leased_until = NULL, held = 1,
                               last_status = ?3, last_error = ?4
             WHERE id = ?1",
            params![id, at, attempt.status, last_error],
        )?,
        Update::Failed(reason) => cached(
            tx,
            "UPDATE outbox SET state = 'failed', finished_at = ?2, leased_until = NULL,
                               held = 0, attempts = attempts + 1, last_status = ?3, last_error = ?4
             WHERE id = ?1",
            params![id, now, attempt.status, reason],
        )?,
    };
    Ok(())
}

/// What the delivery of one leased row does to the table, applied in the worker's next
/// batch ([`flush`]).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// An attempt and its effect on the row.
    Record {
        id: i64,
        attempt: Attempt,
        update: Update,
    },
    /// Back without an attempt, due no earlier than `at` (its account was paused).
    PutBack { id: i64, at: i64 },
    /// Back without an attempt, held until `until` (its account cannot take deliveries).
    Hold { id: i64, until: i64, why: String },
}

/// One batch of the worker, in one transaction: stores the outcomes of finished
/// deliveries (`ops`, in order), then leases up to `limit` due rows (as [`lease_due_in`]:
/// a row whose predecessor was just delivered is leasable in the same batch) and lets
/// `load` read each leased account's state in the same transaction. With room left
/// after leasing, also returns when the next row is due ([`next_due`]).
#[cfg(test)]
pub(crate) fn flush<A>(
    conn: &mut Connection,
    ops: &[Op],
    limit: usize,
    lease_ms: i64,
    paused: &str,
    load: impl FnMut(&Connection, i64) -> A,
) -> rusqlite::Result<Flushed<A>> {
    let tx = conn.transaction()?;
    let flushed = flush_in(&tx, ops, limit, lease_ms, paused, load)?;
    tx.commit()?;
    Ok(flushed)
}

/// [`flush`] inside the caller's transaction (the worker's: `Db::write`).
pub(crate) fn flush_in<A>(
    tx: &Connection,
    ops: &[Op],
    limit: usize,
    lease_ms: i64,
    paused: &str,
    mut load: impl FnMut(&Connection, i64) -> A,
) -> rusqlite::Result<Flushed<A>> {
    for op in ops {
        match op {
            Op::Record {
                id,
                attempt,
                update,
            } => record_in(tx, *id, attempt, update)?,
            Op::PutBack { id, at } => put_back(tx, *id, *at)?,
            Op::Hold { id, until, why } => hold(tx, *id, *until, why)?,
        }
    }
    let now = now_ms();
    let leases = if limit > 0 {
        lease_due_in(tx, now, limit, lease_ms, paused)?
    } else {
        Vec::new()
    };
    let mut accounts = Vec::new();
    for lease in &leases {
        if !accounts.iter().any(|(id, _)| *id == lease.integration_id) {
            accounts.push((lease.integration_id, load(tx, lease.integration_id)));
        }
    }
    let next_due = if limit > 0 && leases.len() < limit {
        next_due(tx, paused)?
    } else {
        None
    };
    Ok(Flushed {
        leases,
        accounts,
        next_due,
    })
}

/// What a [`flush`] leased.
pub(crate) struct Flushed<A> {
    pub leases: Vec<Lease>,
    /// Each leased account once, as `load` read it.
    pub accounts: Vec<(i64, A)>,
    pub next_due: Option<i64>,
}

/// Puts a leased row back without an attempt, due no earlier than `at` (its account was
/// paused by a 429 after the row was leased).
pub(crate) fn put_back(conn: &Connection, id: i64, at: i64) -> rusqlite::Result<()> {
    cached(
        conn,
        "UPDATE outbox SET next_attempt_at = max(next_attempt_at, ?2), leased_until = NULL
         WHERE id = ?1",
        params![id, at],
    )?;
    Ok(())
}

/// Puts a leased row back without an attempt (its account is on hold).
pub(crate) fn hold(conn: &Connection, id: i64, until: i64, why: &str) -> rusqlite::Result<()> {
    cached(
        conn,
        "UPDATE outbox SET next_attempt_at = ?2, leased_until = NULL, held = 1,
                           last_error = ?3
         WHERE id = ?1",
        params![id, until, format!("{HELD}{why}")],
    )?;
    Ok(())
}

/// An outbox row as the admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: i64,
    pub integration_id: i64,
    pub call_key: String,
    pub event_id: String,
    pub kind: String,
    pub state: State,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

const ROW_COLUMNS: &str = "id, integration_id, call_key, event_id, kind, state, attempts,
    next_attempt_at, created_at, finished_at, last_status, last_error";

fn row_from(r: &SqlRow<'_>) -> rusqlite::Result<Row> {
    let state: String = r.get(5)?;
    Ok(Row {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        call_key: r.get(2)?,
        event_id: r.get(3)?,
        kind: r.get(4)?,
        state: State::parse(&state).unwrap_or(State::Failed),
        attempts: r.get(6)?,
        next_attempt_at: r.get(7)?,
        created_at: r.get(8)?,
        finished_at: r.get(9)?,
        last_status: r.get(10)?,
        last_error: r.get(11)?,
    })
}

/// Rows, newest first, optionally only one state and/or one integration.
pub fn list(
    conn: &Connection,
    state: Option<State>,
    integration_id: Option<i64>,
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM outbox
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR integration_id = ?2)
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![state.map(State::as_str), integration_id, limit as i64],
        row_from,
    )?;
    rows.collect()
}

/// One row with its payload and every attempt.
pub fn show(conn: &Connection, id: i64) -> rusqlite::Result<Option<(Row, String, Vec<Attempt>)>> {
    let Some((row, payload)) = conn
        .query_row(
            &format!("SELECT {ROW_COLUMNS}, payload FROM outbox WHERE id = ?1"),
            [id],
            |r| Ok((row_from(r)?, r.get::<_, String>(12)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT attempt, started_at, duration_ms, status, error, response_body
         FROM outbox_attempts WHERE outbox_id = ?1 ORDER BY attempt",
    )?;
    let attempts = stmt
        .query_map([id], |r| {
            Ok(Attempt {
                attempt: r.get(0)?,
                started_at: r.get(1)?,
                duration_ms: r.get(2)?,
                status: r.get(3)?,
                error: r.get(4)?,
                response_body: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some((row, payload, attempts)))
}

/// Sends failed rows again from the start of the schedule. `ids` empty means every failed
/// row (of `integration_id`, when given). Returns how many rows were re-queued.
pub fn replay(
    conn: &Connection,
    ids: &[i64],
    integration_id: Option<i64>,
) -> rusqlite::Result<usize> {
    let now = now_ms();
    if ids.is_empty() {
        return conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?1,
                               finished_at = NULL
             WHERE state = 'failed' AND (?2 IS NULL OR integration_id = ?2)",
            params![now, integration_id],
        );
    }
    let mut changed = 0;
    for id in ids {
        changed += conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                               finished_at = NULL
             WHERE id = ?1 AND state = 'failed' AND (?3 IS NULL OR integration_id = ?3)",
            params![id, now, integration_id],
        )?;
    }
    Ok(changed)
}

/// Deletes finished (delivered or failed) rows that finished before `before_ms`.
/// Pending rows are never purged.
pub fn purge(conn: &Connection, before_ms: i64, include_failed: bool) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM outbox
         WHERE finished_at < ?1 AND (state = 'delivered' OR (?2 AND state = 'failed'))",
        params![before_ms, include_failed],
    )
}

/// Makes an account's held rows due now (its tokens were renewed). Rows waiting out a
/// retry delay keep their schedule.
pub fn release_held(conn: &Connection, integration_id: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE outbox SET next_attempt_at = ?2, held = 0
         WHERE integration_id = ?1 AND state = 'pending' AND held = 1",
        params![integration_id, now_ms()],
    )
}

/// Counts for the settings page, /healthz and metrics.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    /// Creation time of the oldest pending row (unix ms).
    pub oldest_pending_at: Option<i64>,
}

pub fn summary(conn: &Connection, integration_id: Option<i64>) -> rusqlite::Result<Summary> {
    conn.query_row(
        "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'failed'), 0),
                coalesce(sum(state = 'delivered'), 0),
                min(CASE WHEN state = 'pending' THEN created_at END)
         FROM outbox WHERE (?1 IS NULL OR integration_id = ?1)",
        [integration_id],
        |r| {
            Ok(Summary {
                pending: r.get(0)?,
                failed: r.get(1)?,
                delivered: r.get(2)?,
                oldest_pending_at: r.get(3)?,
            })
        },
    )
}

#[cfg(test)]
mod tests;
