//! `[c2c]`: the click-to-call URL's rate limit (whether it is on is a per-account
//! setting on the settings page, not configuration).

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct C2cConfig {
    /// Requests per minute one key may make, on average (the bucket's refill rate).
    pub rate_per_minute: u32,
    /// Requests one key may make at once after a quiet spell (the bucket's size).
    pub burst: u32,
}

impl Config {
    pub(super) fn validate_c2c(&self, sources: &Sources) -> Result<(), ConfigError> {
        if !(1..=6000).contains(&self.c2c.rate_per_minute) {
            return Err(sources.error("c2c.rate_per_minute", "must be between 1 and 6000".into()));
        }
        if !(1..=1000).contains(&self.c2c.burst) {
            return Err(sources.error("c2c.burst", "must be between 1 and 1000".into()));
        }
        Ok(())
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
        assert_eq!((c.c2c.rate_per_minute, c.c2c.burst), (30, 10));
        let c = load_with(&[("APPLIANCE_C2C__RATE_PER_MINUTE", "120")]).unwrap();
        assert_eq!(c.c2c.rate_per_minute, 120);
        for (key, bad) in [
            ("APPLIANCE_C2C__RATE_PER_MINUTE", "0"),
            ("APPLIANCE_C2C__BURST", "0"),
        ] {
            let e = load_with(&[(key, bad)]).unwrap_err();
            assert!(e.contains("c2c."), "{e}");
        }
    }
}
