//! `[calls]`: the rules that tell employees from customers, and so a call's direction.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallsConfig {
    pub extension_min_digits: u64,
    pub extension_max_digits: u64,
    pub trunk_endpoints: Vec<String>,
    pub employee_endpoints: Vec<String>,
    pub inbound_contexts: Vec<String>,
    pub outbound_prefixes: Vec<String>,
}

impl Config {
    pub(super) fn validate_calls(&self, sources: &Sources) -> Result<(), ConfigError> {
        let c = &self.calls;
        if c.extension_min_digits == 0 {
            return Err(sources.error("calls.extension_min_digits", "must be at least 1".into()));
        }
        if c.extension_max_digits < c.extension_min_digits || c.extension_max_digits > 15 {
            return Err(sources.error(
                "calls.extension_max_digits",
                "must be between calls.extension_min_digits and 15".into(),
            ));
        }
        for (key, list) in [
            ("calls.trunk_endpoints", &c.trunk_endpoints),
            ("calls.employee_endpoints", &c.employee_endpoints),
            ("calls.inbound_contexts", &c.inbound_contexts),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|s| s.trim().is_empty() || s.contains(char::is_whitespace))
            {
                return Err(sources.error(key, format!("{bad:?} is not a name")));
            }
        }
        if let Some(both) = c
            .employee_endpoints
            .iter()
            .find(|e| c.trunk_endpoints.contains(e))
        {
            return Err(sources.error(
                "calls.employee_endpoints",
                format!(
                    "{both:?} is also in calls.trunk_endpoints: an endpoint is one or the other"
                ),
            ));
        }
        if let Some(bad) = c
            .outbound_prefixes
            .iter()
            .find(|p| p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(sources.error(
                "calls.outbound_prefixes",
                format!("{bad:?} is not an outside-line prefix (1 to 4 digits, such as \"9\")"),
            ));
        }
        Ok(())
    }
}
