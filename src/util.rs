//! Small helpers every layer uses: the one clock reading in milliseconds and the one
//! time format of every JSON document we send. Imports nothing of the crate, so any
//! module may import it without an arrow back.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Unix time in milliseconds, the unit of every stored timestamp (calls, outbox rows).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Unix milliseconds as RFC 3339 UTC (`2026-11-23T06:46:08.123Z`); `None` is `null`.
pub fn rfc3339(ms: Option<i64>) -> Value {
    let Some(ms) = ms else {
        return Value::Null;
    };
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_milliseconds() {
        assert_eq!(
            rfc3339(Some(1_795_416_368_123)),
            Value::String("2026-11-23T06:46:08.123Z".into())
        );
        assert_eq!(rfc3339(None), Value::Null);
    }
}
