//! Outbound event socket server for FreeSWITCH's `socket` dialplan application, which asks
//! us who should take an incoming call. It owns only this conversation; the decision is
//! the [`Decider`]'s, the wire format is [`crate::pbx::esl::codec`]'s.
//!
//! Protocol (mod_event_socket, outbound mode): FreeSWITCH connects to us once per call and
//! waits for `connect`; it answers with the channel data, a `CHANNEL_DATA` event
//! serialized as the `command/reply` envelope itself (URL-encoded, parsed by
//! [`codec::parse_channel_data`]). We then send `resume`, ask the CRM, set
//! `appliance_route` (a dial string) and `appliance_route_exten` (the extension) with
//! `sendmsg` / `execute-app-name: set` when a decision arrives in time, and nothing
//! otherwise, and leave with `exit`. When the channel hangs up, FreeSWITCH sends a
//! `text/disconnect-notice` and closes: we stop at once.
//!
//! Mode: the dialplan snippet ([`super::freeswitch_dialplan`]) uses
//! `socket 127.0.0.1:8084 async` with `socket_resume=true` set before it. mod_event_socket
//! documents `socket_resume` as "the dialplan will resume execution with the next action
//! after the call to the socket application" (the `resume` command does the same from
//! our side, and we send it first thing, so a dialplan that forgot the variable still
//! continues, even if the appliance dies mid-question). `async` because the documentation
//! recommends it (in the synchronous mode the session thread blocks in the socket, "many
//! things will not work as you may expect"): the call waits parked, and the `set`
//! commands we queue are applied before the channel leaves the socket application (it
//! parses every queued event after the park ends), so the next dialplan action sees them.
//! Without `full`, the socket can only control its own channel, which is all we need
//! (`connect`, `resume`, `sendmsg` and `exit` are allowed in that mode). The synchronous
//! form works with this server too.
//!
//! The dial string is built here from `[pbx] agent_channel` (`user/{ext}` by default),
//! not taken from the decision: the decider does not know which PBX asked. Extensions are
//! checked before use, because `set` expands `${...}` (including API calls) in its
//! argument.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Decider, RouteDecision, RouteRequest, decide_within};
use crate::pbx::esl::codec::{self, CodecError, Envelope, Event};

/// Longest message we buffer. The channel data (every channel variable) is the largest
/// real one, a few KiB for a SIP call; the codec refuses header blocks over 64 KiB.
const MAX_MESSAGE: usize = 256 * 1024;
/// How long FreeSWITCH gets to answer each of our commands (it answers at once).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest extension we pass to the dialplan.
const MAX_EXTENSION: usize = 64;

/// How the server answers.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the call waits for the CRM (`[routing] decision_timeout`).
    pub limit: Duration,
    /// The dial string for an extension, `{ext}` standing for it (`[pbx] agent_channel`).
    pub dial_template: String,
    /// How long FreeSWITCH gets to send the channel data and to answer each command.
    pub io_timeout: Duration,
}

impl Options {
    pub fn new(limit: Duration, dial_template: &str) -> Options {
        Options {
            limit,
            dial_template: dial_template.to_string(),
            io_timeout: IO_TIMEOUT,
        }
    }
}

/// Why one conversation ended early (logged; the call goes on in the dialplan).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("more than {MAX_MESSAGE} bytes without the end of a message")]
    TooLarge,
    #[error("no {0} within {1:?}")]
    Timeout(&'static str, Duration),
    #[error("not a FreeSWITCH outbound socket: {0}")]
    NotFreeswitch(String),
    #[error("FreeSWITCH refused {0}: {1}")]
    Refused(&'static str, String),
}

/// Serves outbound event socket connections on `listener` until `shutdown`. Each
/// connection is one call's question.
pub async fn serve(
    listener: TcpListener,
    decider: Arc<dyn Decider>,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let options = Arc::new(options);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    log::warn!("esl routing: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        if !peer.ip().is_loopback() {
            log::warn!("esl routing: refusing a connection from {peer} (loopback only)");
            continue;
        }
        let (decider, options) = (decider.clone(), options.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(stream, decider.as_ref(), &options).await {
                log::warn!("esl routing: {e}; the dialplan goes on without a route");
            }
        });
    }
}

/// One conversation. `Ok` also when the channel went away: nothing is left to do then.
async fn handle(
    stream: TcpStream,
    decider: &dyn Decider,
    options: &Options,
) -> Result<(), SessionError> {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(16 * 1024),
        io_timeout: options.io_timeout,
    };
    conn.write(b"connect\n\n").await?;
    let Some((env, frame)) = conn.read_within("channel data").await? else {
        return Ok(());
    };
    if is_disconnect(&env) {
        log::debug!("esl routing: the channel hung up before we asked");
        return Ok(());
    }
    if env.content_type() != "command/reply" {
        return Err(SessionError::NotFreeswitch(format!(
            "answered connect with {:?}",
            env.content_type()
        )));
    }
    let data = codec::parse_channel_data(&frame)?;
    let request = request_from(&data)
        .ok_or_else(|| SessionError::NotFreeswitch("channel data without a Unique-ID".into()))?;
    let channel = request.channel_id.clone();
    if conn.command("resume", b"resume\n\n").await? == Reply::Gone {
        return Ok(());
    }
    log::debug!(
        "esl routing: routing question for {channel} from {}",
        request.caller
    );
    let decision = {
        let decide = decide_within(decider, request, options.limit);
        let mut decide = std::pin::pin!(decide);
        loop {
            // A hang-up seen together with the decision wins: nothing goes to a dead channel.
            tokio::select! {
                biased;
                message = conn.read() => match message? {
                    None => {
                        log::debug!("esl routing: {channel} closed the socket while waiting");
                        return Ok(());
                    }
                    Some((env, _)) if is_disconnect(&env) => {
                        log::debug!("esl routing: {channel} hung up while waiting");
                        return Ok(());
                    }
                    // Nothing else was asked for; whatever it is, keep waiting.
                    Some(_) => {}
                },
                decision = &mut decide => break decision,
            }
        }
    };
    if let Some(decision) = decision {
        match route_variables(&decision, &options.dial_template) {
            Ok(variables) => {
                for (name, value) in variables {
                    let command = codec::encode_command(
                        "sendmsg",
                        &[
                            ("call-command", "execute"),
                            ("execute-app-name", "set"),
                            ("execute-app-arg", &format!("{name}={value}")),
                        ],
                    )?;
                    if conn.command("sendmsg", &command).await? == Reply::Gone {
                        return Ok(());
                    }
                }
                log::info!(
                    "esl routing: {channel} goes to extension {} ({})",
                    decision.extension,
                    options.dial_template.replace("{ext}", &decision.extension)
                );
            }
            Err(why) => log::warn!("esl routing: ignoring the CRM's route for {channel}: {why}"),
        }
    }
    conn.leave().await;
    Ok(())
}

fn is_disconnect(env: &Envelope) -> bool {
    env.content_type() == "text/disconnect-notice"
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    /// The channel hung up or FreeSWITCH closed the socket.
    Gone,
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    io_timeout: Duration,
}

impl Conn {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        Ok(self.stream.write_all(bytes).await?)
    }

    /// The next whole message and its raw bytes; `None` when FreeSWITCH closed the
    /// socket. Cancel-safe: bytes read so far stay in the buffer.
    async fn read(&mut self) -> Result<Option<(Envelope, Vec<u8>)>, SessionError> {
        loop {
            if let Some(n) = codec::check(&self.buf)? {
                let frame = self.buf.split_to(n);
                return Ok(Some((codec::parse(&frame)?, frame.to_vec())));
            }
            if self.buf.len() >= MAX_MESSAGE {
                return Err(SessionError::TooLarge);
            }
            // Never read past the limit, so a huge Content-Length cannot make us buffer
            // more than MAX_MESSAGE.
            let room = MAX_MESSAGE - self.buf.len();
            self.buf.reserve(room.min(16 * 1024));
            let mut limited = (&mut self.stream).take(room as u64);
            if limited.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn read_within(
        &mut self,
        what: &'static str,
    ) -> Result<Option<(Envelope, Vec<u8>)>, SessionError> {
        let limit = self.io_timeout;
        tokio::time::timeout(limit, self.read())
            .await
            .map_err(|_| SessionError::Timeout(what, limit))?
    }

    /// Sends `bytes` and waits for its `command/reply`.
    async fn command(&mut self, name: &'static str, bytes: &[u8]) -> Result<Reply, SessionError> {
        if self.stream.write_all(bytes).await.is_err() {
            return Ok(Reply::Gone);
        }
        loop {
            let Some((env, _)) = self.read_within("command reply").await? else {
                return Ok(Reply::Gone);
            };
            if is_disconnect(&env) {
                return Ok(Reply::Gone);
            }
            if env.content_type() != "command/reply" {
                continue;
            }
            let text = env.headers.str("Reply-Text");
            return if text.starts_with("+OK") {
                Ok(Reply::Ok)
            } else {
                Err(SessionError::Refused(name, text.to_string()))
            };
        }
    }

    /// `exit`, then waits (bounded) for FreeSWITCH to close, so our close never races
    /// its goodbye. The dialplan continues once FreeSWITCH has read `exit`.
    async fn leave(mut self) {
        if self.stream.write_all(b"exit\n\n").await.is_err() {
            return;
        }
        let drain = async {
            let mut sink = [0u8; 4096];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(self.io_timeout, drain).await;
    }
}

/// The question as the channel data tells it. Current FreeSWITCH sends the caller profile
/// as `Caller-*` (and again as `Channel-*`, which older versions sent alone).
fn request_from(data: &Event) -> Option<RouteRequest> {
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| data.get(k).filter(|v| !v.is_empty()))
            .unwrap_or("")
            .to_string()
    };
    let channel_id = get(&["Unique-ID", "Caller-Unique-ID", "Channel-Unique-ID"]);
    if channel_id.is_empty() {
        return None;
    }
    let group_id = get(&["Channel-Call-UUID", "variable_call_uuid"]);
    Some(RouteRequest {
        channel_id,
        group_id: Some(group_id).filter(|g| !g.is_empty()),
        channel: get(&[
            "Channel-Name",
            "Caller-Channel-Name",
            "Channel-Channel-Name",
        ]),
        caller: get(&["Caller-Caller-ID-Number", "Channel-Caller-ID-Number"]),
        caller_name: get(&["Caller-Caller-ID-Name", "Channel-Caller-ID-Name"]),
        called: get(&["Caller-Destination-Number", "Channel-Destination-Number"]),
        context: get(&["Caller-Context", "Channel-Context"]),
    })
}

/// The variables to set for `decision`, or why it cannot be used. Only characters that
/// appear in dialable extensions pass: `set` would expand `${...}` and `$${...}`.
fn route_variables(
    decision: &RouteDecision,
    template: &str,
) -> Result<[(&'static str, String); 2], String> {
    let ext = decision.extension.as_str();
    let dialable = |c: char| c.is_ascii_alphanumeric() || "+*#._-".contains(c);
    if ext.is_empty() || ext.len() > MAX_EXTENSION || !ext.chars().all(dialable) {
        return Err(format!("{ext:?} is not an extension"));
    }
    Ok([
        ("appliance_route", template.replace("{ext}", ext)),
        ("appliance_route_exten", ext.to_string()),
    ])
}

#[cfg(test)]
mod tests;
