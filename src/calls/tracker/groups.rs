//! Queues and ring groups: the name of what a call went through
//! ([`Call::queue`](crate::calls::Call::queue)).
//!
//! - **Queues** are named by the PBX: Asterisk's `QueueCallerJoin` / `AgentCalled` /
//!   `QueueCallerAbandon` `Queue`, FreeSWITCH mod_callcenter's `cc_queue` on the caller or
//!   on the agent leg it originates ([`Event::Queued`](crate::pbx::Event::Queued)). The
//!   last queue the call entered is kept.
//! - **FreePBX ring groups** are named by the dialplan: the caller's channel (or a
//!   `Local/600@ext-group` half) runs in context `ext-group` at the group's number
//!   ([`Event::RingGroup`](crate::pbx::Event::RingGroup)), then dials the members from
//!   `macro-dial` at `s`. Like a queue, the last group entered is kept.
//! - **Other ring groups** are not announced; what the PBX does says it: one channel dials two
//!   or more parties at once (both still ringing), from extension `X` (Asterisk's
//!   `DialBegin` `Exten`, which is the group's number in a plain `Dial(A&B)` or in a Local
//!   wrapper `Local/600@ext-group`). `X` names the group when it is a number and not the
//!   DID the caller dialled (a DID that rings several phones itself is no group beyond the
//!   `line`). A queue the PBX named is never replaced by a ring group's number (a queue
//!   rings its members from its own extension too).
//!
//! Nothing is reported for the name alone: it rides on the call's next update (ringing,
//! answer, end), and so reaches the stored call, `calls.list` and the result callbacks.

use super::Tracker;

impl Tracker {
    /// `channel` is in queue `queue` (or in the PBX's ring group `queue`).
    pub(super) fn queued(&mut self, channel: &str, queue: &str) {
        let Some(id) = self.legs.get(channel).map(|l| l.call.clone()) else {
            return;
        };
        if let Some(t) = self.calls.get_mut(&id) {
            t.call.queue = Some(queue.to_string());
            t.facts.queue_named = true;
        }
    }

    /// `caller` dialled `callee` from extension `exten`: when `caller` is now ringing two
    /// parties at once, the call went through ring group `exten`.
    pub(super) fn group_dialled(&mut self, caller: Option<&str>, callee: &str, exten: &str) {
        let (Some(caller), Some(leg)) = (caller, self.legs.get_mut(callee)) else {
            return;
        };
        leg.dialled_by = Some((caller.to_string(), exten.to_string()));
        let id = leg.call.clone();
        let number = !exten.is_empty() && exten.bytes().all(|b| b.is_ascii_digit());
        if !number {
            return;
        }
        let ringing = self
            .legs
            .values()
            .filter(|l| {
                l.call == id
                    && !l.up
                    && l.dialled_by
                        .as_ref()
                        .is_some_and(|(c, e)| c == caller && e == exten)
            })
            .count();
        if let Some(t) = self.calls.get_mut(&id)
            && ringing >= 2
            && !t.facts.queue_named
            && t.call.line != exten
        {
            t.call.queue = Some(exten.to_string());
        }
    }
}
