//! Small helpers several layers use: the one clock reading in milliseconds, the one
//! time format of every JSON document we send, what counts as a host name, and time
//! zones by name. Imports nothing of the crate, so any module may import it without an
//! arrow back.

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

/// True for a lower-case DNS host name: dot-separated labels of `a-z`, `0-9` and `-`
/// (not at either end of a label), at most 253 characters, and not an IPv4 literal.
pub fn is_host_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return false;
    }
    // No top-level domain is all digits, so this refuses 127.0.0.1, 2130706433 and
    // other numeric spellings of addresses.
    let tld = labels.last().expect("split yields at least one label");
    !tld.bytes().all(|b| b.is_ascii_digit())
}

/// A time zone by name ("UTC", "Europe/Moscow"), or this host's for "".
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    match name {
        "" => Ok(jiff::tz::TimeZone::system()),
        "UTC" | "utc" | "GMT" => Ok(jiff::tz::TimeZone::UTC),
        name => jiff::tz::TimeZone::get(name).map_err(|e| e.to_string()),
    }
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
