//! The delivery worker: leases due rows, sends them through the transport, records the
//! attempt and its consequence. [`Outbox::run`] is the production loop; [`Outbox::step`]
//! delivers what is due once, so tests can drain the queue instead of sleeping.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::policy::{RetryPolicy, Verdict};
use super::ratelimit::RateLimiter;
use super::store::{self, Attempt, Lease, Update};
use super::{OutboxError, Readiness, Reply, SendError, Transport, now_ms};
use crate::db::Db;

/// How long a leased row is considered in flight. Longer than any request (rate-limit
/// wait included); cleared at start-up, so a crash never delays redelivery by it.
const LEASE_MS: i64 = 10 * 60 * 1000;
/// With nothing due, look at the table this often anyway (rows re-queued from the CLI).
const IDLE_POLL: Duration = Duration::from_secs(5);

/// The outbox worker handle. Cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

/// Told how long each delivered event took from being written to its 2xx.
pub type OnDelivered = Box<dyn Fn(Duration) + Send + Sync>;

struct Inner {
    on_delivered: std::sync::OnceLock<OnDelivered>,
    db: Db,
    transport: Arc<dyn Transport>,
    /// Replaced by a reload ([`Outbox::set_policy`]).
    policy: std::sync::RwLock<Arc<RetryPolicy>>,
    limiter: RateLimiter,
    wake: Notify,
    max_in_flight: std::sync::atomic::AtomicUsize,
}

impl Inner {
    fn policy(&self) -> Arc<RetryPolicy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Outbox {
    pub fn new(
        db: Db,
        transport: Arc<dyn Transport>,
        policy: RetryPolicy,
        max_in_flight: usize,
    ) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                on_delivered: std::sync::OnceLock::new(),
                db,
                transport,
                policy: std::sync::RwLock::new(Arc::new(policy)),
                limiter: RateLimiter::default(),
                wake: Notify::new(),
                max_in_flight: max_in_flight.max(1).into(),
            }),
        }
    }

    /// Replaces the retry policy and the parallel-delivery limit (a reload); deliveries
    /// in flight finish under the old ones.
    pub fn set_policy(&self, policy: RetryPolicy, max_in_flight: usize) {
        *self.inner.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        self.inner
            .max_in_flight
            .store(max_in_flight.max(1), std::sync::atomic::Ordering::Relaxed);
        self.wake();
    }

    /// Sets the delivery-latency callback (once).
    pub fn on_delivered(&self, f: OnDelivered) {
        let _ = self.inner.on_delivered.set(f);
    }

    /// Tells the worker that rows were added or released.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Makes an account's held events due now (its tokens were renewed, or its channel
    /// registered) and wakes the worker.
    pub async fn release(&self, integration_id: i64) {
        let released = self
            .inner
            .db
            .run(move |c| Ok::<_, OutboxError>(store::release_held(c, integration_id)?))
            .await;
        match released {
            Ok(n) if n > 0 => {
                log::info!("outbox: {n} held event(s) of account {integration_id} released")
            }
            Ok(_) => {}
            Err(e) => log::error!("outbox: {e}"),
        }
        self.wake();
    }

    /// Delivers until `shutdown` resolves. Deliveries in flight at shutdown are left to
    /// finish in the background; their rows are sent again after a restart if they did
    /// not complete.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        if let Err(e) = self
            .inner
            .db
            .run(|c| Ok::<_, OutboxError>(store::clear_leases(c)?))
            .await
        {
            log::error!("outbox: cannot clear leases: {e}");
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut in_flight = JoinSet::new();
        loop {
            let room = self.inner.max_in_flight().saturating_sub(in_flight.len());
            let mut wait = IDLE_POLL;
            if room > 0 {
                match self.lease_due(room).await {
                    Ok(leases) => {
                        for lease in leases {
                            let me = self.clone();
                            in_flight.spawn(async move { me.attempt(lease).await });
                        }
                    }
                    Err(e) => log::error!("outbox: {e}"),
                }
            }
            if in_flight.len() < self.inner.max_in_flight() {
                // Room left, so nothing else is due now: sleep until the next row is.
                // (When full, a completion wakes us: no need to look, which under a
                // backlog would scan every pending row once per delivery.)
                match self.next_due().await {
                    Ok(Some(at)) => {
                        let delta = (at - now_ms()).max(0) as u64;
                        wait = wait.min(Duration::from_millis(delta));
                    }
                    Ok(None) => {}
                    Err(e) => log::error!("outbox: {e}"),
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

    /// Attempts every row that is due now, once, one at a time. Returns how many
    /// attempts were made (0: nothing was due).
    pub async fn step(&self) -> usize {
        let leases = match self.lease_due(usize::MAX / 2).await {
            Ok(leases) => leases,
            Err(e) => {
                log::error!("outbox: {e}");
                return 0;
            }
        };
        let count = leases.len();
        for lease in leases {
            self.attempt(lease).await;
        }
        count
    }

    /// Sends one row now (if it is the head of its call: a row reserved with
    /// [`enqueue_reserved`](super::enqueue_reserved)) and waits up to `wait` for the answer. The attempt is recorded like any other; if it fails or
    /// takes longer, the row stays queued and the worker retries it on schedule.
    pub async fn deliver_now(&self, id: i64, wait: Duration) -> Option<Reply> {
        let lease = self
            .inner
            .db
            .run(move |c| Ok::<_, OutboxError>(store::lease_one(c, id, now_ms(), LEASE_MS)?))
            .await
            .ok()
            .flatten()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        tokio::spawn(async move {
            let reply = me.attempt(lease).await;
            let _ = tx.send(reply);
        });
        tokio::time::timeout(wait, rx).await.ok()?.ok().flatten()
    }

    async fn lease_due(&self, limit: usize) -> Result<Vec<Lease>, OutboxError> {
        self.inner
            .db
            .run(move |c| Ok(store::lease_due(c, now_ms(), limit, LEASE_MS)?))
            .await
    }

    async fn next_due(&self) -> Result<Option<i64>, OutboxError> {
        self.inner.db.run(|c| Ok(store::next_due(c)?)).await
    }

    /// One delivery of one leased row, including the single refresh-and-retry after a
    /// 401. Returns the final answer when there was one.
    async fn attempt(&self, lease: Lease) -> Option<Reply> {
        let inner = &self.inner;
        let integration = lease.integration_id;
        let readiness = inner.transport.readiness(integration).await;
        if let Readiness::Hold(why) = readiness {
            self.hold(&lease, &why).await;
            return None;
        }
        let mut refreshed = false;
        loop {
            self.respect_rate_limit(integration).await;
            let (result, attempt) = self.send(&lease).await;
            let failures = lease.attempts + 1;
            let verdict = match &result {
                Ok(reply) => inner.policy().after_reply(failures, reply),
                Err(e) => inner.policy().after_error(failures, e),
            };
            let update = match verdict {
                Verdict::Delivered => {
                    if let Some(f) = inner.on_delivered.get() {
                        let took = (now_ms() - lease.created_at).max(0) as u64;
                        f(Duration::from_millis(took));
                    }
                    Update::Delivered
                }
                Verdict::RetryIn(wait) => Update::Retry {
                    at: now_ms() + wait.as_millis() as i64,
                    failure: true,
                },
                Verdict::Failed(why) => {
                    log::warn!("outbox: event {} failed: {why}", lease.event_id);
                    Update::Failed(why)
                }
                Verdict::Refresh if refreshed => Update::Retry {
                    // Refreshed and still refused: back off on the schedule.
                    at: now_ms() + inner.policy().schedule[0].as_millis() as i64,
                    failure: true,
                },
                Verdict::Refresh => match inner.transport.refresh(integration).await {
                    Ok(()) => {
                        // Keep the lease: this delivery sends again itself, at once.
                        self.record(&lease, &attempt, Update::Resending).await;
                        refreshed = true;
                        continue;
                    }
                    Err(why) => {
                        log::warn!(
                            "outbox: account {integration} on hold: token refresh failed: {why}"
                        );
                        Update::Held {
                            at: now_ms() + inner.policy().hold_recheck.as_millis() as i64,
                        }
                    }
                },
            };
            self.record(&lease, &attempt, update).await;
            return result.ok();
        }
    }

    async fn respect_rate_limit(&self, integration: i64) {
        let limit = self.inner.transport.rate_limit(integration).await;
        if let Some(per_second) = limit {
            let wait =
                self.inner
                    .limiter
                    .reserve(integration, per_second, tokio::time::Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn send(&self, lease: &Lease) -> (Result<Reply, SendError>, Attempt) {
        let started_at = now_ms();
        let clock = Instant::now();
        let result = self
            .inner
            .transport
            .send_kind(
                lease.integration_id,
                &lease.kind,
                &lease.event_id,
                lease.payload.as_bytes(),
            )
            .await;
        let attempt = Attempt {
            attempt: 0, // numbered by the store
            started_at,
            duration_ms: clock.elapsed().as_millis() as i64,
            status: result.as_ref().ok().map(|r| r.status),
            error: result.as_ref().err().map(ToString::to_string),
            response_body: result.as_ref().ok().map(|r| store::cut_body(&r.body)),
        };
        (result, attempt)
    }

    async fn record(&self, lease: &Lease, attempt: &Attempt, update: Update) {
        let (id, attempt) = (lease.id, attempt.clone());
        let stored = self
            .inner
            .db
            .run(move |c| Ok::<_, OutboxError>(store::record(c, id, &attempt, &update)?))
            .await;
        if let Err(e) = stored {
            // The row keeps its lease and is retried after a restart or the lease expiry.
            log::error!("outbox: cannot record an attempt of row {id}: {e}");
        }
    }

    async fn hold(&self, lease: &Lease, why: &str) {
        let (id, why) = (lease.id, why.to_string());
        let until = now_ms() + self.inner.policy().hold_recheck.as_millis() as i64;
        let _ = self
            .inner
            .db
            .run(move |c| Ok::<_, OutboxError>(store::hold(c, id, until, &why)?))
            .await;
    }
}

#[cfg(test)]
mod tests;
