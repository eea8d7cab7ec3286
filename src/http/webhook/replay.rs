//! Idempotency for the webhook requests that change something (`call.make`,
//! `call.redirect`): the same request delivered twice is acted on once, and the second
//! delivery gets the first one's answer, byte for byte.
//!
//! Owns the `webhook_requests` table (migration 6). A request is identified by keys:
//! `request:<X-Request-Id>` and, for `call.make`, `call:<Flowlu call_id>`. In one
//! IMMEDIATE transaction it either finds one of its keys (answered: replay the answer;
//! claimed by this process: wait for it; claimed by an earlier process that died: take
//! it over) or claims them all as `pending`. The primary key (integration, key) and
//! SQLite's single writer make two concurrent duplicates see each other: exactly one acts.
//!
//! The action runs on its own task, so a client that hangs up mid-request cannot leave a
//! claim behind; its outcome is stored (a placed call, or an error after which a call row
//! exists) or the claim is released (nothing happened: a retry may act). Waiters are
//! woken through [`Inflight`] and re-read the table. Rows older than `[webhook]
//! replay_window` are deleted at the next claim.

use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderValue;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::Notify;

use super::WebhookError;
use crate::app::State;
use crate::db::DbError;
use crate::http::respond::{self, Response};

/// How long a duplicate waits for the first delivery's answer before it is told to
/// retry (409 `request_in_progress`).
const WAIT: Duration = Duration::from_secs(30);

/// The process-wide side: who we are (claims of an earlier process are stale) and the
/// wake-up for waiting duplicates. One per [`AppState`](crate::app::AppState).
pub struct Inflight {
    owner: String,
    settled: Notify,
}

impl Default for Inflight {
    fn default() -> Self {
        Inflight {
            owner: crate::secret::random_token(12),
            settled: Notify::new(),
        }
    }
}

/// An answer as sent: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn new(status: StatusCode, body: Value) -> Answer {
        Answer { status, body }
    }
}

/// How an action ended, and whether its answer is final for its keys.
pub struct Settled {
    pub answer: Answer,
    /// True when the answer must be replayed to duplicates (something happened); false
    /// releases the keys (nothing happened: a retry acts afresh).
    pub keep: bool,
}

impl Settled {
    pub fn from_result(result: Result<Answer, WebhookError>, keep_error: bool) -> Settled {
        match result {
            Ok(answer) => Settled { answer, keep: true },
            Err(e) => Settled {
                answer: super::error_answer(e),
                keep: keep_error,
            },
        }
    }
}

/// What identifies a request for idempotency.
#[derive(Clone)]
pub struct Keys {
    pub keys: Vec<String>,
    pub kind: &'static str,
    pub fingerprint: String,
}

impl Keys {
    /// `request_id` (X-Request-Id) and, for `call.make`, Flowlu's `call_id`; `parts` are
    /// what the request asks (a reused X-Request-Id with other parts is refused).
    pub fn new(
        kind: &'static str,
        request_id: Option<&str>,
        call_id: Option<&str>,
        parts: &[&str],
    ) -> Keys {
        let mut keys = Vec::new();
        if let Some(r) = request_id {
            keys.push(format!("request:{r}"));
        }
        if let Some(c) = call_id {
            keys.push(format!("call:{c}"));
        }
        let mut h = sha2::Sha256::new();
        for part in std::iter::once(kind).chain(parts.iter().copied()) {
            h.update(part.as_bytes());
            h.update([0]);
        }
        Keys {
            keys,
            kind,
            fingerprint: hex::encode(h.finalize()),
        }
    }
}

enum Claim {
    Mine,
    Done { status: u16, body: String },
    Wait,
    Reused,
}

/// Runs `action` once per keys: the first delivery acts, duplicates get its answer.
/// Without keys the action just runs. Either way it runs on a task of its own, so a
/// client that hangs up mid-request neither cuts a call short nor strands a claim.
pub async fn once(
    state: &State,
    integration: i64,
    keys: Keys,
    action: impl Future<Output = Settled> + Send + 'static,
) -> Result<Response, WebhookError> {
    if !keys.keys.is_empty() {
        let deadline = tokio::time::Instant::now() + WAIT;
        let window = state.current().webhook.replay_window().as_millis() as i64;
        loop {
            let notified = state.webhook.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (k, owner) = (keys.clone(), state.webhook.owner.clone());
            let claimed = state
                .db
                .run(move |c| claim(c, integration, &k, &owner, window))
                .await?;
            match claimed {
                Claim::Mine => break,
                Claim::Done { status, body } => return Ok(replayed(status, body)),
                Claim::Reused => return Err(WebhookError::KeyReused),
                Claim::Wait => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(WebhookError::InProgress);
                    }
                }
            }
        }
    }
    let kind = keys.kind;
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let state = task_state;
        let mut guard = Release {
            state: state.clone(),
            integration,
            keys: keys.keys.clone(),
            armed: !keys.keys.is_empty(),
        };
        let settled = action.await;
        let body = serde_json::to_string(&settled.answer.body).expect("JSON");
        let status = settled.answer.status;
        if guard.armed {
            let (k, owner, stored, keep) = (
                keys.keys,
                state.webhook.owner.clone(),
                body.clone(),
                settled.keep,
            );
            let written = state
                .db
                .run(move |c| {
                    if keep {
                        finish(c, integration, &k, &owner, status.as_u16(), &stored)
                    } else {
                        release(c, integration, &k, &owner)
                    }
                })
                .await;
            match written {
                Ok(()) => {
                    guard.armed = false;
                    state.webhook.settled.notify_waiters();
                }
                // The guard releases the claim instead, and wakes the waiters.
                Err(e) => log::error!("webhook: cannot store the answer to a {kind}: {e}"),
            }
        }
        (status, body)
    });
    match task.await {
        Ok((status, body)) => Ok(respond::bytes(status, "application/json", body)),
        Err(e) => {
            log::error!("webhook: a {kind} failed: {e}");
            Err(WebhookError::Internal)
        }
    }
}

fn replayed(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = respond::bytes(status, "application/json", body);
    resp.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    resp
}

/// Releases the claim if the action never got to store its outcome (it panicked, or
/// the answer could not be written).
struct Release {
    state: State,
    integration: i64,
    keys: Vec<String>,
    armed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // shutting down: the next process takes the claim over
        };
        let (state, integration, keys) = (self.state.clone(), self.integration, self.keys.clone());
        runtime.spawn(async move {
            let owner = state.webhook.owner.clone();
            let _ = state
                .db
                .run(move |c| release(c, integration, &keys, &owner))
                .await;
            state.webhook.settled.notify_waiters();
        });
    }
}

fn claim(
    conn: &mut Connection,
    integration: i64,
    keys: &Keys,
    owner: &str,
    window_ms: i64,
) -> Result<Claim, DbError> {
    let now = crate::util::now_ms();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM webhook_requests WHERE created_at < ?1",
        [now - window_ms],
    )?;
    let mut stale = false;
    for key in &keys.keys {
        let row = tx
            .query_row(
                "SELECT kind, fingerprint, state, owner, status, body FROM webhook_requests
                 WHERE integration_id = ?1 AND key = ?2",
                params![integration, key],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((kind, fingerprint, row_state, row_owner, status, body)) = row else {
            continue;
        };
        if key.starts_with("request:") && (kind != keys.kind || fingerprint != keys.fingerprint) {
            return Ok(Claim::Reused);
        }
        match (row_state.as_str(), status, body) {
            ("done", Some(status), Some(body)) => {
                return Ok(Claim::Done {
                    status: status as u16,
                    body,
                });
            }
            _ if row_owner == owner => return Ok(Claim::Wait),
            _ => stale = true,
        }
    }
    if stale {
        log::warn!(
            "webhook: a {} of integration {integration} was cut short by a restart; acting on \
             its retry",
            keys.kind
        );
    }
    for key in &keys.keys {
        tx.execute(
            "INSERT INTO webhook_requests (integration_id, key, kind, fingerprint, state, owner,
                 created_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)
             ON CONFLICT (integration_id, key) DO UPDATE SET kind = excluded.kind,
                 fingerprint = excluded.fingerprint, state = 'pending', owner = excluded.owner,
                 status = NULL, body = NULL, created_at = excluded.created_at",
            params![integration, key, keys.kind, keys.fingerprint, owner, now],
        )?;
    }
    tx.commit()?;
    Ok(Claim::Mine)
}

fn finish(
    conn: &mut Connection,
    integration: i64,
    keys: &[String],
    owner: &str,
    status: u16,
    body: &str,
) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    for key in keys {
        tx.execute(
            "UPDATE webhook_requests SET state = 'done', status = ?4, body = ?5
             WHERE integration_id = ?1 AND key = ?2 AND owner = ?3",
            params![integration, key, owner, status, body],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn release(
    conn: &mut Connection,
    integration: i64,
    keys: &[String],
    owner: &str,
) -> Result<(), DbError> {
    let tx = conn.transaction()?;
    for key in keys {
        tx.execute(
            "DELETE FROM webhook_requests
             WHERE integration_id = ?1 AND key = ?2 AND owner = ?3 AND state = 'pending'",
            params![integration, key, owner],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(request: Option<&str>, call: Option<&str>, phone: &str) -> Keys {
        Keys::new("call.make", request, call, &["u1", phone])
    }

    #[test]
    fn claims_wait_replay_release_and_take_over() {
        let (_dir, db) = crate::db::test_db();
        db.with_conn(|c| {
            let hour = 3_600_000;
            let k = make(Some("r1"), Some("f1"), "7999");
            assert!(matches!(claim(c, 1, &k, "me", hour)?, Claim::Mine));
            // A duplicate by either key, while pending: wait.
            assert!(matches!(claim(c, 1, &k, "me", hour)?, Claim::Wait));
            let by_call = make(Some("r2"), Some("f1"), "7999");
            assert!(matches!(claim(c, 1, &by_call, "me", hour)?, Claim::Wait));
            // The same request id with another request: refused.
            let other = make(Some("r1"), None, "7000");
            assert!(matches!(claim(c, 1, &other, "me", hour)?, Claim::Reused));
            // Answered: replayed to both keys.
            finish(c, 1, &k.keys, "me", 202, "{\"call_id\":\"c1\"}")?;
            for keys in [&k, &by_call, &make(Some("r1"), None, "7999")] {
                match claim(c, 1, keys, "me", hour)? {
                    Claim::Done { status, body } => {
                        assert_eq!((status, body.as_str()), (202, "{\"call_id\":\"c1\"}"))
                    }
                    _ => panic!("not replayed"),
                }
            }
            // Released: the next delivery acts.
            let k2 = make(Some("r3"), None, "7999");
            assert!(matches!(claim(c, 1, &k2, "me", hour)?, Claim::Mine));
            release(c, 1, &k2.keys, "me")?;
            assert!(matches!(claim(c, 1, &k2, "me", hour)?, Claim::Mine));
            // Pending under an earlier process: taken over.
            assert!(matches!(claim(c, 1, &k2, "next-boot", hour)?, Claim::Mine));
            assert!(matches!(claim(c, 1, &k2, "next-boot", hour)?, Claim::Wait));
            // Another account's keys are its own.
            crate::db::add_test_integration(c, 2)?;
            assert!(matches!(claim(c, 2, &k, "me", hour)?, Claim::Mine));
            // Expired answers are forgotten.
            c.execute("UPDATE webhook_requests SET created_at = 0", [])?;
            assert!(matches!(claim(c, 1, &k, "me", hour)?, Claim::Mine));
            let left: i64 =
                c.query_row("SELECT count(*) FROM webhook_requests", [], |r| r.get(0))?;
            assert_eq!(left, 2, "only the fresh claim's two keys remain");
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
