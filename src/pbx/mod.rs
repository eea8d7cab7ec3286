//! The PBX side: connection state shared with `/healthz` and the settings page.
//!
//! Owns the answer to "is the PBX reachable and logged in right now?". The protocol
//! adapters (AMI, ESL) publish into [`StatusBoard`]; readers take snapshots.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

use crate::config::PbxConfig;

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
