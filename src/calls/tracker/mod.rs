//! The call tracker: normalized PBX events in, calls and the Flowlu events they need out.
//!
//! Pure: no I/O, no clock (times come from the events). The engine feeds it, writes each
//! [`Update`] (the call record and the events to emit) in one transaction, and attributes
//! calls to Flowlu accounts.
//!
//! How legs become calls:
//! - Legs are grouped by the PBX's call id (Asterisk `Linkedid`, FreeSWITCH call UUID,
//!   which the adapters put in `Channel::call`), so Local/loopback halves, ring-group legs
//!   and redirected legs all join the call they belong to instead of making new ones.
//! - A click-to-call is [`adopt`](Tracker::adopt)ed before the PBX starts it and claims
//!   the legs that carry its id (the `CRM_CALL_ID` variable) or the agent channel id the
//!   PBX promised. A leg the PBX originated for someone else stays *provisional* (nothing
//!   reported) until it is clearly a call of its own: a customer's leg rings, is dialled
//!   or answers; an employee's leg dials someone (ringing or answering alone is not
//!   enough: a queue's agent leg is then bridged into its caller's call, [`joins`]).
//! - Direction comes from the first leg ([`rules`]); the call is connected when the right
//!   party answers (the employee for incoming, the customer for outgoing, the callee for
//!   internal); it ends when its last leg hangs up, and [`status`] decides how.
//! - An employee dialling a feature code makes a *service* call that is never reported;
//!   when its leg gets connected to another call (a pickup), it joins that call. A leg
//!   of an internal call bridged with a customer's call (an attended transfer the PBX
//!   did not announce as one) joins the customer's call ([`joins`]).

mod rules;
mod status;

use std::collections::{HashMap, HashSet};
use std::time::UNIX_EPOCH;

use crate::config::CallsConfig;
use crate::pbx::{
    Channel, ChannelSnapshot, ChannelState, DialStatus, Event, Origin, OriginateOutcome, PbxEvent,
    Transfer, TransferKind,
};

use super::{Call, CallState, Direction};
pub use rules::{Placed, Role, Rules, clean_number, endpoint_of};
pub use status::from_dial;

/// A Flowlu event the engine must send for an [`Update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    Init,
    State,
    Connected,
    Completed,
}

impl Emit {
    pub fn kind(self) -> &'static str {
        match self {
            Emit::Init => "call.init",
            Emit::State => "call.state",
            Emit::Connected => "call.connected",
            Emit::Completed => "call.completed",
        }
    }
}

/// A changed call and what to tell Flowlu about it, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub call: Call,
    pub emit: Vec<Emit>,
}

#[derive(Debug, Clone)]
struct Leg {
    call: String,
    role: Role,
    up: bool,
    /// The bridge the leg is in, if any.
    bridge: Option<String>,
    /// A real (not Local/loopback) channel the PBX dialled out on.
    dialled: bool,
    /// A Local / loopback half: the pair it belongs to, and whether it is the half that
    /// runs the extension the pair is named after (Asterisk `;2`, FreeSWITCH `-b`).
    local: Option<(String, bool)>,
    /// Dialled by this channel, from this extension ([`groups`]).
    dialled_by: Option<(String, String)>,
}

#[derive(Debug, Clone, Default)]
struct Facts {
    /// The employee who placed an outgoing or internal call.
    caller_agent: Option<String>,
    /// A click-to-call started by Flowlu.
    click: bool,
    /// Click-to-call: the employee's phone answered.
    agent_answered: bool,
    /// How the last dial attempt to an employee / to the customer ended.
    agent_dial: Option<DialStatus>,
    customer_dial: Option<DialStatus>,
    originate: Option<(OriginateOutcome, String)>,
    /// Hang-up cause of the customer's leg, of an employee's leg, and of any leg.
    customer_cause: Option<(u16, String)>,
    agent_cause: Option<(u16, String)>,
    last_cause: Option<(u16, String)>,
    /// The PBX started the call (an originate: its first leg was one the PBX created).
    originated: bool,
    /// Such a call without an employee: its first outside party answered (that is the
    /// originate's own party, not a conversation yet).
    first_party_up: bool,
    /// An outside number the PBX forwarded an incoming call to (follow-me, a mobile)
    /// answered; the call is answered once the caller is connected to it.
    forward_up: bool,
    /// Nothing reported yet: a PBX originate that may still turn out to be ours.
    provisional: bool,
    /// Opened by the PBX ringing an employee (an originate), nobody dialled yet.
    agent_only: bool,
    /// An employee dialled a feature code (`*97`, `*8`): never reported on its own; its
    /// leg joins the call it is connected to (a pickup).
    service: bool,
    /// An employee's call to an extension, not reported until the PBX dials for it
    /// ([`Tracker::release_held`]); the employee's leg may instead be the one a pickup
    /// puts into another call (chan_sip's SIP `Replaces`), and then joins that call.
    held: bool,
    /// `call.queue` is a queue the PBX named (not a ring group's number, [`groups`]).
    queue_named: bool,
}

#[derive(Debug, Clone)]
struct Tracked {
    call: Call,
    facts: Facts,
    /// Live legs.
    legs: HashSet<String>,
    /// Every PBX call id that maps here (several after an attended transfer).
    groups: HashSet<String>,
    /// The extension `call.user_id` is the Flowlu user of: when the call's extension
    /// changes, the user is cleared (and the engine looks up the new one's).
    user_ext: Option<String>,
}

impl Tracked {
    /// The call as reported: its `user_id` only while it is still the user of its
    /// extension.
    fn reported(&mut self) -> Call {
        if self.call.extension != self.user_ext {
            self.call.user_id = None;
        }
        self.call.clone()
    }
}

/// How long an adopted click-to-call may wait for the PBX to show any leg or result
/// before a resync gives up on it.
const ADOPTED_PATIENCE_MS: i64 = 5 * 60 * 1000;

pub struct Tracker {
    rules: Rules,
    calls: HashMap<String, Tracked>,
    groups: HashMap<String, String>,
    legs: HashMap<String, Leg>,
    /// Agent channel ids promised by the PBX for click-to-calls (Originated::channel).
    expected: HashMap<String, String>,
    /// Channels created Down that would open a call, until the PBX says who started it
    /// ([`origin`]).
    pending: HashMap<String, Channel>,
    /// Between `Connected` and its `Resync`: the channels created live meanwhile. The
    /// live-channel list may have been taken before them, so missing from it they did not
    /// end while the connection was down.
    fresh: Option<HashSet<String>>,
    /// The PBX last connected to: its endpoint lists are no other PBX's.
    server: Option<String>,
}

pub fn ms(at: std::time::SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Tracker {
    pub fn new(config: &CallsConfig) -> Tracker {
        Tracker {
            rules: Rules::new(config),
            calls: HashMap::new(),
            groups: HashMap::new(),
            legs: HashMap::new(),
            expected: HashMap::new(),
            pending: HashMap::new(),
            fresh: None,
            server: None,
        }
    }

    /// New `[calls]` rules (a reload); calls in progress keep what they were told apart as.
    /// The PBX's endpoint lists stay until it sends new ones.
    pub fn set_rules(&mut self, mut rules: Rules) {
        rules.set_endpoints(self.rules.take_endpoints());
        self.rules = rules;
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Calls being tracked (not ended).
    pub fn live_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn call(&self, id: &str) -> Option<&Call> {
        self.calls.get(id).map(|t| &t.call)
    }

    /// The call a PBX channel belongs to.
    pub fn call_of_channel(&self, channel: &str) -> Option<&Call> {
        self.legs.get(channel).and_then(|l| self.call(&l.call))
    }

    /// The call a PBX call id belongs to.
    pub fn call_of_group(&self, group: &str) -> Option<&Call> {
        self.groups.get(group).and_then(|id| self.call(id))
    }

    /// The customer's live channel of a call (what a redirect moves).
    pub fn customer_channel(&self, id: &str) -> Option<String> {
        let t = self.calls.get(id)?;
        t.legs
            .iter()
            .filter(|l| matches!(self.legs.get(*l).map(|l| &l.role), Some(Role::Customer(_))))
            .min()
            .cloned()
    }

    /// True while `extension` is on (or ringing in) a tracked call.
    pub fn agent_busy(&self, extension: &str) -> bool {
        self.legs
            .values()
            .any(|l| l.role == Role::Agent(extension.to_string()))
            || self
                .calls
                .values()
                .any(|t| t.facts.click && t.call.extension.as_deref() == Some(extension))
    }

    /// Registers a click-to-call the engine is about to originate. The returned update
    /// reports it (`call.init`) at once.
    pub fn adopt(&mut self, call: Call, agent_channel: Option<String>) -> Update {
        let id = call.id.clone();
        if let Some(channel) = agent_channel {
            self.expected.insert(channel, id.clone());
        }
        let tracked = Tracked {
            call: call.clone(),
            facts: Facts {
                click: true,
                caller_agent: call.extension.clone(),
                ..Facts::default()
            },
            legs: HashSet::new(),
            groups: HashSet::new(),
            user_ext: call.extension.clone(),
        };
        self.calls.insert(id, tracked);
        Update {
            call,
            emit: vec![Emit::Init],
        }
    }

    /// Records which account a call was attributed to (and its employee's Flowlu user),
    /// so every later update carries them.
    pub fn set_owner(&mut self, id: &str, integration_id: i64, user_id: Option<String>) {
        if let Some(t) = self.calls.get_mut(id) {
            t.call.integration_id = Some(integration_id);
            if user_id.is_some() {
                t.call.user_id = user_id;
                t.user_ext = t.call.extension.clone();
            }
        }
    }

    /// The PBX promised this agent channel id for an adopted call (known only after the
    /// originate was accepted).
    pub fn expect_channel(&mut self, call_id: &str, channel: String) {
        self.expected.insert(channel, call_id.to_string());
    }

    /// Takes back an open call from the database after a restart; the next resync closes
    /// it if the PBX no longer has it.
    pub fn restore(&mut self, call: Call) {
        let facts = Facts {
            click: call.crm_call_id.is_some(),
            caller_agent: match call.direction {
                Direction::Incoming => None,
                _ => call.extension.clone(),
            },
            agent_answered: call.state == CallState::Connected,
            ..Facts::default()
        };
        let mut groups = HashSet::new();
        if !call.pbx_call.is_empty() {
            groups.insert(call.pbx_call.clone());
            self.groups.insert(call.pbx_call.clone(), call.id.clone());
        }
        self.calls.insert(
            call.id.clone(),
            Tracked {
                user_ext: call.extension.clone(),
                call,
                facts,
                legs: HashSet::new(),
                groups,
            },
        );
    }

    /// One PBX event.
    pub fn handle(&mut self, ev: &PbxEvent) -> Vec<Update> {
        let now = ms(ev.at);
        let mut out = Vec::new();
        match &ev.event {
            Event::Connected { server, .. } => {
                self.fresh = Some(HashSet::new());
                if self.server.as_ref().is_some_and(|s| s != server) {
                    self.rules.take_endpoints();
                }
                self.server = Some(server.clone());
            }
            Event::Disconnected { .. } => self.fresh = None,
            Event::ChannelCreated(ch) => {
                if let Some(fresh) = &mut self.fresh {
                    fresh.insert(ch.id.clone());
                }
            }
            _ => {}
        }
        self.settle_pending(&ev.event, now, &mut out);
        match &ev.event {
            Event::ChannelCreated(ch) => self.created(ch, now, &mut out),
            Event::CallTagged { channel, call_id } => self.tagged(channel, call_id, &mut out),
            Event::Ringing { channel } => self.ringing(channel, &mut out),
            Event::DialBegin {
                caller,
                callee,
                dial_string,
                exten,
            } => {
                if let Some(caller) = caller {
                    self.unwrap_local(caller);
                    self.release_held(caller, &mut out);
                }
                self.dial_begin(callee, dial_string, &mut out);
                self.group_dialled(caller.as_deref(), callee, exten);
            }
            Event::DialEnd {
                caller,
                callee,
                status,
            } => {
                if *status == DialStatus::Answer
                    && let Some(caller) = caller
                {
                    self.join_service(caller, callee, now, &mut out);
                    self.caller_connected(caller, now, &mut out);
                }
                self.dial_end(callee, status, now, &mut out)
            }
            Event::Answered { channel } => self.answered(channel, now, &mut out),
            Event::Bridged {
                channel,
                bridge,
                peer,
            } => self.bridged(channel, bridge, peer.as_deref(), now, &mut out),
            Event::Unbridged { channel, .. } => {
                if let Some(leg) = self.legs.get_mut(channel) {
                    leg.bridge = None;
                }
            }
            Event::Transferred(t) => self.transferred(t, now, &mut out),
            Event::Queued { channel, queue } => self.queued(channel, queue),
            Event::RingGroup { channel, group } => self.queued(channel, group),
            Event::HungUp {
                channel,
                cause,
                cause_text,
            } => self.hung_up(channel, *cause, cause_text, now, &mut out),
            Event::RecordingStarted { channel, path } => {
                if let Some(leg) = self.legs.get(channel)
                    && let Some(t) = self.calls.get_mut(&leg.call)
                {
                    t.call.recording_path = Some(path.clone());
                }
            }
            Event::OriginateResult {
                call_id,
                outcome,
                channel,
                detail,
            } => {
                self.originate_result(call_id, *outcome, channel.as_deref(), detail, now, &mut out)
            }
            Event::Resync { channels } => self.resync(channels, now, &mut out),
            Event::Endpoints(list) => self.rules.set_endpoints(list.clone()),
            Event::Connected { .. }
            | Event::CallingIn { .. }
            | Event::Disconnected { .. }
            | Event::DeviceState { .. }
            | Event::Registration { .. } => {}
        }
        out
    }
}

mod groups;
mod joins;
mod legs;
mod origin;
mod wrappers;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod join_tests;
#[cfg(test)]
mod origin_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;
