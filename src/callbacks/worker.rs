//! The callback delivery worker: leases due deliveries, signs and POSTs them with ureq
//! (on the blocking pool), records each attempt and schedules the next. [`Callbacks::run`]
//! is the production loop; [`Callbacks::step`] delivers what is due once (tests).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::store::{self, Attempt, Lease, Outcome};
use super::{CallbackError, payload, sign, target};
use crate::config::CallbacksConfig;
use crate::db::Db;
use crate::util::now_ms;

/// Longer than any attempt; cleared at start-up so a crash never delays a retry by it.
const LEASE_MS: i64 = 5 * 60 * 1000;
const IDLE_POLL: Duration = Duration::from_secs(5);
const MAX_IN_FLIGHT: usize = 4;
/// Finished deliveries (and their attempts) are kept this long for the delivery log.
const KEEP_FINISHED_MS: i64 = 30 * 86_400_000;
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// The start of an answer's body read (and dropped) so the connection ends cleanly.
const MAX_REPLY_BYTES: u64 = 4096;

/// The callback worker handle. Cheap to clone.
#[derive(Clone)]
pub struct Callbacks {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    schedule: Vec<Duration>,
    timeout: Duration,
    agent: ureq::Agent,
    wake: Notify,
}

/// What the "send test event" button reports.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub delivery_id: String,
    pub status: Option<u16>,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub outcome: Outcome,
}

impl Callbacks {
    pub fn new(db: Db, config: &CallbacksConfig) -> Callbacks {
        let timeout = config.timeout();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(format!("appliance/{}", crate::VERSION))
            .build()
            .new_agent();
        Callbacks {
            inner: Arc::new(Inner {
                db,
                schedule: config.schedule(),
                timeout,
                agent,
                wake: Notify::new(),
            }),
        }
    }

    /// Tells the worker that deliveries were queued.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Delivers until `shutdown` resolves; attempts in flight then are left to finish
    /// (a delivery whose attempt did not complete is sent again after a restart).
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        if let Err(e) = self
            .inner
            .db
            .run(|c| Ok::<_, CallbackError>(store::clear_leases(c)?))
            .await
        {
            log::error!("callbacks: cannot clear leases: {e}");
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut in_flight = JoinSet::new();
        let mut purged_at: Option<Instant> = None;
        loop {
            if purged_at.is_none_or(|at| at.elapsed() >= PURGE_EVERY) {
                purged_at = Some(Instant::now());
                let before = now_ms() - KEEP_FINISHED_MS;
                match self
                    .inner
                    .db
                    .run(move |c| Ok::<_, CallbackError>(store::purge(c, before)?))
                    .await
                {
                    Ok(n) if n > 0 => log::info!("callbacks: {n} finished delivery(ies) purged"),
                    Ok(_) => {}
                    Err(e) => log::error!("callbacks: {e}"),
                }
            }
            let room = MAX_IN_FLIGHT - in_flight.len();
            if room > 0 {
                match self.lease_due(room).await {
                    Ok(leases) => {
                        for lease in leases {
                            let me = self.clone();
                            in_flight.spawn(async move { me.attempt(lease).await });
                        }
                    }
                    Err(e) => log::error!("callbacks: {e}"),
                }
            }
            let mut wait = IDLE_POLL;
            // Full: a completion wakes us (no scan of every pending row per delivery).
            if in_flight.len() < MAX_IN_FLIGHT {
                match self
                    .inner
                    .db
                    .run(|c| Ok::<_, CallbackError>(store::next_due(c)?))
                    .await
                {
                    Ok(Some(at)) => {
                        wait = wait.min(Duration::from_millis((at - now_ms()).max(0) as u64))
                    }
                    Ok(None) => {}
                    Err(e) => log::error!("callbacks: {e}"),
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.inner.wake.notified() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
            }
        }
        in_flight.detach_all();
    }

    /// Attempts every delivery due now, once. Returns how many attempts were made.
    pub async fn step(&self) -> usize {
        let leases = match self.lease_due(usize::MAX / 2).await {
            Ok(leases) => leases,
            Err(e) => {
                log::error!("callbacks: {e}");
                return 0;
            }
        };
        let n = leases.len();
        for lease in leases {
            self.attempt(lease).await;
        }
        n
    }

    /// Queues a test event for callback `id` of `integration` and makes its first attempt
    /// now (the worker retries it on schedule if that fails).
    pub async fn send_test(&self, integration: i64, id: i64) -> Result<TestResult, CallbackError> {
        let lease = self
            .inner
            .db
            .run(move |c| {
                store::get(c, integration, id)?.ok_or(CallbackError::NoSuchCallback)?;
                let now = now_ms();
                let event_id = format!("ev_{}", crate::secret::random_token(15));
                let body = payload::test_event(&event_id, now).to_string();
                // Leased: the worker leaves it alone while this attempt runs.
                let row = store::enqueue(c, id, "test", None, &body, Some(now + LEASE_MS))?;
                store::lease_one(c, row)?.ok_or(CallbackError::NoSuchCallback)
            })
            .await?;
        let delivery_id = lease.delivery_id.clone();
        let (attempt, outcome) = self.attempt(lease).await;
        self.wake();
        Ok(TestResult {
            delivery_id,
            status: attempt.status,
            duration_ms: attempt.duration_ms,
            error: attempt.error,
            outcome,
        })
    }

    async fn lease_due(&self, limit: usize) -> Result<Vec<Lease>, CallbackError> {
        self.inner
            .db
            .run(move |c| Ok(store::lease_due(c, now_ms(), limit, LEASE_MS)?))
            .await
    }

    /// One attempt of one leased delivery, recorded with its consequence.
    async fn attempt(&self, lease: Lease) -> (Attempt, Outcome) {
        let attempt = self.send(&lease).await;
        let ok = attempt.status.is_some_and(|s| (200..300).contains(&s));
        let failures = lease.attempts as usize; // before this one
        let outcome = if ok {
            Outcome::Delivered
        } else if let Some(wait) = self.inner.schedule.get(failures) {
            Outcome::RetryAt(now_ms() + wait.as_millis() as i64)
        } else {
            Outcome::Failed
        };
        let why = attempt
            .error
            .clone()
            .or_else(|| attempt.status.map(|s| format!("HTTP {s}")))
            .unwrap_or_default();
        match outcome {
            Outcome::Delivered => log::debug!(
                "callbacks: {} to callback {} delivered",
                lease.delivery_id,
                lease.callback_id
            ),
            Outcome::RetryAt(_) => log::info!(
                "callbacks: {} to callback {} (attempt {}): {why}; will retry",
                lease.delivery_id,
                lease.callback_id,
                failures + 1
            ),
            Outcome::Failed => log::warn!(
                "callbacks: {} to callback {} failed after {} attempt(s): {why}",
                lease.delivery_id,
                lease.callback_id,
                failures + 1
            ),
        }
        let (row, stored) = (lease.row, attempt.clone());
        if let Err(e) = self
            .inner
            .db
            .run(move |c| Ok::<_, CallbackError>(store::record(c, row, &stored, outcome)?))
            .await
        {
            log::error!("callbacks: cannot record an attempt: {e}");
        }
        (attempt, outcome)
    }

    /// Signs and POSTs one delivery; never fails, the attempt says what happened.
    async fn send(&self, lease: &Lease) -> Attempt {
        let started_at = now_ms();
        let clock = Instant::now();
        let body = lease.payload.clone().into_bytes();
        let signature = sign::signature_header(lease.secret.expose(), started_at / 1000, &body);
        let mut builder = ureq::http::Request::builder()
            .method("POST")
            .uri(&lease.url)
            .header("content-type", "application/json")
            .header("x-appliance-delivery", &lease.delivery_id)
            .header("x-appliance-event", &lease.kind)
            .header("x-appliance-signature", signature);
        if let Some((name, value)) = &lease.auth {
            builder = builder.header(name.as_str(), value.expose());
        }
        let result = match builder.body(body) {
            Err(_) => Err("the callback URL or header cannot be sent".to_string()),
            Ok(request) => {
                let agent = self.inner.agent.clone();
                let timeout = self.inner.timeout;
                let url = lease.url.clone();
                tokio::task::spawn_blocking(move || {
                    let mut resp = agent
                        .run(request)
                        .map_err(|e| describe(&e, &url, timeout))?;
                    let status = resp.status().as_u16();
                    // Read (a bounded start of) the answer; a receiver that stalls here
                    // still answered.
                    let _ = resp
                        .body_mut()
                        .with_config()
                        .limit(MAX_REPLY_BYTES)
                        .read_to_vec();
                    Ok(status)
                })
                .await
                .unwrap_or_else(|e| Err(format!("internal error: {e}")))
            }
        };
        let duration_ms = clock.elapsed().as_millis() as i64;
        match result {
            Ok(status) => Attempt {
                started_at,
                duration_ms,
                status: Some(status),
                error: None,
            },
            Err(error) => Attempt {
                started_at,
                duration_ms,
                status: None,
                error: Some(error),
            },
        }
    }
}

/// A transport failure in words, without the URL's query (it may hold a token).
fn describe(e: &ureq::Error, url: &str, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(_) => format!(
            "timed out after {}",
            crate::config::format_duration(timeout)
        ),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection refused or unreachable".into(),
        ureq::Error::Io(io) => format!("network error: {}", io.kind()),
        other => {
            crate::redact::redact_text(&other.to_string().replace(url, &target::display_url(url)))
        }
    }
}
