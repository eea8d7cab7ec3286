//! Legs of one call connected to legs of another: the tracker's calls follow.
//!
//! - **Pickups.** An employee who dials a feature code (`*8` group pickup, `**101` /
//!   `Pickup()` directed pickup, FreeSWITCH `intercept`) is not on a call of their own
//!   (a *service* call, never reported). When the PBX connects that leg to a leg of
//!   another call, by answering a dial with it (Asterisk moves the picker into the
//!   ringing leg's place, so the caller's `DialEnd` names the picker's channel) or by
//!   bridging the two, the service call's legs move into that call and, being up
//!   already, answer it: the employee who picked up is the one reported as having talked.
//! - **Queue agents called on their own.** FreeSWITCH `mod_callcenter` and `fifo`
//!   originate the agent's leg as a call of its own (provisional: it only rang an
//!   employee) and bridge it with the waiting caller: it joins the caller's call the same
//!   way.
//! - **Attended transfers the PBX does not spell out.** When a leg of an internal call
//!   (the consultation) is bridged with a leg of a customer's call, that leg joins the
//!   customer's call and, when it is an employee's, becomes its employee; the
//!   consultation call ends with its last leg. (FreeSWITCH only bridges the customer
//!   with the transfer target.)
//! - **Transfers the PBX announces** ([`Tracker::transferred`]). Blind: whoever answers
//!   the transferee next is the employee. Attended: the target's leg (and, behind a Local
//!   wrapper, the phone it reached) joins the transferred call; early Asterisk 13 names
//!   only the transferer's two channels and the bridges, so the transferee and target are
//!   the parties of those two calls found in the bridges. Blonde (no target talking yet):
//!   the consultation's ringing legs join, and the target is the employee once it answers.
//!
//! Bridges are known from `Bridged` events: FreeSWITCH names the peer, and Asterisk's
//! bridge members are remembered per leg.

use super::{Direction, Emit, Role, Tracker, Transfer, TransferKind, Update};

impl Tracker {
    /// `channel` joined `bridge`, next to `peer` when the PBX names it.
    pub(super) fn bridged(
        &mut self,
        channel: &str,
        bridge: &str,
        peer: Option<&str>,
        now: i64,
        out: &mut Vec<Update>,
    ) {
        self.promote_leg(channel, out);
        let Some(leg) = self.legs.get_mut(channel) else {
            return;
        };
        leg.bridge = Some(bridge.to_string());
        self.caller_connected(channel, now, out);
        let mut others: Vec<String> = peer.map(str::to_string).into_iter().collect();
        others.extend(
            self.legs
                .iter()
                .filter(|(id, l)| id.as_str() != channel && l.bridge.as_deref() == Some(bridge))
                .map(|(id, _)| id.clone()),
        );
        for other in others {
            if !self.join_service(channel, &other, now, out) {
                self.join_consultation(channel, &other, now, out);
            }
        }
    }

    /// When one of the calls of legs `a` and `b` is a reported internal call and the
    /// other a reported incoming or outgoing one: an attended transfer.
    fn join_consultation(&mut self, a: &str, b: &str, now: i64, out: &mut Vec<Update>) {
        let call_of = |leg: &str| self.legs.get(leg).map(|l| l.call.clone());
        let (Some(ca), Some(cb)) = (call_of(a), call_of(b)) else {
            return;
        };
        let internal = |id: &str| {
            self.calls
                .get(id)
                .map(|t| (t.call.direction == Direction::Internal, t.facts.provisional))
        };
        let (leg, to) = match (internal(&ca), internal(&cb)) {
            (Some((true, false)), Some((false, false))) => (a, cb),
            (Some((false, false)), Some((true, false))) => (b, ca),
            _ => return,
        };
        self.transfer_leg(leg, &to, now, out);
    }

    /// An attended transfer: `leg` (the target's, from the consultation call) joins call
    /// `to`; an employee's leg makes them its employee; the consultation call ends when
    /// that was its last leg.
    pub(super) fn transfer_leg(&mut self, leg: &str, to: &str, now: i64, out: &mut Vec<Update>) {
        let Some(l) = self.legs.get_mut(leg) else {
            return;
        };
        let from = std::mem::replace(&mut l.call, to.to_string());
        // A leg still ringing (a blonde transfer's target) becomes the employee only
        // once it answers (`answered`).
        let role = if l.up { l.role.clone() } else { Role::Unknown };
        if from != to {
            let mut through = None;
            if let Some(old) = self.calls.get_mut(&from) {
                old.legs.remove(leg);
                through = old.call.queue.clone().map(|q| (q, old.facts.queue_named));
            }
            // The target came through the consultation's queue or ring group: so did
            // the transferred call now.
            if let (Some((queue, named)), Some(t)) = (through, self.calls.get_mut(to)) {
                t.call.queue = Some(queue);
                t.facts.queue_named = named;
            }
            if let Some(t) = self.calls.get_mut(to) {
                t.legs.insert(leg.to_string());
            }
        }
        // The target is the call's employee now, internal calls included (README,
        // "extension ... after a transfer: the transfer's target").
        if let Role::Agent(ext) = role
            && let Some(t) = self.calls.get_mut(to)
            && t.call.extension.as_deref() != Some(&ext)
        {
            t.call.extension = Some(ext);
            self.update(to, Emit::State, out);
        }
        if from != to && self.calls.get(&from).is_some_and(|c| c.legs.is_empty()) {
            // The consultation call has no legs left: it is over.
            self.finish(&from, now, None, out);
        }
    }

    /// The one leg in `bridge` other than `not` (none when there are several, or none).
    pub(super) fn other_member(&self, bridge: Option<&str>, not: Option<&str>) -> Option<String> {
        let bridge = bridge?;
        let mut members = self
            .legs
            .iter()
            .filter(|(id, l)| l.bridge.as_deref() == Some(bridge) && Some(id.as_str()) != not)
            .map(|(id, _)| id.clone());
        let one = members.next()?;
        members.next().is_none().then_some(one)
    }

    pub(super) fn transferred(&mut self, tr: &Transfer, now: i64, out: &mut Vec<Update>) {
        if !tr.success {
            return;
        }
        // Early Asterisk 13 names only the transferer's two channels and the bridges.
        let transferee = tr
            .transferee
            .clone()
            .or_else(|| self.party_in_bridges(tr, tr.transferer.as_deref()));
        let Some(to) = transferee.and_then(|t| self.legs.get(&t).map(|l| l.call.clone())) else {
            return;
        };
        match tr.kind {
            // The transferee is sent on; whoever answers it next becomes the employee
            // (`answered`): a target that is down or refuses never talked.
            TransferKind::Blind => {}
            TransferKind::Attended => {
                // The target's leg (from the consultation call) joins the transferred call.
                let target = tr
                    .target
                    .clone()
                    .or_else(|| self.party_in_bridges(tr, tr.second_transferer.as_deref()));
                let Some(target) = target else {
                    // No target talking yet: a "blonde" transfer, completed while the
                    // consultation still rings (Asterisk: `DestType: App`, the transferee
                    // takes over the transferer's dial). The ringing legs join the call.
                    self.take_ringing(tr.second_transferer.as_deref(), &to, now, out);
                    return;
                };
                for leg in self.behind_wrapper(&target) {
                    self.transfer_leg(&leg, &to, now, out);
                }
            }
        }
    }

    /// An attended transfer that names only the transferer's channels and the bridges
    /// (early Asterisk 13): the party of the call of `transferer`'s channel among the
    /// other members of the transfer's bridges. The transferee is the party of the
    /// transferer's first call, the target the party of the consultation, wherever the
    /// PBX has bridged them by now (the transferee may already sit with the target).
    pub(super) fn party_in_bridges(
        &self,
        tr: &Transfer,
        transferer: Option<&str>,
    ) -> Option<String> {
        let call = &self.legs.get(transferer?)?.call;
        let bridges: Vec<&str> = [&tr.orig_bridge, &tr.second_bridge, &tr.bridge]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let not = [tr.transferer.as_deref(), tr.second_transferer.as_deref()];
        let mut parties = self
            .legs
            .iter()
            .filter(|(id, l)| {
                &l.call == call
                    && !not.contains(&Some(id.as_str()))
                    && l.bridge.as_deref().is_some_and(|b| bridges.contains(&b))
            })
            .map(|(id, _)| id.clone());
        let one = parties.next()?;
        parties.next().is_none().then_some(one)
    }

    /// A blonde transfer: every leg of the consultation call of `transferer` but
    /// `transferer` itself (the target's, still ringing, and any wrappers) joins call `to`.
    pub(super) fn take_ringing(
        &mut self,
        transferer: Option<&str>,
        to: &str,
        now: i64,
        out: &mut Vec<Update>,
    ) {
        let Some(from) = transferer
            .and_then(|t| self.legs.get(t))
            .map(|l| l.call.clone())
        else {
            return;
        };
        if from == to {
            return;
        }
        let mut moved: Vec<String> = self
            .calls
            .get(&from)
            .map(|t| {
                t.legs
                    .iter()
                    .filter(|l| Some(l.as_str()) != transferer)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        moved.sort();
        for leg in moved {
            self.transfer_leg(&leg, to, now, out);
        }
    }

    /// When exactly one of the calls of legs `a` and `b` is a service call, moves it into
    /// the other and lets its live legs answer there. True when it did.
    pub(super) fn join_service(
        &mut self,
        a: &str,
        b: &str,
        now: i64,
        out: &mut Vec<Update>,
    ) -> bool {
        let (Some(ca), Some(cb)) = (
            self.legs.get(a).map(|l| l.call.clone()),
            self.legs.get(b).map(|l| l.call.clone()),
        ) else {
            return false;
        };
        if ca == cb {
            return false;
        }
        // Never reported on its own: a feature code's call, or an originate that so far
        // only rang an employee (a FreeSWITCH queue's agent leg, bridged to its caller).
        let service = |id: &str| {
            self.calls.get(id).is_some_and(|t| {
                t.facts.service || t.facts.held || (t.facts.provisional && t.facts.agent_only)
            })
        };
        let (from, to) = match (service(&ca), service(&cb)) {
            (true, false) => (ca, cb),
            (false, true) => (cb, ca),
            _ => return false,
        };
        let moved: Vec<String> = self
            .calls
            .get(&from)
            .map(|t| t.legs.iter().cloned().collect())
            .unwrap_or_default();
        self.merge(&from, &to);
        let mut up: Vec<String> = moved
            .into_iter()
            .filter(|leg| self.legs.get(leg).is_some_and(|l| l.up))
            .collect();
        up.sort();
        for leg in up {
            self.answered(&leg, now, out);
            // The employee who picked up talks, whatever the call's direction.
            if let Some(super::Role::Agent(ext)) = self.legs.get(&leg).map(|l| l.role.clone())
                && let Some(t) = self.calls.get_mut(&to)
                && t.call.state == super::CallState::Connected
                && t.call.extension.as_deref() != Some(&ext)
            {
                t.call.extension = Some(ext);
                self.update(&to, Emit::State, out);
            }
        }
        true
    }

    /// `caller` dials someone: its call, held as an employee's call to an extension, is
    /// a call of its own now (`call.init`).
    pub(super) fn release_held(&mut self, caller: &str, out: &mut Vec<Update>) {
        let Some(id) = self.legs.get(caller).map(|l| l.call.clone()) else {
            return;
        };
        if let Some(t) = self.calls.get_mut(&id)
            && t.facts.held
        {
            t.facts.held = false;
            t.facts.provisional = false;
            self.update(&id, Emit::Init, out);
        }
    }
}
