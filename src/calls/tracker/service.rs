//! Service calls joining real ones: an employee who dials a feature code (`*8` group
//! pickup, `**101` / `Pickup()` directed pickup, FreeSWITCH `intercept`) is not on a call
//! of their own. When the PBX connects that leg to a leg of another call, by answering
//! a dial to it (Asterisk moves the picker into the ringing leg's place, so the caller's
//! `DialEnd` names the picker's channel) or by bridging the two (FreeSWITCH names the
//! peer; Asterisk's bridge members are tracked here), the service call's legs move into
//! that call and, being up already, answer it: the employee who picked up is the one
//! reported as having talked.

use super::Tracker;
use super::Update;

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
        let mut others: Vec<String> = peer.map(str::to_string).into_iter().collect();
        others.extend(
            self.legs
                .iter()
                .filter(|(id, l)| id.as_str() != channel && l.bridge.as_deref() == Some(bridge))
                .map(|(id, _)| id.clone()),
        );
        for other in others {
            self.join_service(channel, &other, now, out);
        }
    }

    /// When exactly one of the calls of legs `a` and `b` is a service call, moves it into
    /// the other and lets its live legs answer there.
    pub(super) fn join_service(&mut self, a: &str, b: &str, now: i64, out: &mut Vec<Update>) {
        let (Some(ca), Some(cb)) = (
            self.legs.get(a).map(|l| l.call.clone()),
            self.legs.get(b).map(|l| l.call.clone()),
        ) else {
            return;
        };
        if ca == cb {
            return;
        }
        let service = |id: &str| self.calls.get(id).is_some_and(|t| t.facts.service);
        let (from, to) = match (service(&ca), service(&cb)) {
            (true, false) => (ca, cb),
            (false, true) => (cb, ca),
            _ => return,
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
        }
    }
}
