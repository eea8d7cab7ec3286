//! `[webhook]`: how the Flowlu webhook treats busy employees and repeated requests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources, parse_duration};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub refuse_busy_agents: bool,
    pub replay_window: String,
}

impl WebhookConfig {
    /// How long stored answers are kept (validated by [`load`](super::load)).
    pub fn replay_window(&self) -> Duration {
        parse_duration(&self.replay_window).expect("validated")
    }
}

impl Config {
    pub(super) fn validate_webhook(&self, sources: &Sources) -> Result<(), ConfigError> {
        let key = "webhook.replay_window";
        match parse_duration(&self.webhook.replay_window) {
            Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(30 * 86_400) => {
                Ok(())
            }
            Ok(_) => Err(sources.error(key, "must be between 1m and 30d".into())),
            Err(why) => Err(sources.error(key, why)),
        }
    }
}

#[cfg(test)]
mod tests {

    fn load_with(env: &[(&str, &str)]) -> Result<super::Config, String> {
        super::super::tests::load_env("", env)
    }

    #[test]
    fn defaults_and_validation() {
        let c = load_with(&[]).unwrap();
        assert!(c.webhook.refuse_busy_agents);
        assert_eq!(
            c.webhook.replay_window(),
            std::time::Duration::from_secs(86_400)
        );
        let c = load_with(&[
            ("APPLIANCE_WEBHOOK__REFUSE_BUSY_AGENTS", "false"),
            ("APPLIANCE_WEBHOOK__REPLAY_WINDOW", "2h"),
        ])
        .unwrap();
        assert!(!c.webhook.refuse_busy_agents);
        assert_eq!(
            c.webhook.replay_window(),
            std::time::Duration::from_secs(7200)
        );
        for bad in ["10s", "31d", "soon"] {
            let e = load_with(&[("APPLIANCE_WEBHOOK__REPLAY_WINDOW", bad)]).unwrap_err();
            assert!(
                e.contains("`webhook.replay_window`")
                    && e.contains("APPLIANCE_WEBHOOK__REPLAY_WINDOW"),
                "{e}"
            );
        }
    }
}
