//! The normalized PBX events: what the call tracker consumes, whichever PBX produced them.
//!
//! Owns the event vocabulary only; how each protocol maps onto it is documented in the
//! [module overview](super) and implemented in `ami::events` and `esl::events`. All ids
//! (`channel`, `call`, `bridge`) are opaque strings exactly as the PBX wrote them: an
//! Asterisk `Uniqueid` such as `1795413238.16` looks like a number and must never be
//! parsed as one.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::PbxType;

/// One event, stamped with the PBX's own time when it sent one (`Timestamp:` on AMI
/// with `timestampevents = yes`, `Event-Date-Timestamp` on ESL), else our receive time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbxEvent {
    pub at: SystemTime,
    /// True when `at` came from the PBX.
    pub pbx_time: bool,
    pub event: Event,
}

impl PbxEvent {
    pub fn now(event: Event) -> PbxEvent {
        PbxEvent {
            at: SystemTime::now(),
            pbx_time: false,
            event,
        }
    }

    /// Stamps `event` with the PBX time in `micros` since the epoch, if given.
    pub fn at_micros(micros: Option<u64>, event: Event) -> PbxEvent {
        match micros {
            Some(us) => PbxEvent {
                at: UNIX_EPOCH + Duration::from_micros(us),
                pbx_time: true,
                event,
            },
            None => PbxEvent::now(event),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Logged in (first connection or a reconnect). A [`Event::Resync`] follows before the
    /// session is considered complete; live events may come in between.
    Connected {
        pbx: PbxType,
        server: String,
    },
    /// The connection ended; we are retrying. Channel state is unknown until the next
    /// `Resync`.
    Disconnected {
        reason: String,
    },
    /// Every channel alive on the PBX right now, sent after each (re)connect. Calls whose
    /// channels are missing here ended while we were away and can be closed.
    Resync {
        channels: Vec<ChannelSnapshot>,
    },
    /// A channel (one leg) appeared.
    ChannelCreated(Channel),
    /// `channel` is a caller waiting to be answered: Asterisk's `Newstate` to Ring of a
    /// channel created Down (chan_sip creates every caller Down, then says Ring).
    CallingIn {
        channel: String,
    },
    /// The device behind `channel` is alerting (180/183).
    Ringing {
        channel: String,
    },
    /// `channel` was answered.
    Answered {
        channel: String,
    },
    /// `caller` (absent when the PBX originated the leg itself) started dialling `callee`.
    DialBegin {
        caller: Option<String>,
        callee: String,
        dial_string: String,
        /// The extension the dialling side is at (Asterisk's `Exten`, which it copies to
        /// the callee as `DestExten`): the ring group's number when one rings several
        /// phones. Empty when the PBX does not say (FreeSWITCH).
        exten: String,
    },
    /// The dial attempt to `callee` ended with `status`.
    DialEnd {
        caller: Option<String>,
        callee: String,
        status: DialStatus,
    },
    /// `channel` joined `bridge` (its media now flows with the other members). `peer` is
    /// the other member when the PBX names it (FreeSWITCH does, Asterisk does not).
    Bridged {
        channel: String,
        bridge: String,
        peer: Option<String>,
    },
    Unbridged {
        channel: String,
        bridge: String,
        peer: Option<String>,
    },
    Transferred(Transfer),
    /// `channel` (a caller, or a queue's call to its agent) is in queue `queue`, as the
    /// PBX names it: Asterisk `QueueCallerJoin` / `AgentCalled` / `QueueCallerAbandon`,
    /// FreeSWITCH `cc_queue` (mod_callcenter) on the channel.
    Queued {
        channel: String,
        queue: String,
    },
    /// `channel` entered ring group `group` as the PBX numbers it: FreePBX's ring groups
    /// run in dialplan context `ext-group` at the group's number (Asterisk `Newexten` /
    /// `Newchannel` with `Context: ext-group`, e.g. `Exten: 600`), then dial their
    /// members from `macro-dial` at `s`, where nothing names the group any more.
    RingGroup {
        channel: String,
        group: String,
    },
    /// `channel` is gone. `cause` is the Q.850 cause code (16 normal clearing, 17 busy,
    /// 19 no answer, 21 rejected, 26 answered elsewhere, ...).
    HungUp {
        channel: String,
        cause: u16,
        cause_text: String,
    },
    /// A recording of `channel` is being written to `path` (as the PBX names it: may be
    /// relative to the PBX's recording directory).
    RecordingStarted {
        channel: String,
        path: String,
    },
    /// Our call id (the `CRM_CALL_ID` / `crm_call_id` channel variable) is on `channel`.
    CallTagged {
        channel: String,
        call_id: String,
    },
    /// The asynchronous outcome of [`PbxHandle::originate`](super::PbxHandle::originate).
    OriginateResult {
        call_id: String,
        outcome: OriginateOutcome,
        /// The agent's channel, when the PBX reports one.
        channel: Option<String>,
        /// The PBX's own words (`Reason: 5`, `-ERR USER_BUSY`).
        detail: String,
    },
    /// A device (`PJSIP/100`, `Local/100@agents`, a FreeSWITCH user) changed state.
    DeviceState {
        device: String,
        state: LineState,
    },
    /// The PBX's own list of employee endpoints and trunks ([`super::endpoints`]), asked
    /// at login and again now and then: it replaces the previous one.
    Endpoints(super::Endpoints),
    /// A phone registered or went away.
    Registration {
        extension: String,
        online: bool,
        contact: Option<String>,
    },
}

/// What a channel looked like when it was created.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Channel {
    /// The channel's own id: `Uniqueid` / `Unique-ID`.
    pub id: String,
    /// The call it belongs to: `Linkedid` / `Channel-Call-UUID` (a FreeSWITCH loopback
    /// `-b` leg takes its `-a` partner's).
    pub call: String,
    /// `PJSIP/100-0000001a`, `Local/100@agents-00000002;1`, `sofia/internal/1000@host`.
    pub name: String,
    pub caller_number: String,
    pub caller_name: String,
    /// The extension the channel was created for (the number dialled).
    pub exten: String,
    pub context: String,
    /// Inbound: the PBX received this leg (a phone or trunk calling in). Outbound: the PBX
    /// created it (dialling a phone or a trunk, or an originate).
    pub origin: Origin,
    pub state: ChannelState,
    /// One half of an Asterisk `Local/` or FreeSWITCH `loopback/` pair: plumbing, not a
    /// party to the call.
    pub local: bool,
    /// The endpoint or extension behind the channel (`100`, `trunk`, `1000`), when it can
    /// be told from the channel.
    pub endpoint: Option<String>,
    /// The channel that created this one (FreeSWITCH `Other-Leg-Unique-ID` or the
    /// loopback partner); Asterisk reports this through `DialBegin` instead.
    pub peer: Option<String>,
    /// Our call id, when the variable is already set at creation.
    pub call_id: Option<String>,
    /// The origin is a guess: Asterisk created the channel Down, which a leg it dials, an
    /// originate and a chan_sip caller all are at first. What comes next tells: the PBX
    /// dials it, rings it or answers it (outbound), or it rings in or dials (a caller).
    pub tentative: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    Inbound,
    #[default]
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelState {
    #[default]
    Down,
    /// An inbound leg waiting to be answered.
    Ring,
    /// An outbound leg whose device is alerting.
    Ringing,
    Up,
    Busy,
    Other,
}

/// A live channel from `CoreShowChannels` / `show channels as json`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelSnapshot {
    pub id: String,
    pub call: String,
    pub name: String,
    pub state: ChannelState,
    pub caller_number: String,
    pub caller_name: String,
    pub exten: String,
    pub context: String,
    pub local: bool,
    pub endpoint: Option<String>,
    /// The bridge it is in, when the PBX says.
    pub bridge: Option<String>,
    /// The dialplan application it is running (`Dial`, `bridge`, `Playback`).
    pub application: String,
}

/// How a dial attempt ended (Asterisk `DIALSTATUS`; FreeSWITCH hangup causes mapped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialStatus {
    Answer,
    Busy,
    NoAnswer,
    /// The caller gave up, or another phone answered first.
    Cancel,
    /// The device is not registered or does not exist.
    ChanUnavail,
    Congestion,
    Other(String),
}

impl DialStatus {
    /// From Asterisk's `DialStatus:` value.
    pub fn from_asterisk(s: &str) -> DialStatus {
        match s.to_ascii_uppercase().as_str() {
            "ANSWER" => DialStatus::Answer,
            "BUSY" => DialStatus::Busy,
            "NOANSWER" => DialStatus::NoAnswer,
            "CANCEL" => DialStatus::Cancel,
            "CHANUNAVAIL" => DialStatus::ChanUnavail,
            "CONGESTION" => DialStatus::Congestion,
            _ => DialStatus::Other(s.to_string()),
        }
    }

    /// From a FreeSWITCH hangup cause name of a leg that was never answered.
    pub fn from_freeswitch_cause(cause: &str) -> DialStatus {
        match cause {
            "USER_BUSY" | "CALL_REJECTED" => DialStatus::Busy,
            "NO_ANSWER" | "NO_USER_RESPONSE" | "ALLOTTED_TIMEOUT" => DialStatus::NoAnswer,
            "ORIGINATOR_CANCEL" | "LOSE_RACE" | "PICKED_OFF" => DialStatus::Cancel,
            "USER_NOT_REGISTERED"
            | "SUBSCRIBER_ABSENT"
            | "UNALLOCATED_NUMBER"
            | "NO_ROUTE_DESTINATION"
            | "DESTINATION_OUT_OF_ORDER"
            | "INVALID_NUMBER_FORMAT" => DialStatus::ChanUnavail,
            "NORMAL_CIRCUIT_CONGESTION"
            | "SWITCH_CONGESTION"
            | "NORMAL_TEMPORARY_FAILURE"
            | "RECOVERY_ON_TIMER_EXPIRE"
            | "NETWORK_OUT_OF_ORDER" => DialStatus::Congestion,
            other => DialStatus::Other(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKind {
    Blind,
    Attended,
}

/// A transfer, with the ids the tracker needs to move legs from one call to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub kind: TransferKind,
    /// Whether the PBX says it worked.
    pub success: bool,
    /// The channel that asked for the transfer (the agent pressing "transfer").
    pub transferer: Option<String>,
    /// The channel being moved (usually the customer).
    pub transferee: Option<String>,
    /// Attended: the transferer's second channel (the consultation call).
    pub second_transferer: Option<String>,
    /// Attended: the party the transferee ends up with.
    pub target: Option<String>,
    /// Blind: where the transferee was sent.
    pub exten: Option<String>,
    pub context: Option<String>,
    /// The bridge the transferee was in / ends up in.
    pub bridge: Option<String>,
    /// Attended: the bridge of the transferer's first call (with the transferee) and of
    /// the consultation (with the target). Early Asterisk 13 names only these, not the
    /// transferee or the target: they are the other members of each.
    pub orig_bridge: Option<String>,
    pub second_bridge: Option<String>,
}

/// What became of a click-to-call once the PBX tried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginateOutcome {
    /// The agent answered (the customer is being dialled now).
    Answered,
    Busy,
    NoAnswer,
    /// The agent's phone is not registered, or the extension does not exist.
    Unavailable,
    Congestion,
    /// Any other failure (see `detail`).
    Failed,
}

impl OriginateOutcome {
    /// From `OriginateResponse` `Reason:` (Asterisk's `AST_CONTROL_*` codes).
    pub fn from_asterisk(response: &str, reason: &str) -> OriginateOutcome {
        if response.eq_ignore_ascii_case("Success") {
            return OriginateOutcome::Answered;
        }
        match reason.trim() {
            "4" => OriginateOutcome::Answered,
            "5" => OriginateOutcome::Busy,
            "3" => OriginateOutcome::NoAnswer,
            "0" => OriginateOutcome::Unavailable,
            "8" => OriginateOutcome::Congestion,
            _ => OriginateOutcome::Failed,
        }
    }

    /// From a `BACKGROUND_JOB` body: `+OK <uuid>` or `-ERR <CAUSE>`.
    pub fn from_freeswitch(body: &str) -> OriginateOutcome {
        let body = body.trim();
        if body.starts_with("+OK") {
            return OriginateOutcome::Answered;
        }
        let cause = body.trim_start_matches("-ERR").trim();
        match DialStatus::from_freeswitch_cause(cause) {
            DialStatus::Busy => OriginateOutcome::Busy,
            DialStatus::NoAnswer | DialStatus::Cancel => OriginateOutcome::NoAnswer,
            DialStatus::ChanUnavail => OriginateOutcome::Unavailable,
            DialStatus::Congestion => OriginateOutcome::Congestion,
            _ => OriginateOutcome::Failed,
        }
    }
}

/// The live state of a phone line, as `employees.list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineState {
    Offline,
    /// Registered and idle.
    Online,
    Ringing,
    InCall,
    Unknown,
}

impl LineState {
    /// From Asterisk device state names: `DeviceStateChange` `State:` (`NOT_INUSE`) and
    /// `PJSIPShowEndpoints` `DeviceState:` (`Not in use`).
    pub fn from_asterisk(s: &str) -> LineState {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        match norm.as_str() {
            "NOTINUSE" => LineState::Online,
            "INUSE" | "BUSY" | "ONHOLD" | "RINGINUSE" => LineState::InCall,
            "RINGING" => LineState::Ringing,
            "UNAVAILABLE" | "INVALID" => LineState::Offline,
            _ => LineState::Unknown,
        }
    }
}

/// A phone extension with its live state (for `employees.list`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Extension {
    /// `100` (Asterisk endpoint or peer name, FreeSWITCH user id).
    pub ext: String,
    /// The display name, when the PBX keeps one.
    pub name: Option<String>,
    pub state: LineState,
    /// Registered contact URIs.
    pub contacts: Vec<String>,
}

/// The Q.850 code for a FreeSWITCH cause name, for events that lack
/// `variable_hangup_cause_q850`.
pub fn q850_of(cause: &str) -> u16 {
    match cause {
        "UNALLOCATED_NUMBER" => 1,
        "NO_ROUTE_DESTINATION" => 3,
        "NORMAL_CLEARING" => 16,
        "USER_BUSY" => 17,
        "NO_USER_RESPONSE" => 18,
        "NO_ANSWER" => 19,
        "SUBSCRIBER_ABSENT" => 20,
        "CALL_REJECTED" => 21,
        "DESTINATION_OUT_OF_ORDER" => 27,
        "INVALID_NUMBER_FORMAT" => 28,
        "NORMAL_UNSPECIFIED" => 31,
        "NORMAL_CIRCUIT_CONGESTION" => 34,
        "NETWORK_OUT_OF_ORDER" => 38,
        "NORMAL_TEMPORARY_FAILURE" => 41,
        "SWITCH_CONGESTION" => 42,
        "RECOVERY_ON_TIMER_EXPIRE" => 102,
        "ORIGINATOR_CANCEL" => 487,
        "LOSE_RACE" => 502,
        "USER_NOT_REGISTERED" => 606,
        _ => 0,
    }
}

/// The endpoint part of an Asterisk channel name: `PJSIP/100-0000001a` → `100`,
/// `Local/100@agents-00000002;1` → `100@agents`, `SIP/trunk-00000003` → `trunk`.
pub fn asterisk_endpoint(name: &str) -> Option<String> {
    let (_, rest) = name.split_once('/')?;
    let rest = rest.split(';').next().unwrap_or(rest);
    let base = match rest.rfind('-') {
        Some(i) if rest.len() - i > 8 && rest[i + 1..].chars().all(|c| c.is_ascii_hexdigit()) => {
            &rest[..i]
        }
        _ => rest,
    };
    (!base.is_empty()).then(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_come_from_channel_names() {
        assert_eq!(
            asterisk_endpoint("PJSIP/100-0000001a").as_deref(),
            Some("100")
        );
        assert_eq!(
            asterisk_endpoint("Local/100@agents-00000002;1").as_deref(),
            Some("100@agents")
        );
        assert_eq!(
            asterisk_endpoint("PJSIP/trunk-00000026").as_deref(),
            Some("trunk")
        );
        assert_eq!(
            asterisk_endpoint("PJSIP/my-phone").as_deref(),
            Some("my-phone")
        );
        assert_eq!(
            asterisk_endpoint("PJSIP/cafe-babe").as_deref(),
            Some("cafe-babe")
        );
        assert_eq!(
            asterisk_endpoint("PJSIP/cafe-babe-0000000a").as_deref(),
            Some("cafe-babe")
        );
        assert_eq!(asterisk_endpoint("nonsense"), None);
    }

    #[test]
    fn states_and_outcomes_map() {
        assert_eq!(LineState::from_asterisk("Not in use"), LineState::Online);
        assert_eq!(LineState::from_asterisk("NOT_INUSE"), LineState::Online);
        assert_eq!(LineState::from_asterisk("Unavailable"), LineState::Offline);
        assert_eq!(LineState::from_asterisk("RINGING"), LineState::Ringing);
        assert_eq!(LineState::from_asterisk("In use"), LineState::InCall);
        assert_eq!(
            OriginateOutcome::from_asterisk("Failure", "5"),
            OriginateOutcome::Busy
        );
        assert_eq!(
            OriginateOutcome::from_asterisk("Failure", "3"),
            OriginateOutcome::NoAnswer
        );
        assert_eq!(
            OriginateOutcome::from_asterisk("Failure", "0"),
            OriginateOutcome::Unavailable
        );
        assert_eq!(
            OriginateOutcome::from_asterisk("Success", "4"),
            OriginateOutcome::Answered
        );
        assert_eq!(
            OriginateOutcome::from_freeswitch("-ERR USER_BUSY\n"),
            OriginateOutcome::Busy
        );
        assert_eq!(
            OriginateOutcome::from_freeswitch("-ERR NO_ANSWER\n"),
            OriginateOutcome::NoAnswer
        );
        assert_eq!(
            OriginateOutcome::from_freeswitch("-ERR USER_NOT_REGISTERED"),
            OriginateOutcome::Unavailable
        );
        assert_eq!(
            OriginateOutcome::from_freeswitch("+OK 1-2-3\n"),
            OriginateOutcome::Answered
        );
        assert_eq!(
            DialStatus::from_asterisk("CHANUNAVAIL"),
            DialStatus::ChanUnavail
        );
        assert_eq!(q850_of("USER_BUSY"), 17);
    }
}
