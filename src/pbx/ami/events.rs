//! AMI events → normalized [`Event`]s (the table in the [`pbx`](crate::pbx) overview).
//!
//! Pure and stateless: one AMI event in, zero or more normalized events out. Events we
//! do not use (`Newexten` outside FreePBX's ring-group context, most `VarSet`s, `RTCP*`,
//! ...) map to nothing and cost only the parse. Ids are copied as strings, never parsed.

use super::codec::Message;
use crate::pbx::{
    CALL_ID_VAR, Channel, ChannelSnapshot, ChannelState, DialStatus, Event, LineState, Origin,
    PbxEvent, Transfer, TransferKind, asterisk_endpoint,
};

/// The event names the appliance uses; the session `Filter`s and the documented
/// `eventfilter`s list exactly these (plus `VarSet` for [`VARIABLES`]).
pub const EVENTS: &[&str] = &[
    "Newchannel",
    "Newstate",
    "Rename",
    "DialBegin",
    "DialEnd",
    "BridgeEnter",
    "BridgeLeave",
    "BlindTransfer",
    "AttendedTransfer",
    "QueueCallerJoin",
    "AgentCalled",
    "QueueCallerAbandon",
    "Hangup",
    "OriginateResponse",
    "DeviceStateChange",
    "ContactStatus",
    "PeerStatus",
    "Cdr",
    "FullyBooted",
    "Shutdown",
];

/// FreePBX's ring-group context: a channel in it at a number is in that ring group
/// ([`Event::RingGroup`]). The session filters pass `Newexten` in this context only.
pub const RING_GROUP_CONTEXT: &str = "ext-group";

/// The only channel variables whose `VarSet` we need.
pub const VARIABLES: &[&str] = &[CALL_ID_VAR, "MIXMONITOR_FILENAME"];

/// The PBX's time of an event in microseconds since the epoch, from `Timestamp:`
/// (`1795413238.313954`, present with `timestampevents = yes`).
pub fn timestamp(msg: &Message) -> Option<u64> {
    let raw = msg.get("Timestamp")?.trim();
    let (secs, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let secs: u64 = secs.parse().ok()?;
    let mut micros = 0u64;
    let mut digits = 0;
    for c in frac.chars().take(6) {
        micros = micros * 10 + c.to_digit(10)? as u64;
        digits += 1;
    }
    micros *= 10u64.pow(6 - digits);
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

fn s(msg: &Message, key: &str) -> String {
    msg.fields.value(key).unwrap_or_default().to_string()
}

fn opt(msg: &Message, key: &str) -> Option<String> {
    msg.fields.value(key).map(str::to_string)
}

fn state_of(code: &str) -> ChannelState {
    match code.trim() {
        "0" => ChannelState::Down,
        "4" => ChannelState::Ring,
        "5" => ChannelState::Ringing,
        "6" => ChannelState::Up,
        "7" => ChannelState::Busy,
        _ => ChannelState::Other,
    }
}

/// Our call id from `ChanVariable: CRM_CALL_ID=...` (present when manager.conf lists it
/// in `channelvars`).
fn chan_variable(msg: &Message, name: &str) -> Option<String> {
    msg.fields.get_all("ChanVariable").find_map(|v| {
        let (k, value) = v.split_once('=')?;
        (k.eq_ignore_ascii_case(name) && !value.is_empty()).then(|| value.to_string())
    })
}

fn channel(msg: &Message) -> Channel {
    let name = s(msg, "Channel");
    let state = state_of(msg.fields.str("ChannelState"));
    Channel {
        id: s(msg, "Uniqueid"),
        call: opt(msg, "Linkedid").unwrap_or_else(|| s(msg, "Uniqueid")),
        caller_number: s(msg, "CallerIDNum"),
        caller_name: s(msg, "CallerIDName"),
        exten: s(msg, "Exten"),
        context: s(msg, "Context"),
        // A channel the PBX created starts Down; one that called in starts in Ring (PJSIP)
        // or Down, then Ring (chan_sip): `tentative` until the PBX says which.
        origin: if state == ChannelState::Down {
            Origin::Outbound
        } else {
            Origin::Inbound
        },
        state,
        local: name.starts_with("Local/"),
        endpoint: asterisk_endpoint(&name),
        peer: None,
        call_id: chan_variable(msg, CALL_ID_VAR),
        tentative: state == ChannelState::Down,
        name,
    }
}

/// Maps one AMI event. Responses and list items never come here.
pub fn map(msg: &Message, out: &mut Vec<PbxEvent>) {
    let Some(name) = msg.event() else {
        return;
    };
    let at = timestamp(msg);
    let mut push = |event: Event| out.push(PbxEvent::at_micros(at, event));
    let id = || s(msg, "Uniqueid");
    let ring_group = || {
        let exten = msg.fields.str("Exten");
        (msg.fields.str("Context") == RING_GROUP_CONTEXT
            && !exten.is_empty()
            && exten.bytes().all(|b| b.is_ascii_digit()))
        .then(|| Event::RingGroup {
            channel: id(),
            group: exten.to_string(),
        })
    };
    match name {
        "Newchannel" => {
            push(Event::ChannelCreated(channel(msg)));
            // A Local/600@ext-group half is created in the group.
            if let Some(group) = ring_group() {
                push(group);
            }
        }
        "Newexten" => {
            if let Some(group) = ring_group() {
                push(group);
            }
        }
        "Newstate" => match msg.fields.str("ChannelState") {
            "4" => push(Event::CallingIn { channel: id() }),
            "5" => push(Event::Ringing { channel: id() }),
            "6" => push(Event::Answered { channel: id() }),
            _ => {}
        },
        "DialBegin" => push(Event::DialBegin {
            caller: opt(msg, "Uniqueid"),
            callee: s(msg, "DestUniqueid"),
            dial_string: s(msg, "DialString"),
            exten: s(msg, "Exten"),
        }),
        "DialEnd" => push(Event::DialEnd {
            caller: opt(msg, "Uniqueid"),
            callee: s(msg, "DestUniqueid"),
            status: DialStatus::from_asterisk(msg.fields.str("DialStatus")),
        }),
        "BridgeEnter" => push(Event::Bridged {
            channel: id(),
            bridge: s(msg, "BridgeUniqueid"),
            peer: None,
        }),
        "BridgeLeave" => push(Event::Unbridged {
            channel: id(),
            bridge: s(msg, "BridgeUniqueid"),
            peer: None,
        }),
        "BlindTransfer" => push(Event::Transferred(Transfer {
            kind: TransferKind::Blind,
            success: msg.fields.str("Result").eq_ignore_ascii_case("Success"),
            transferer: opt(msg, "TransfererUniqueid"),
            transferee: opt(msg, "TransfereeUniqueid"),
            second_transferer: None,
            target: None,
            exten: opt(msg, "Extension"),
            context: opt(msg, "Context"),
            bridge: opt(msg, "BridgeUniqueid"),
            orig_bridge: None,
            second_bridge: None,
        })),
        "AttendedTransfer" => push(Event::Transferred(Transfer {
            kind: TransferKind::Attended,
            success: msg.fields.str("Result").eq_ignore_ascii_case("Success"),
            transferer: opt(msg, "OrigTransfererUniqueid"),
            transferee: opt(msg, "TransfereeUniqueid"),
            second_transferer: opt(msg, "SecondTransfererUniqueid"),
            target: opt(msg, "TransferTargetUniqueid"),
            exten: None,
            context: None,
            bridge: opt(msg, "DestBridgeUniqueid").or_else(|| opt(msg, "OrigBridgeUniqueid")),
            orig_bridge: opt(msg, "OrigBridgeUniqueid"),
            second_bridge: opt(msg, "SecondBridgeUniqueid"),
        })),
        // The caller's channel (`Uniqueid`) in `Queue`; `AgentCalled` names the caller
        // too (the agent is `DestUniqueid`).
        "QueueCallerJoin" | "AgentCalled" | "QueueCallerAbandon" => {
            if let Some(queue) = opt(msg, "Queue").filter(|q| !q.is_empty()) {
                push(Event::Queued {
                    channel: id(),
                    queue,
                });
            }
        }
        "Hangup" => push(Event::HungUp {
            channel: id(),
            cause: msg.fields.str("Cause").trim().parse().unwrap_or(0),
            cause_text: s(msg, "Cause-txt"),
        }),
        "VarSet" => {
            let variable = msg.fields.str("Variable");
            let Some(value) = opt(msg, "Value") else {
                return;
            };
            if variable.eq_ignore_ascii_case(CALL_ID_VAR) {
                push(Event::CallTagged {
                    channel: id(),
                    call_id: value,
                });
            } else if variable.eq_ignore_ascii_case("MIXMONITOR_FILENAME") {
                push(Event::RecordingStarted {
                    channel: id(),
                    path: value,
                });
            }
        }
        "Cdr" => {
            if let Some(path) = opt(msg, "recordingfile") {
                push(Event::RecordingStarted {
                    channel: s(msg, "UniqueID"),
                    path,
                });
            }
        }
        "DeviceStateChange" => push(Event::DeviceState {
            device: s(msg, "Device"),
            state: LineState::from_asterisk(msg.fields.str("State")),
        }),
        "ContactStatus" => {
            let status = msg.fields.str("ContactStatus");
            let extension = opt(msg, "EndpointName").or_else(|| opt(msg, "AOR"));
            if let Some(extension) = extension {
                push(Event::Registration {
                    extension,
                    online: ["Created", "Reachable", "NonQualified", "Updated"]
                        .iter()
                        .any(|s| status.eq_ignore_ascii_case(s)),
                    contact: opt(msg, "URI"),
                });
            }
        }
        "PeerStatus" => {
            let peer = msg.fields.str("Peer");
            let extension = peer.split_once('/').map_or(peer, |(_, e)| e);
            if extension.is_empty() {
                return;
            }
            let status = msg.fields.str("PeerStatus");
            push(Event::Registration {
                extension: extension.to_string(),
                online: ["Registered", "Reachable"]
                    .iter()
                    .any(|s| status.eq_ignore_ascii_case(s)),
                contact: opt(msg, "Address"),
            });
        }
        _ => {}
    }
}

/// One `CoreShowChannel` list item.
pub fn snapshot(item: &Message) -> ChannelSnapshot {
    let name = s(item, "Channel");
    ChannelSnapshot {
        id: s(item, "Uniqueid"),
        call: opt(item, "Linkedid").unwrap_or_else(|| s(item, "Uniqueid")),
        state: state_of(item.fields.str("ChannelState")),
        caller_number: s(item, "CallerIDNum"),
        caller_name: s(item, "CallerIDName"),
        exten: s(item, "Exten"),
        context: s(item, "Context"),
        local: name.starts_with("Local/"),
        endpoint: asterisk_endpoint(&name),
        bridge: opt(item, "BridgeId"),
        application: s(item, "Application"),
        name,
    }
}

#[cfg(test)]
mod tests;
