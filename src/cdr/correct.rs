//! A back-fill's corrections reach the result callbacks (`crate::callbacks`) too.
//!
//! A call the appliance closed blindly at an outage was queued to its account's callbacks
//! as `call.completed` with what was known then (no real end, no talk time). When the
//! PBX's record corrects it, each callback must end up with the corrected record:
//! - its `call.completed` not sent yet (pending, no attempt in flight): the body is
//!   replaced by the corrected record (same event and delivery id), so the endpoint only
//!   ever sees the right one;
//! - already delivered, in flight, or given up: a new delivery, `call.corrected`, with the
//!   whole corrected record (same `call.id`), queued after it (a call's deliveries go out
//!   in order). An endpoint that keeps the latest record per `call.id` ends up right.
//!
//! Runs before the correction is written ([`super::backfill::apply`]): a crash between
//! the two sends the correction again with the next back-fill (at least once, as every
//! callback delivery), never loses it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::callbacks::{payload, store};
use crate::calls::Call;
use crate::util::now_ms;

/// The event name of a correction delivered after its `call.completed`.
pub const CORRECTED: &str = "call.corrected";

/// Queues or rewrites the callback deliveries for `corrected` calls (see the module
/// docs). Returns how many deliveries were rewritten and how many queued.
pub fn enqueue(conn: &mut Connection, corrected: &[Call]) -> rusqlite::Result<(usize, usize)> {
    let tx = conn.transaction()?;
    let (mut rewritten, mut queued) = (0, 0);
    for call in corrected {
        let Some(integration) = call.integration_id else {
            continue;
        };
        if !store::enabled(&tx, integration)? {
            continue;
        }
        let uuid = store::call_uuid(&tx, &call.id)?;
        let mut unsent = Vec::new();
        for cb in store::list(&tx, integration)? {
            // The newest call.completed to this callback, if it is still waiting.
            let pending: Option<(i64, String)> = tx
                .query_row(
                    "SELECT id, payload FROM callback_deliveries
                     WHERE callback_id = ?1 AND call_id = ?2 AND kind = 'call.completed'
                       AND state = 'pending' AND leased_until IS NULL
                     ORDER BY id DESC LIMIT 1",
                    params![cb.id, call.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match pending {
                Some((row, body)) => {
                    let event_id = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let fixed = payload::call_event(
                        "call.completed",
                        &event_id,
                        call,
                        uuid.as_deref(),
                        None,
                        now_ms(),
                    );
                    tx.execute(
                        "UPDATE callback_deliveries SET payload = ?2 WHERE id = ?1",
                        params![row, fixed.to_string()],
                    )?;
                    rewritten += 1;
                }
                None => unsent.push(cb),
            }
        }
        if unsent.is_empty() {
            continue;
        }
        // One event id for every callback that gets the correction.
        let event_id = format!("ev_{}", crate::secret::random_token(15));
        let body = payload::call_event(CORRECTED, &event_id, call, uuid.as_deref(), None, now_ms())
            .to_string();
        for cb in unsent {
            store::enqueue(&tx, cb.id, CORRECTED, Some(&call.id), &body, None)?;
            queued += 1;
        }
    }
    tx.commit()?;
    Ok((rewritten, queued))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{CallState, CallStatus, Direction};
    use crate::db::{DbError, test_db};

    fn delivery(conn: &Connection, row: i64) -> (String, String, serde_json::Value) {
        conn.query_row(
            "SELECT kind, state, payload FROM callback_deliveries WHERE id = ?1",
            [row],
            |r| {
                let body: String = r.get(2)?;
                Ok((r.get(0)?, r.get(1)?, serde_json::from_str(&body).unwrap()))
            },
        )
        .unwrap()
    }

    #[test]
    fn a_pending_completion_is_rewritten_a_sent_one_followed_by_call_corrected() {
        let (_dir, db) = test_db();
        db.with_conn(|c| {
            // Three callbacks: the blind close's call.completed is still waiting for the
            // first, was delivered to the second, is in flight to the third.
            let cbs: Vec<i64> = (0..3)
                .map(|i| {
                    store::add(c, 1, &format!("https://h{i}.example/cb"), None, "whsec_x")
                        .unwrap()
                        .unwrap()
                })
                .collect();
            store::set_enabled(c, 1, true)?;
            let mut call = Call {
                integration_id: Some(1),
                state: CallState::Ended,
                status: Some(CallStatus::Answered),
                hangup_cause: Some("ended while the PBX connection was down".into()),
                duration: Some(0),
                ..Call::new(Direction::Incoming, 1_795_416_368_000)
            };
            crate::calls::store::save(c, &call, 0)?;
            crate::callbacks::enqueue_call(c, 1, &call, "call.completed", None)?;
            let rows: Vec<i64> = cbs
                .iter()
                .map(|cb| {
                    c.query_row(
                        "SELECT id FROM callback_deliveries WHERE callback_id = ?1",
                        [cb],
                        |r| r.get(0),
                    )
                    .unwrap()
                })
                .collect();
            let blind_id = delivery(c, rows[0]).2["id"].clone();
            c.execute(
                "UPDATE callback_deliveries SET state = 'delivered' WHERE id = ?1",
                [rows[1]],
            )?;
            c.execute(
                "UPDATE callback_deliveries SET leased_until = 9000000000000000 WHERE id = ?1",
                [rows[2]],
            )?;
            // The PBX's record: 6 s of talk, the real end.
            call.duration = Some(6);
            call.ended_at = Some(1_795_416_379_000);
            call.hangup_cause = Some("16".into());
            call.backfilled = true;
            assert_eq!(enqueue(c, std::slice::from_ref(&call))?, (1, 2));

            let (kind, state, body) = delivery(c, rows[0]);
            assert_eq!(
                (kind.as_str(), state.as_str()),
                ("call.completed", "pending")
            );
            assert_eq!(
                body["id"], blind_id,
                "the same event, never sent with the old data"
            );
            assert_eq!(body["call"]["duration"], 6);
            assert_eq!(body["call"]["backfilled"], true);
            let corrections: Vec<(i64, String)> = c
                .prepare(
                    "SELECT callback_id, payload FROM callback_deliveries
                     WHERE kind = 'call.corrected' ORDER BY callback_id",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            assert_eq!(
                corrections.iter().map(|(cb, _)| *cb).collect::<Vec<_>>(),
                cbs[1..],
                "the delivered and the in-flight one get a correction"
            );
            let fixed: serde_json::Value = serde_json::from_str(&corrections[0].1).unwrap();
            assert_eq!(fixed["event"], CORRECTED);
            assert_eq!(fixed["call"]["id"], call.id.as_str());
            assert_eq!(fixed["call"]["duration"], 6);
            assert_eq!(corrections[0].1, corrections[1].1, "one event for both");

            // Callbacks switched off: nothing is queued.
            store::set_enabled(c, 1, false)?;
            assert_eq!(enqueue(c, &[call])?, (0, 0));
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
