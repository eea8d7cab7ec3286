//! The command side of the PBX interface: [`PbxHandle`], cloneable and cheap, used by the
//! webhook handlers (click-to-call, redirect, employees) and the call tracker.
//!
//! Owns argument validation (nothing a caller passes can inject a header or a dialplan
//! argument) and the choice of protocol; the protocol commands themselves live in
//! `ami::commands` and `esl::commands`. While no connection is up every command fails at
//! once with [`PbxError::Unavailable`] instead of waiting.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{ChannelSnapshot, Extension, PbxEvent, PbxStatus, StatusBoard, ami, esl};

/// The normalized events, in PBX order, for the one consumer (the call tracker).
pub type PbxEvents = mpsc::Receiver<PbxEvent>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PbxError {
    /// Not connected (not configured, down, credentials refused, or the connection broke
    /// while the command was in flight). Webhooks answer 503.
    #[error("PBX unavailable: {0}")]
    Unavailable(String),
    /// The caller passed something the PBX must not see.
    #[error("invalid {field}: {why}")]
    Invalid { field: &'static str, why: String },
    /// The channel is not (or no longer) on the PBX.
    #[error("no such channel on the PBX")]
    NoSuchChannel,
    /// The PBX answered the command with an error.
    #[error("the PBX refused: {0}")]
    Refused(String),
    #[error("the PBX did not answer within {0} ms")]
    Timeout(u64),
    /// The PBX answered something we cannot read.
    #[error("unexpected answer from the PBX: {0}")]
    Protocol(String),
}

/// A click-to-call: ring `agent` first; once answered, the PBX dials `customer` from the
/// configured context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginateRequest {
    /// Our call id, set as the `CRM_CALL_ID` (`crm_call_id`) channel variable and returned
    /// in [`Event::OriginateResult`](super::Event::OriginateResult).
    pub call_id: String,
    /// The agent's extension (`100`), put into `[pbx] agent_channel`.
    pub agent: String,
    /// The number to dial once the agent answers.
    pub customer: String,
    /// What the agent's phone shows while it rings.
    pub caller_id_name: String,
    pub caller_id_number: String,
    /// How long the agent's phone rings; `None`: `[pbx] ring_secs`.
    pub ring: Option<Duration>,
    /// The caller ID / line the customer should see, when the account chose one: set as
    /// the `APPLIANCE_LINE` (`appliance_line`) channel variable for the dialplan to use
    /// on the trunk.
    pub line: Option<String>,
}

/// The PBX accepted a click-to-call; the outcome comes later as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originated {
    /// The id the agent's channel will carry (Asterisk `ChannelId`, FreeSWITCH
    /// `origination_uuid`), so the tracker can link it before any variable arrives.
    pub channel: String,
    /// The `ActionID` or `Job-UUID` the result will be reported under.
    pub reference: String,
}

fn check(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), PbxError> {
    let why = if value.is_empty() {
        "must not be empty".to_string()
    } else if value.len() > max {
        format!("longer than {max} characters")
    } else if let Some(c) = value.chars().find(|&c| !allowed(c)) {
        format!("{c:?} is not allowed")
    } else {
        return Ok(());
    };
    Err(PbxError::Invalid { field, why })
}

pub(crate) fn check_call_id(id: &str) -> Result<(), PbxError> {
    check("call id", id, 64, |c| {
        c.is_ascii_alphanumeric() || "-_.:".contains(c)
    })
}

pub(crate) fn check_extension(field: &'static str, ext: &str) -> Result<(), PbxError> {
    check(field, ext, 64, |c| {
        c.is_ascii_alphanumeric() || "-_.+*#@".contains(c)
    })
}

pub(crate) fn check_number(field: &'static str, number: &str) -> Result<(), PbxError> {
    check(field, number, 32, |c| {
        c.is_ascii_digit() || "+*#".contains(c)
    })
}

/// Channel ids are opaque, but they go into commands: refuse anything that could break out.
pub(crate) fn check_channel(id: &str) -> Result<(), PbxError> {
    check("channel", id, 200, |c| {
        c.is_ascii_graphic() && !"{}'\",\\".contains(c)
    })
}

/// A caller name both PBXs take verbatim: control characters and quoting characters
/// dropped, at most 64 characters.
pub(crate) fn clean_name(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control() && !"\"'<>{}[],\\^|".contains(*c))
        .take(64)
        .collect::<String>()
        .trim()
        .to_string()
}

impl OriginateRequest {
    pub(crate) fn validate(&self) -> Result<(), PbxError> {
        check_call_id(&self.call_id)?;
        check_extension("agent extension", &self.agent)?;
        check_number("customer number", &self.customer)?;
        if !self.caller_id_number.is_empty() {
            check_number("caller id number", &self.caller_id_number)?;
        }
        if let Some(line) = self.line.as_deref().filter(|l| !l.is_empty()) {
            check_number("line", line)?;
        }
        if let Some(ring) = self.ring
            && !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&ring)
        {
            return Err(PbxError::Invalid {
                field: "ring time",
                why: "must be between 1 and 600 seconds".into(),
            });
        }
        Ok(())
    }
}

/// The live connection commands go to, published by the supervisor while logged in.
#[derive(Clone)]
pub(crate) enum Backend {
    Ami(ami::client::Client),
    Esl(esl::client::Client),
}

/// Commands to the PBX. Clone freely; every clone follows the same connection.
#[derive(Clone)]
pub struct PbxHandle {
    pub(crate) backend: watch::Receiver<Option<Backend>>,
    pub(crate) status: StatusBoard,
}

impl PbxHandle {
    /// The connection state, as `/healthz` shows it.
    pub fn status(&self) -> PbxStatus {
        self.status.get()
    }

    /// True while logged in (commands may still fail if the connection drops meanwhile).
    pub fn is_up(&self) -> bool {
        self.backend.borrow().is_some()
    }

    fn backend(&self) -> Result<Backend, PbxError> {
        if let Some(backend) = self.backend.borrow().clone() {
            return Ok(backend);
        }
        let status = self.status.get();
        let why = match status.detail {
            Some(detail) => format!("{} ({detail})", status.state.as_str()),
            None => status.state.as_str().to_string(),
        };
        Err(PbxError::Unavailable(why))
    }

    /// Starts a click-to-call and returns as soon as the PBX accepted it. Whether the agent
    /// answered arrives later as [`Event::OriginateResult`](super::Event::OriginateResult).
    pub async fn originate(&self, req: &OriginateRequest) -> Result<Originated, PbxError> {
        req.validate()?;
        match self.backend()? {
            Backend::Ami(c) => ami::commands::originate(&c, req).await,
            Backend::Esl(c) => esl::commands::originate(&c, req).await,
        }
    }

    /// Sends `channel` (ringing or connected) to extension `exten` in `[pbx]
    /// transfer_context`. The channel leaves whatever it was doing: use it on the
    /// customer's channel to move the call to another employee.
    pub async fn redirect(&self, channel: &str, exten: &str) -> Result<(), PbxError> {
        check_channel(channel)?;
        check_extension("extension", exten)?;
        match self.backend()? {
            Backend::Ami(c) => ami::commands::redirect(&c, channel, exten).await,
            Backend::Esl(c) => esl::commands::transfer(&c, channel, exten, false).await,
        }
    }

    /// Blind-transfers the party bridged with `channel` (as if the agent on `channel`
    /// pressed "transfer" and dialled `exten`): AMI `BlindTransfer`, ESL
    /// `uuid_transfer -bleg`.
    pub async fn transfer(&self, channel: &str, exten: &str) -> Result<(), PbxError> {
        check_channel(channel)?;
        check_extension("extension", exten)?;
        match self.backend()? {
            Backend::Ami(c) => ami::commands::blind_transfer(&c, channel, exten).await,
            Backend::Esl(c) => esl::commands::transfer(&c, channel, exten, true).await,
        }
    }

    /// Hangs up `channel` with cause 16 (normal clearing).
    pub async fn hangup(&self, channel: &str) -> Result<(), PbxError> {
        check_channel(channel)?;
        match self.backend()? {
            Backend::Ami(c) => ami::commands::hangup(&c, channel).await,
            Backend::Esl(c) => esl::commands::hangup(&c, channel).await,
        }
    }

    /// Every extension the PBX knows, with its live state.
    pub async fn extensions(&self) -> Result<Vec<Extension>, PbxError> {
        match self.backend()? {
            Backend::Ami(c) => ami::commands::extensions(&c).await,
            Backend::Esl(c) => esl::commands::extensions(&c).await,
        }
    }

    /// Every channel alive on the PBX right now.
    pub async fn channels(&self) -> Result<Vec<ChannelSnapshot>, PbxError> {
        match self.backend()? {
            Backend::Ami(c) => ami::commands::channels(&c).await,
            Backend::Esl(c) => esl::commands::channels(&c).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> OriginateRequest {
        OriginateRequest {
            call_id: "crm-42".into(),
            agent: "100".into(),
            customer: "+79990001122".into(),
            caller_id_name: "CRM".into(),
            caller_id_number: "79990001122".into(),
            ring: None,
            line: None,
        }
    }

    #[test]
    fn originate_arguments_cannot_inject_anything() {
        assert_eq!(req().validate(), Ok(()));
        for bad in [
            OriginateRequest {
                customer: "7999\r\nAction: Hangup".into(),
                ..req()
            },
            OriginateRequest {
                customer: "".into(),
                ..req()
            },
            OriginateRequest {
                customer: "12 34".into(),
                ..req()
            },
            OriginateRequest {
                agent: "100,crm_call_id=x}".into(),
                ..req()
            },
            OriginateRequest {
                call_id: "a b".into(),
                ..req()
            },
            OriginateRequest {
                call_id: "x".repeat(65),
                ..req()
            },
            OriginateRequest {
                caller_id_number: "12a".into(),
                ..req()
            },
            OriginateRequest {
                ring: Some(Duration::from_millis(10)),
                ..req()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(PbxError::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(clean_name("Ann \"O'Neil\" <x>, {y}\r\n"), "Ann ONeil x y");
        assert!(check_channel("1795413238.16").is_ok());
        assert!(check_channel("a b").is_err());
        assert!(check_channel("x}y").is_err());
    }
}
