//! The JSON bodies callbacks receive. Every key is always present (null when unknown), so
//! receivers can rely on one shape; the README documents it.

use serde_json::{Value, json};

use crate::calls::{Call, CallStatus};
use crate::util::rfc3339;

/// `call.completed` (the call ended) or `call.recording` (its recording was published
/// later): the complete record of the call as it stands.
pub fn call_event(
    kind: &str,
    event_id: &str,
    call: &Call,
    uuid: Option<&str>,
    recording_url: Option<&str>,
    now_ms: i64,
) -> Value {
    let text = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    json!({
        "id": event_id,
        "event": kind,
        "created_at": rfc3339(Some(now_ms)),
        "test": false,
        "call": {
            "id": call.id,
            "crm_call_id": call.crm_call_id,
            "uuid": uuid,
            "status": call.status.map(CallStatus::as_str),
            "direction": call.direction.as_str(),
            "duration": call.duration,
            "wait": call.wait,
            "phone": text(&call.phone),
            "line": text(&call.line),
            "agent": {
                "extension": call.extension,
                "user_id": call.user_id,
            },
            "started_at": rfc3339(Some(call.started_at)),
            "answered_at": rfc3339(call.answered_at),
            "ended_at": rfc3339(call.ended_at),
            "hangup_cause": call.hangup_cause,
            "recorded": call.recording_path.is_some(),
            "recording_url": recording_url,
            "backfilled": call.backfilled,
            "queue": call.queue,
        }
    })
}

/// The "send test event" body: the same shape with made-up call data and `test: true`.
pub fn test_event(event_id: &str, now_ms: i64) -> Value {
    let call = Call {
        id: "c_test".into(),
        crm_call_id: Some("crm_test".into()),
        phone: "15550100000".into(),
        extension: Some("100".into()),
        state: crate::calls::CallState::Ended,
        status: Some(CallStatus::Answered),
        answered_at: Some(now_ms - 60_000),
        ended_at: Some(now_ms),
        duration: Some(60),
        wait: Some(5),
        hangup_cause: Some("16 Normal Clearing".into()),
        queue: Some("sales".into()),
        ..Call::new(crate::calls::Direction::Outgoing, now_ms - 65_000)
    };
    let mut v = call_event("test", event_id, &call, Some("test-uuid"), None, now_ms);
    v["test"] = json!(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_present() {
        let v = test_event("ev1", 1_795_416_613_184);
        assert_eq!(v["event"], "test");
        assert_eq!(v["test"], true);
        let call = v["call"].as_object().unwrap();
        for key in [
            "id",
            "crm_call_id",
            "uuid",
            "status",
            "direction",
            "duration",
            "wait",
            "phone",
            "line",
            "agent",
            "started_at",
            "answered_at",
            "ended_at",
            "hangup_cause",
            "recorded",
            "recording_url",
            "queue",
        ] {
            assert!(call.contains_key(key), "{key}");
        }
        assert_eq!(v["call"]["ended_at"], "2026-11-23T06:50:13.184Z");
        assert_eq!(v["call"]["agent"]["extension"], "100");
        assert_eq!(v["call"]["queue"], "sales");
        assert!(v["call"]["recording_url"].is_null() && v["call"]["line"].is_null());
    }
}
