//! The delivery worker: leases due rows, sends them through the transport, records the
//! attempt and its consequence. [`Outbox::run`] is the production loop; [`Outbox::step`]
//! delivers what is due once, so tests can drain the queue instead of sleeping.
//!
//! The loop works in batches on the database's writer connection (`Db::write`, shared
//! with the call engine and committed together with its writes): one transaction stores
//! the attempts of every delivery that finished since the last batch and leases the next
//! due rows, reading each leased account's state ([`Transport::load_account`]) in the
//! same transaction. So under load a delivered event costs one POST plus a share of one
//! transaction, instead of a lease, account reads and a record transaction of its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::policy::{RetryPolicy, Verdict};
use super::ratelimit::RateLimiter;
use super::store::{self, Attempt, Flushed, Lease, Op, Update};
use super::{Loaded, OutboxError, Readiness, Reply, SendError, Transport, now_ms};
use crate::db::{Db, DbError};

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
type Account = Loaded;

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
    /// finish (and be recorded) in the background; their rows are sent again after a
    /// restart if they did not complete.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        if let Err(e) = self
            .write(|c| Ok::<_, OutboxError>(store::clear_leases(c)?))
            .await
        {
            log::error!("outbox: cannot clear leases: {e}");
        }
        let mut shutdown = std::pin::pin!(shutdown);
        let mut in_flight: JoinSet<Vec<Op>> = JoinSet::new();
        // Outcomes of finished deliveries, stored by the next batch.
        let mut done: Vec<Op> = Vec::new();
        // New rows were written (a new call's `call.init`, say): lease even with fewer
        // than a batch's slots free, so they need not wait for a batch to complete.
        let mut woken = true;
        loop {
            while let Some(finished) = in_flight.try_join_next() {
                done.extend(finished.unwrap_or_default());
            }
            // Under a backlog, lease in batches of a quarter of the slots rather than one
            // row per completion: one transaction, and one look at each account's state,
            // for many rows.
            let max = self.inner.max_in_flight();
            let batch = (max / 4).max(1);
            let room = max.saturating_sub(in_flight.len());
            let leasing = room >= batch || in_flight.is_empty() || (woken && room > 0);
            woken = false;
            let mut wait = IDLE_POLL;
            if leasing || !done.is_empty() {
                let ops = std::mem::take(&mut done);
                match self
                    .flush(ops.clone(), if leasing { room } else { 0 })
                    .await
                {
                    Ok(flushed) => {
                        let full = flushed.leases.len() >= room;
                        let next = flushed.next_due;
                        for (lease, account) in self.with_accounts(flushed).await {
                            let me = self.clone();
                            in_flight.spawn(async move { me.attempt(lease, account).await.0 });
                        }
                        if leasing && !full {
                            // Room left, so nothing else is due now: sleep until the next
                            // row is. (When full, a completion wakes us.) A paused
                            // account's rows are due again when its pause ends.
                            let pause_end = self.paused_accounts().1;
                            if let Some(at) = next.into_iter().chain(pause_end).min() {
                                let delta = (at - now_ms()).max(0) as u64;
                                wait = wait.min(Duration::from_millis(delta));
                            }
                        }
                    }
                    Err(e) => {
                        // Kept for the next batch; the rows stay leased meanwhile.
                        log::error!("outbox: {e}");
                        done = ops;
                        wait = Duration::from_millis(100);
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.inner.wake.notified() => woken = true,
                Some(finished) = in_flight.join_next(), if !in_flight.is_empty() => {
                    done.extend(finished.unwrap_or_default());
                }
                () = tokio::time::sleep(wait.max(Duration::from_millis(1))) => woken = true,
            }
        }
        // What finished is stored now; what is still in flight when it finishes.
        let me = self.clone();
        tokio::spawn(async move {
            me.apply(done).await;
            while let Some(finished) = in_flight.join_next().await {
                me.apply(finished.unwrap_or_default()).await;
            }
        });
    }

    /// Attempts every row that is due now, once, one at a time. Returns how many
    /// attempts were made (0: nothing was due).
    pub async fn step(&self) -> usize {
        let flushed = match self.flush(Vec::new(), usize::MAX / 2).await {
            Ok(flushed) => flushed,
            Err(e) => {
                log::error!("outbox: {e}");
                return 0;
            }
        };
        let leases = self.with_accounts(flushed).await;
        let count = leases.len();
        for (lease, account) in leases {
            let (ops, _) = self.attempt(lease, account).await;
            self.apply(ops).await;
        }
        count
    }

    /// Sends one row now (if it is the head of its call: a row reserved with
    /// [`enqueue_reserved`](super::enqueue_reserved)) and waits up to `wait` for the answer. The attempt is recorded like any other; if it fails or
    /// takes longer, the row stays queued and the worker retries it on schedule.
    pub async fn deliver_now(&self, id: i64, wait: Duration) -> Option<Reply> {
        let lease = self
            .write(move |c| Ok::<_, OutboxError>(store::lease_one(c, id, now_ms(), LEASE_MS)?))
            .await
            .ok()
            .flatten()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let me = self.clone();
        tokio::spawn(async move {
            let account = me.account(lease.integration_id).await;
            let (ops, reply) = me.attempt(lease, account).await;
            me.apply(ops).await;
            let _ = tx.send(reply);
        });
        tokio::time::timeout(wait, rx).await.ok()?.ok().flatten()
    }

    /// Runs `f` in a transaction on the database's writer connection (`Db::write`: one
    /// connection and one commit shared with the call engine's writes).
    async fn write<T, E>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        self.inner.db.write(f).await
    }

    /// One batch: stores `ops`, leases up to `limit` due rows and reads their accounts.
    async fn flush(
        &self,
        ops: Vec<Op>,
        limit: usize,
    ) -> Result<Flushed<Option<Loaded>>, OutboxError> {
        let paused = store::id_list(&self.paused_accounts().0);
        let transport = self.inner.transport.clone();
        self.write(move |c| {
            Ok(store::flush_in(
                c,
                &ops,
                limit,
                LEASE_MS,
                &paused,
                |c, id| transport.load_account(c, id),
            )?)
        })
        .await
    }

    /// Stores the outcomes of deliveries outside a batch (`step`, `deliver_now`, and
    /// what finishes after shutdown).
    async fn apply(&self, ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        let stored = self
            .write(move |c| {
                Ok::<_, OutboxError>(store::flush_in(c, &ops, 0, LEASE_MS, "[]", |_, _| ())?)
            })
            .await;
        if let Err(e) = stored {
            // The rows keep their leases and are retried after a restart.
            log::error!("outbox: cannot record attempts: {e}");
        }
    }

    /// The leases of a batch with their accounts' states (asking the transport for those
    /// it did not read in the batch).
    async fn with_accounts(&self, flushed: Flushed<Option<Loaded>>) -> Vec<(Lease, Account)> {
        let mut accounts: HashMap<i64, Account> = HashMap::new();
        for (id, loaded) in flushed.accounts {
            let account = match loaded {
                Some(loaded) => loaded,
                None => self.account(id).await,
            };
            accounts.insert(id, account);
        }
        flushed
            .leases
            .into_iter()
            .map(|lease| {
                let account = accounts[&lease.integration_id].clone();
                (lease, account)
            })
            .collect()
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

    /// An account's state, asked of the transport.
    async fn account(&self, integration: i64) -> Account {
        let transport = &self.inner.transport;
        Loaded {
            readiness: transport.readiness(integration).await,
            rate_limit: transport.rate_limit(integration).await,
            context: None,
        }
    }

    /// One delivery of one leased row, including the single refresh-and-retry after a
    /// 401. Returns what it does to the table (for the caller to store) and the final
    /// answer when there was one.
    async fn attempt(&self, lease: Lease, account: Account) -> (Vec<Op>, Option<Reply>) {
        let inner = &self.inner;
        let integration = lease.integration_id;
        if let Readiness::Hold(why) = account.readiness {
            let until = now_ms() + inner.policy().hold_recheck.as_millis() as i64;
            return (
                vec![Op::Hold {
                    id: lease.id,
                    until,
                    why,
                }],
                None,
            );
        }
        let mut ops = Vec::new();
        // What the batch read for the account; not used again after a refresh.
        let mut context = account.context.clone();
        let mut refreshed = false;
        loop {
            self.respect_rate_limit(integration, account.rate_limit)
                .await;
            if let Some(until) = self.paused_until(integration) {
                // Leased before another of its events got a 429: not sent until then.
                ops.push(Op::PutBack {
                    id: lease.id,
                    at: until,
                });
                return (ops, None);
            }
            let (result, attempt) = self.send(&lease, context.as_deref()).await;
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
                        ops.push(Op::Record {
                            id: lease.id,
                            attempt,
                            update: Update::Resending,
                        });
                        refreshed = true;
                        context = None;
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
            ops.push(Op::Record {
                id: lease.id,
                attempt,
                update,
            });
            return (ops, result.ok());
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

    async fn send(
        &self,
        lease: &Lease,
        context: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> (Result<Reply, SendError>, Attempt) {
        let started_at = now_ms();
        let clock = Instant::now();
        let transport = &self.inner.transport;
        let (id, kind, event_id) = (lease.integration_id, &lease.kind, &lease.event_id);
        let body = lease.payload.as_bytes();
        let result = match context {
            Some(context) => {
                transport
                    .send_loaded(context, id, kind, event_id, body)
                    .await
            }
            None => transport.send_kind(id, kind, event_id, body).await,
        };
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
}

#[cfg(test)]
mod tests;
