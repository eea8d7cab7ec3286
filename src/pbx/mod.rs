//! The PBX side: one interface over Asterisk (AMI) and FreeSWITCH (inbound event socket).
//!
//! Owns everything that talks to the PBX: the wire codecs ([`ami::codec`],
//! [`esl::codec`]), the connections and their commands, the [`Supervisor`] that keeps one
//! connection logged in (reconnecting with capped, jittered backoff and resyncing after
//! every reconnect), the connection state for `/healthz` ([`StatusBoard`]), the command
//! handle ([`PbxHandle`]) and the stream of normalized events ([`PbxEvents`]). It knows
//! nothing about calls as Flowlu sees them: that is `calls/`, which consumes the events.
//!
//! ```text
//!  state.pbx_settings (watch) ─► Supervisor ─► ami::client | esl::client ─► PBX
//!                                   │  │                 │
//!          state.pbx (StatusBoard) ◄┘  └► PbxHandle      └► PbxEvents (bounded mpsc)
//! ```
//!
//! Events go through a bounded channel: when the consumer is slow the connection stops
//! reading from the socket (backpressure) instead of dropping anything.
//!
//! # How each normalized [`Event`] maps from both protocols
//!
//! | event | Asterisk AMI | FreeSWITCH ESL |
//! |---|---|---|
//! | `Connected` | `Response: Success` to `Login` | `+OK accepted` to `auth` |
//! | `Resync` | `CoreShowChannels` list (`CoreShowChannel` items) | `api show channels as json` rows |
//! | `Disconnected` | socket closed, `Shutdown`, keep-alive `Ping` unanswered | socket closed, `text/disconnect-notice`, keep-alive unanswered |
//! | `ChannelCreated` | `Newchannel` (`Uniqueid`, call = `Linkedid`, `ChannelState` 4 = inbound, 0 = outbound but `tentative` until the PBX dials it or it rings in; `ChanVariable: CRM_CALL_ID=` if `channelvars` is set) | `CHANNEL_CREATE` (`Unique-ID`, call = `Channel-Call-UUID`, a `loopback/…-b` leg takes its `-a` partner's call; `Call-Direction`; `variable_crm_call_id`; peer = `Other-Leg-Unique-ID` or `variable_other_loopback_leg_uuid`) |
//! | `CallingIn` | `Newstate` with `ChannelState: 4` (a chan_sip caller, created Down) | (none: `Call-Direction` says it at `CHANNEL_CREATE`) |
//! | `Ringing` | `Newstate` with `ChannelState: 5` | first `CHANNEL_PROGRESS` or `CHANNEL_PROGRESS_MEDIA` of a leg |
//! | `Answered` | `Newstate` with `ChannelState: 6` | `CHANNEL_ANSWER` |
//! | `DialBegin` | `DialBegin` (`Uniqueid` absent for an originate, `DestUniqueid`, `DialString`) | `CHANNEL_CREATE` of an outbound leg (caller = `Other-Leg-Unique-ID`) |
//! | `DialEnd` | `DialEnd` `DialStatus` (ANSWER, BUSY, NOANSWER, CANCEL, CHANUNAVAIL, CONGESTION) | `CHANNEL_ANSWER` of that leg (ANSWER), or its `CHANNEL_HANGUP_COMPLETE` before answer (cause mapped: USER_BUSY → BUSY, NO_ANSWER → NOANSWER, ORIGINATOR_CANCEL/LOSE_RACE → CANCEL, USER_NOT_REGISTERED → CHANUNAVAIL, ...) |
//! | `Bridged` / `Unbridged` | `BridgeEnter` / `BridgeLeave` (`BridgeUniqueid`) | `CHANNEL_BRIDGE` / `CHANNEL_UNBRIDGE`: one event per leg, bridge id = `Bridge-A-Unique-ID`, peer = the other leg |
//! | `Transferred` | `BlindTransfer`, `AttendedTransfer` (transferer, transferee, target and bridge ids) | a new `Caller-Transfer-Source` on a non-loopback leg: `bl_xfer` (blind, e.g. `uuid_transfer`) or `att_xfer` (attended) |
//! | `Queued` | `QueueCallerJoin`, `AgentCalled`, `QueueCallerAbandon` (`Uniqueid` of the caller, `Queue`) | `variable_cc_queue` (mod_callcenter) first seen on a leg, or changed |
//! | `RingGroup` | `Newexten` or `Newchannel` in FreePBX's `ext-group` context at a number (the group's) | (none) |
//! | `HungUp` | `Hangup` (`Cause`, `Cause-txt`) | `CHANNEL_HANGUP_COMPLETE` (`variable_hangup_cause_q850`, `Hangup-Cause`) |
//! | `RecordingStarted` | `VarSet` `MIXMONITOR_FILENAME`; `Cdr` with a `recordingfile` field | `RECORD_START` `Record-File-Path` |
//! | `CallTagged` | `VarSet` `CRM_CALL_ID` | `variable_crm_call_id` first seen on a leg |
//! | `OriginateResult` | `OriginateResponse` for our `ActionID` (`Reason` 4 answered, 5 busy, 3 no answer, 0 unavailable, 8 congestion) | `BACKGROUND_JOB` for our `Job-UUID` (`+OK <uuid>` or `-ERR <CAUSE>`) |
//! | `DeviceState` | `DeviceStateChange` | (none: see `Registration`; `extensions()` reads live state) |
//! | `Registration` | `ContactStatus`, `PeerStatus` | `CUSTOM sofia::register` / `sofia::unregister` / `sofia::expire` |
//! | `Endpoints` | `PJSIPShowEndpoints` and `SIPpeers` answers, asked at login and every `[pbx] endpoints_refresh_ms` | `list_users` and `sofia status` answers, likewise |
//!
//! Every other AMI event and every other ESL event is read and dropped without cost beyond
//! the codec; the event filters in README "PBX setup" keep most of them off the wire.

pub mod ami;
pub mod endpoints;
pub mod esl;
mod event;
pub mod fields;
mod handle;
mod supervisor;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use crate::config::{PbxConfig, PbxType};
use crate::secret::Secret;

pub use endpoints::Endpoints;
pub use event::{
    Channel, ChannelSnapshot, ChannelState, DialStatus, Event, Extension, LineState, Origin,
    OriginateOutcome, PbxEvent, Transfer, TransferKind, asterisk_endpoint, q850_of,
};
pub use handle::{OriginateRequest, Originated, PbxError, PbxEvents, PbxHandle};
pub use supervisor::{Supervisor, channel, channel_with_queue};

/// The channel variable that carries our call id on every leg of a click-to-call
/// (Asterisk; FreeSWITCH uses [`CALL_ID_VAR_FS`]).
pub const CALL_ID_VAR: &str = "CRM_CALL_ID";
/// The same variable on FreeSWITCH, where channel variables are lower case by convention.
pub const CALL_ID_VAR_FS: &str = "crm_call_id";
/// How many events may wait for the call tracker before the PBX connection stops reading.
pub const EVENT_QUEUE: usize = 4096;

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
    /// The Asterisk manager refuses the MD5 challenge and `[pbx] allow_plain_login` is
    /// off, so the secret was not sent: retried slowly.
    ChallengeRefused,
    /// The PBX is Asterisk 11 or older (AMI 1.x), whose events (`Dial`, `Bridge`,
    /// `Masquerade`, no `Linkedid`) the tracker cannot follow: not logged in, retried
    /// slowly (an upgraded PBX then just works).
    UnsupportedVersion,
    /// Connected and logged in.
    Up,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::NotConfigured => "not_configured",
            LinkState::Down => "down",
            LinkState::AuthFailed => "auth_failed",
            LinkState::ChallengeRefused => "challenge_refused",
            LinkState::UnsupportedVersion => "unsupported_version",
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

    /// Sets the PBX type shown with the state (the settings page may change it).
    pub fn set_kind(&self, kind: Option<PbxType>) {
        let kind = kind.map(|k| k.as_str());
        self.tx.send_if_modified(|s| {
            let changed = s.kind != kind;
            s.kind = kind;
            changed
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<PbxStatus> {
        self.tx.subscribe()
    }
}

/// What it takes to reach and log in to the PBX. Comes from `[pbx]` in the config file,
/// or from the settings page (which then takes precedence); published to the connection
/// supervisor through a `watch` channel (`Supervisor::run`).
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

    /// `host:port`, with IPv6 literals bracketed.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The `[pbx]` settings that are not about reaching the PBX: dialling and timing.
#[derive(Debug, Clone)]
pub struct Options {
    pub agent_channel: String,
    pub context: String,
    pub transfer_context: String,
    pub dialplan: String,
    pub ring: Duration,
    pub keepalive: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub auth_retry: Duration,
    pub timeout: Duration,
    /// `[pbx] endpoints_refresh_ms`: how often the endpoint lists are asked again.
    pub endpoints_refresh: Duration,
    /// `[pbx] allow_plain_login`: send the AMI secret in clear text when the manager
    /// refuses the MD5 challenge.
    pub allow_plain_login: bool,
    /// Templates and contexts for the other PBX type, used when the settings page switches
    /// type at run time.
    config: PbxConfig,
}

impl Options {
    pub fn from_config(config: &PbxConfig) -> Options {
        let kind = config.kind().unwrap_or(PbxType::Asterisk);
        let ms = Duration::from_millis;
        Options {
            agent_channel: config.agent_channel(kind).to_string(),
            context: config.context(kind).to_string(),
            transfer_context: config.transfer_context(kind).to_string(),
            dialplan: config.dialplan.clone(),
            ring: Duration::from_secs(config.ring_secs),
            keepalive: ms(config.keepalive_ms),
            reconnect_min: ms(config.reconnect_min_ms),
            reconnect_max: ms(config.reconnect_max_ms),
            auth_retry: ms(config.auth_retry_ms),
            timeout: ms(config.timeout_ms),
            endpoints_refresh: ms(config.endpoints_refresh_ms),
            allow_plain_login: config.allow_plain_login,
            config: config.clone(),
        }
    }

    /// The same options with the dialling defaults of `kind`.
    pub fn for_kind(&self, kind: PbxType) -> Options {
        Options {
            agent_channel: self.config.agent_channel(kind).to_string(),
            context: self.config.context(kind).to_string(),
            transfer_context: self.config.transfer_context(kind).to_string(),
            ..self.clone()
        }
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
    /// The manager refuses the MD5 challenge; the secret was not sent.
    ChallengeRefused(String),
    /// Asterisk 11 or older (AMI 1.x): not logged in, its events cannot be tracked.
    UnsupportedVersion(String),
}

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ConnectError {
    /// Unreachable, refused, timed out, not the expected protocol: retry with backoff.
    Down(String),
    /// The PBX refused our credentials: retry slowly.
    AuthFailed(String),
    /// The AMI refused the MD5 challenge and a clear-text login is not allowed: nothing
    /// secret was sent; retry slowly.
    ChallengeRefused(String),
    /// The PBX is too old to track (Asterisk 11 or older): nothing was sent; retry slowly.
    UnsupportedVersion(String),
}

/// Connects to the PBX once, logs in with the given credentials and logs off again:
/// `Ok` only when the login was accepted. Never sends the secret in clear text; see
/// [`probe_with`].
pub async fn probe(settings: &ConnectionSettings, timeout: Duration) -> ProbeResult {
    probe_with(settings, timeout, false).await
}

/// [`probe`], sending the AMI secret in clear text to a manager that refuses the MD5
/// challenge only when `allow_plain_login` (`[pbx] allow_plain_login`).
pub async fn probe_with(
    settings: &ConnectionSettings,
    timeout: Duration,
    allow_plain_login: bool,
) -> ProbeResult {
    let attempt = async {
        match settings.kind {
            PbxType::Asterisk => ami::login::probe(settings, allow_plain_login).await,
            PbxType::Freeswitch => esl::client::probe(settings).await,
        }
    };
    let addr = settings.addr();
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(detail)) => ProbeResult::Ok(detail),
        Ok(Err(ConnectError::Down(why))) => ProbeResult::Down(why),
        Ok(Err(ConnectError::AuthFailed(why))) => ProbeResult::AuthFailed(why),
        Ok(Err(ConnectError::ChallengeRefused(why))) => ProbeResult::ChallengeRefused(why),
        Ok(Err(ConnectError::UnsupportedVersion(why))) => ProbeResult::UnsupportedVersion(why),
        Err(_) => ProbeResult::Down(format!(
            "{addr}: no answer within {} ms",
            timeout.as_millis()
        )),
    }
}

/// A random RFC 4122 version 4 UUID (originate channel ids, ESL `Job-UUID`s).
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b[..]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
