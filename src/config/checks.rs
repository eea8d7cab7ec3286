//! Validation of the `[flowlu]` and `[server]` URLs and names (split from `mod.rs`).

use super::{Config, ConfigError, Sources};

impl Config {
    pub(super) fn validate_flowlu(&self, sources: &Sources) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        let f = &self.flowlu;
        if f.allowed_domains.is_empty() {
            return bad(
                "flowlu.allowed_domains",
                "must list at least one domain suffix, e.g. [\"flowlu.com\"]".into(),
            );
        }
        for suffix in &f.allowed_domains {
            if !crate::util::is_host_name(suffix) || !suffix.contains('.') {
                return bad(
                    "flowlu.allowed_domains",
                    format!("{suffix:?} is not a lower-case domain suffix such as \"flowlu.com\""),
                );
            }
        }
        if !f.base_url_override.is_empty()
            && let Err(why) = check_base_url(&f.base_url_override)
        {
            return bad("flowlu.base_url_override", why);
        }
        for origin in &f.frame_ancestors {
            if let Err(why) = check_origin(origin) {
                return bad("flowlu.frame_ancestors", why);
            }
        }
        if !(1..=300).contains(&f.request_timeout_secs) {
            return bad(
                "flowlu.request_timeout_secs",
                "must be between 1 and 300".into(),
            );
        }
        if !(-14 * 60..=14 * 60).contains(&f.expires_at_utc_offset_minutes) {
            return bad(
                "flowlu.expires_at_utc_offset_minutes",
                "must be between -840 and 840".into(),
            );
        }
        if !(1..=7 * 24 * 60).contains(&f.session_minutes) {
            return bad(
                "flowlu.session_minutes",
                "must be between 1 and 10080 (a week)".into(),
            );
        }
        Ok(())
    }
}

/// A base URL such as `http://127.0.0.1:9999`: scheme, host, optional port, nothing else.
fn check_base_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{raw:?} must start with http:// or https://"));
    }
    if url.host_str().unwrap_or("").is_empty() {
        return Err(format!("{raw:?} has no host"));
    }
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(format!(
            "{raw:?} must be a plain base URL (no path, user, query or fragment)"
        ));
    }
    Ok(())
}

/// A web origin for CSP `frame-ancestors`: `https://host` or `http://host:port`.
fn check_origin(raw: &str) -> Result<(), String> {
    check_base_url(raw)?;
    if raw.ends_with('/') {
        return Err(format!(
            "{raw:?} must be an origin without a trailing slash"
        ));
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c == ';' || c == ',' || c == '\'')
    {
        return Err(format!("{raw:?} must be a single origin"));
    }
    Ok(())
}

pub(super) fn check_public_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(format!("{raw:?} must start with https://"));
    }
    if url.host_str().unwrap_or("").is_empty() {
        return Err(format!("{raw:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{raw:?} must be a plain base URL (no user, query or fragment)"
        ));
    }
    Ok(())
}

/// A plausible DNS name: dot-separated labels of letters, digits and hyphens.
pub fn is_dns_name(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.parse::<std::net::IpAddr>().is_err()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
