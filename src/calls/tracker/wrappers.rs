//! Local / loopback channel pairs as transparent wrappers.
//!
//! Asterisk `Local/X@ctx` and FreeSWITCH `loopback/X/ctx` make two halves: one stands in
//! for the party being called (`;1`, `-a`), the other runs extension `X` in `ctx`
//! (`;2`, `-b`). When that running half dials someone (a ring group or queue member's
//! phone, a follow-me number), the pair is plumbing: the party is whoever it dials, so
//! neither half is an employee or a customer of its own (`Local/401@ring-group` is not
//! employee 401, and its answer is not the answer of the phone that picked up). A pair
//! whose running half dials no one (it answers or plays something itself) keeps the role
//! its name gives it.

use super::{Role, Tracker};

impl Tracker {
    /// `caller` dials someone: when it is the running half of a Local / loopback pair,
    /// both halves become plumbing.
    pub(super) fn unwrap_local(&mut self, caller: &str) {
        let Some(leg) = self.legs.get(caller) else {
            return;
        };
        let Some((pair, true)) = leg.local.clone() else {
            return;
        };
        let call = leg.call.clone();
        let mut named = Vec::new();
        for l in self.legs.values_mut() {
            if l.local.as_ref().is_some_and(|(p, _)| *p == pair)
                && let Role::Agent(ext) = std::mem::replace(&mut l.role, Role::Unknown)
            {
                named.push(ext);
            }
        }
        // An originate that so far only reached the wrapper did not reach its employee.
        if let Some(t) = self.calls.get_mut(&call)
            && t.facts.provisional
            && t.facts.agent_only
            && t.facts
                .caller_agent
                .as_ref()
                .is_some_and(|e| named.contains(e))
        {
            t.facts.caller_agent = None;
            t.facts.agent_only = false;
            t.call.extension = None;
        }
    }

    /// `leg` and, when it is a Local / loopback half, the party behind it: its other
    /// half and the leg bridged with that half (the phone a ring-group wrapper reached).
    /// The party comes last.
    pub(super) fn behind_wrapper(&self, leg: &str) -> Vec<String> {
        let mut chain = vec![leg.to_string()];
        let Some((pair, _)) = self.legs.get(leg).and_then(|l| l.local.clone()) else {
            return chain;
        };
        let Some(half) = self
            .legs
            .iter()
            .find(|(id, l)| id.as_str() != leg && l.local.as_ref().is_some_and(|(p, _)| *p == pair))
            .map(|(id, _)| id.clone())
        else {
            return chain;
        };
        let bridge = self.legs.get(&half).and_then(|l| l.bridge.clone());
        chain.push(half.clone());
        if let Some(party) = self.other_member(bridge.as_deref(), Some(&half)) {
            chain.push(party);
        }
        chain
    }
}
