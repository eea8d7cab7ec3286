//! Writing the tracker's updates: which account a call belongs to, the call row, and the
//! outbox rows of its Flowlu events, all in the caller's transaction.
//!
//! Attribution (README, "Which account gets a call"): a click-to-call belongs to the
//! account that asked for it; otherwise to the only connected account, or, when several
//! are connected, to the one whose user↔extension mapping has the call's employee. Until
//! a call can be attributed its events wait here (in order); a call that ends without an
//! account is stored but reported to no one.

use std::collections::HashMap;
use std::time::Duration;

use rusqlite::{Connection, params};

use super::{EngineError, RouteTicket};
use crate::calls::tracker::{Emit, Update};
use crate::calls::{Call, Direction, store};
use crate::flowlu::store::{IncomingRouting, settings, user_for_extension};
use crate::outbox::{NewEvent, enqueue_reserved};
use crate::util::now_ms;

/// Events of calls not yet attributed to an account, by call id.
#[derive(Debug, Default)]
pub struct Pending {
    calls: HashMap<String, Vec<Emit>>,
    /// Click-to-calls' own ids (`call.make` `uuid`), written with the call's first row.
    uuids: HashMap<String, String>,
}

impl Pending {
    pub fn uuid(&mut self, call_id: &str, uuid: String) {
        self.uuids.insert(call_id.to_string(), uuid);
    }
}

/// What the engine needs to know about one written update.
pub struct Written {
    pub call: Call,
    /// The reserved `call.init` of an incoming call routed through the CRM.
    pub ticket: Option<RouteTicket>,
    /// The final status, when the call ended.
    pub finished: Option<&'static str>,
}

pub fn write(
    conn: &mut Connection,
    updates: Vec<Update>,
    pending: Pending,
    reserve: Duration,
    rules: &crate::calls::tracker::Rules,
) -> Result<(Pending, Vec<Written>), EngineError> {
    let tx = conn.transaction()?;
    let written = write_in(&tx, updates, pending, reserve, rules)?;
    tx.commit()?;
    Ok(written)
}

/// [`write`] inside the caller's transaction (the engine's: `Db::write`).
pub fn write_in(
    tx: &Connection,
    updates: Vec<Update>,
    mut pending: Pending,
    reserve: Duration,
    rules: &crate::calls::tracker::Rules,
) -> Result<(Pending, Vec<Written>), EngineError> {
    let now = now_ms();
    let mut written = Vec::with_capacity(updates.len());
    // A call that changes several times in one batch is written once for each change
    // that queues an event, and once at its last change: the rows in between would be
    // overwritten in this same transaction before anyone could read them.
    let last_change: HashMap<String, usize> = updates
        .iter()
        .enumerate()
        .map(|(i, u)| (u.call.id.clone(), i))
        .collect();
    // The customer number of each (account, number as the PBX gave it), normalized once
    // per batch rather than on every change of the call.
    let mut normalized: HashMap<(i64, String), String> = HashMap::new();
    for (i, Update { mut call, emit }) in updates.into_iter().enumerate() {
        attribute(tx, &mut call)?;
        let raw = call.integration_id.map(|id| (id, call.phone.clone()));
        match raw.as_ref().and_then(|key| normalized.get(key)) {
            Some(phone) => call.phone = phone.clone(),
            None => {
                super::numbers::normalize_customer(tx, &mut call, rules)?;
                if let Some(key) = raw {
                    normalized.insert(key, call.phone.clone());
                }
            }
        }
        let completed = emit.contains(&Emit::Completed);
        let mut kinds = pending.calls.remove(&call.id).unwrap_or_default();
        kinds.extend(emit);
        let uuid = pending.uuids.remove(&call.id);
        if !kinds.is_empty() || uuid.is_some() || last_change[&call.id] == i {
            store::save(tx, &call, now)?;
        }
        if let Some(uuid) = uuid {
            crate::callbacks::store::set_call_uuid(tx, &call.id, &uuid)?;
        }
        let mut ticket = None;
        match call.integration_id {
            None if completed => log::info!(
                "call {} ({} {}) belongs to no connected Flowlu account: stored, not reported",
                call.id,
                call.direction.as_str(),
                call.phone
            ),
            None => {
                pending.calls.insert(call.id.clone(), kinds);
            }
            Some(integration) => {
                if completed {
                    // Result callbacks: queued with call.completed, in this transaction.
                    crate::callbacks::enqueue_call(tx, integration, &call, "call.completed", None)?;
                }
                let via_crm = call.direction == Direction::Incoming
                    && kinds.contains(&Emit::Init)
                    && settings(tx, integration)?.incoming_routing == IncomingRouting::Crm;
                for kind in kinds {
                    let event_id = format!("e{}", crate::secret::random_token(15));
                    let reserved =
                        (kind == Emit::Init && via_crm).then(|| now + reserve.as_millis() as i64);
                    let row = enqueue_reserved(
                        tx,
                        &NewEvent {
                            integration_id: integration,
                            call_key: call.id.clone(),
                            event_id: event_id.clone(),
                            kind: kind.kind().to_string(),
                            payload: crate::flowlu::events::payload(
                                kind.kind(),
                                &event_id,
                                &call,
                                None,
                            ),
                        },
                        reserved,
                    )?;
                    if reserved.is_some() {
                        ticket = Some(RouteTicket {
                            call_id: call.id.clone(),
                            integration_id: integration,
                            init_row: row,
                        });
                    }
                }
                // Call-handling rules (issue 8): their CRM requests, written with the
                // call.completed they follow.
                if completed {
                    for row in crate::flowlu::crm::rules::on_completed(tx, integration, &call)? {
                        crate::outbox::enqueue(tx, &row)?;
                    }
                }
            }
        }
        let finished = completed.then(|| call.status.map_or("unknown", |s| s.as_str()));
        written.push(Written {
            call,
            ticket,
            finished,
        });
    }
    Ok((pending, written))
}

/// After a recorded call ended: when the account reports recordings, waits until the
/// file is complete, publishes an expiring URL for it and queues `call.recording`.
pub async fn report_recording(deps: &super::Deps, call: Call) {
    let (Some(integration), Some(path)) = (call.integration_id, call.recording_path.clone()) else {
        return;
    };
    let wanted = deps
        .db
        .run(move |c| Ok::<_, EngineError>(settings(c, integration)?.record_calls))
        .await;
    if !matches!(wanted, Ok(true)) {
        return;
    }
    let published = match crate::recordings::publish(&deps.recordings, &call.id, &path).await {
        Ok(published) => published,
        Err(e) => {
            log::warn!("recording of call {}: {e}", call.id);
            return;
        }
    };
    let url = published.url.expose().to_string();
    let queued = deps
        .db
        .run(move |c| {
            // Result callbacks get the record again, now with its recording URL.
            crate::callbacks::enqueue_call(c, integration, &call, "call.recording", Some(&url))?;
            let event_id = format!("e{}", crate::secret::random_token(15));
            crate::outbox::enqueue(
                c,
                &NewEvent {
                    integration_id: integration,
                    call_key: call.id.clone(),
                    event_id: event_id.clone(),
                    kind: "call.recording".into(),
                    payload: crate::flowlu::events::payload(
                        "call.recording",
                        &event_id,
                        &call,
                        Some(&url),
                    ),
                },
            )?;
            Ok::<_, EngineError>(())
        })
        .await;
    match queued {
        Ok(()) => {
            deps.outbox.wake();
            deps.callbacks.wake();
        }
        Err(e) => log::error!("recording event not queued: {e}"),
    }
}

/// Sets the call's account (when it has none yet) and its employee's Flowlu user.
fn attribute(conn: &Connection, call: &mut Call) -> Result<(), EngineError> {
    if call.integration_id.is_none() {
        let connected: Vec<i64> = conn
            .prepare_cached(
                "SELECT id FROM flowlu_integrations WHERE telephony_uuid IS NOT NULL ORDER BY id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        call.integration_id = match connected.as_slice() {
            [] => None,
            [only] => Some(*only),
            many => match call.extension.as_deref() {
                None => None,
                Some(ext) => {
                    let owners: Vec<i64> = conn
                        .prepare_cached(
                            "SELECT DISTINCT integration_id FROM flowlu_extensions
                             WHERE extension = ?1",
                        )?
                        .query_map(params![ext], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<i64>>>()?
                        .into_iter()
                        .filter(|id| many.contains(id))
                        .collect();
                    match owners.as_slice() {
                        [one] => Some(*one),
                        _ => None,
                    }
                }
            },
        };
    }
    if let (Some(integration), Some(ext)) = (call.integration_id, call.extension.as_deref())
        && let Some(user) = user_for_extension(conn, integration, ext)?
    {
        call.user_id = Some(user);
    }
    Ok(())
}
