//! The delivery worker: leases due rows, sends them through the transport, records the
//! attempt and its consequence. [`Outbox::run`] is the production loop; [`Outbox::step`]
//! delivers what is due once, so tests can drain the queue instead of sleeping.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
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

/// What the worker knows about an account while it sends the rows of one lease: read once
/// per lease, not once per row.
#[derive(Debug, Clone)]
struct Account {
    readiness: Readiness,
    /// Requests per second; `None`: no limit.
    rate_limit: Option<u32>,
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
    /// Accounts that answered 429, and until when (unix ms) none of their rows is sent.
    paused: Mutex<HashMap<i64, i64>>,
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
                paused: Mutex::new(HashMap::new()),
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
        // Under a backlog, lease in batches of a quarter of the slots rather than one row
        // per completion: one lease transaction, and one look at each account's state,
        // for many rows.
        let batch = (self.inner.max_in_flight() / 4).max(1);
        loop {
            let room = self.inner.max_in_flight().saturating_sub(in_flight.len());
            let mut wait = IDLE_POLL;
            let leasing = room >= batch || in_flight.is_empty();
            if leasing {
                match self.lease_due(room).await {
                    Ok(leases) => {
                        let accounts = self.accounts(&leases).await;
                        for lease in leases {
                            let me = self.clone();
                            let account = accounts[&lease.integration_id].clone();
                            in_flight.spawn(async move { me.attempt(lease, account).await });
                        }
                    }
                    Err(e) => log::error!("outbox: {e}"),
                }
            }
            if leasing && in_flight.len() < self.inner.max_in_flight() {
                // Room left, so nothing else is due now: sleep until the next row is.
                // (When full, a completion wakes us: no need to look, which under a
                // backlog would scan every pending row once per delivery.)
                match self.next_due().await {
                    Ok(next) => {
                        // A paused account's rows are due again when its pause ends.
                        let pause_end = self.paused_accounts().1;
                        if let Some(at) = next.into_iter().chain(pause_end).min() {
                            let delta = (at - now_ms()).max(0) as u64;
                            wait = wait.min(Duration::from_millis(delta));
                        }
                    }
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
        let accounts = self.accounts(&leases).await;
        for lease in leases {
            let account = accounts[&lease.integration_id].clone();
            self.attempt(lease, account).await;
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
            let account = me.account(lease.integration_id).await;
            let reply = me.attempt(lease, account).await;
            let _ = tx.send(reply);
        });
        tokio::time::timeout(wait, rx).await.ok()?.ok().flatten()
    }

    async fn lease_due(&self, limit: usize) -> Result<Vec<Lease>, OutboxError> {
        let paused = store::id_list(&self.paused_accounts().0);
        self.inner
            .db
            .run(move |c| Ok(store::lease_due(c, now_ms(), limit, LEASE_MS, &paused)?))
            .await
    }

    async fn next_due(&self) -> Result<Option<i64>, OutboxError> {
        let paused = store::id_list(&self.paused_accounts().0);
        self.inner
            .db
            .run(move |c| Ok(store::next_due(c, &paused)?))
            .await
    }

    /// The accounts paused now, and when the first of those pauses ends. Forgets pauses
    /// that are over.
    fn paused_accounts(&self) -> (Vec<i64>, Option<i64>) {
        let now = now_ms();
        let mut paused = self.inner.paused.lock().expect("pause map");
        paused.retain(|_, until| *until > now);
        (
            paused.keys().copied().collect(),
            paused.values().copied().min(),
        )
    }

    /// Until when `integration` is paused, if it is now.
    fn paused_until(&self, integration: i64) -> Option<i64> {
        let paused = self.inner.paused.lock().expect("pause map");
        paused.get(&integration).copied().filter(|&t| t > now_ms())
    }

    /// A 429 pauses the whole account, not only the event it answered: Flowlu throttles
    /// the account, so its other events would only be refused (and use up their
    /// schedules) too.
    fn pause(&self, integration: i64, until: i64) {
        let mut paused = self.inner.paused.lock().expect("pause map");
        let entry = paused.entry(integration).or_insert(until);
        *entry = (*entry).max(until);
        log::info!(
            "outbox: account {integration} throttled (HTTP 429): its deliveries wait {} ms",
            until - now_ms()
        );
    }

    /// An account's state for the rows of one lease.
    async fn account(&self, integration: i64) -> Account {
        let transport = &self.inner.transport;
        Account {
            readiness: transport.readiness(integration).await,
            rate_limit: transport.rate_limit(integration).await,
        }
    }

    /// The state of every account in `leases`, each looked at once.
    async fn accounts(&self, leases: &[Lease]) -> HashMap<i64, Account> {
        let mut ids: Vec<i64> = leases.iter().map(|l| l.integration_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut accounts = HashMap::with_capacity(ids.len());
        for id in ids {
            accounts.insert(id, self.account(id).await);
        }
        accounts
    }

    /// One delivery of one leased row, including the single refresh-and-retry after a
    /// 401. Returns the final answer when there was one.
    async fn attempt(&self, lease: Lease, account: Account) -> Option<Reply> {
        let inner = &self.inner;
        let integration = lease.integration_id;
        if let Readiness::Hold(why) = account.readiness {
            self.hold(&lease, &why).await;
            return None;
        }
        let mut refreshed = false;
        loop {
            self.respect_rate_limit(integration, account.rate_limit)
                .await;
            if let Some(until) = self.paused_until(integration) {
                // Leased before another of its events got a 429: not sent until then.
                self.put_back(&lease, until).await;
                return None;
            }
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
                Verdict::RetryIn(wait) => {
                    let at = now_ms() + wait.as_millis() as i64;
                    if matches!(&result, Ok(reply) if reply.status == 429) {
                        self.pause(integration, at);
                    }
                    Update::Retry { at, failure: true }
                }
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

    async fn respect_rate_limit(&self, integration: i64, limit: Option<u32>) {
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

    async fn put_back(&self, lease: &Lease, at: i64) {
        let id = lease.id;
        let stored = self
            .inner
            .db
            .run(move |c| Ok::<_, OutboxError>(store::put_back(c, id, at)?))
            .await;
        if let Err(e) = stored {
            log::error!("outbox: cannot put row {id} back: {e}");
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
