//! FastAGI server for Asterisk's `AGI(agi://127.0.0.1:4573/route,...)`.
//!
//! Protocol (Asterisk's res_agi over TCP): Asterisk connects and sends `agi_*: value`
//! lines ending with an empty line; we send commands, one line each, and read one
//! `200 result=...` line per command. When the channel hangs up Asterisk sends `HANGUP`.
//! Closing the socket ends the AGI and the dialplan continues.
//!
//! We set `APPLIANCE_ROUTE` (a dial string) and `APPLIANCE_ROUTE_EXTEN` (the extension)
//! when the CRM decides in time, and nothing otherwise, so the dialplan's own routing runs.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Decider, RouteDecision, RouteRequest, decide_within};

/// Longest AGI environment we accept, and longest time to send it.
const MAX_ENV_BYTES: usize = 16 * 1024;
const ENV_TIMEOUT: Duration = Duration::from_secs(5);
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves FastAGI on `listener` until `shutdown`. Each connection is one call's question.
pub async fn serve(
    listener: TcpListener,
    decider: Arc<dyn Decider>,
    limit: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    log::warn!("agi: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        if !peer.ip().is_loopback() {
            log::warn!("agi: refusing a connection from {peer} (loopback only)");
            continue;
        }
        let decider = decider.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, decider.as_ref(), limit).await {
                log::warn!("agi: {e}");
            }
        });
    }
}

async fn handle(stream: TcpStream, decider: &dyn Decider, limit: Duration) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let env = tokio::time::timeout(ENV_TIMEOUT, read_env(&mut reader))
        .await
        .map_err(|_| std::io::Error::other("the AGI environment did not arrive in time"))??;
    let Some(request) = request_from(&env) else {
        return Err(std::io::Error::other(
            "AGI environment without agi_uniqueid; is this Asterisk?",
        ));
    };
    log::debug!(
        "agi: routing question for {} from {}",
        request.channel_id,
        request.caller
    );
    // While we wait for the CRM, Asterisk may tell us the caller hung up.
    let mut hangup_line = String::new();
    let decision = tokio::select! {
        decision = decide_within(decider, request, limit) => decision,
        hangup = reader.read_line(&mut hangup_line) => {
            log::debug!("agi: channel went away while waiting ({hangup:?})");
            return Ok(());
        }
    };
    if let Some(RouteDecision { extension, dial }) = decision {
        for (name, value) in [
            ("APPLIANCE_ROUTE", dial),
            ("APPLIANCE_ROUTE_EXTEN", extension),
        ] {
            let command = format!("SET VARIABLE {name} \"{}\"\n", quote(&value));
            write.write_all(command.as_bytes()).await?;
            let mut reply = String::new();
            let n = tokio::time::timeout(REPLY_TIMEOUT, reader.read_line(&mut reply))
                .await
                .map_err(|_| std::io::Error::other("no reply to SET VARIABLE"))??;
            if n == 0 || reply.starts_with("HANGUP") || !reply.starts_with("200") {
                log::debug!("agi: {name} not set: {}", reply.trim());
                return Ok(());
            }
        }
    }
    write.shutdown().await
}

/// Reads `agi_*: value` lines up to the empty line.
async fn read_env<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<HashMap<String, String>> {
    let mut env = HashMap::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside the AGI environment",
            ));
        }
        total += n;
        if total > MAX_ENV_BYTES {
            return Err(std::io::Error::other("AGI environment too large"));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            return Ok(env);
        }
        if let Some((key, value)) = line.split_once(':') {
            env.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
}

fn request_from(env: &HashMap<String, String>) -> Option<RouteRequest> {
    let get = |k: &str| {
        env.get(k)
            .map(|v| v.as_str())
            .filter(|v| !v.is_empty() && *v != "unknown")
            .unwrap_or("")
            .to_string()
    };
    let channel_id = get("agi_uniqueid");
    if channel_id.is_empty() {
        return None;
    }
    let called = match get("agi_dnid") {
        dnid if !dnid.is_empty() => dnid,
        _ => get("agi_extension"),
    };
    Some(RouteRequest {
        channel_id,
        group_id: Some(get("agi_arg_1")).filter(|v| !v.is_empty()),
        channel: get("agi_channel"),
        caller: get("agi_callerid"),
        caller_name: get("agi_calleridname"),
        called,
        context: get("agi_context"),
    })
}

/// Makes a value safe inside AGI's double quotes.
fn quote(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
