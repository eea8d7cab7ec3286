//! Calls as Flowlu sees them: one record per call, whatever number of PBX channels it
//! took, with a direction, a final status and the employee who handled it.
//!
//! Owns the call record ([`Call`]), its table ([`store`]), the tracker that turns
//! normalized PBX events into calls, and customer number normalization ([`phone`]).
//! Nothing here does I/O except `store`, which is plain SQL over a connection handed in;
//! the engine that feeds the tracker and writes its effects lives in `crate::engine`.

pub mod phone;
pub mod store;
pub mod tracker;

use serde::Serialize;

/// Who called whom, from the business's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A customer called in (from a trunk / inbound context).
    Incoming,
    /// An employee called a customer (from a phone, or click-to-call from Flowlu).
    Outgoing,
    /// Employee to employee.
    Internal,
}

/// Where the call is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Ringing,
    Connected,
    Ended,
}

/// How the call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Someone talked.
    Answered,
    /// An incoming call nobody answered.
    Missed,
    /// The called party was busy.
    Busy,
    /// The called party did not pick up.
    NoAnswer,
    /// It could not be set up (unreachable, congestion, the agent's phone did not take
    /// the click-to-call).
    Failed,
    /// The caller gave up before anyone answered (outgoing and internal calls).
    Canceled,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),+ }
            }
            pub fn parse(s: &str) -> Option<$t> {
                match s { $($s => Some(<$t>::$v),)+ _ => None }
            }
        }
    };
}

text_enum!(Direction { Incoming => "incoming", Outgoing => "outgoing", Internal => "internal" });
text_enum!(CallState { Ringing => "ringing", Connected => "connected", Ended => "ended" });
text_enum!(CallStatus {
    Answered => "answered",
    Missed => "missed",
    Busy => "busy",
    NoAnswer => "no_answer",
    Failed => "failed",
    Canceled => "canceled",
});

/// One call, as stored and as reported. Times are unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    pub id: String,
    pub integration_id: Option<i64>,
    pub crm_call_id: Option<String>,
    /// The PBX's id for the call (Asterisk `Linkedid`, FreeSWITCH call UUID).
    pub pbx_call: String,
    pub direction: Direction,
    /// The customer's number (for internal calls: the other employee's extension).
    pub phone: String,
    /// The DID called (incoming) or the caller ID used (outgoing).
    pub line: String,
    /// The employee on the call: the one who talked, else the last one who rang.
    pub extension: Option<String>,
    pub user_id: Option<String>,
    pub state: CallState,
    pub status: Option<CallStatus>,
    pub started_at: i64,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    /// Talk time in whole seconds.
    pub duration: Option<i64>,
    /// Ring / wait time in whole seconds (until answered, or until the end).
    pub wait: Option<i64>,
    pub hangup_cause: Option<String>,
    /// The recording file as the PBX named it.
    pub recording_path: Option<String>,
    /// Reported from the PBX's call records (`crate::cdr`), not seen live.
    pub backfilled: bool,
    /// The queue or ring group the call went through, as the PBX named it (an Asterisk
    /// `Queue`, a ring group's extension, a FreeSWITCH `cc_queue`); the
    /// last one when it went through several.
    pub queue: Option<String>,
}

impl Call {
    /// A call that starts ringing at `started_at`: a fresh id, nothing else known yet
    /// (no account, numbers, employee or outcome).
    pub fn new(direction: Direction, started_at: i64) -> Call {
        Call {
            id: new_call_id(),
            integration_id: None,
            crm_call_id: None,
            pbx_call: String::new(),
            direction,
            phone: String::new(),
            line: String::new(),
            extension: None,
            user_id: None,
            state: CallState::Ringing,
            status: None,
            started_at,
            answered_at: None,
            ended_at: None,
            duration: None,
            wait: None,
            hangup_cause: None,
            recording_path: None,
            backfilled: false,
            queue: None,
        }
    }
}

/// A fresh call id: `c` and 20 URL-safe random characters.
pub fn new_call_id() -> String {
    format!("c{}", crate::secret::random_token(15))
}
