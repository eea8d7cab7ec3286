//! Who started a call, when the PBX does not say at once.
//!
//! Asterisk creates every channel it dials, every originate and (chan_sip) every caller in
//! state Down: the first channel's state says nothing about who is calling. A channel that
//! would open a new call in state Down is held back (*pending*) until the PBX tells:
//! - it rings in (`Newstate` Ring: [`Event::CallingIn`]) or dials someone (it is a
//!   `DialBegin`'s caller): a caller, the call is started by its party;
//! - the PBX dials it (`DialBegin` callee), rings it, answers it, tags it or bridges it:
//!   the PBX created it (an originate);
//! - it hangs up first: nothing happened, nothing is reported.
//!
//! A Down channel that joins a call already known (same `Linkedid`) is not held: it is a
//! leg the PBX dialled for that call.

use super::{Event, Origin, Tracker, Update};
use crate::pbx::ChannelState;

impl Tracker {
    /// Settles the pending channels `event` speaks about (before the event is handled).
    pub(super) fn settle_pending(&mut self, event: &Event, now: i64, out: &mut Vec<Update>) {
        if self.pending.is_empty() {
            return;
        }
        match event {
            Event::CallingIn { channel } => self.settle(channel, Origin::Inbound, now, out),
            Event::DialBegin { caller, callee, .. } | Event::DialEnd { caller, callee, .. } => {
                if let Some(caller) = caller {
                    self.settle(caller, Origin::Inbound, now, out);
                }
                self.settle(callee, Origin::Outbound, now, out);
            }
            Event::Ringing { channel }
            | Event::Answered { channel }
            | Event::CallTagged { channel, .. }
            | Event::RecordingStarted { channel, .. }
            | Event::Bridged { channel, .. } => self.settle(channel, Origin::Outbound, now, out),
            Event::OriginateResult {
                channel: Some(channel),
                ..
            } => self.settle(channel, Origin::Outbound, now, out),
            Event::HungUp { channel, .. } => {
                self.pending.remove(channel);
            }
            // The snapshot reports the live ones with what they run; the others are gone,
            // unless created since the login (the list may predate them).
            Event::Resync { .. } => {
                let fresh = self.fresh.as_ref();
                self.pending
                    .retain(|id, _| fresh.is_some_and(|f| f.contains(id)));
            }
            _ => {}
        }
    }

    /// Creates the pending channel `id` as a leg of `origin`.
    fn settle(&mut self, id: &str, origin: Origin, now: i64, out: &mut Vec<Update>) {
        let Some(mut ch) = self.pending.remove(id) else {
            return;
        };
        ch.tentative = false;
        ch.origin = origin;
        if origin == Origin::Inbound && ch.state == ChannelState::Down {
            ch.state = ChannelState::Ring;
        }
        self.created(&ch, now, out);
    }
}
