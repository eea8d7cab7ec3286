//! Fake PBX servers that replay the recorded transcripts in `tests/fixtures/` (AMI and
//! the FreeSWITCH event socket) on 127.0.0.1:0, for this tests and for the call
//! tracker and webhook tests that build on them.
//!
//! The rule is the one of the fixtures README: answer with the recorded bytes, rewriting
//! only `ActionID` / `Job-UUID` (and inventing the MD5 `Challenge`, which no recording
//! holds). When the client sends an action, the fake sends the transcript from where it
//! stands up to and including that action's recorded response (with its event list);
//! events after it wait until the test releases them. Responses to recorded actions the
//! client never sent are left out: a real server would not have sent them. An action the
//! transcript cannot answer (the client's `Filter`, a resync taken before the recorded
//! one) is answered from another recording, chosen explicitly by the test or by a fixed
//! preference list.
//!
//! Both fakes share the control surface in [`Fake`]: release events, drop the connection,
//! inspect what the client sent, wait for it.

#![allow(dead_code)]

pub mod ami;
mod ami_recording;
pub mod esl;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appliance::config::{Config, PbxConfig};
use appliance::pbx::{
    ConnectionSettings, Event, LinkState, PbxEvent, PbxEvents, PbxHandle, StatusBoard,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::harness::eventually;

pub fn fixture_path(dir: &str, name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

/// One thing the client sent: an AMI action or an ESL command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// 1-based number of the TCP connection it came on.
    pub connection: usize,
    /// AMI: the `Action:` value. ESL: the command line (`api show channels as json`).
    pub name: String,
    /// AMI: every header in order (`Variable` may repeat). ESL: the extra header lines
    /// (`Job-UUID`).
    pub headers: Vec<(String, String)>,
}

impl Sent {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

pub(crate) enum Control {
    /// Send every remaining recorded message.
    ReleaseAll,
    /// Send up to and including the first remaining message containing this text.
    ReleaseUntil(String),
    /// Close the connection now (mid-call if the test likes).
    Kill,
}

pub(crate) struct ControlMsg {
    pub kind: Control,
    pub done: oneshot::Sender<bool>,
}

/// What every fake records and how a test steers it.
#[derive(Default)]
pub(crate) struct Shared {
    pub sent: Vec<Sent>,
    /// Every byte received, over every connection (AMI), to check what never travels.
    pub received: Vec<u8>,
    pub connections: usize,
    /// When each connection was accepted.
    pub accepted: Vec<Instant>,
    pub current: Option<mpsc::UnboundedSender<ControlMsg>>,
    /// The accept loop, stopped by [`Fake::close`].
    pub acceptor: Option<JoinHandle<()>>,
}

/// The test's side of a running fake (AMI or ESL).
#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl Fake {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything the client sent, over every connection.
    pub fn sent(&self) -> Vec<Sent> {
        self.shared.lock().unwrap().sent.clone()
    }

    /// Every byte the client sent (AMI), over every connection.
    pub fn received(&self) -> Vec<u8> {
        self.shared.lock().unwrap().received.clone()
    }

    /// What the client sent named `name` (AMI action, or ESL command line prefix).
    pub fn sent_named(&self, name: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|s| s.name.eq_ignore_ascii_case(name) || s.name.starts_with(name))
            .collect()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }

    /// When each connection was accepted (to check reconnect delays).
    pub fn accepted_at(&self) -> Vec<Instant> {
        self.shared.lock().unwrap().accepted.clone()
    }

    /// Stops listening and drops the current connection: the PBX is gone.
    pub async fn close(&self) {
        let acceptor = self.shared.lock().unwrap().acceptor.take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            let _ = acceptor.await;
        }
        self.kill().await;
    }

    async fn control(&self, kind: Control) -> bool {
        let sender = self.shared.lock().unwrap().current.clone();
        let Some(sender) = sender else {
            return false;
        };
        let (done, rx) = oneshot::channel();
        if sender.send(ControlMsg { kind, done }).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Sends the rest of the recording on the current connection. False when there was
    /// no connection.
    pub async fn release_all(&self) -> bool {
        self.control(Control::ReleaseAll).await
    }

    /// Sends the recording up to and including the first message containing `text`.
    /// False when no remaining message contains it.
    pub async fn release_until(&self, text: &str) -> bool {
        self.control(Control::ReleaseUntil(text.to_string())).await
    }

    /// Drops the current connection, as a crashed or restarted PBX would.
    pub async fn kill(&self) -> bool {
        self.control(Control::Kill).await
    }

    /// Waits (polling, 10 s deadline) until the client has sent `count` actions or
    /// commands named `name`, and returns them.
    pub async fn wait_sent(&self, name: &str, count: usize) -> Vec<Sent> {
        let what = format!("{count} × {name} from the client");
        eventually(10, &what, async || {
            let sent = self.sent_named(name);
            (sent.len() >= count).then_some(sent)
        })
        .await
    }

    /// Waits until `count` connections were accepted.
    pub async fn wait_connections(&self, count: usize) {
        let what = format!("{count} connections");
        eventually(10, &what, async || {
            (self.connections() >= count).then_some(())
        })
        .await
    }
}

/// Replaces every occurrence of `from` with `to` in `bytes`.
pub fn replace_all(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    if from.is_empty() {
        return bytes.to_vec();
    }
    let from = from.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to.as_bytes());
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Long enough for anything on loopback, short enough to fail a stuck test quickly.
pub const STEP: Duration = Duration::from_secs(10);

/// A `[pbx]` section pointing at `port`, with timings short enough for tests.
pub fn pbx_config(kind: &str, port: u16) -> PbxConfig {
    let mut pbx = Config::defaults().pbx;
    pbx.kind_name = kind.to_string();
    pbx.host = "127.0.0.1".into();
    pbx.port = port;
    pbx.user = "appliance".into();
    pbx.secret = appliance::secret::Secret::new(if kind == "asterisk" {
        "s3cret"
    } else {
        "ClueCon"
    });
    pbx.keepalive_ms = 60_000;
    pbx.reconnect_min_ms = 20;
    pbx.reconnect_max_ms = 200;
    pbx.auth_retry_ms = 400;
    pbx.timeout_ms = 5_000;
    pbx
}

/// The PBX side of the appliance on its own: supervisor, handle and event stream, as
/// `app::serve` wires them, for tests that talk to a fake PBX without HTTP.
pub struct PbxUnderTest {
    pub handle: PbxHandle,
    pub status: StatusBoard,
    pub events: PbxEvents,
    pub settings: watch::Sender<Option<ConnectionSettings>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PbxUnderTest {
    pub fn start(config: PbxConfig) -> PbxUnderTest {
        Self::start_with_queue(config, appliance::pbx::EVENT_QUEUE)
    }

    /// With room for only `queue` unread events (to exercise backpressure).
    pub fn start_with_queue(config: PbxConfig, queue: usize) -> PbxUnderTest {
        let status = StatusBoard::new(&config);
        let (handle, events, supervisor) =
            appliance::pbx::channel_with_queue(&config, status.clone(), queue);
        let (settings, settings_rx) = watch::channel(ConnectionSettings::from_config(&config));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(supervisor.run(settings_rx, async {
            let _ = stopped.await;
        }));
        PbxUnderTest {
            handle,
            status,
            events,
            settings,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The next event (10 s deadline).
    pub async fn next(&mut self) -> PbxEvent {
        tokio::time::timeout(STEP, self.events.recv())
            .await
            .expect("no PBX event within 10 s")
            .expect("the event stream ended")
    }

    /// Events up to and including the first one `stop` accepts (10 s deadline).
    pub async fn until(&mut self, stop: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let event = tokio::time::timeout(STEP, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no matching PBX event within 10 s; saw {seen:#?}"))
                .expect("the event stream ended")
                .event;
            let done = stop(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Waits until the status board shows `state`, and returns its detail.
    pub async fn wait_state(&self, state: LinkState) -> Option<String> {
        let what = format!("PBX state {}", state.as_str());
        eventually(10, &what, async || {
            let s = self.status.get();
            (s.state == state).then_some(s.detail)
        })
        .await
    }

    /// Waits for the state and for the resync that completes every (re)connect.
    pub async fn wait_up(&mut self) -> Vec<Event> {
        let events = self.until(|e| matches!(e, Event::Resync { .. })).await;
        self.wait_state(LinkState::Up).await;
        events
    }

    /// Stops the supervisor as the appliance's shutdown does.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STEP, task)
                .await
                .expect("the supervisor stops within 10 s")
                .unwrap();
        }
    }
}
