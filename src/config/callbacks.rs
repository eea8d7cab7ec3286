//! `[callbacks]`: how result callbacks (the admin's own endpoints, `src/callbacks/`) are
//! delivered: the retry schedule, the per-attempt timeout, and the development-only
//! escape hatch for plain-HTTP loopback receivers.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources, parse_duration};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallbacksConfig {
    /// Waits before each retry; attempts in all = its length + 1.
    pub retry_schedule: Vec<String>,
    /// How long one attempt may take (connect, send, answer) before it counts as failed.
    pub timeout: String,
    /// Development and tests only: accept `http://` URLs whose host is loopback.
    pub allow_http_loopback: bool,
    /// Attempts shown per callback in the settings page's delivery log.
    pub log_size: u64,
}

impl CallbacksConfig {
    /// The retry waits (validated by [`load`](super::load)).
    pub fn schedule(&self) -> Vec<Duration> {
        self.retry_schedule
            .iter()
            .map(|s| parse_duration(s).expect("validated"))
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        parse_duration(&self.timeout).expect("validated")
    }
}

impl Config {
    pub(super) fn validate_callbacks(&self, sources: &Sources) -> Result<(), ConfigError> {
        let c = &self.callbacks;
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        if c.retry_schedule.len() > 20 {
            return bad(
                "callbacks.retry_schedule",
                "at most 20 retries (use longer waits instead)".into(),
            );
        }
        for entry in &c.retry_schedule {
            match parse_duration(entry) {
                Ok(d) if d <= Duration::from_secs(86_400) => {}
                Ok(_) => {
                    return bad(
                        "callbacks.retry_schedule",
                        "each wait must be at most 1d".into(),
                    );
                }
                Err(why) => return bad("callbacks.retry_schedule", why),
            }
        }
        match parse_duration(&c.timeout) {
            Ok(d) if d >= Duration::from_millis(50) && d <= Duration::from_secs(60) => {}
            Ok(_) => return bad("callbacks.timeout", "must be between 50ms and 60s".into()),
            Err(why) => return bad("callbacks.timeout", why),
        }
        if !(1..=200).contains(&c.log_size) {
            return bad("callbacks.log_size", "must be between 1 and 200".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    fn load_with(env: &[(&str, &str)]) -> Result<super::Config, String> {
        super::super::tests::load_env("", env)
    }

    #[test]
    fn defaults_and_validation() {
        let c = load_with(&[]).unwrap().callbacks;
        assert_eq!(
            c.schedule(),
            [1, 2, 4].map(Duration::from_secs).to_vec(),
            "3 retries at 1 s, 2 s, 4 s"
        );
        assert_eq!(c.timeout(), Duration::from_secs(10));
        assert!(!c.allow_http_loopback);
        let c = load_with(&[
            ("APPLIANCE_CALLBACKS__RETRY_SCHEDULE", "10ms,20ms"),
            ("APPLIANCE_CALLBACKS__TIMEOUT", "300ms"),
            ("APPLIANCE_CALLBACKS__ALLOW_HTTP_LOOPBACK", "true"),
        ])
        .unwrap()
        .callbacks;
        assert_eq!(c.schedule().len(), 2);
        assert_eq!(c.timeout(), Duration::from_millis(300));
        assert!(c.allow_http_loopback);
        for (key, bad) in [
            ("APPLIANCE_CALLBACKS__TIMEOUT", "2m"),
            ("APPLIANCE_CALLBACKS__TIMEOUT", "soon"),
            ("APPLIANCE_CALLBACKS__RETRY_SCHEDULE", "1s,later"),
            ("APPLIANCE_CALLBACKS__LOG_SIZE", "0"),
        ] {
            let e = load_with(&[(key, bad)]).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
    }
}
