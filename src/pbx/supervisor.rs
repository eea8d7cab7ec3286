//! Keeps one PBX connection logged in for as long as the appliance runs.
//!
//! Owns the connection lifecycle: follow `state.pbx_settings` (a change drops the old
//! connection and connects with the new settings; `None` means not configured), connect
//! and log in, set up event filters, resync, publish the connection to [`PbxHandle`]s and
//! the state to the [`StatusBoard`], and after a loss reconnect with capped exponential
//! backoff and jitter; a refused login is retried only every `auth_retry`. It emits the
//! lifecycle events (`Connected`, `Disconnected`) and the PBX's endpoint lists
//! (`Endpoints`: asked after login, before the resync, and every `endpoints_refresh`
//! while connected); the protocol actors emit the rest.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::handle::Backend;
use super::{
    ConnectError, ConnectionSettings, Endpoints, Event, LinkState, Options, PbxEvent, PbxEvents,
    PbxHandle, StatusBoard, ami, esl,
};
use crate::config::{PbxConfig, PbxType};

/// Builds the three parts of the PBX side: the command handle (clone it freely), the
/// event stream (one consumer: the call tracker) and the supervisor to run.
pub fn channel(config: &PbxConfig, status: StatusBoard) -> (PbxHandle, PbxEvents, Supervisor) {
    channel_with_queue(config, status, super::EVENT_QUEUE)
}

/// [`channel`] with `queue` events of room before the connection waits for the consumer.
pub fn channel_with_queue(
    config: &PbxConfig,
    status: StatusBoard,
    queue: usize,
) -> (PbxHandle, PbxEvents, Supervisor) {
    let (events_tx, events_rx) = mpsc::channel(queue.max(1));
    let (backend_tx, backend_rx) = watch::channel(None);
    let handle = PbxHandle {
        backend: backend_rx,
        status: status.clone(),
    };
    let supervisor = Supervisor {
        opts: Options::from_config(config),
        status,
        events: events_tx,
        backend: backend_tx,
    };
    (handle, events_rx, supervisor)
}

/// Runs the connection; see the module documentation.
pub struct Supervisor {
    opts: Options,
    status: StatusBoard,
    events: mpsc::Sender<PbxEvent>,
    backend: watch::Sender<Option<Backend>>,
}

/// A logged-in connection: the command side, the actor task and the endpoint lists'
/// refresher (both aborted when dropped).
struct Live {
    backend: Backend,
    task: JoinHandle<String>,
    refresh: Option<JoinHandle<()>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(refresh) = &self.refresh {
            refresh.abort();
        }
    }
}

/// The PBX's endpoint lists ([`super::endpoints`]); `None` when it answered none.
async fn endpoints_of(backend: &Backend) -> Option<Endpoints> {
    match backend {
        Backend::Ami(c) => ami::commands::endpoints(c).await,
        Backend::Esl(c) => esl::commands::endpoints(c).await,
    }
}

/// Asks the lists again every `every`, passing them on (and saying so in the log) only
/// when they changed since `last`.
async fn refresh_endpoints(
    backend: Backend,
    events: mpsc::Sender<PbxEvent>,
    every: Duration,
    mut last: Option<Endpoints>,
) {
    loop {
        tokio::time::sleep(every).await;
        let Some(list) = endpoints_of(&backend).await else {
            log::debug!("PBX: no endpoint list answered this time; keeping the last");
            continue;
        };
        if last.as_ref() == Some(&list) {
            continue;
        }
        log::info!("PBX: endpoint lists changed: {}", list.summary());
        last = Some(list.clone());
        if events
            .send(PbxEvent::now(Event::Endpoints(list)))
            .await
            .is_err()
        {
            return;
        }
    }
}

impl Live {
    async fn close(self) {
        match &self.backend {
            Backend::Ami(c) => c.logoff().await,
            Backend::Esl(c) => c.exit().await,
        }
    }
}

/// Clears the published connection when the supervisor stops, however it stops.
struct Unpublish<'a>(&'a watch::Sender<Option<Backend>>);

impl Drop for Unpublish<'_> {
    fn drop(&mut self) {
        self.0.send_replace(None);
    }
}

/// The delay before reconnect attempt `attempt` (1-based): `min · 2^(attempt-1)`, capped
/// at `max`, then drawn uniformly from its upper half so that many appliances restarted
/// together do not reconnect in lockstep.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = min.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max).max(Duration::from_millis(1));
    let half = capped / 2;
    let jitter = rand::random::<f64>();
    half + half.mul_f64(jitter)
}

/// Resolves when the settings differ from `current` (publishing the same values again
/// does not drop a working connection); never, once nobody can change them any more.
async fn changed(
    settings: &mut watch::Receiver<Option<ConnectionSettings>>,
    current: &Option<ConnectionSettings>,
) {
    loop {
        if settings.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if *settings.borrow_and_update() != *current {
            return;
        }
    }
}

enum Stop {
    Shutdown,
    SettingsChanged,
}

impl Supervisor {
    fn publish(&self, backend: Option<Backend>) {
        self.backend.send_replace(backend);
    }

    async fn emit(&self, event: Event) {
        // Fails only when the consumer is gone, i.e. the appliance is stopping.
        let _ = self.events.send(PbxEvent::now(event)).await;
    }

    /// Runs until `shutdown` resolves. Never returns an error: every failure is a state on
    /// the status board and a retry.
    pub async fn run(
        self,
        mut settings: watch::Receiver<Option<ConnectionSettings>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let _unpublish = Unpublish(&self.backend);
        tokio::pin!(shutdown);
        let mut attempt: u32 = 0;
        let mut filters = true;
        loop {
            let current = settings.borrow_and_update().clone();
            let Some(conn) = current else {
                self.status.set_kind(None);
                self.status.set(LinkState::NotConfigured, None);
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = changed(&mut settings, &None) => continue,
                }
            };
            self.status.set_kind(Some(conn.kind));
            let current = Some(conn.clone());
            let opts = Arc::new(self.opts.for_kind(conn.kind));
            // Set once `Connected` went out, so an abandoned attempt still ends with
            // `Disconnected`.
            let announced = AtomicBool::new(false);
            let attempt_result = tokio::select! {
                _ = &mut shutdown => {
                    if announced.load(Ordering::Relaxed) {
                        let reason = "the appliance is stopping".to_string();
                        let _ = self.events.try_send(PbxEvent::now(Event::Disconnected { reason }));
                    }
                    return;
                }
                _ = changed(&mut settings, &current) => {
                    if announced.load(Ordering::Relaxed) {
                        let reason = "the connection settings changed".to_string();
                        self.emit(Event::Disconnected { reason }).await;
                    }
                    attempt = 0;
                    filters = true;
                    continue;
                }
                result = self.connect(&conn, opts.clone(), &mut filters, &announced) => result,
            };
            let wait = match attempt_result {
                Ok(mut live) => {
                    let since = Instant::now();
                    self.publish(Some(live.backend.clone()));
                    self.status.set(
                        LinkState::Up,
                        Some(format!(
                            "connected to {} at {}",
                            conn.kind.as_str(),
                            conn.addr()
                        )),
                    );
                    log::info!(
                        "PBX: connected to {} at {}",
                        conn.kind.as_str(),
                        conn.addr()
                    );
                    let (reason, stop) = tokio::select! {
                        _ = &mut shutdown => ("the appliance is stopping".to_string(), Some(Stop::Shutdown)),
                        _ = changed(&mut settings, &current) => ("the connection settings changed".to_string(), Some(Stop::SettingsChanged)),
                        ended = &mut live.task => (
                            ended.unwrap_or_else(|e| format!("connection task failed: {e}")),
                            None,
                        ),
                    };
                    self.publish(None);
                    if stop.is_some() {
                        live.close().await;
                    }
                    log::warn!("PBX: disconnected from {}: {reason}", conn.addr());
                    self.status
                        .set(LinkState::Down, Some(format!("disconnected: {reason}")));
                    if matches!(stop, Some(Stop::Shutdown)) {
                        // The consumer may have stopped first: never wait for it now.
                        let _ = self
                            .events
                            .try_send(PbxEvent::now(Event::Disconnected { reason }));
                        return;
                    }
                    self.emit(Event::Disconnected { reason }).await;
                    match stop {
                        Some(Stop::Shutdown) => return,
                        Some(Stop::SettingsChanged) => {
                            attempt = 0;
                            filters = true;
                            continue;
                        }
                        None => {}
                    }
                    if since.elapsed() >= opts.reconnect_max {
                        attempt = 0;
                    }
                    attempt += 1;
                    backoff(attempt, opts.reconnect_min, opts.reconnect_max)
                }
                Err(ConnectError::AuthFailed(why)) => {
                    log::error!("PBX: {why}; next try in {} ms", opts.auth_retry.as_millis());
                    self.status.set(LinkState::AuthFailed, Some(why));
                    attempt = 0;
                    opts.auth_retry
                }
                Err(ConnectError::ChallengeRefused(why)) => {
                    log::error!("PBX: {why}; next try in {} ms", opts.auth_retry.as_millis());
                    self.status.set(LinkState::ChallengeRefused, Some(why));
                    attempt = 0;
                    opts.auth_retry
                }
                Err(ConnectError::UnsupportedVersion(why)) => {
                    log::error!("PBX: {why}; next try in {} ms", opts.auth_retry.as_millis());
                    self.status.set(LinkState::UnsupportedVersion, Some(why));
                    attempt = 0;
                    opts.auth_retry
                }
                Err(ConnectError::Down(why)) => {
                    attempt += 1;
                    let wait = backoff(attempt, opts.reconnect_min, opts.reconnect_max);
                    log::warn!("PBX: {why}; retrying in {} ms", wait.as_millis());
                    self.status.set(LinkState::Down, Some(why));
                    wait
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(wait) => {}
                _ = changed(&mut settings, &current) => {
                    attempt = 0;
                    filters = true;
                }
            }
        }
    }

    /// Connects, logs in, emits `Connected`, starts the actor, filters and resyncs.
    async fn connect(
        &self,
        conn: &ConnectionSettings,
        opts: Arc<Options>,
        filters: &mut bool,
        announced: &AtomicBool,
    ) -> Result<Live, ConnectError> {
        let timeout = opts.timeout;
        let login = async {
            match conn.kind {
                PbxType::Asterisk => ami::login::open(conn, true, opts.allow_plain_login)
                    .await
                    .map(Session::Ami),
                PbxType::Freeswitch => esl::client::open(conn, true).await.map(Session::Esl),
            }
        };
        let session = match tokio::time::timeout(timeout, login).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ConnectError::Down(format!(
                    "{} did not complete the login within {} ms",
                    conn.addr(),
                    timeout.as_millis()
                )));
            }
        };
        self.emit(Event::Connected {
            pbx: conn.kind,
            server: conn.addr(),
        })
        .await;
        announced.store(true, Ordering::Relaxed);
        let mut live = match session {
            Session::Ami(session) => {
                let (client, task) = ami::client::start(session, opts.clone(), self.events.clone());
                Live {
                    backend: Backend::Ami(client),
                    task,
                    refresh: None,
                }
            }
            Session::Esl(session) => {
                let (client, task) = esl::client::start(session, opts.clone(), self.events.clone());
                Live {
                    backend: Backend::Esl(client),
                    task,
                    refresh: None,
                }
            }
        };
        let listed = match self.prepare(&live, filters).await {
            Ok(listed) => listed,
            Err(why) => {
                self.emit(Event::Disconnected {
                    reason: why.clone(),
                })
                .await;
                return Err(ConnectError::Down(why));
            }
        };
        live.refresh = Some(tokio::spawn(refresh_endpoints(
            live.backend.clone(),
            self.events.clone(),
            opts.endpoints_refresh,
            listed,
        )));
        Ok(live)
    }

    /// Filters, endpoint lists, resync; returns the endpoint lists passed on.
    async fn prepare(&self, live: &Live, filters: &mut bool) -> Result<Option<Endpoints>, String> {
        match &live.backend {
            Backend::Ami(client) => {
                if *filters {
                    match ami::commands::add_filters(client).await {
                        Ok(_) => {}
                        Err(e) => {
                            // Half a whitelist would hide events: drop this session and
                            // run the next one unfiltered.
                            *filters = false;
                            return Err(format!("event filters failed: {e}"));
                        }
                    }
                }
            }
            Backend::Esl(_) => {}
        }
        // Before the resync: the live channels are then told apart by the PBX's lists.
        let listed = endpoints_of(&live.backend).await;
        match &listed {
            Some(list) => {
                log::info!("PBX: {}", list.summary());
                self.emit(Event::Endpoints(list.clone())).await;
            }
            None => log::info!(
                "PBX: no endpoint list answered; the last one (if any) and the [calls] \
                 rules tell employees from customers"
            ),
        }
        match &live.backend {
            Backend::Ami(client) => {
                client
                    .resync()
                    .await
                    .map_err(|e| format!("resync failed: {e}"))?;
            }
            Backend::Esl(client) => {
                client
                    .resync()
                    .await
                    .map_err(|e| format!("resync failed: {e}"))?;
            }
        }
        Ok(listed)
    }
}

enum Session {
    Ami(ami::login::Session),
    Esl(esl::client::Session),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1000);
        for _ in 0..200 {
            let first = backoff(1, min, max);
            assert!(
                first >= Duration::from_millis(50) && first <= min,
                "{first:?}"
            );
            let third = backoff(3, min, max);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(40, min, max);
            assert!(late >= max / 2 && late <= max, "{late:?}");
        }
        let samples: std::collections::HashSet<_> = (0..50).map(|_| backoff(5, min, max)).collect();
        assert!(samples.len() > 10, "jitter spreads the delays");
    }
}
