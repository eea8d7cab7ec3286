//! The tracker's event handlers: legs joining, ringing, answering, moving and leaving.

use std::collections::HashSet;

use super::status;
use super::{
    ADOPTED_PATIENCE_MS, Channel, ChannelSnapshot, ChannelState, DialStatus, Emit, Facts, Leg,
    Origin, OriginateOutcome, Role, Tracked, Tracker, Update, clean_number,
};
use crate::calls::{Call, CallState, Direction};

impl Tracker {
    pub(super) fn update(&mut self, id: &str, emit: Emit, out: &mut Vec<Update>) {
        if let Some(t) = self.calls.get_mut(id)
            && !t.facts.provisional
        {
            out.push(Update {
                call: t.reported(),
                emit: vec![emit],
            });
        }
    }

    pub(super) fn created(&mut self, ch: &Channel, now: i64, out: &mut Vec<Update>) {
        if self.legs.contains_key(&ch.id) {
            return; // seen already (a resync and a live event can both report it)
        }
        let role = self.rules.role(ch);
        let claimed = ch
            .call_id
            .clone()
            .filter(|id| self.calls.contains_key(id))
            .or_else(|| self.expected.remove(&ch.id))
            .or_else(|| self.groups.get(&ch.call).cloned());
        let id = match claimed {
            Some(id) => id,
            None if ch.tentative && !ch.local => {
                // Who started it is not known yet (`origin`).
                self.pending.insert(ch.id.clone(), ch.clone());
                return;
            }
            None => self.open(ch, &role, now, out),
        };
        self.groups.entry(ch.call.clone()).or_insert(id.clone());
        let Some(t) = self.calls.get_mut(&id) else {
            return;
        };
        t.groups.insert(ch.call.clone());
        if t.call.pbx_call.is_empty() {
            t.call.pbx_call = ch.call.clone();
        }
        if t.facts.click && t.legs.is_empty() && t.call.answered_at.is_none() {
            // Times of one call come from one clock: the PBX's, from its first leg on.
            t.call.started_at = t.call.started_at.min(now);
        }
        t.legs.insert(ch.id.clone());
        // A leg the PBX created for an employee's held call: it dialled for it.
        let release = t.facts.held && t.legs.len() > 1;
        if let Role::Customer(number) = &role {
            let number = clean_number(number);
            if t.call.phone.is_empty()
                && t.call.direction != Direction::Internal
                && !number.is_empty()
            {
                t.call.phone = number;
            }
        }
        self.legs.insert(
            ch.id.clone(),
            Leg {
                call: id,
                role,
                up: ch.state == ChannelState::Up,
                bridge: None,
                dialled: ch.origin == Origin::Outbound && !ch.local,
                local: ch
                    .local
                    .then(|| super::rules::local_pair(&ch.name))
                    .flatten(),
                dialled_by: None,
            },
        );
        if release {
            self.release_held(&ch.id, out);
        }
    }

    /// A new call from its first leg.
    fn open(&mut self, ch: &Channel, role: &Role, now: i64, out: &mut Vec<Update>) -> String {
        let mut facts = Facts {
            originated: ch.origin == Origin::Outbound,
            ..Facts::default()
        };
        let (direction, phone, line, extension) = match (role, ch.origin) {
            (Role::Customer(_) | Role::Agent(_), Origin::Inbound) => {
                let placed = self
                    .rules
                    .placed_by(role, &ch.exten)
                    .expect("a customer or an employee placed it");
                facts.caller_agent = placed.extension.clone();
                // A feature code (`*97` voicemail, `*8` pickup, `#…`) is the employee
                // talking to the PBX, not to a customer: a service call, never reported.
                facts.service = placed.service;
                // An employee calling an extension: reported once the PBX dials it (a
                // channel the PBX answers at once may be a pickup's, `joins`).
                facts.held = !placed.service && placed.direction == Direction::Internal;
                facts.provisional = placed.service || facts.held;
                (
                    placed.direction,
                    placed.phone,
                    placed.line,
                    placed.extension,
                )
            }
            (Role::Agent(ext), Origin::Outbound) => {
                // The PBX rings an employee first: an originate (perhaps ours, tagged a
                // moment later; or a queue's, FreeSWITCH mod_callcenter / fifo, to be
                // bridged with a waiting caller). Report nothing until it is clearly a
                // call of its own: it dials someone.
                facts.provisional = true;
                facts.agent_only = true;
                facts.caller_agent = Some(ext.clone());
                (
                    Direction::Outgoing,
                    String::new(),
                    String::new(),
                    Some(ext.clone()),
                )
            }
            (Role::Customer(number), Origin::Outbound) => {
                facts.provisional = true;
                (
                    Direction::Outgoing,
                    clean_number(number),
                    String::new(),
                    None,
                )
            }
            (Role::Unknown, Origin::Inbound) => (
                Direction::Incoming,
                clean_number(&ch.caller_number),
                clean_number(&ch.exten),
                None,
            ),
            // An originate of dialplan plumbing (`Local/ID42@click-to-dial`): whom it
            // rings decides (the first employee places the call; `promote`).
            (Role::Unknown, Origin::Outbound) => {
                facts.provisional = true;
                (Direction::Outgoing, String::new(), String::new(), None)
            }
        };
        let call = Call {
            pbx_call: ch.call.clone(),
            phone,
            line,
            extension,
            ..Call::new(direction, now)
        };
        let id = call.id.clone();
        let provisional = facts.provisional;
        self.calls.insert(
            id.clone(),
            Tracked {
                call,
                facts,
                legs: HashSet::new(),
                groups: HashSet::new(),
                user_ext: None,
            },
        );
        if !provisional {
            self.update(&id, Emit::Init, out);
        }
        id
    }

    /// A provisional call whose leg rings, is dialled or answers is a call of its own;
    /// one that so far only rang an employee becomes one only once someone is dialled.
    pub(super) fn promote_leg(&mut self, channel: &str, out: &mut Vec<Update>) {
        self.promote(channel, false, out);
    }

    /// `channel` of a provisional (PBX-originated) call rang, answered or (`dialled`)
    /// was dialled. Plumbing never makes a call of its own; the first employee an
    /// originate rings is the one placing the call (reported once they reach someone);
    /// a customer's leg, or another employee dialled, makes it a call.
    fn promote(&mut self, channel: &str, dialled: bool, out: &mut Vec<Update>) {
        let Some(leg) = self.legs.get(channel) else {
            return;
        };
        let (id, role) = (leg.call.clone(), leg.role.clone());
        let Some(t) = self.calls.get_mut(&id) else {
            return;
        };
        if !t.facts.provisional || t.facts.service || t.facts.held {
            return;
        }
        match role {
            Role::Unknown => return,
            Role::Agent(ext) if t.facts.caller_agent.is_none() => {
                t.facts.caller_agent = Some(ext.clone());
                t.facts.agent_only = true;
                t.call.extension = Some(ext);
                return;
            }
            Role::Agent(ext)
                if t.facts.agent_only
                    && (!dialled || t.facts.caller_agent.as_deref() == Some(&ext)) =>
            {
                return;
            }
            _ => {}
        }
        t.facts.provisional = false;
        t.facts.agent_only = false;
        self.update(&id, Emit::Init, out);
    }

    /// The PBX dials `callee` (`dial_string` as the dialplan wrote it).
    pub(super) fn dial_begin(&mut self, callee: &str, dial_string: &str, out: &mut Vec<Update>) {
        if let Some(leg) = self.legs.get(callee)
            && let Some(t) = self.calls.get_mut(&leg.call)
        {
            match &leg.role {
                // An originate's employee dials a colleague: an internal call.
                Role::Agent(ext)
                    if t.facts.agent_only
                        && t.facts.provisional
                        && t.facts.caller_agent.as_ref() != Some(ext) =>
                {
                    t.call.direction = Direction::Internal;
                    t.call.phone = ext.clone();
                }
                // A trunk leg shows no number; the dial string does (`89161234567@trunk`).
                Role::Customer(_)
                    if t.call.phone.is_empty() && t.call.direction == Direction::Outgoing =>
                {
                    t.call.phone = super::rules::dialled_number(dial_string);
                }
                _ => {}
            }
        }
        self.promote(callee, true, out);
    }

    /// Our call id showed up on a leg: that leg's call is the click-to-call `call_id`.
    pub(super) fn tagged(&mut self, channel: &str, call_id: &str, out: &mut Vec<Update>) {
        let Some(from) = self.legs.get(channel).map(|l| l.call.clone()) else {
            return;
        };
        if from == call_id || !self.calls.contains_key(call_id) {
            return;
        }
        if self.calls.get(&from).is_some_and(|t| t.facts.provisional) {
            self.merge(&from, call_id);
        }
        let _ = out;
    }

    /// Moves every leg and PBX call id of `from` into `to` and forgets `from`.
    pub(super) fn merge(&mut self, from: &str, to: &str) {
        let Some(old) = self.calls.remove(from) else {
            return;
        };
        for leg in &old.legs {
            if let Some(l) = self.legs.get_mut(leg) {
                l.call = to.to_string();
            }
        }
        for group in &old.groups {
            self.groups.insert(group.clone(), to.to_string());
        }
        if let Some(t) = self.calls.get_mut(to) {
            t.legs.extend(old.legs);
            t.groups.extend(old.groups);
            if t.call.pbx_call.is_empty() {
                t.call.pbx_call = old.call.pbx_call;
            }
            if t.call.recording_path.is_none() {
                t.call.recording_path = old.call.recording_path;
            }
            if t.call.queue.is_none() {
                // A queue's own call to its agent (FreeSWITCH mod_callcenter) names it.
                t.call.queue = old.call.queue;
                t.facts.queue_named = old.facts.queue_named;
            }
        }
    }

    pub(super) fn ringing(&mut self, channel: &str, out: &mut Vec<Update>) {
        self.promote_leg(channel, out);
        let Some(leg) = self.legs.get(channel) else {
            return;
        };
        let (id, role) = (leg.call.clone(), leg.role.clone());
        let Some(t) = self.calls.get_mut(&id) else {
            return;
        };
        if let Role::Agent(ext) = role
            && t.call.direction == Direction::Incoming
            && t.call.state == CallState::Ringing
            && t.call.extension.as_deref() != Some(&ext)
        {
            t.call.extension = Some(ext);
            self.update(&id, Emit::State, out);
        }
    }

    pub(super) fn dial_end(
        &mut self,
        callee: &str,
        status: &DialStatus,
        now: i64,
        out: &mut Vec<Update>,
    ) {
        let Some(leg) = self.legs.get(callee) else {
            return;
        };
        let (id, role) = (leg.call.clone(), leg.role.clone());
        if let Some(t) = self.calls.get_mut(&id) {
            match role {
                Role::Agent(_) => t.facts.agent_dial = Some(status.clone()),
                Role::Customer(_) => t.facts.customer_dial = Some(status.clone()),
                Role::Unknown => {}
            }
        }
        // Its answer counts once (its Newstate Up usually came first).
        if *status == DialStatus::Answer && self.legs.get(callee).is_some_and(|l| !l.up) {
            self.answered(callee, now, out);
        }
    }

    pub(super) fn answered(&mut self, channel: &str, now: i64, out: &mut Vec<Update>) {
        self.promote_leg(channel, out);
        let Some(leg) = self.legs.get_mut(channel) else {
            return;
        };
        let was_up = std::mem::replace(&mut leg.up, true);
        let (id, role, dialled) = (leg.call.clone(), leg.role.clone(), leg.dialled);
        let Some(t) = self.calls.get_mut(&id) else {
            return;
        };
        let caller = t.facts.caller_agent.clone();
        let connects = match (&role, t.call.direction) {
            (Role::Agent(ext), Direction::Incoming) => Some(Some(ext.clone())),
            // The PBX forwarded the caller to an outside number (follow-me, a mobile)
            // and it answered: someone talks once the caller is connected to it (a
            // mobile's call-acceptance prompt may still refuse it), for the employee who
            // last rang ([`Tracker::caller_connected`]).
            (Role::Customer(_), Direction::Incoming) if dialled => {
                t.facts.forward_up = true;
                None
            }
            (Role::Agent(_), Direction::Outgoing) if t.facts.click => {
                t.facts.agent_answered = true;
                None
            }
            // An originate with no employee on it yet: the first outside party to answer
            // is the one the PBX called first (a callback), not someone talking yet.
            (Role::Customer(_), Direction::Outgoing)
                if t.facts.originated && caller.is_none() && !t.facts.first_party_up =>
            {
                t.facts.first_party_up = true;
                None
            }
            (Role::Customer(_), Direction::Outgoing) => Some(None),
            (Role::Agent(ext), Direction::Outgoing)
                if t.facts.originated && t.facts.first_party_up && !t.facts.click =>
            {
                Some(Some(ext.clone()))
            }
            (Role::Agent(ext), _)
                if t.call.state == CallState::Connected
                    && Some(ext) != caller.as_ref()
                    && !(was_up && t.call.direction == Direction::Internal) =>
            {
                // Another employee answered a connected call: a transfer landed, and
                // the one who took it is the call's employee (internal calls too).
                Some(Some(ext.clone()))
            }
            (Role::Agent(ext), Direction::Internal) if Some(ext) != caller.as_ref() => Some(None),
            _ => None,
        };
        let Some(agent) = connects else {
            return;
        };
        if t.call.state == CallState::Ringing {
            t.call.state = CallState::Connected;
            t.call.answered_at = Some(now);
            if let Some(ext) = agent {
                t.call.extension = Some(ext);
            }
            self.update(&id, Emit::Connected, out);
        } else if let Some(ext) = agent
            && t.call.state == CallState::Connected
            && t.call.extension.as_deref() != Some(&ext)
        {
            t.call.extension = Some(ext);
            self.update(&id, Emit::State, out);
        }
    }

    /// The caller's leg `channel` of an incoming call got connected (its own dial was
    /// answered, or it entered a bridge): when an outside number the PBX forwarded it
    /// to is up, that is the answer.
    pub(super) fn caller_connected(&mut self, channel: &str, now: i64, out: &mut Vec<Update>) {
        let Some(leg) = self.legs.get(channel) else {
            return;
        };
        let (id, caller) = (
            leg.call.clone(),
            matches!(leg.role, Role::Customer(_)) && !leg.dialled,
        );
        let Some(t) = self.calls.get_mut(&id) else {
            return;
        };
        if caller
            && t.facts.forward_up
            && t.call.direction == Direction::Incoming
            && t.call.state == CallState::Ringing
        {
            t.call.state = CallState::Connected;
            t.call.answered_at = Some(now);
            self.update(&id, Emit::Connected, out);
        }
    }

    pub(super) fn hung_up(
        &mut self,
        channel: &str,
        cause: u16,
        text: &str,
        now: i64,
        out: &mut Vec<Update>,
    ) {
        let Some(leg) = self.legs.remove(channel) else {
            return;
        };
        let Some(t) = self.calls.get_mut(&leg.call) else {
            return;
        };
        t.legs.remove(channel);
        let cause = (cause, text.to_string());
        match leg.role {
            Role::Customer(_) => t.facts.customer_cause = Some(cause.clone()),
            Role::Agent(_) if cause.0 != 0 => t.facts.agent_cause = Some(cause.clone()),
            _ => {}
        }
        t.facts.last_cause = Some(cause);
        if t.legs.is_empty() {
            self.finish(&leg.call, now, None, out);
        }
    }

    /// Ends a call: decides its status, reports `call.completed`, forgets it.
    pub(super) fn finish(&mut self, id: &str, now: i64, why: Option<&str>, out: &mut Vec<Update>) {
        let Some(mut t) = self.calls.remove(id) else {
            return;
        };
        for group in &t.groups {
            if self.groups.get(group).map(String::as_str) == Some(id) {
                self.groups.remove(group);
            }
        }
        for leg in &t.legs {
            self.legs.remove(leg);
        }
        self.expected.retain(|_, call| call != id);
        if t.facts.held {
            // An employee's call the PBX never dialled for (the extension was busy or
            // down before it rang): reported now, from its start.
            out.push(Update {
                call: t.reported(),
                emit: vec![Emit::Init],
            });
        } else if t.facts.provisional {
            return; // a PBX originate that never became a call: nothing was reported
        }
        status::finalize(&mut t.call, &t.facts, now, why);
        out.push(Update {
            call: t.reported(),
            emit: vec![Emit::Completed],
        });
    }

    pub(super) fn originate_result(
        &mut self,
        call_id: &str,
        outcome: OriginateOutcome,
        channel: Option<&str>,
        detail: &str,
        now: i64,
        out: &mut Vec<Update>,
    ) {
        if let Some(ch) = channel
            && let Some(from) = self.legs.get(ch).map(|l| l.call.clone())
            && from != call_id
            && self.calls.get(&from).is_some_and(|t| t.facts.provisional)
        {
            self.merge(&from, call_id);
        }
        let Some(t) = self.calls.get_mut(call_id) else {
            return;
        };
        t.facts.originate = Some((outcome, detail.to_string()));
        if outcome == OriginateOutcome::Answered {
            t.facts.agent_answered = true;
        } else if t.legs.is_empty() {
            self.finish(call_id, now, None, out);
        }
    }

    pub(super) fn resync(&mut self, channels: &[ChannelSnapshot], now: i64, out: &mut Vec<Update>) {
        let live: HashSet<&str> = channels.iter().map(|c| c.id.as_str()).collect();
        // Seen created on this connection: alive unless the PBX says otherwise.
        let fresh = self.fresh.take().unwrap_or_default();
        let gone: Vec<String> = self
            .legs
            .keys()
            .filter(|id| !live.contains(id.as_str()) && !fresh.contains(id.as_str()))
            .cloned()
            .collect();
        for leg in gone {
            self.hung_up(&leg, 0, "ended while the PBX connection was down", now, out);
        }
        for snap in channels {
            if self.legs.contains_key(&snap.id) {
                continue;
            }
            let ch = channel_of(snap);
            self.created(&ch, now, out);
            // Live already: whatever it dials was dialled while we were away.
            self.release_held(&snap.id, out);
            if let Some(leg) = self.legs.get_mut(&snap.id) {
                // Only Asterisk's AppDial says for sure that the PBX dialled a leg; a guess
                // must not let a caller's own leg connect an incoming call.
                leg.dialled &= snap.application.starts_with("AppDial");
            }
            if snap.state == ChannelState::Ringing {
                self.ringing(&snap.id, out);
            }
        }
        for snap in channels.iter().filter(|c| c.state == ChannelState::Up) {
            if self.legs.get(&snap.id).is_some_and(|l| !l.up) {
                self.answered(&snap.id, now, out);
            }
        }
        let stale: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, t)| {
                t.legs.is_empty()
                    && (!t.facts.click || now - t.call.started_at > ADOPTED_PATIENCE_MS)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.finish(
                &id,
                now,
                Some("ended while the appliance was not connected to the PBX"),
                out,
            );
        }
    }
}

/// A snapshot row as if the channel had just been created.
fn channel_of(s: &ChannelSnapshot) -> Channel {
    // A channel running Dial (or anything else) is a caller; Asterisk's dialled legs run
    // AppDial. With no application, a leg still ringing in is the caller.
    let origin = if s.application.starts_with("AppDial") {
        Origin::Outbound
    } else if s.application.is_empty() {
        if s.state == ChannelState::Ring {
            Origin::Inbound
        } else {
            Origin::Outbound
        }
    } else {
        Origin::Inbound
    };
    Channel {
        id: s.id.clone(),
        call: s.call.clone(),
        name: s.name.clone(),
        caller_number: s.caller_number.clone(),
        caller_name: s.caller_name.clone(),
        exten: s.exten.clone(),
        context: s.context.clone(),
        origin,
        state: s.state,
        local: s.local,
        endpoint: s.endpoint.clone(),
        peer: None,
        call_id: None,
        tentative: false,
    }
}
