//! How a call ended: its final status, times and cause, from what the tracker saw.
//!
//! The rules (README, "Call status"):
//! - answered: someone talked (the call was connected);
//! - missed: an incoming call nobody answered (whatever the caller or the PBX did);
//! - a click-to-call whose employee never answered is failed, with the reason (the
//!   employee's phone was busy, did not answer, or is unreachable) as its cause;
//! - otherwise the last dial attempt to the called party decides: busy, no_answer,
//!   canceled (the caller gave up before an answer), failed (unreachable, congestion);
//! - with no dial result, the called party's hang-up cause decides the same way.

use super::Facts;
use crate::calls::{Call, CallState, CallStatus, Direction};
use crate::pbx::{DialStatus, OriginateOutcome};

/// The status of a call nobody answered, from how the last dial attempt to the called
/// party ended (also used for the PBX's call records, `crate::cdr`).
pub fn from_dial(status: &DialStatus) -> CallStatus {
    match status {
        DialStatus::Busy => CallStatus::Busy,
        DialStatus::NoAnswer => CallStatus::NoAnswer,
        DialStatus::Cancel => CallStatus::Canceled,
        DialStatus::Answer
        | DialStatus::ChanUnavail
        | DialStatus::Congestion
        | DialStatus::Other(_) => CallStatus::Failed,
    }
}

/// Q.850 causes: 17 busy, 18/19 no answer, 16/31 normal clearing (the caller hung up).
fn from_cause(cause: Option<&(u16, String)>) -> CallStatus {
    match cause.map(|c| c.0) {
        Some(17) => CallStatus::Busy,
        Some(18 | 19) => CallStatus::NoAnswer,
        Some(16 | 31) | None => CallStatus::Canceled,
        Some(_) => CallStatus::Failed,
    }
}

fn agent_failure(facts: &Facts) -> String {
    // The employee's leg's own hang-up cause, when neither an originate result nor a dial
    // result said more.
    let from_cause = || match facts.agent_cause.as_ref().map(|c| c.0) {
        Some(17 | 21) => Some(DialStatus::Busy),
        Some(18 | 19) => Some(DialStatus::NoAnswer),
        Some(1 | 3 | 20 | 27 | 38) => Some(DialStatus::ChanUnavail),
        Some(34 | 42) => Some(DialStatus::Congestion),
        _ => None,
    };
    let dial = facts.agent_dial.clone().or_else(from_cause);
    let why = match (&facts.originate, &dial) {
        (Some((OriginateOutcome::Busy, _)), _) | (None, Some(DialStatus::Busy)) => "is busy",
        (Some((OriginateOutcome::NoAnswer, _)), _) | (None, Some(DialStatus::NoAnswer)) => {
            "did not answer"
        }
        (Some((OriginateOutcome::Unavailable, _)), _) | (None, Some(DialStatus::ChanUnavail)) => {
            "is unreachable"
        }
        (Some((OriginateOutcome::Congestion, _)), _) | (None, Some(DialStatus::Congestion)) => {
            "could not be reached (congestion)"
        }
        _ => "did not take the call",
    };
    format!("the employee's phone {why}")
}

fn cause_text(cause: &(u16, String)) -> String {
    if cause.1.is_empty() {
        cause.0.to_string()
    } else {
        format!("{} {}", cause.0, cause.1)
    }
}

/// Fills in the final state of `call` ended at `now`.
pub fn finalize(call: &mut Call, facts: &Facts, now: i64, why: Option<&str>) {
    call.state = CallState::Ended;
    call.ended_at = Some(now.max(call.started_at));
    let end = call.ended_at.unwrap_or(now);
    let answered = call.answered_at.is_some();
    let status = if answered {
        CallStatus::Answered
    } else {
        match call.direction {
            Direction::Incoming => CallStatus::Missed,
            Direction::Outgoing if facts.click && !facts.agent_answered => CallStatus::Failed,
            Direction::Outgoing => {
                facts
                    .customer_dial
                    .as_ref()
                    .map(from_dial)
                    .unwrap_or_else(|| {
                        from_cause(facts.customer_cause.as_ref().or(facts.last_cause.as_ref()))
                    })
            }
            Direction::Internal => facts
                .agent_dial
                .as_ref()
                .map(from_dial)
                .unwrap_or_else(|| from_cause(facts.last_cause.as_ref())),
        }
    };
    call.status = Some(status);
    call.hangup_cause = Some(match why {
        Some(why) => why.to_string(),
        None if !answered
            && call.direction == Direction::Outgoing
            && facts.click
            && !facts.agent_answered =>
        {
            agent_failure(facts)
        }
        None => facts
            .customer_cause
            .as_ref()
            .or(facts.last_cause.as_ref())
            .map(cause_text)
            .unwrap_or_default(),
    });
    let secs = |from: i64, to: i64| ((to - from).max(0) + 500) / 1000;
    call.wait = Some(secs(call.started_at, call.answered_at.unwrap_or(end)));
    call.duration = Some(call.answered_at.map_or(0, |a| secs(a, end)));
}
