//! The PBX side: connection state shared with `/healthz` and the settings page.
//!
//! Owns the answer to "is the PBX reachable and logged in right now?". The protocol
//! adapters (AMI, ESL) publish into [`StatusBoard`]; readers take snapshots.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::{PbxConfig, PbxType};
use crate::secret::Secret;

/// The connection state reported by `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// No `[pbx] type` configured.
    NotConfigured,
    /// Configured but not connected (unreachable, refused, dropped): retrying.
    Down,
    /// Reached the PBX but it refused our credentials: retried slowly.
    AuthFailed,
    /// Connected and logged in.
    Up,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::NotConfigured => "not_configured",
            LinkState::Down => "down",
            LinkState::AuthFailed => "auth_failed",
            LinkState::Up => "up",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PbxStatus {
    pub state: LinkState,
    /// `asterisk` or `freeswitch`, when configured.
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    /// A short human-readable reason for the state (never contains the secret).
    pub detail: Option<String>,
    #[serde(skip)]
    pub since: SystemTime,
}

/// Publishes the PBX link state; cheap to clone, readers never block writers.
#[derive(Clone)]
pub struct StatusBoard {
    tx: Arc<watch::Sender<PbxStatus>>,
}

impl StatusBoard {
    /// `not_configured` when no PBX type is set, otherwise `down` until a login succeeds.
    pub fn new(config: &PbxConfig) -> StatusBoard {
        let kind = config.kind().map(|k| k.as_str());
        let (state, detail) = match kind {
            None => (LinkState::NotConfigured, None),
            Some(_) => (LinkState::Down, Some("not connected yet".to_string())),
        };
        let (tx, _) = watch::channel(PbxStatus {
            state,
            kind,
            detail,
            since: SystemTime::now(),
        });
        StatusBoard { tx: Arc::new(tx) }
    }

    pub fn get(&self) -> PbxStatus {
        self.tx.borrow().clone()
    }

    pub fn set(&self, state: LinkState, detail: Option<String>) {
        self.tx.send_if_modified(|s| {
            if s.state == state && s.detail == detail {
                return false;
            }
            if s.state != state {
                s.since = SystemTime::now();
            }
            s.state = state;
            s.detail = detail;
            true
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<PbxStatus> {
        self.tx.subscribe()
    }
}

/// What it takes to reach and log in to the PBX. Comes from `[pbx]` in the config file,
/// or from the settings page (which then takes precedence); published to the connection
/// supervisor through [`AppState::pbx_settings`](crate::app::AppState).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub kind: PbxType,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub secret: Secret,
}

impl ConnectionSettings {
    /// `None` while `[pbx] type` is empty.
    pub fn from_config(config: &PbxConfig) -> Option<ConnectionSettings> {
        Some(ConnectionSettings {
            kind: config.kind()?,
            host: config.host.clone(),
            port: config.effective_port(),
            user: config.user.clone(),
            secret: config.secret.clone(),
        })
    }
}

/// The outcome of a one-off connection test ("test connection" on the settings page,
/// `appliance doctor`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum ProbeResult {
    Ok(String),
    Down(String),
    AuthFailed(String),
}

/// Connects to the PBX once and checks that it speaks the expected protocol: the AMI
/// banner (`Asterisk Call Manager/...`) or the event socket's `auth/request`.
pub async fn probe(settings: &ConnectionSettings, timeout: Duration) -> ProbeResult {
    use tokio::io::AsyncReadExt;
    let addr = format!("{}:{}", settings.host, settings.port);
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| ProbeResult::Down(format!("cannot connect to {addr}: {e}")))?;
        let mut buf = vec![0u8; 256];
        let mut len = 0;
        while len < buf.len() {
            let n = stream
                .read(&mut buf[len..])
                .await
                .map_err(|e| ProbeResult::Down(format!("{addr}: {e}")))?;
            if n == 0 {
                break;
            }
            len += n;
            let text = String::from_utf8_lossy(&buf[..len]);
            let expected = match settings.kind {
                PbxType::Asterisk => text.starts_with("Asterisk Call Manager/"),
                PbxType::Freeswitch => text.contains("auth/request"),
            };
            if expected {
                return Ok(ProbeResult::Ok(format!(
                    "{} answers on {addr}",
                    settings.kind.as_str()
                )));
            }
            if text.contains("\n\n") || text.contains("\r\n") && len > 64 {
                break;
            }
        }
        Err(ProbeResult::Down(format!(
            "{addr} does not speak the {} protocol",
            settings.kind.as_str()
        )))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(ok)) => ok,
        Ok(Err(failed)) => failed,
        Err(_) => ProbeResult::Down(format!("{addr}: no answer within {}s", timeout.as_secs())),
    }
}
