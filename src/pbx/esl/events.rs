//! FreeSWITCH events → normalized [`Event`]s (the table in the [`pbx`](crate::pbx)
//! overview).
//!
//! FreeSWITCH reports less than Asterisk in so many words (no dial events, no bridge ids,
//! no transfer events), so the [`Mapper`] keeps a little per-leg state for the life of
//! one connection: which call a leg belongs to (a `loopback/…-b` leg inherits its `-a`
//! partner's), whether it was dialled and answered (to synthesize `DialBegin`/`DialEnd`),
//! and its last transfer source (to spot transfers). Legs are forgotten at
//! `CHANNEL_HANGUP_COMPLETE`; a new connection starts a new mapper.
//!
//! FreeSWITCH may announce a loopback pair's `-b` half before its `-a` partner (both
//! name each other in `variable_other_loopback_leg_uuid`). The `-b` half must take the
//! call of its `-a`, so from such a `CHANNEL_CREATE` on every event waits (in arrival
//! order) until the partner's `CHANNEL_CREATE`, which is mapped first; the wait ends
//! unpaired when the `-b` half hangs up or [`HOLD_MAX`] events pile up.

use std::collections::HashMap;

use super::codec::Event as EslEvent;
use crate::pbx::{
    Channel, ChannelSnapshot, ChannelState, DialStatus, Event, Origin, PbxEvent, Transfer,
    TransferKind, q850_of,
};

/// The `event plain` subscription: exactly what [`Mapper::map`] and the connection use.
pub const SUBSCRIPTION: &str = "CHANNEL_CREATE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA \
CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HANGUP_COMPLETE RECORD_START \
BACKGROUND_JOB HEARTBEAT SHUTDOWN CUSTOM sofia::register sofia::unregister sofia::expire";

const CALL_ID_HEADER: &str = "variable_crm_call_id";

#[derive(Debug, Default)]
struct Leg {
    call: String,
    local: bool,
    dialed: bool,
    caller: Option<String>,
    ringing: bool,
    answered: bool,
    tagged: bool,
    transfer: Option<String>,
    /// The queue last reported for the leg.
    queue: Option<String>,
}

/// How many events may wait for a loopback `-b` half's partner before they are mapped
/// without it.
pub const HOLD_MAX: usize = 256;

/// Events waiting for the `-a` partner of the loopback `-b` half that opened them.
#[derive(Debug)]
struct Held {
    leg: String,
    partner: String,
    events: Vec<EslEvent>,
}

/// Per-connection mapping state.
#[derive(Debug, Default)]
pub struct Mapper {
    legs: HashMap<String, Leg>,
    held: Option<Held>,
}

/// `Event-Date-Timestamp`: microseconds since the epoch.
pub fn timestamp(ev: &EslEvent) -> Option<u64> {
    ev.get("Event-Date-Timestamp")?.trim().parse().ok()
}

fn s(ev: &EslEvent, key: &str) -> String {
    ev.headers.value(key).unwrap_or_default().to_string()
}

fn opt(ev: &EslEvent, key: &str) -> Option<String> {
    ev.headers.value(key).map(str::to_string)
}

/// The user part of `1000@127.0.0.1`.
fn user_of(presence: &str) -> Option<String> {
    let user = presence.split('@').next().unwrap_or(presence);
    (!user.is_empty()).then(|| user.to_string())
}

/// The directory user behind a leg, or for a leg through a sofia gateway the gateway's
/// name (`sip_gateway_name`: such a leg may carry the calling user's presence id).
fn endpoint(ev: &EslEvent) -> Option<String> {
    opt(ev, "variable_sip_gateway_name")
        .filter(|gw| !gw.trim().is_empty())
        .or_else(|| opt(ev, "variable_dialed_user"))
        .or_else(|| ev.headers.value("Channel-Presence-ID").and_then(user_of))
}

/// `1795416728:a791…:bl_xfer:1001/agents-sip/XML` → (kind, exten, context).
fn parse_transfer(source: &str) -> Option<(TransferKind, Option<String>, Option<String>)> {
    let mut parts = source.splitn(4, ':');
    let (_, _, kind, dest) = (parts.next()?, parts.next()?, parts.next()?, parts.next());
    let kind = match kind {
        "bl_xfer" => TransferKind::Blind,
        "att_xfer" => TransferKind::Attended,
        _ => return None,
    };
    let mut dest = dest.unwrap_or("").split('/');
    let exten = dest.next().filter(|s| !s.is_empty()).map(str::to_string);
    let context = dest.next().filter(|s| !s.is_empty()).map(str::to_string);
    Some((kind, exten, context))
}

impl Mapper {
    pub fn new() -> Mapper {
        Mapper::default()
    }

    /// Legs currently tracked (for tests and the benchmark's memory check).
    pub fn live_legs(&self) -> usize {
        self.legs.len()
    }

    /// Maps one event (or holds it while a loopback `-b` half waits for its partner, see
    /// the module notes). `BACKGROUND_JOB` is the connection's business, not ours.
    pub fn map(&mut self, ev: &EslEvent, out: &mut Vec<PbxEvent>) {
        let id = ev.headers.str("Unique-ID");
        let create = ev.name() == "CHANNEL_CREATE";
        if let Some(held) = &mut self.held {
            if create && id == held.partner {
                let held = self.held.take().expect("held");
                self.map_now(ev, out);
                for e in &held.events {
                    self.map_now(e, out);
                }
                return;
            }
            held.events.push(ev.clone());
            let gone = ev.name() == "CHANNEL_HANGUP_COMPLETE" && id == held.leg;
            if gone || held.events.len() >= HOLD_MAX {
                let held = self.held.take().expect("held");
                for e in &held.events {
                    self.map_now(e, out);
                }
            }
            return;
        }
        if create
            && ev.headers.str("Channel-Name").starts_with("loopback/")
            && ev.headers.str("Channel-Name").ends_with("-b")
            && let Some(partner) = opt(ev, "variable_other_loopback_leg_uuid")
            && !self.legs.contains_key(&partner)
        {
            self.held = Some(Held {
                leg: id.to_string(),
                partner,
                events: vec![ev.clone()],
            });
            return;
        }
        self.map_now(ev, out);
    }

    fn map_now(&mut self, ev: &EslEvent, out: &mut Vec<PbxEvent>) {
        let at = timestamp(ev);
        let mut push = |event: Event| out.push(PbxEvent::at_micros(at, event));
        let name = ev.name();
        if name == "CUSTOM" {
            let online = match ev.subclass() {
                "sofia::register" => true,
                "sofia::unregister" | "sofia::expire" => false,
                _ => return,
            };
            if let Some(extension) = opt(ev, "username").or_else(|| opt(ev, "from-user")) {
                push(Event::Registration {
                    extension,
                    online,
                    contact: opt(ev, "contact"),
                });
            }
            return;
        }
        const CHANNEL_EVENTS: &[&str] = &[
            "CHANNEL_CREATE",
            "CHANNEL_PROGRESS",
            "CHANNEL_PROGRESS_MEDIA",
            "CHANNEL_ANSWER",
            "CHANNEL_BRIDGE",
            "CHANNEL_UNBRIDGE",
            "CHANNEL_HANGUP_COMPLETE",
            "RECORD_START",
        ];
        if !CHANNEL_EVENTS.contains(&name) {
            return;
        }
        let id = s(ev, "Unique-ID");
        if id.is_empty() {
            return;
        }
        if name == "CHANNEL_CREATE" {
            self.created(ev, id, &mut push);
            return;
        }
        let leg = self.legs.entry(id.clone()).or_insert_with(|| Leg {
            call: opt(ev, "Channel-Call-UUID").unwrap_or_else(|| id.clone()),
            local: ev.headers.str("Channel-Name").starts_with("loopback/"),
            ..Leg::default()
        });
        if !leg.tagged
            && let Some(call_id) = opt(ev, CALL_ID_HEADER)
        {
            leg.tagged = true;
            push(Event::CallTagged {
                channel: id.clone(),
                call_id,
            });
        }
        if let Some(queue) = queue_of(ev)
            && leg.queue.as_deref() != Some(queue.as_str())
        {
            leg.queue = Some(queue.clone());
            push(Event::Queued {
                channel: id.clone(),
                queue,
            });
        }
        if let Some(source) = opt(ev, "Caller-Transfer-Source")
            && leg.transfer.as_deref() != Some(source.as_str())
        {
            leg.transfer = Some(source.clone());
            if !leg.local
                && let Some((kind, exten, context)) = parse_transfer(&source)
            {
                push(Event::Transferred(Transfer {
                    kind,
                    success: true,
                    transferer: None,
                    transferee: Some(id.clone()),
                    second_transferer: None,
                    target: None,
                    exten,
                    context,
                    bridge: None,
                    orig_bridge: None,
                    second_bridge: None,
                }));
            }
        }
        match name {
            "CHANNEL_PROGRESS" | "CHANNEL_PROGRESS_MEDIA" if !leg.ringing && !leg.answered => {
                leg.ringing = true;
                push(Event::Ringing { channel: id });
            }
            "CHANNEL_ANSWER" => {
                if leg.dialed && !leg.answered {
                    push(Event::DialEnd {
                        caller: leg.caller.clone(),
                        callee: id.clone(),
                        status: DialStatus::Answer,
                    });
                }
                leg.answered = true;
                push(Event::Answered { channel: id });
            }
            "CHANNEL_BRIDGE" | "CHANNEL_UNBRIDGE" => {
                let a = opt(ev, "Bridge-A-Unique-ID").unwrap_or(id);
                let Some(b) =
                    opt(ev, "Bridge-B-Unique-ID").or_else(|| opt(ev, "Other-Leg-Unique-ID"))
                else {
                    return;
                };
                let bridged = name == "CHANNEL_BRIDGE";
                for (channel, peer) in [(a.clone(), b.clone()), (b, a.clone())] {
                    let bridge = a.clone();
                    let peer = Some(peer);
                    push(if bridged {
                        Event::Bridged {
                            channel,
                            bridge,
                            peer,
                        }
                    } else {
                        Event::Unbridged {
                            channel,
                            bridge,
                            peer,
                        }
                    });
                }
            }
            "CHANNEL_HANGUP_COMPLETE" => {
                let cause_text = s(ev, "Hangup-Cause");
                let leg = self.legs.remove(&id).unwrap_or_default();
                if leg.dialed && !leg.answered {
                    push(Event::DialEnd {
                        caller: leg.caller,
                        callee: id.clone(),
                        status: DialStatus::from_freeswitch_cause(&cause_text),
                    });
                }
                let cause = ev
                    .get("variable_hangup_cause_q850")
                    .and_then(|c| c.trim().parse().ok())
                    .unwrap_or_else(|| q850_of(&cause_text));
                push(Event::HungUp {
                    channel: id,
                    cause,
                    cause_text,
                });
            }
            "RECORD_START" => {
                if let Some(path) =
                    opt(ev, "Record-File-Path").or_else(|| opt(ev, "variable_record_file_path"))
                {
                    push(Event::RecordingStarted { channel: id, path });
                }
            }
            _ => {}
        }
    }

    fn created(&mut self, ev: &EslEvent, id: String, push: &mut impl FnMut(Event)) {
        let name = s(ev, "Channel-Name");
        let local = name.starts_with("loopback/");
        let partner = opt(ev, "variable_other_loopback_leg_uuid");
        let other = opt(ev, "Other-Leg-Unique-ID");
        let call = partner
            .as_ref()
            .and_then(|p| self.legs.get(p))
            .map(|leg| leg.call.clone())
            .or_else(|| opt(ev, "Channel-Call-UUID"))
            .unwrap_or_else(|| id.clone());
        let origin = if ev.headers.str("Call-Direction") == "inbound" {
            Origin::Inbound
        } else {
            Origin::Outbound
        };
        let state = match (ev.headers.str("Answer-State"), origin) {
            ("answered", _) => ChannelState::Up,
            ("early", _) => ChannelState::Ringing,
            (_, Origin::Inbound) => ChannelState::Ring,
            (_, Origin::Outbound) => ChannelState::Down,
        };
        let dialed = origin == Origin::Outbound;
        let call_id = opt(ev, CALL_ID_HEADER);
        let channel = Channel {
            id: id.clone(),
            call: call.clone(),
            caller_number: s(ev, "Caller-Caller-ID-Number"),
            caller_name: s(ev, "Caller-Caller-ID-Name"),
            exten: opt(ev, "variable_dialed_user")
                .unwrap_or_else(|| s(ev, "Caller-Destination-Number")),
            context: s(ev, "Caller-Context"),
            origin,
            state,
            local,
            endpoint: endpoint(ev),
            peer: other.clone().or(partner),
            call_id: call_id.clone(),
            tentative: false,
            name,
        };
        let dial_string = s(ev, "Caller-Destination-Number");
        push(Event::ChannelCreated(channel));
        if dialed {
            push(Event::DialBegin {
                caller: other.clone(),
                callee: id.clone(),
                dial_string,
                exten: String::new(),
            });
        }
        let queue = queue_of(ev);
        if let Some(queue) = &queue {
            push(Event::Queued {
                channel: id.clone(),
                queue: queue.clone(),
            });
        }
        self.legs.insert(
            id,
            Leg {
                call,
                local,
                dialed,
                caller: other,
                tagged: call_id.is_some(),
                transfer: opt(ev, "Caller-Transfer-Source"),
                queue,
                ..Leg::default()
            },
        );
    }
}

/// The queue a leg is in: mod_callcenter sets `cc_queue` on the caller (and on the
/// agent leg it originates).
fn queue_of(ev: &EslEvent) -> Option<String> {
    opt(ev, "variable_cc_queue").filter(|q| !q.is_empty())
}

fn json_str(row: &serde_json::Value, key: &str) -> String {
    match row.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The rows of `show channels as json` (`{"row_count": 0}` when idle).
pub fn snapshot(body: &str) -> Result<Vec<ChannelSnapshot>, String> {
    let value: serde_json::Value =
        serde_json::from_str(body.trim()).map_err(|e| format!("show channels as json: {e}"))?;
    let rows = match value.get("rows") {
        Some(serde_json::Value::Array(rows)) => rows.as_slice(),
        _ if value.get("row_count").is_some() => &[],
        _ => return Err(format!("show channels as json: no rows in {:.80}", body)),
    };
    Ok(rows
        .iter()
        .map(|row| {
            let id = json_str(row, "uuid");
            let call = json_str(row, "call_uuid");
            let name = json_str(row, "name");
            let inbound = json_str(row, "direction") == "inbound";
            let state = match json_str(row, "callstate").as_str() {
                "RINGING" | "EARLY" if inbound => ChannelState::Ring,
                "RINGING" | "EARLY" | "RING_WAIT" => ChannelState::Ringing,
                "ACTIVE" | "HELD" => ChannelState::Up,
                "DOWN" => ChannelState::Down,
                _ => ChannelState::Other,
            };
            ChannelSnapshot {
                call: if call.is_empty() { id.clone() } else { call },
                state,
                caller_number: json_str(row, "cid_num"),
                caller_name: json_str(row, "cid_name"),
                exten: json_str(row, "dest"),
                context: json_str(row, "context"),
                local: name.starts_with("loopback/"),
                endpoint: user_of(&json_str(row, "presence_id")),
                bridge: None,
                application: json_str(row, "application"),
                name,
                id,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests;
