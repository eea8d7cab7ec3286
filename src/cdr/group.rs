//! Records → calls: one call per real call, however many rows the PBX wrote for it, with
//! direction, employee, customer number, final status and times decided by the live
//! tracker's own rules ([`Rules::role`], [`Rules::placed_by`], [`from_dial`]) applied to
//! the parties the records name.
//!
//! Rows are grouped by any id they share (Asterisk `linkedid` and `uniqueid`, FreeSWITCH
//! UUIDs) and by Asterisk's `Local/…;1` / `;2` halves, which are one path through the PBX.
//! The party that placed the call is the first leg that called in (not the `;2` half of a
//! Local channel, which the PBX itself started); the parties it reached are every
//! destination channel (a Local `;1` half stands for whatever its `;2` half reached).

use std::collections::HashMap;

use super::{Party, Record};
use crate::calls::tracker::{Role, Rules, from_dial};
use crate::calls::{Call, CallState, CallStatus, Direction};
use crate::pbx::DialStatus;

/// One real call: its rows, oldest first.
#[derive(Debug, Clone)]
pub struct Group {
    pub records: Vec<Record>,
}

impl Group {
    /// Every PBX id the call's rows carry (what `calls.pbx_call` may hold for it).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.records.iter().flat_map(|r| r.links.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn end(&self) -> i64 {
        self.records.iter().map(|r| r.end).max().unwrap_or(0)
    }
}

/// The base of a Local channel's name without its `;1`/`;2`, and which half it is.
fn local_half(name: &str) -> Option<(&str, char)> {
    let rest = name.strip_prefix("Local/")?;
    let (base, half) = rest.rsplit_once(';')?;
    let half = half.chars().next()?;
    Some((base, half))
}

struct Sets(Vec<usize>);

impl Sets {
    fn find(&mut self, i: usize) -> usize {
        let mut i = i;
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[b.max(a)] = a.min(b);
        }
    }
}

/// Groups records into calls, each call's rows and the calls in start order.
pub fn group(mut records: Vec<Record>) -> Vec<Group> {
    records.sort_by_key(|r| (r.start, r.end));
    let mut sets = Sets((0..records.len()).collect());
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let locals = [r.caller.as_ref(), r.callee.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|p| local_half(&p.channel.name).map(|(base, _)| format!("local:{base}")));
        for key in r.links.iter().cloned().chain(locals) {
            match by_key.get(&key) {
                Some(&j) => sets.join(j, i),
                None => {
                    by_key.insert(key, i);
                }
            }
        }
    }
    let mut groups: Vec<(usize, Group)> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for (i, r) in records.into_iter().enumerate() {
        let root = sets.find(i);
        let at = *index.entry(root).or_insert_with(|| {
            groups.push((root, Group { records: vec![] }));
            groups.len() - 1
        });
        groups[at].1.records.push(r);
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// The party that placed the call and the record it placed it in.
fn placer(g: &Group) -> Option<(&Record, &Party)> {
    let callers = || {
        g.records
            .iter()
            .filter_map(|r| r.caller.as_ref().map(|p| (r, p)))
    };
    callers()
        .find(|(_, p)| !matches!(local_half(&p.channel.name), Some((_, '2'))))
        .or_else(|| callers().next())
}

/// The parties the call reached, in the order they were dialled.
fn reached(g: &Group) -> Vec<&Party> {
    let mut out = Vec::new();
    for r in &g.records {
        match (&r.caller, &r.callee) {
            // A Local ;1 half stands for what its ;2 half reached (another row).
            (_, Some(callee)) if matches!(local_half(&callee.channel.name), Some((_, '1'))) => {}
            (_, Some(callee)) => out.push(callee),
            // A ;2 half that dialled nobody is the end of the path itself (it answered
            // in the dialplan, or rang out there).
            (Some(caller), None) if matches!(local_half(&caller.channel.name), Some((_, '2'))) => {
                out.push(caller)
            }
            _ => {}
        }
    }
    out
}

/// The call the group is, as the live tracker would have reported it, or `None` when it
/// is nobody's business (a feature code, a call between parties nobody can tell).
pub fn classify(g: &Group, rules: &Rules) -> Option<Call> {
    let (first, caller) = placer(g)?;
    let role = rules.role(&caller.channel);
    let dialled = match (&role, first.dialled.as_str()) {
        (Role::Agent(_), "") => first.dial_target.as_str(),
        (_, dialled) => dialled,
    };
    let placed = rules.placed_by(&role, dialled)?;
    if placed.service {
        return None;
    }
    let parties: Vec<(Role, &Party)> = reached(g)
        .into_iter()
        .map(|p| (rules.role(&p.channel), p))
        .filter(|(r, _)| *r != Role::Unknown)
        .collect();
    let wanted = |r: &Role| match placed.direction {
        Direction::Incoming | Direction::Internal => matches!(r, Role::Agent(_)),
        Direction::Outgoing => matches!(r, Role::Customer(_)),
    };
    // Whom the call was for: those who answered first, else the last who rang.
    let mut answered: Vec<&(Role, &Party)> = parties
        .iter()
        .filter(|(r, p)| wanted(r) && p.answered_at.is_some())
        .collect();
    answered.sort_by_key(|(_, p)| p.answered_at);
    let rang = parties.iter().rfind(|(r, _)| wanted(r));
    // An incoming call forwarded to an outside number (follow-me) is answered there.
    let forwarded = (placed.direction == Direction::Incoming)
        .then(|| parties.iter().find(|(_, p)| p.answered_at.is_some()))
        .flatten();
    // A backend that logs only the calling leg (FreeSWITCH `legs = a`) names nobody
    // reached: that leg's own answer is all there is.
    let only_caller = (parties.is_empty() && first.single_leg)
        .then_some(())
        .and(caller.answered_at)
        .map(|_| ());
    let talked = answered.first().copied().or(forwarded);
    let mut call = Call::new(placed.direction, g.records[0].start);
    call.pbx_call = first.links[0].clone();
    call.phone = placed.phone;
    call.line = if first.did.is_empty() {
        placed.line
    } else {
        crate::calls::tracker::clean_number(&first.did)
    };
    call.extension = placed.extension;
    let employee = |r: &Role| match r {
        Role::Agent(ext) => Some(ext.clone()),
        _ => None,
    };
    match placed.direction {
        Direction::Incoming => {
            call.extension = talked.or(rang).and_then(|(r, _)| employee(r));
        }
        Direction::Internal => {
            if let Some((Role::Agent(ext), _)) = talked.or(rang) {
                call.phone = ext.clone();
            }
        }
        Direction::Outgoing => {
            if call.phone.is_empty()
                && let Some((Role::Customer(number), _)) = talked.or(rang)
            {
                call.phone = crate::calls::tracker::clean_number(number);
            }
        }
    }
    let end = g.end();
    call.state = CallState::Ended;
    call.ended_at = Some(end);
    call.answered_at = talked
        .and_then(|(_, p)| p.answered_at)
        .or(only_caller.and(caller.answered_at));
    call.status = Some(match (call.answered_at, placed.direction) {
        (Some(_), _) => CallStatus::Answered,
        (None, Direction::Incoming) => CallStatus::Missed,
        (None, _) => {
            let dial = rang
                .and_then(|(_, p)| p.dial.clone())
                .or_else(|| caller.dial.clone())
                .unwrap_or(DialStatus::Cancel);
            from_dial(&dial)
        }
    });
    let secs = |from: i64, to: i64| ((to - from).max(0) + 500) / 1000;
    call.wait = Some(secs(call.started_at, call.answered_at.unwrap_or(end)));
    call.duration = Some(call.answered_at.map_or(0, |a| secs(a, end)));
    call.hangup_cause = Some(
        talked
            .or(rang)
            .map(|(_, p)| p.hangup_cause.clone())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| caller.hangup_cause.clone()),
    )
    .filter(|c| !c.is_empty());
    call.recording_path = g.records.iter().find_map(|r| r.recording.clone());
    call.backfilled = true;
    Some(call)
}
