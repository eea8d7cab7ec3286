//! `[outbox]` and `[routing]`: how call events are delivered to Flowlu and how long an
//! incoming call waits for the CRM's routing decision.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources, parse_duration};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    pub retry_schedule: Vec<String>,
    pub jitter_percent: u64,
    pub throttle_floor: String,
    pub retry_after_max: String,
    pub hold_recheck: String,
    pub max_in_flight: u64,
    pub keep_delivered: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub agi_listen: String,
    pub esl_listen: String,
    pub decision_timeout: String,
}

impl RoutingConfig {
    pub fn decision_timeout(&self) -> Duration {
        parse_duration(&self.decision_timeout).expect("validated")
    }

    pub fn agi_addr(&self) -> SocketAddr {
        self.agi_listen.parse().expect("validated")
    }

    pub fn esl_addr(&self) -> SocketAddr {
        self.esl_listen.parse().expect("validated")
    }
}

impl OutboxConfig {
    /// The retry waits (validated by [`load`], so parsing cannot fail here).
    pub fn schedule(&self) -> Vec<Duration> {
        self.retry_schedule
            .iter()
            .map(|s| parse_duration(s).expect("validated"))
            .collect()
    }

    pub fn duration(value: &str) -> Duration {
        parse_duration(value).expect("validated")
    }

    /// How long delivered events are kept; `None` (`"0s"`) keeps them forever.
    pub fn keep_delivered(&self) -> Option<Duration> {
        Some(Self::duration(&self.keep_delivered)).filter(|d| !d.is_zero())
    }
}

impl Config {
    pub(super) fn validate_routing(&self, sources: &Sources) -> Result<(), ConfigError> {
        let r = &self.routing;
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        for (key, value, example) in [
            ("routing.agi_listen", &r.agi_listen, "127.0.0.1:4573"),
            ("routing.esl_listen", &r.esl_listen, "127.0.0.1:8084"),
        ] {
            match value.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_loopback() => {}
                Ok(_) => {
                    return bad(
                        key,
                        "must be a loopback address (127.0.0.1 or ::1): the PBX runs on this \
                         host"
                            .into(),
                    );
                }
                Err(_) => {
                    return bad(
                        key,
                        format!("{value:?} is not an address:port such as {example}"),
                    );
                }
            }
        }
        match parse_duration(&r.decision_timeout) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(10) => {}
            Ok(_) => {
                return bad(
                    "routing.decision_timeout",
                    "must be between 100ms and 10s".into(),
                );
            }
            Err(why) => return bad("routing.decision_timeout", why),
        }
        Ok(())
    }

    pub(super) fn validate_outbox(&self, sources: &Sources) -> Result<(), ConfigError> {
        let o = &self.outbox;
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        if o.retry_schedule.is_empty() {
            return bad(
                "outbox.retry_schedule",
                "must list at least one wait".into(),
            );
        }
        for entry in &o.retry_schedule {
            if let Err(why) = parse_duration(entry) {
                return bad("outbox.retry_schedule", why);
            }
        }
        for (key, value) in [
            ("outbox.throttle_floor", &o.throttle_floor),
            ("outbox.retry_after_max", &o.retry_after_max),
            ("outbox.hold_recheck", &o.hold_recheck),
            ("outbox.keep_delivered", &o.keep_delivered),
        ] {
            if let Err(why) = parse_duration(value) {
                return bad(key, why);
            }
        }
        if o.jitter_percent > 50 {
            return bad("outbox.jitter_percent", "must be between 0 and 50".into());
        }
        if o.max_in_flight == 0 {
            return bad("outbox.max_in_flight", "must be at least 1".into());
        }
        Ok(())
    }
}
