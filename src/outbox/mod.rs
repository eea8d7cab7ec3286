//! Durable, ordered, at-least-once delivery of call events to Flowlu.
//!
//! Owns the `outbox` and `outbox_attempts` tables and the worker that drains them. The
//! call engine writes event rows with [`enqueue`] inside the same SQLite transaction as
//! the call row they describe, so an event exists exactly when its call change does. The
//! worker then sends each row through a [`Transport`] (Flowlu's, in production; a fake in
//! tests) until a 2xx, retrying on the configured schedule with jitter.
//!
//! Guarantees:
//! - Events of one call go out one at a time, in the order they were written.
//! - A row is marked delivered only after a 2xx; a crash at any point re-sends it later,
//!   with the same `event_id` (so the receiver can drop duplicates).
//! - Every attempt is stored (status, duration, start of the answer's body).
//! - 429 waits for `Retry-After` (bounded) or the throttle floor, and pauses every row of
//!   that account until then (other accounts go on); 401 refreshes the token once and
//!   retries at once; other 4xx mark the row failed (replayable).
//! - A call's first event (`call.init`) is leased before other calls' later ones.
//! - Nothing is dropped while an account cannot take deliveries: its rows are held.
//!
//! It must not know Flowlu's URLs or token handling: that is the transport's job.

mod policy;
mod progress;
mod ratelimit;
mod store;
mod worker;

use std::time::Duration;

use serde::Serialize;

pub use policy::{RetryPolicy, parse_retry_after};
pub use progress::calls_sent;
pub use store::{
    Attempt, Row, Summary, enqueue, enqueue_reserved, list, purge, release_held, replay, show,
    summary,
};
pub use worker::Outbox;

/// One event to deliver, as the call engine hands it over.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub integration_id: i64,
    /// Events with the same key (one call) are delivered strictly in order.
    pub call_key: String,
    /// Stable id sent with every attempt of this event.
    pub event_id: String,
    /// `call.init`, `call.connected`, ...
    pub kind: String,
    /// The exact JSON body to POST.
    pub payload: serde_json::Value,
}

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status, after the transport has mapped protocol-level errors onto it
    /// (Flowlu's error code 11 in a body counts as 401, code 13 as 503).
    pub status: u16,
    /// `Retry-After`, when the answer carried one.
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// Why an attempt produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Network(String),
}

/// Whether an account can take deliveries right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Keep its events and look again later (e.g. "needs reconnect").
    Hold(String),
}

pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// How events reach the receiver (Flowlu's event hook in production, a fake in tests).
pub trait Transport: Send + Sync + 'static {
    fn readiness(&self, integration_id: i64) -> BoxFuture<'_, Readiness>;
    /// Requests per second this account may receive; `None` means no limit.
    fn rate_limit(&self, integration_id: i64) -> BoxFuture<'_, Option<u32>>;
    fn send<'a>(
        &'a self,
        integration_id: i64,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>>;
    /// Sends a row of `kind`. Transports that tell kinds apart (Flowlu's: call events go
    /// to the event hook, `crm.*` rows to the CRM's REST API) override this.
    fn send_kind<'a>(
        &'a self,
        integration_id: i64,
        kind: &'a str,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        let _ = kind;
        self.send(integration_id, event_id, body)
    }
    /// Gets a new access token after a 401. An error puts the account on hold.
    fn refresh(&self, integration_id: i64) -> BoxFuture<'_, Result<(), String>>;
    /// Reads what the transport needs about an account (readiness, rate limit, and
    /// whatever its sends need, such as credentials) inside the worker's batch
    /// transaction, so a batch of rows costs no extra trip to the database. `None`:
    /// the worker asks [`readiness`](Transport::readiness) and
    /// [`rate_limit`](Transport::rate_limit) instead.
    fn load_account(&self, conn: &rusqlite::Connection, integration_id: i64) -> Option<Loaded> {
        let _ = (conn, integration_id);
        None
    }
    /// Sends a row of the batch that [`load_account`](Transport::load_account) read
    /// `context` for (at most one lease old, as readiness).
    fn send_loaded<'a>(
        &'a self,
        context: &'a (dyn std::any::Any + Send + Sync),
        integration_id: i64,
        kind: &'a str,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        let _ = context;
        self.send_kind(integration_id, kind, event_id, body)
    }
}

/// An account as [`Transport::load_account`] read it.
#[derive(Clone)]
pub struct Loaded {
    pub readiness: Readiness,
    /// Requests per second; `None`: no limit.
    pub rate_limit: Option<u32>,
    /// Handed back to [`Transport::send_loaded`] for the rows of the same batch.
    pub context: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

/// The state of one outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Delivered,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        match s {
            "pending" => Some(State::Pending),
            "delivered" => Some(State::Delivered),
            "failed" => Some(State::Failed),
            _ => None,
        }
    }
}

/// What an attempt's row shows as its last error: the transport's error, else the HTTP
/// status when it was not 2xx (also used by `callbacks`).
pub fn attempt_error(error: Option<&str>, status: Option<u16>) -> Option<String> {
    error.map(str::to_string).or_else(|| {
        status
            .filter(|s| !(200..300).contains(s))
            .map(|s| format!("HTTP {s}"))
    })
}

/// Unix time in milliseconds, the unit of every outbox timestamp (`crate::util`'s).
pub use crate::util::now_ms;

/// What the outbox puts before a [`Readiness::Hold`] reason in an event's last error.
pub const HELD: &str = "held: ";

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("no outbox event with id {0}")]
    NoSuchEvent(i64),
}

impl From<rusqlite::Error> for OutboxError {
    fn from(e: rusqlite::Error) -> Self {
        OutboxError::Db(e.into())
    }
}
