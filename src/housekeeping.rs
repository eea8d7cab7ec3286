//! Housekeeping: keeps the database from growing without bound on a machine nobody looks
//! at. Once an hour (and at start-up), call events delivered to Flowlu longer ago than
//! `[outbox] keep_delivered` are deleted with their attempts, and so are the records of
//! what the CRM rules created for events that no longer exist (they only guard a retry
//! of such an event). Pending and failed events are never touched here: failed ones
//! wait for an admin (`appliance outbox retry|purge`). Call records are the call history
//! and are kept.

use std::time::Duration;

use tokio::sync::watch;

use crate::db::{Db, DbError};
use crate::util::now_ms;

const EVERY: Duration = Duration::from_secs(3600);

/// What one sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Swept {
    pub events: usize,
    pub crm_records: usize,
}

/// Deletes delivered events that finished before `before_ms` and the CRM-rule records
/// left without an event, in one transaction.
pub fn sweep(conn: &mut rusqlite::Connection, before_ms: i64) -> Result<Swept, DbError> {
    let tx = conn.transaction()?;
    let events = crate::outbox::purge(&tx, before_ms, false)?;
    let crm_records = crate::flowlu::crm::store::prune_created(&tx)?;
    tx.commit()?;
    Ok(Swept {
        events,
        crm_records,
    })
}

/// Sweeps every hour until `stop`; `keep` (asked before each sweep, so a reload applies)
/// of `None` (`keep_delivered = "0s"`) keeps delivered events forever.
pub async fn run(
    db: Db,
    keep: impl Fn() -> Option<Duration> + Send + 'static,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let Some(keep) = keep() else {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(EVERY) => continue,
            }
        };
        let before = now_ms() - keep.as_millis() as i64;
        match db.run(move |c| sweep(c, before)).await {
            Ok(s) if s.events + s.crm_records > 0 => log::info!(
                "housekeeping: {} delivered event(s) and {} CRM rule record(s) older than {} \
                 deleted",
                s.events,
                s.crm_records,
                crate::config::format_duration(keep)
            ),
            Ok(_) => {}
            Err(e) => log::error!("housekeeping: {e}"),
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::{NewEvent, enqueue};

    #[test]
    fn delivered_events_go_after_keep_and_pending_failed_and_young_ones_stay() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        crate::db::migrate::migrate(&mut c, crate::db::migrate::MIGRATIONS).unwrap();
        crate::db::add_test_integration(&c, 1).unwrap();
        for (n, state, finished) in [
            (1, "delivered", Some(1_000)),
            (2, "delivered", Some(9_000)),
            (3, "failed", Some(1_000)),
            (4, "pending", None),
        ] {
            let event_id = format!("ev-{n}");
            enqueue(
                &c,
                &NewEvent {
                    integration_id: 1,
                    call_key: format!("call-{n}"),
                    event_id: event_id.clone(),
                    kind: "crm.contact".into(),
                    payload: serde_json::json!({}),
                },
            )
            .unwrap();
            c.execute(
                "UPDATE outbox SET state = ?2, finished_at = ?3 WHERE event_id = ?1",
                rusqlite::params![event_id, state, finished],
            )
            .unwrap();
            crate::flowlu::crm::store::record_created(&c, &event_id, "contact", &n.to_string())
                .unwrap();
        }
        let swept = sweep(&mut c, 5_000).unwrap();
        assert_eq!(
            swept,
            Swept {
                events: 1,
                crm_records: 1
            }
        );
        let left = |c: &rusqlite::Connection, sql: &str| -> Vec<String> {
            let mut stmt = c.prepare(sql).unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<Vec<String>>>()
                .unwrap()
        };
        assert_eq!(
            left(&c, "SELECT event_id FROM outbox ORDER BY event_id"),
            ["ev-2", "ev-3", "ev-4"]
        );
        assert_eq!(
            left(&c, "SELECT event_id FROM crm_created ORDER BY event_id"),
            ["ev-2", "ev-3", "ev-4"]
        );
        // Nothing more to do the second time.
        assert_eq!(sweep(&mut c, 5_000).unwrap(), Swept::default());
    }
}
