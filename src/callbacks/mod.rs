//! Result callbacks: each finished call's complete record, POSTed as signed JSON to the
//! HTTPS endpoints an admin added on the settings page (README, "Result callbacks").
//!
//! Owns the `callback_*` tables ([`store`]), the body ([`payload`]), the signature
//! ([`sign`]), what an admin may enter ([`target`]) and the delivery worker
//! ([`Callbacks`]). The call engine queues deliveries with [`enqueue_call`] inside the
//! same SQLite transaction that writes `call.completed`, so a delivery exists exactly
//! when the completed call does. Delivery is at least once: a row is delivered only after
//! a 2xx; anything else (a timeout included) is retried on `[callbacks] retry_schedule`
//! with the same `X-Appliance-Delivery` id, then marked failed. A call's deliveries to
//! one callback go out in order; unlike the outbox there is no rate limit or token
//! handling, and each body is the whole record.
//!
//! Secrets (the signing secret, the auth header's value) never reach a log line, an
//! error or a page except the one reveal of a new signing secret to its admin.

pub mod payload;
pub mod sign;
pub mod store;
pub mod target;
mod worker;

use rusqlite::Connection;

pub use worker::{Callbacks, TestResult};

use crate::calls::Call;

#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("no such callback")]
    NoSuchCallback,
}

impl From<rusqlite::Error> for CallbackError {
    fn from(e: rusqlite::Error) -> Self {
        CallbackError::Db(e.into())
    }
}

/// Queues `kind` (`call.completed`, `call.recording`) of `call` for every callback of
/// its account when the account has callbacks switched on; one event id shared by all of
/// them. Runs in the caller's transaction. Returns how many deliveries were queued.
pub fn enqueue_call(
    conn: &Connection,
    integration: i64,
    call: &Call,
    kind: &str,
    recording_url: Option<&str>,
) -> rusqlite::Result<usize> {
    if !store::enabled(conn, integration)? {
        return Ok(0);
    }
    let callbacks = store::list(conn, integration)?;
    if callbacks.is_empty() {
        return Ok(0);
    }
    let uuid = store::call_uuid(conn, &call.id)?;
    let event_id = format!("ev_{}", crate::secret::random_token(15));
    let body = payload::call_event(
        kind,
        &event_id,
        call,
        uuid.as_deref(),
        recording_url,
        crate::util::now_ms(),
    )
    .to_string();
    for cb in &callbacks {
        store::enqueue(conn, cb.id, kind, Some(&call.id), &body, None)?;
    }
    Ok(callbacks.len())
}
