//! SQL for the `calls` table. Synchronous functions over a connection, so the engine can
//! write a call and its outbox events in one transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Call, CallState, CallStatus, Direction};

const COLUMNS: &str = "id, integration_id, crm_call_id, pbx_call, direction, phone, line,
    extension, user_id, state, status, started_at, answered_at, ended_at, duration, wait,
    hangup_cause, recording_path, backfilled, queue";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Call> {
    let text = |i: usize| r.get::<_, String>(i);
    Ok(Call {
        id: r.get(0)?,
        integration_id: r.get(1)?,
        crm_call_id: r.get(2)?,
        pbx_call: r.get(3)?,
        direction: Direction::parse(&text(4)?).unwrap_or(Direction::Incoming),
        phone: r.get(5)?,
        line: r.get(6)?,
        extension: r.get(7)?,
        user_id: r.get(8)?,
        state: CallState::parse(&text(9)?).unwrap_or(CallState::Ended),
        status: r
            .get::<_, Option<String>>(10)?
            .and_then(|s| CallStatus::parse(&s)),
        started_at: r.get(11)?,
        answered_at: r.get(12)?,
        ended_at: r.get(13)?,
        duration: r.get(14)?,
        wait: r.get(15)?,
        hangup_cause: r.get(16)?,
        recording_path: r.get(17)?,
        backfilled: r.get::<_, i64>(18)? != 0,
        queue: r.get(19)?,
    })
}

/// Inserts or replaces the whole record.
pub fn save(conn: &Connection, c: &Call, now_ms: i64) -> rusqlite::Result<()> {
    // Prepared once per connection: the engine saves a call on every change of it.
    conn.prepare_cached(&format!(
        "INSERT INTO calls ({COLUMNS}, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21)
             ON CONFLICT (id) DO UPDATE SET
                integration_id = excluded.integration_id, crm_call_id = excluded.crm_call_id,
                pbx_call = excluded.pbx_call, direction = excluded.direction,
                phone = excluded.phone, line = excluded.line, extension = excluded.extension,
                user_id = excluded.user_id, state = excluded.state, status = excluded.status,
                started_at = excluded.started_at, answered_at = excluded.answered_at,
                ended_at = excluded.ended_at, duration = excluded.duration,
                wait = excluded.wait, hangup_cause = excluded.hangup_cause,
                recording_path = excluded.recording_path, backfilled = excluded.backfilled,
                queue = excluded.queue, updated_at = excluded.updated_at"
    ))?
    .execute(params![
        c.id,
        c.integration_id,
        c.crm_call_id,
        c.pbx_call,
        c.direction.as_str(),
        c.phone,
        c.line,
        c.extension,
        c.user_id,
        c.state.as_str(),
        c.status.map(CallStatus::as_str),
        c.started_at,
        c.answered_at,
        c.ended_at,
        c.duration,
        c.wait,
        c.hangup_cause,
        c.recording_path,
        c.backfilled,
        c.queue,
        now_ms
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Call>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM calls WHERE id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

/// A call of `integration_id` by our id or by Flowlu's.
pub fn find(conn: &Connection, integration_id: i64, id: &str) -> rusqlite::Result<Option<Call>> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM calls
             WHERE integration_id = ?1 AND (id = ?2 OR crm_call_id = ?2)
             ORDER BY (id = ?2) DESC LIMIT 1"
        ),
        params![integration_id, id],
        from_row,
    )
    .optional()
}

/// Calls not yet ended: after a restart the engine reconciles them with the PBX.
pub fn open_calls(conn: &Connection) -> rusqlite::Result<Vec<Call>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM calls WHERE state != 'ended' ORDER BY started_at"
    ))?;
    stmt.query_map([], from_row)?.collect()
}

/// What `calls.list` may filter on.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub user_id: Option<String>,
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    /// The customer's number, normalized (`calls::phone`) as stored.
    pub phone: Option<String>,
}

/// A page of an account's calls, newest first, and the total matching.
pub fn list(
    conn: &Connection,
    integration_id: i64,
    filter: &Filter,
    offset: u64,
    limit: u64,
) -> rusqlite::Result<(Vec<Call>, u64)> {
    let condition = "integration_id = ?1
        AND (?2 IS NULL OR started_at >= ?2) AND (?3 IS NULL OR started_at < ?3)
        AND (?4 IS NULL OR user_id = ?4) AND (?5 IS NULL OR direction = ?5)
        AND (?6 IS NULL OR status = ?6) AND (?7 IS NULL OR phone = ?7)";
    let args = params![
        integration_id,
        filter.from_ms,
        filter.to_ms,
        filter.user_id,
        filter.direction.map(Direction::as_str),
        filter.status.map(CallStatus::as_str),
        filter.phone,
    ];
    let total: i64 = conn.query_row(
        &format!("SELECT count(*) FROM calls WHERE {condition}"),
        args,
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM calls WHERE {condition}
         ORDER BY started_at DESC, id LIMIT ?8 OFFSET ?9"
    ))?;
    let calls = stmt
        .query_map(
            params![
                integration_id,
                filter.from_ms,
                filter.to_ms,
                filter.user_id,
                filter.direction.map(Direction::as_str),
                filter.status.map(CallStatus::as_str),
                filter.phone,
                limit as i64,
                offset as i64
            ],
            from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((calls, total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn call(id: &str, integration: i64, started: i64) -> Call {
        Call {
            id: id.into(),
            integration_id: Some(integration),
            crm_call_id: None,
            pbx_call: format!("pbx-{id}"),
            direction: Direction::Incoming,
            phone: "79161234567".into(),
            line: "74950000000".into(),
            extension: Some("100".into()),
            user_id: Some("u1".into()),
            state: CallState::Ended,
            status: Some(CallStatus::Answered),
            started_at: started,
            answered_at: Some(started + 5000),
            ended_at: Some(started + 11000),
            duration: Some(6),
            wait: Some(5),
            hangup_cause: Some("16 Normal Clearing".into()),
            recording_path: None,
            backfilled: false,
            queue: Some("sales".into()),
        }
    }

    #[test]
    fn save_get_find_list() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        db.with_conn(|c| {
            for id in [1, 2] {
                crate::db::add_test_integration(c, id)?;
            }
            let mut a = call("a", 1, 1_000);
            a.crm_call_id = Some("crm-42".into());
            save(c, &a, 0)?;
            save(c, &call("b", 1, 2_000), 0)?;
            let mut other = call("c", 2, 3_000);
            other.status = Some(CallStatus::Missed);
            save(c, &other, 0)?;
            // Update in place.
            a.extension = Some("101".into());
            save(c, &a, 1)?;
            assert_eq!(get(c, "a")?.unwrap(), a);
            assert_eq!(find(c, 1, "crm-42")?.unwrap().id, "a");
            assert_eq!(find(c, 1, "a")?.unwrap().id, "a");
            assert!(find(c, 2, "a")?.is_none(), "another account's call");
            let (page, total) = list(c, 1, &Filter::default(), 0, 1)?;
            assert_eq!((page[0].id.as_str(), total), ("b", 2));
            let f = Filter {
                from_ms: Some(1_500),
                ..Filter::default()
            };
            assert_eq!(list(c, 1, &f, 0, 10)?.1, 1);
            let f = Filter {
                status: Some(CallStatus::Missed),
                ..Filter::default()
            };
            assert_eq!(list(c, 2, &f, 0, 10)?.1, 1);
            assert_eq!(list(c, 1, &f, 0, 10)?.1, 0);
            assert!(open_calls(c)?.is_empty());
            Ok::<_, crate::db::DbError>(())
        })
        .unwrap();
    }
}
