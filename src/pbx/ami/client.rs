//! One logged-in AMI connection (see `login` for getting there): an actor task that owns
//! the socket, and the [`Client`] that sends it actions.
//!
//! The actor correlates responses with their actions by `ActionID`, including event lists
//! whose items arrive before the response or between unrelated events; turns every other
//! event into normalized events (waiting when the consumer is slow, never dropping); keeps
//! the connection alive with `Ping`; and takes the resync snapshot (`CoreShowChannels`),
//! holding back live events that arrive while the list is being sent so the snapshot and
//! the events stay in PBX order. It does not decide when to reconnect: the supervisor does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::codec::{self, Message};
use super::events;
use super::login::Session;
use crate::pbx::{Event, Options, OriginateOutcome, PbxError, PbxEvent};
/// A complete answer to an action: the response and, for list actions, the list items
/// (without the closing `...Complete` event).
#[derive(Debug)]
pub(crate) struct Reply {
    pub response: Message,
    pub items: Vec<Message>,
}

impl Reply {
    /// The response's `Message:` as a refusal, or `Ok` when it succeeded.
    pub fn ok(self) -> Result<Reply, PbxError> {
        if self.response.is_success() {
            Ok(self)
        } else {
            Err(PbxError::Refused(self.response.message().to_string()))
        }
    }
}

enum Request {
    Action {
        name: String,
        headers: Vec<(String, String)>,
        originate: Option<String>,
        reply: oneshot::Sender<Result<Reply, PbxError>>,
    },
    ChannelName {
        id: String,
        reply: oneshot::Sender<Option<String>>,
    },
    Resync {
        reply: oneshot::Sender<Result<usize, PbxError>>,
    },
    Logoff {
        reply: oneshot::Sender<()>,
    },
}

/// Sends actions to a running connection. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Client {
    tx: mpsc::Sender<Request>,
    pub opts: Arc<Options>,
}

fn lost() -> PbxError {
    PbxError::Unavailable("the PBX connection was lost".into())
}

impl Client {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
        wait: Duration,
    ) -> Result<T, PbxError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| lost())?;
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(lost()),
            Err(_) => Err(PbxError::Timeout(wait.as_millis() as u64)),
        }
    }

    /// Sends one action and waits for its complete answer.
    pub async fn send(&self, name: &str, headers: &[(&str, &str)]) -> Result<Reply, PbxError> {
        self.send_tagged(name, headers, None).await
    }

    /// Like [`send`](Self::send); the later `OriginateResponse` is reported as an
    /// [`Event::OriginateResult`] for `originate` (our call id).
    pub async fn send_tagged(
        &self,
        name: &str,
        headers: &[(&str, &str)],
        originate: Option<&str>,
    ) -> Result<Reply, PbxError> {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let name = name.to_string();
        let originate = originate.map(str::to_string);
        self.call(
            |reply| Request::Action {
                name,
                headers,
                originate,
                reply,
            },
            self.opts.timeout,
        )
        .await?
    }

    /// The name of a live channel, from the events seen on this connection.
    pub async fn channel_name(&self, id: &str) -> Result<Option<String>, PbxError> {
        let id = id.to_string();
        self.call(
            |reply| Request::ChannelName { id, reply },
            self.opts.timeout,
        )
        .await
    }

    /// Takes the channel snapshot and emits it as [`Event::Resync`] in stream order.
    pub async fn resync(&self) -> Result<usize, PbxError> {
        // A big switch's list, or a consumer catching up, may take longer than a command.
        self.call(|reply| Request::Resync { reply }, self.opts.timeout * 6)
            .await?
    }

    /// Says goodbye; the connection ends once the PBX answers.
    pub async fn logoff(&self) {
        let _ = self
            .call(|reply| Request::Logoff { reply }, Duration::from_secs(1))
            .await;
    }
}
enum Kind {
    Caller(oneshot::Sender<Result<Reply, PbxError>>),
    Resync(oneshot::Sender<Result<usize, PbxError>>),
    Ping,
    Logoff(oneshot::Sender<()>),
}

struct Pending {
    kind: Kind,
    response: Option<Message>,
    items: Vec<Message>,
    complete: bool,
    since: Instant,
}

struct Actor {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    /// How much of `buf` was checked without finding a message end.
    scanned: usize,
    rx: mpsc::Receiver<Request>,
    events: mpsc::Sender<PbxEvent>,
    pending: HashMap<String, Pending>,
    /// ActionID of an `Originate` → our call id, for its `OriginateResponse`.
    originates: HashMap<String, (String, Instant)>,
    /// Uniqueid → channel name of live channels (AMI commands take names).
    names: HashMap<String, String>,
    /// Live events held back while a resync list is arriving.
    held: Option<Vec<PbxEvent>>,
    prefix: String,
    next: u64,
    keepalive: Duration,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    scratch: Vec<PbxEvent>,
}

/// Starts the actor for a logged-in session. The task ends (returning why) when the
/// connection breaks, the PBX says goodbye or every [`Client`] is dropped.
pub(crate) fn start(
    session: Session,
    opts: Arc<Options>,
    events: mpsc::Sender<PbxEvent>,
) -> (Client, JoinHandle<String>) {
    let (tx, rx) = mpsc::channel(64);
    let (reader, writer) = session.stream.into_split();
    let actor = Actor {
        reader,
        writer,
        buf: session.buf,
        scanned: 0,
        rx,
        events,
        pending: HashMap::new(),
        originates: HashMap::new(),
        names: HashMap::new(),
        held: None,
        prefix: format!("app-{}", &crate::pbx::new_uuid()[..8]),
        next: 0,
        keepalive: opts.keepalive,
        last_rx: Instant::now(),
        ping_sent: None,
        scratch: Vec::new(),
    };
    (Client { tx, opts }, tokio::spawn(actor.run()))
}

impl Actor {
    async fn run(mut self) -> String {
        let period = (self.keepalive / 4).max(Duration::from_millis(5));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bytes that came with the login response.
        if let Err(why) = self.drain().await {
            return why;
        }
        loop {
            let step = tokio::select! {
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) => Err("the PBX closed the connection".to_string()),
                    Ok(_) => {
                        self.last_rx = Instant::now();
                        self.drain().await
                    }
                    Err(e) => Err(format!("read error: {e}")),
                },
                request = self.rx.recv() => match request {
                    Some(request) => self.handle(request).await,
                    None => Err("closed by the appliance".to_string()),
                },
                _ = tick.tick() => self.keepalive_check().await,
            };
            if let Err(why) = step {
                return why;
            }
        }
    }

    async fn drain(&mut self) -> Result<(), String> {
        loop {
            match codec::check_from(&self.buf, self.scanned) {
                Ok(Some(n)) => {
                    self.scanned = 0;
                    // Parsed in place, then skipped: no split-off frame (a reference count
                    // up and down per message); reading reclaims the consumed front.
                    let msg = codec::parse(&self.buf[..n]);
                    self.buf.advance(n);
                    self.dispatch(msg).await?;
                }
                Ok(None) => {
                    self.scanned = self.buf.len();
                    return Ok(());
                }
                Err(e) => return Err(format!("protocol error: {e}")),
            }
        }
    }

    async fn emit(&mut self, event: PbxEvent) -> Result<(), String> {
        match &mut self.held {
            Some(held) => {
                held.push(event);
                Ok(())
            }
            None => self
                .events
                .send(event)
                .await
                .map_err(|_| "the event consumer stopped".to_string()),
        }
    }

    async fn dispatch(&mut self, msg: Message) -> Result<(), String> {
        if let Some(id) = msg.action_id() {
            if msg.event() == Some("OriginateResponse") {
                let Some((call_id, _)) = self.originates.remove(id) else {
                    return Ok(());
                };
                let response = msg.get("Response").unwrap_or("");
                let reason = msg.get("Reason").unwrap_or("");
                let event = Event::OriginateResult {
                    call_id,
                    outcome: OriginateOutcome::from_asterisk(response, reason),
                    channel: msg.fields.value("Uniqueid").map(str::to_string),
                    detail: format!("{response} (Reason: {reason})"),
                };
                return self
                    .emit(PbxEvent::at_micros(events::timestamp(&msg), event))
                    .await;
            }
            if self.pending.contains_key(id) {
                let id = id.to_string();
                return self.route(id, msg).await;
            }
            if msg.response().is_some() || id.starts_with(&self.prefix) {
                log::debug!("AMI: no action waits for ActionID {id} any more");
                return Ok(());
            }
        }
        match msg.event() {
            Some("Newchannel") => {
                if let (Some(id), Some(name)) = (msg.get("Uniqueid"), msg.get("Channel")) {
                    self.names.insert(id.to_string(), name.to_string());
                }
            }
            Some("Rename") => {
                if let (Some(id), Some(name)) = (msg.get("Uniqueid"), msg.get("Newname")) {
                    self.names.insert(id.to_string(), name.to_string());
                }
            }
            Some("Hangup") => {
                if let Some(id) = msg.get("Uniqueid") {
                    self.names.remove(id);
                }
            }
            Some("Shutdown") => return Err("Asterisk is shutting down".to_string()),
            Some(_) => {}
            None => return Ok(()),
        }
        let mut out = std::mem::take(&mut self.scratch);
        events::map(&msg, &mut out);
        for event in out.drain(..) {
            self.emit(event).await?;
        }
        self.scratch = out;
        Ok(())
    }

    async fn route(&mut self, id: String, msg: Message) -> Result<(), String> {
        let pending = self.pending.get_mut(&id).expect("checked by the caller");
        if msg.response().is_some() {
            if matches!(pending.kind, Kind::Resync(_)) && msg.starts_list() {
                self.held.get_or_insert_with(Vec::new);
            }
            pending.response = Some(msg);
        } else if msg.completes_list() {
            pending.complete = true;
        } else {
            pending.items.push(msg);
        }
        let done = match &pending.response {
            Some(response) => !response.starts_list() || pending.complete,
            None => false,
        };
        if !done {
            return Ok(());
        }
        let pending = self.pending.remove(&id).expect("present");
        let response = pending.response.expect("done implies a response");
        match pending.kind {
            Kind::Caller(reply) => {
                let _ = reply.send(Ok(Reply {
                    response,
                    items: pending.items,
                }));
            }
            Kind::Ping => self.ping_sent = None,
            Kind::Logoff(reply) => {
                let _ = reply.send(());
                return Err("logged off".to_string());
            }
            Kind::Resync(reply) => {
                let held = self.held.take().unwrap_or_default();
                if !response.is_success() {
                    for event in held {
                        self.emit(event).await?;
                    }
                    let _ = reply.send(Err(PbxError::Refused(format!(
                        "CoreShowChannels: {}",
                        response.message()
                    ))));
                    return Ok(());
                }
                let channels: Vec<_> = pending.items.iter().map(events::snapshot).collect();
                self.names = channels
                    .iter()
                    .map(|c| (c.id.clone(), c.name.clone()))
                    .collect();
                let count = channels.len();
                self.emit(PbxEvent::now(Event::Resync { channels })).await?;
                for event in held {
                    self.emit(event).await?;
                }
                let _ = reply.send(Ok(count));
            }
        }
        Ok(())
    }

    async fn send_action(
        &mut self,
        name: &str,
        headers: &[(&str, &str)],
        kind: Kind,
    ) -> Result<String, String> {
        self.next += 1;
        let id = format!("{}-{}", self.prefix, self.next);
        let bytes = match codec::encode_action(name, &id, headers) {
            Ok(bytes) => bytes,
            Err(e) => {
                if let Kind::Caller(reply) = kind {
                    let _ = reply.send(Err(PbxError::Invalid {
                        field: "header",
                        why: e.to_string(),
                    }));
                }
                return Ok(id);
            }
        };
        self.pending.insert(
            id.clone(),
            Pending {
                kind,
                response: None,
                items: Vec::new(),
                complete: false,
                since: Instant::now(),
            },
        );
        self.writer
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write error: {e}"))?;
        Ok(id)
    }

    async fn handle(&mut self, request: Request) -> Result<(), String> {
        match request {
            Request::Action {
                name,
                headers,
                originate,
                reply,
            } => {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                // Registered before sending: the OriginateResponse may beat the response.
                let id = format!("{}-{}", self.prefix, self.next + 1);
                if let Some(call_id) = originate {
                    self.originates
                        .insert(id.clone(), (call_id, Instant::now()));
                }
                self.send_action(&name, &headers, Kind::Caller(reply))
                    .await?;
            }
            Request::ChannelName { id, reply } => {
                let _ = reply.send(self.names.get(&id).cloned());
            }
            Request::Resync { reply } => {
                self.send_action("CoreShowChannels", &[], Kind::Resync(reply))
                    .await?;
            }
            Request::Logoff { reply } => {
                self.send_action("Logoff", &[], Kind::Logoff(reply)).await?;
            }
        }
        Ok(())
    }

    async fn keepalive_check(&mut self) -> Result<(), String> {
        let now = Instant::now();
        self.pending.retain(|_, p| match &p.kind {
            Kind::Caller(reply) => !(reply.is_closed() && now - p.since > Duration::from_secs(60)),
            _ => true,
        });
        self.originates
            .retain(|_, (_, since)| now - *since < Duration::from_secs(3600));
        if let Some(sent) = self.ping_sent {
            // Dead only if nothing at all came back since the Ping went out.
            if self.last_rx < sent && now - sent >= self.keepalive {
                return Err(format!(
                    "no answer to Ping within {} ms",
                    self.keepalive.as_millis()
                ));
            }
            if self.last_rx >= sent {
                self.ping_sent = None;
            }
            return Ok(());
        }
        if now - self.last_rx >= self.keepalive {
            self.ping_sent = Some(now);
            self.send_action("Ping", &[], Kind::Ping).await?;
        }
        Ok(())
    }
}
