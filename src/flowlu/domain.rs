//! Which hosts we send an account's OAuth token to.
//!
//! The `domain` field of Flowlu's iframe POST decides where the token travels, so it is
//! checked here before any request exists: a plain lower-case host name (no scheme, port,
//! path, user-info, whitespace or IP literal) under one of `[flowlu] allowed_domains`.
//! [`CrmTarget`] is the only way to obtain a base URL for a Flowlu call, and it can only
//! be built through [`target`], so nothing can call a host that skipped the check.

use crate::config::FlowluConfig;

use super::FlowluError;

/// A checked Flowlu account host and the base URL its API calls go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmTarget {
    /// The account's host name, e.g. `company.flowlu.com`.
    pub domain: String,
    /// The allow-listed suffix the domain is under, e.g. `flowlu.com`: accounts on
    /// different Flowlu platforms may share an account id, so the suffix is part of an
    /// integration's identity.
    pub platform: String,
    /// `https://{domain}`, `http://{domain}` (plain-HTTP CRMs, development only), or the
    /// configured `base_url_override`. No trailing slash.
    pub base: String,
    /// The origin that frames the settings page (`https://{domain}`), for CSP.
    pub origin: String,
    /// True when `base` is the configured override (tests, development).
    pub overridden: bool,
}

/// What counts as a host name (`crate::util`'s: `config` and `http` check with it too).
pub use crate::util::is_host_name;

/// The allow-listed suffix `domain` sits under (strictly below it), if any.
pub fn allowed_suffix<'a>(domain: &str, allowed: &'a [String]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|s| s.trim_end_matches('.'))
        .find(|suffix| {
            domain.len() > suffix.len() + 1
                && domain.ends_with(suffix)
                && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
        })
}

/// Checks `domain` against the rules and the allow-list and builds where its API calls
/// go. `https` is the iframe POST's `https` flag; plain HTTP needs
/// `[flowlu] allow_plain_http_crm`.
pub fn target(config: &FlowluConfig, domain: &str, https: bool) -> Result<CrmTarget, FlowluError> {
    if !is_host_name(domain) {
        return Err(FlowluError::Invalid(format!(
            "domain {domain:?} is not a plain host name such as company.flowlu.com \
             (no scheme, port, path, user name, spaces or IP address)"
        )));
    }
    let Some(platform) = allowed_suffix(domain, &config.allowed_domains) else {
        return Err(FlowluError::DomainNotAllowed(domain.to_string()));
    };
    if !https && !config.allow_plain_http_crm {
        return Err(FlowluError::Invalid(
            "https = \"0\" (a CRM over plain HTTP) is refused; set [flowlu] \
             allow_plain_http_crm = true for development"
                .into(),
        ));
    }
    let scheme = if https { "https" } else { "http" };
    let origin = format!("{scheme}://{domain}");
    let (base, overridden) = match config.base_url_override() {
        Some(base) => (base.to_string(), true),
        None => (origin.clone(), false),
    };
    Ok(CrmTarget {
        domain: domain.to_string(),
        platform: platform.to_string(),
        base,
        origin,
        overridden,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FlowluConfig {
        crate::config::Config::defaults().flowlu
    }

    #[test]
    fn account_hosts_under_the_allow_list_pass() {
        let t = target(&config(), "acme.flowlu.com", true).unwrap();
        assert_eq!(t.base, "https://acme.flowlu.com");
        assert_eq!(t.origin, "https://acme.flowlu.com");
        assert_eq!(t.platform, "flowlu.com");
        assert!(!t.overridden);
        assert_eq!(
            target(&config(), "xn--80a.flowlu.ru", true)
                .unwrap()
                .platform,
            "flowlu.ru"
        );
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "",
            "127.0.0.1",
            "2130706433",
            "0x7f.0.0.1",
            "evil.com",
            "flowlu.com",
            "x.flowlu.com.evil.com",
            "xflowlu.com",
            "x.flowlu.com:5038",
            "user@x.flowlu.com",
            "https://x.flowlu.com",
            "x.flowlu.com/path",
            "x.flowlu.com?q",
            "x.flowlu.com#f",
            "[::1]",
            "::1",
            "[fe80::1]",
            "X.FLOWLU.COM",
            "x.flowlu.com.",
            " x.flowlu.com",
            "x .flowlu.com",
            "x.flowlu.com\n",
            "-x.flowlu.com",
            "x..flowlu.com",
            "x%2eflowlu.com",
            "x\\.flowlu.com",
        ] {
            assert!(
                target(&config(), bad, true).is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn plain_http_needs_the_switch_and_override_replaces_the_base() {
        let mut c = config();
        assert!(target(&c, "a.flowlu.com", false).is_err());
        c.allow_plain_http_crm = true;
        assert_eq!(
            target(&c, "a.flowlu.com", false).unwrap().base,
            "http://a.flowlu.com"
        );
        c.base_url_override = "http://127.0.0.1:9999/".into();
        let t = target(&c, "a.flowlu.com", true).unwrap();
        assert_eq!(t.base, "http://127.0.0.1:9999");
        assert_eq!(t.origin, "https://a.flowlu.com");
        assert!(t.overridden);
        // The override never widens the allow-list.
        assert!(target(&c, "evil.com", true).is_err());
    }
}
