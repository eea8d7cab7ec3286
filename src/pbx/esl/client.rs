//! One inbound event socket connection: TCP connect, `auth/request` → `auth`, the event
//! subscription, then an actor task that owns the socket.
//!
//! FreeSWITCH answers commands strictly in order (`command/reply` for `auth`, `event`,
//! `bgapi`, `exit`; `api/response` for `api`), so the actor keeps a FIFO of waiting
//! commands; events interleave freely. `bgapi` results come back later as
//! `BACKGROUND_JOB` events under the `Job-UUID` we chose and become
//! [`Event::OriginateResult`]. Liveness: any byte (FreeSWITCH sends `HEARTBEAT` every 20 s
//! by default) or, after `keepalive` of silence, an `api status` answered in time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::codec::{self, Envelope};
use super::events::{self, Mapper, SUBSCRIPTION};
use crate::pbx::{
    ConnectError, ConnectionSettings, Event, Options, OriginateOutcome, PbxError, PbxEvent,
};

/// A logged-in, subscribed connection whose actor has not started yet.
pub(crate) struct Session {
    stream: TcpStream,
    buf: BytesMut,
    addr: String,
}

enum Request {
    Api {
        command: String,
        reply: oneshot::Sender<Result<String, PbxError>>,
    },
    Bgapi {
        command: String,
        job: String,
        call_id: Option<String>,
        reply: oneshot::Sender<Result<String, PbxError>>,
    },
    Resync {
        reply: oneshot::Sender<Result<usize, PbxError>>,
    },
    Exit {
        reply: oneshot::Sender<()>,
    },
}

/// Sends commands to a running connection. Cheap to clone.
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

    /// `api <command>`: the body of the `api/response` (`+OK`, `-ERR ...`, or data).
    pub async fn api(&self, command: &str) -> Result<String, PbxError> {
        let command = command.to_string();
        self.call(|reply| Request::Api { command, reply }, self.opts.timeout)
            .await?
    }

    /// `bgapi <command>` with `Job-UUID: job`: the `Reply-Text` of the acceptance. The
    /// result arrives as [`Event::OriginateResult`] for `call_id`.
    pub async fn bgapi(
        &self,
        command: &str,
        job: &str,
        call_id: Option<&str>,
    ) -> Result<String, PbxError> {
        let command = command.to_string();
        let job = job.to_string();
        let call_id = call_id.map(str::to_string);
        self.call(
            |reply| Request::Bgapi {
                command,
                job,
                call_id,
                reply,
            },
            self.opts.timeout,
        )
        .await?
    }

    /// Takes the channel snapshot and emits it as [`Event::Resync`] in stream order.
    pub async fn resync(&self) -> Result<usize, PbxError> {
        // A big switch's list, or a consumer catching up, may take longer than a command.
        self.call(|reply| Request::Resync { reply }, self.opts.timeout * 6)
            .await?
    }

    /// Says goodbye; the connection ends once FreeSWITCH answers.
    pub async fn exit(&self) {
        let _ = self
            .call(|reply| Request::Exit { reply }, Duration::from_secs(1))
            .await;
    }
}

async fn read_envelope(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    addr: &str,
) -> Result<Envelope, ConnectError> {
    loop {
        match codec::check(buf) {
            Ok(Some(n)) => {
                return codec::parse(&buf.split_to(n))
                    .map_err(|e| ConnectError::Down(format!("{addr}: {e}")));
            }
            Ok(None) => match stream.read_buf(buf).await {
                Ok(0) => {
                    return Err(ConnectError::Down(format!(
                        "{addr} closed the connection during login"
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(ConnectError::Down(format!("{addr}: {e}"))),
            },
            Err(e) => {
                return Err(ConnectError::Down(format!(
                    "{addr} is not a FreeSWITCH event socket: {e}"
                )));
            }
        }
    }
}

/// Reads the next command reply, skipping events (none are expected before login).
async fn read_reply(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    addr: &str,
) -> Result<Envelope, ConnectError> {
    loop {
        let env = read_envelope(stream, buf, addr).await?;
        match env.content_type() {
            "command/reply" => return Ok(env),
            "text/disconnect-notice" | "text/rude-rejection" => {
                return Err(ConnectError::Down(format!(
                    "{addr} disconnected us: {}",
                    env.body_text().lines().next().unwrap_or("")
                )));
            }
            _ => {}
        }
    }
}

async fn write(stream: &mut TcpStream, line: &str, addr: &str) -> Result<(), ConnectError> {
    let bytes = codec::encode_command(line, &[]).map_err(|e| ConnectError::Down(e.to_string()))?;
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| ConnectError::Down(format!("{addr}: {e}")))
}

/// Connects, authenticates and (when `events`) subscribes to [`SUBSCRIPTION`].
pub(crate) async fn open(
    settings: &ConnectionSettings,
    events: bool,
) -> Result<Session, ConnectError> {
    let addr = settings.addr();
    let mut stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| ConnectError::Down(format!("cannot connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let hello = read_envelope(&mut stream, &mut buf, &addr).await?;
    match hello.content_type() {
        "auth/request" => {}
        "text/rude-rejection" => {
            return Err(ConnectError::Down(format!(
                "{addr} rejected this address: {} (check apply-inbound-acl in event_socket.conf)",
                hello.body_text().trim()
            )));
        }
        other => {
            return Err(ConnectError::Down(format!(
                "{addr} is not a FreeSWITCH event socket (it sent {other:?})"
            )));
        }
    }
    if settings.secret.expose().contains(['\r', '\n']) {
        return Err(ConnectError::AuthFailed(
            "the event socket password contains a line break".into(),
        ));
    }
    let auth = format!("auth {}", settings.secret.expose());
    write(&mut stream, &auth, &addr).await?;
    let reply = read_reply(&mut stream, &mut buf, &addr).await?;
    let text = reply.headers.str("Reply-Text");
    if !text.starts_with("+OK") {
        return Err(ConnectError::AuthFailed(format!(
            "{addr} refused the event socket password: {text}"
        )));
    }
    if events {
        write(&mut stream, &format!("event plain {SUBSCRIPTION}"), &addr).await?;
        let reply = read_reply(&mut stream, &mut buf, &addr).await?;
        let text = reply.headers.str("Reply-Text");
        if !text.starts_with("+OK") {
            return Err(ConnectError::Down(format!(
                "{addr} refused the event subscription: {text}"
            )));
        }
    }
    Ok(Session { stream, buf, addr })
}

/// The settings page's "test connection": authenticate, exit.
pub(crate) async fn probe(settings: &ConnectionSettings) -> Result<String, ConnectError> {
    let mut session = open(settings, false).await?;
    let _ = session.stream.write_all(b"exit\n\n").await;
    Ok(format!(
        "logged in to the FreeSWITCH event socket at {}",
        session.addr
    ))
}

enum Kind {
    Api(oneshot::Sender<Result<String, PbxError>>),
    Command(oneshot::Sender<Result<String, PbxError>>),
    Resync(oneshot::Sender<Result<usize, PbxError>>),
    Ping,
    Exit(oneshot::Sender<()>),
}

struct Actor {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    rx: mpsc::Receiver<Request>,
    events: mpsc::Sender<PbxEvent>,
    pending: VecDeque<Kind>,
    /// Job-UUID → (our call id, when sent).
    jobs: HashMap<String, (String, Instant)>,
    mapper: Mapper,
    keepalive: Duration,
    last_rx: Instant,
    ping_sent: Option<Instant>,
    scratch: Vec<PbxEvent>,
}

/// Starts the actor for a logged-in session. The task ends (returning why) when the
/// connection breaks, FreeSWITCH disconnects us or every [`Client`] is dropped.
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
        rx,
        events,
        pending: VecDeque::new(),
        jobs: HashMap::new(),
        mapper: Mapper::new(),
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
            match codec::check(&self.buf) {
                Ok(Some(n)) => {
                    let frame = self.buf.split_to(n);
                    let env = codec::parse(&frame).map_err(|e| format!("protocol error: {e}"))?;
                    self.dispatch(env).await?;
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("protocol error: {e}")),
            }
        }
    }

    async fn emit(&mut self, event: PbxEvent) -> Result<(), String> {
        self.events
            .send(event)
            .await
            .map_err(|_| "the event consumer stopped".to_string())
    }

    async fn dispatch(&mut self, env: Envelope) -> Result<(), String> {
        match env.content_type() {
            "command/reply" | "api/response" => self.reply(env).await,
            "text/event-plain" | "text/event-json" => {
                let event = match codec::event_of(&env) {
                    Ok(Some(event)) => event,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        // Framing is by Content-Length, so one bad event cannot desync us.
                        log::warn!("event socket: skipping an unreadable event: {e}");
                        return Ok(());
                    }
                };
                if event.name() == "BACKGROUND_JOB" {
                    let job = event.get("Job-UUID").unwrap_or("");
                    let Some((call_id, _)) = self.jobs.remove(job) else {
                        return Ok(());
                    };
                    let body = event.body.clone().unwrap_or_default();
                    let body = body.trim();
                    let outcome = OriginateOutcome::from_freeswitch(body);
                    let channel = body
                        .strip_prefix("+OK")
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string);
                    let result = Event::OriginateResult {
                        call_id,
                        outcome,
                        channel,
                        detail: body.to_string(),
                    };
                    return self
                        .emit(PbxEvent::at_micros(events::timestamp(&event), result))
                        .await;
                }
                let mut out = std::mem::take(&mut self.scratch);
                self.mapper.map(&event, &mut out);
                for ev in out.drain(..) {
                    self.emit(ev).await?;
                }
                self.scratch = out;
                Ok(())
            }
            "text/disconnect-notice" | "text/rude-rejection" => Err(format!(
                "FreeSWITCH disconnected us: {}",
                env.body_text().lines().next().unwrap_or("")
            )),
            _ => Ok(()),
        }
    }

    async fn reply(&mut self, env: Envelope) -> Result<(), String> {
        let Some(kind) = self.pending.pop_front() else {
            log::debug!("event socket: a reply nobody waits for");
            return Ok(());
        };
        match kind {
            Kind::Api(reply) => {
                let _ = reply.send(Ok(env.body_text().into_owned()));
            }
            Kind::Command(reply) => {
                let _ = reply.send(Ok(env.headers.str("Reply-Text").to_string()));
            }
            Kind::Ping => self.ping_sent = None,
            Kind::Exit(reply) => {
                let _ = reply.send(());
                return Err("logged off".to_string());
            }
            Kind::Resync(reply) => match events::snapshot(&env.body_text()) {
                Ok(channels) => {
                    let count = channels.len();
                    self.emit(PbxEvent::now(Event::Resync { channels })).await?;
                    let _ = reply.send(Ok(count));
                }
                Err(why) => {
                    let _ = reply.send(Err(PbxError::Protocol(why)));
                }
            },
        }
        Ok(())
    }

    async fn send(
        &mut self,
        line: &str,
        headers: &[(&str, &str)],
        kind: Kind,
    ) -> Result<(), String> {
        let bytes = match codec::encode_command(line, headers) {
            Ok(bytes) => bytes,
            Err(e) => {
                let invalid = || PbxError::Invalid {
                    field: "command",
                    why: e.to_string(),
                };
                match kind {
                    Kind::Api(reply) | Kind::Command(reply) => {
                        let _ = reply.send(Err(invalid()));
                    }
                    Kind::Resync(reply) => {
                        let _ = reply.send(Err(invalid()));
                    }
                    Kind::Ping | Kind::Exit(_) => {}
                }
                return Ok(());
            }
        };
        self.pending.push_back(kind);
        self.writer
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write error: {e}"))
    }

    async fn handle(&mut self, request: Request) -> Result<(), String> {
        match request {
            Request::Api { command, reply } => {
                self.send(&format!("api {command}"), &[], Kind::Api(reply))
                    .await
            }
            Request::Bgapi {
                command,
                job,
                call_id,
                reply,
            } => {
                // Registered first: the BACKGROUND_JOB may come right behind the reply.
                if let Some(call_id) = call_id {
                    self.jobs.insert(job.clone(), (call_id, Instant::now()));
                }
                self.send(
                    &format!("bgapi {command}"),
                    &[("Job-UUID", &job)],
                    Kind::Command(reply),
                )
                .await
            }
            Request::Resync { reply } => {
                self.send("api show channels as json", &[], Kind::Resync(reply))
                    .await
            }
            Request::Exit { reply } => self.send("exit", &[], Kind::Exit(reply)).await,
        }
    }

    async fn keepalive_check(&mut self) -> Result<(), String> {
        let now = Instant::now();
        self.jobs
            .retain(|_, (_, since)| now - *since < Duration::from_secs(3600));
        if let Some(sent) = self.ping_sent {
            if self.last_rx < sent && now - sent >= self.keepalive {
                return Err(format!(
                    "no answer to api status within {} ms",
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
            self.send("api status", &[], Kind::Ping).await?;
        }
        Ok(())
    }
}
