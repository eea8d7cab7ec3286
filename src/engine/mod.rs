//! The call engine: the one task that owns the call tracker.
//!
//! PBX events come in (in PBX order, in batches), the tracker turns them into call
//! updates, and each batch is written in ONE SQLite transaction: the call rows and the
//! outbox rows of the Flowlu events they need. Then the outbox worker is woken. Owns
//! also: attributing calls to a Flowlu account, click-to-call registration
//! ([`EngineHandle::click_to_call`]), the routing decider for incoming calls ([`route`]),
//! publishing recordings after hang-up, and the call metrics. It does not know protocol
//! details (that is `pbx/`) nor Flowlu's URLs (that is `flowlu/`).

mod fallback;
mod numbers;
mod persist;
pub mod route;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::callbacks::Callbacks;
use crate::calls::tracker::{Tracker, Update};
use crate::calls::{Call, Direction, store};
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::pbx::{Event, OriginateRequest, PbxError, PbxEvent, PbxEvents, PbxHandle, StatusBoard};
use crate::recordings::Recordings;

pub use persist::Pending;

/// What the engine works with (and the back-fill, which writes as the engine does),
/// handed over by `app`. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub db: Db,
    /// Wakes after each write: the call events it queued.
    pub outbox: Outbox,
    /// Wakes after each finished call: its result callbacks.
    pub callbacks: Callbacks,
    pub metrics: Arc<Metrics>,
    /// Publishes a finished call's recording.
    pub recordings: Recordings,
    /// The configuration the service started with (`[routing]`, `[pbx]`, `[cdr]`).
    pub config: Arc<Config>,
    /// The configuration in force: the tracker's `[calls]` rules follow reloads.
    pub live: watch::Receiver<Arc<Config>>,
}

impl Deps {
    /// The configuration in force.
    pub fn current(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }
}

/// What the engine tells the back-fill of the PBX's own records (`cdr::backfill`,
/// installed by `app`): every event batch, so it knows when the PBX was last seen alive
/// and when a resync closed a gap to read.
pub trait Backfill: Send {
    /// A batch came in; called after its updates are written.
    fn batch<'a>(&'a mut self, deps: &'a Deps, batch: Batch) -> BatchFuture<'a>;
}

/// What one batch of PBX events says about the link.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    /// When it came in (unix ms).
    pub at: i64,
    /// The connection just ended.
    pub gone: bool,
    /// The PBX's channels were just read again (after a connect).
    pub resynced: bool,
}

/// What [`Backfill::batch`] returns.
pub type BatchFuture<'a> = std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A call written by [`write_recorded`]: its record and final status.
pub struct Recorded {
    pub call: Call,
    pub finished: Option<&'static str>,
}

/// Writes calls the tracker never saw (the PBX's call records, `crate::cdr`) exactly as
/// live ones are written: attribution, call rows, outbox events, result callbacks, CRM
/// rules, in one transaction. Blocking; [`after_recorded`] then hands them on.
pub fn write_recorded(
    conn: &mut rusqlite::Connection,
    updates: Vec<Update>,
    rules: &crate::calls::tracker::Rules,
) -> Result<Vec<Recorded>, EngineError> {
    let (_, written) = persist::write(
        conn,
        updates,
        Pending::default(),
        std::time::Duration::ZERO,
        rules,
    )?;
    Ok(written
        .into_iter()
        .map(|w| Recorded {
            call: w.call,
            finished: w.finished,
        })
        .collect())
}

/// After [`write_recorded`] in the service: wakes the workers, counts the calls and
/// publishes their recordings.
pub fn after_recorded(deps: &Deps, written: Vec<Recorded>) {
    deps.outbox.wake();
    deps.callbacks.wake();
    for done in written {
        if let Some(status) = done.finished {
            deps.metrics.call_finished(status);
            deps.metrics.call_backfilled();
            if done.call.recording_path.is_some() && done.call.integration_id.is_some() {
                let deps = deps.clone();
                tokio::spawn(async move { persist::report_recording(&deps, done.call).await });
            }
        }
    }
}

/// Why the engine could not do something asked of it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Pbx(#[from] PbxError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the call engine is not running")]
    Stopped,
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        EngineError::Db(e.into())
    }
}

/// A click-to-call to place for a Flowlu account.
#[derive(Debug, Clone)]
pub struct ClickToCall {
    pub integration_id: i64,
    pub user_id: Option<String>,
    /// The employee's extension: rung first.
    pub extension: String,
    /// The customer's number, already normalized.
    pub phone: String,
    /// The caller ID the customer should see, if the account chose one.
    pub line: Option<String>,
    /// Flowlu's id for the call, echoed in every event.
    pub crm_call_id: Option<String>,
    /// The caller's own id for the call (`call.make` `uuid`), echoed in result callbacks.
    pub uuid: Option<String>,
}

/// What a routing question needs from the engine: the incoming call and the row of its
/// `call.init` event, reserved for the decider to send.
#[derive(Debug, Clone)]
pub struct RouteTicket {
    pub call_id: String,
    pub integration_id: i64,
    pub init_row: i64,
}

enum Input {
    Adopt {
        call: Call,
        uuid: Option<String>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Expect {
        call_id: String,
        channel: String,
    },
    AgentBusy {
        extension: String,
        reply: oneshot::Sender<bool>,
    },
    CustomerChannel {
        call_id: String,
        reply: oneshot::Sender<Option<String>>,
    },
    Route {
        channel: String,
        group: Option<String>,
        reply: oneshot::Sender<Option<RouteTicket>>,
    },
    /// An event the engine itself produced (an originate the PBX refused).
    Event(PbxEvent),
}

/// Asks the engine task things; cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Input>,
    /// Where click-to-calls are placed, and whether the PBX is up.
    pbx: PbxHandle,
    pbx_status: StatusBoard,
}

/// The receiving side, taken once by [`run`].
pub struct EngineInbox(mpsc::Receiver<Input>);

/// The engine's handle (placing click-to-calls through `pbx`) and its receiving side.
pub fn channel(pbx: PbxHandle, pbx_status: StatusBoard) -> (EngineHandle, EngineInbox) {
    let (tx, rx) = mpsc::channel(256);
    let handle = EngineHandle {
        tx,
        pbx,
        pbx_status,
    };
    (handle, EngineInbox(rx))
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Input) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Places a click-to-call: records it (and its `call.init`) first, then asks the PBX
    /// to ring the employee. Returns as soon as the PBX accepted the originate; what
    /// happens next arrives as PBX events and becomes Flowlu events. When the PBX refuses,
    /// the call is ended as failed (and reported so) and the error returned.
    pub async fn click_to_call(&self, req: ClickToCall) -> Result<Call, EngineError> {
        if !self.pbx.is_up() {
            return Err(
                PbxError::Unavailable(self.pbx_status.get().detail.unwrap_or_default()).into(),
            );
        }
        let call = Call {
            integration_id: Some(req.integration_id),
            crm_call_id: req.crm_call_id.clone(),
            phone: req.phone.clone(),
            line: req.line.clone().unwrap_or_default(),
            extension: Some(req.extension.clone()),
            user_id: req.user_id.clone(),
            ..Call::new(Direction::Outgoing, crate::util::now_ms())
        };
        let adopted = call.clone();
        self.ask(|reply| Input::Adopt {
            call: adopted,
            uuid: req.uuid.clone(),
            reply,
        })
        .await
        .ok_or(EngineError::Stopped)??;
        let originate = OriginateRequest {
            call_id: call.id.clone(),
            agent: req.extension,
            customer: req.phone.clone(),
            caller_id_name: "Flowlu".into(),
            caller_id_number: req.phone,
            ring: None,
            line: req.line,
        };
        match self.pbx.originate(&originate).await {
            Ok(accepted) => {
                let _ = self
                    .tx
                    .send(Input::Expect {
                        call_id: call.id.clone(),
                        channel: accepted.channel,
                    })
                    .await;
                Ok(call)
            }
            Err(e) => {
                // Tell the tracker as the PBX would have: the originate failed.
                let result = PbxEvent::now(crate::pbx::Event::OriginateResult {
                    call_id: call.id.clone(),
                    outcome: crate::pbx::OriginateOutcome::Failed,
                    channel: None,
                    detail: e.to_string(),
                });
                let _ = self.tx.send(Input::Event(result)).await;
                Err(e.into())
            }
        }
    }

    /// True while the employee is on (or ringing in) a call the engine tracks.
    pub async fn agent_busy(&self, extension: &str) -> bool {
        let extension = extension.to_string();
        self.ask(|reply| Input::AgentBusy { extension, reply })
            .await
            .unwrap_or(false)
    }

    /// The customer's live PBX channel of a call (what a redirect moves).
    pub async fn customer_channel(&self, call_id: &str) -> Option<String> {
        let call_id = call_id.to_string();
        self.ask(|reply| Input::CustomerChannel { call_id, reply })
            .await
            .flatten()
    }

    /// Waits until the call on `channel` is known (the caller's deadline bounds the
    /// wait), then returns its reserved `call.init` when the call is routed through the
    /// CRM, or `None` at once when it is not.
    pub async fn route_ticket(&self, channel: &str, group: Option<&str>) -> Option<RouteTicket> {
        let (channel, group) = (channel.to_string(), group.map(str::to_string));
        self.ask(|reply| Input::Route {
            channel,
            group,
            reply,
        })
        .await
        .flatten()
    }
}

/// Runs the engine until `shutdown`: restores open calls from the database, then
/// consumes PBX events and requests.
pub async fn run(
    deps: Deps,
    inbox: EngineInbox,
    mut events: PbxEvents,
    backfill: Box<dyn Backfill>,
    shutdown: impl Future<Output = ()>,
) {
    let mut inbox = inbox.0;
    let mut core = Core {
        tracker: Tracker::new(&deps.current().calls),
        pending: Pending::default(),
        init_rows: HashMap::new(),
        waiters: Vec::new(),
        backfill,
    };
    match deps
        .db
        .run(|c| Ok::<_, EngineError>(store::open_calls(c)?))
        .await
    {
        Ok(open) => {
            if !open.is_empty() {
                log::info!(
                    "engine: {} call(s) were open at the last stop; checking them against the PBX",
                    open.len()
                );
            }
            for call in open {
                core.tracker.restore(call);
            }
        }
        Err(e) => log::error!("engine: cannot read open calls: {e}"),
    }
    deps.metrics
        .set_active_calls(core.tracker.live_calls() as i64);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut reloaded = deps.live.clone();
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Ok(()) = reloaded.changed() => {
                let calls = reloaded.borrow_and_update().calls.clone();
                core.tracker.set_rules(crate::calls::tracker::Rules::new(&calls));
            }
            Some(input) = inbox.recv() => core.input(&deps, input).await,
            Some(event) = events.recv() => {
                let mut batch = vec![event];
                while batch.len() < BATCH {
                    match events.try_recv() {
                        Ok(event) => batch.push(event),
                        Err(_) => break,
                    }
                }
                core.events(&deps, batch).await;
            }
            else => break,
        }
    }
}

/// Events written per transaction at most.
const BATCH: usize = 256;

struct Core {
    tracker: Tracker,
    pending: Pending,
    /// The reserved `call.init` rows of incoming calls routed through the CRM.
    init_rows: HashMap<String, RouteTicket>,
    waiters: Vec<(String, Option<String>, oneshot::Sender<Option<RouteTicket>>)>,
    /// Told of every batch: when the PBX was last seen alive, when it resynced.
    backfill: Box<dyn Backfill>,
}

impl Core {
    async fn input(&mut self, deps: &Deps, input: Input) {
        match input {
            Input::Adopt { call, uuid, reply } => {
                if let Some(uuid) = uuid {
                    self.pending.uuid(&call.id, uuid);
                }
                let update = self.tracker.adopt(call, None);
                let result = self.write(deps, vec![update]).await;
                let _ = reply.send(result);
            }
            Input::Expect { call_id, channel } => self.tracker.expect_channel(&call_id, channel),
            Input::AgentBusy { extension, reply } => {
                let _ = reply.send(self.tracker.agent_busy(&extension));
            }
            Input::CustomerChannel { call_id, reply } => {
                let _ = reply.send(self.tracker.customer_channel(&call_id));
            }
            Input::Route {
                channel,
                group,
                reply,
            } => {
                self.waiters.push((channel, group, reply));
                self.answer_waiters();
            }
            Input::Event(event) => self.events(deps, vec![event]).await,
        }
    }

    async fn events(&mut self, deps: &Deps, batch: Vec<PbxEvent>) {
        let updates: Vec<Update> = batch.iter().flat_map(|e| self.tracker.handle(e)).collect();
        // Back-fill (issue 14): note the PBX alive; after a resync, read the gap's records.
        let now = crate::util::now_ms();
        let gone = batch
            .iter()
            .any(|e| matches!(e.event, Event::Disconnected { .. }));
        let resynced = batch
            .iter()
            .any(|e| matches!(e.event, Event::Resync { .. }));
        self.events_written(deps, updates).await;
        let batch = Batch {
            at: now,
            gone,
            resynced,
        };
        self.backfill.batch(deps, batch).await;
    }

    async fn events_written(&mut self, deps: &Deps, updates: Vec<Update>) {
        if updates.is_empty() {
            return;
        }
        if let Err(e) = self.write(deps, updates).await {
            // The PBX keeps no copy: a lost write is lost events. Log loudly; the next
            // resync (reconnect or restart) reconciles what it can.
            log::error!("engine: cannot store call updates: {e}");
        }
        deps.metrics
            .set_active_calls(self.tracker.live_calls() as i64);
        self.answer_waiters();
    }

    /// Writes updates in one transaction and hands their consequences on.
    async fn write(&mut self, deps: &Deps, updates: Vec<Update>) -> Result<(), EngineError> {
        let pending = std::mem::take(&mut self.pending);
        let reserve = deps.config.routing.decision_timeout() + std::time::Duration::from_secs(2);
        let rules = crate::calls::tracker::Rules::new(&deps.current().calls);
        let (pending, written) = deps
            .db
            .write(move |c| persist::write_in(c, updates, pending, reserve, &rules))
            .await?;
        self.pending = pending;
        deps.outbox.wake();
        if written.iter().any(|w| w.finished.is_some()) {
            deps.callbacks.wake();
        }
        for done in written {
            if let Some(integration) = done.call.integration_id {
                self.tracker
                    .set_owner(&done.call.id, integration, done.call.user_id.clone());
            }
            if let Some(ticket) = done.ticket {
                self.init_rows.insert(done.call.id.clone(), ticket);
            }
            if let Some(status) = done.finished {
                self.init_rows.remove(&done.call.id);
                deps.metrics.call_finished(status);
                if done.call.recording_path.is_some() && done.call.integration_id.is_some() {
                    // The file is finished only shortly after the hang-up: wait for it off
                    // the engine's path.
                    let deps = deps.clone();
                    tokio::spawn(async move { persist::report_recording(&deps, done.call).await });
                }
            }
        }
        Ok(())
    }

    fn answer_waiters(&mut self) {
        let mut still = Vec::new();
        for (channel, group, reply) in self.waiters.drain(..) {
            if reply.is_closed() {
                continue; // the decider gave up
            }
            let call = self
                .tracker
                .call_of_channel(&channel)
                .or_else(|| group.as_deref().and_then(|g| self.tracker.call_of_group(g)));
            match call {
                Some(call) => {
                    let _ = reply.send(self.init_rows.get(&call.id).cloned());
                }
                None => still.push((channel, group, reply)),
            }
        }
        self.waiters = still;
    }
}
