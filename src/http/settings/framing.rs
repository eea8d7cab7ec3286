//! Who may frame the settings page, and whether Flowlu could (issue 15).
//!
//! The page's CSP `frame-ancestors` is the account's Flowlu origin plus `[flowlu]
//! frame_ancestors` ([`ancestors`]). When Flowlu shows the page from another origin,
//! the browser only draws its grey "refused to connect" box and nothing of the page can
//! run, so the page itself cannot explain. The iframe POST can: its `Origin` is the
//! Flowlu page that sent the context into the frame. Each iframe POST is noted
//! ([`Framing::note`], in memory), and the operator's page `GET /` says in a line when
//! the last one came from an origin the page does not allow, and what to set.

use std::sync::Mutex;

use hyper::HeaderMap;
use serde::Serialize;

use crate::config::FlowluConfig;

/// The origins allowed to frame the page for an account whose Flowlu origin is
/// `origin` (before the account is known: every allow-listed Flowlu domain).
pub fn ancestors(config: &FlowluConfig, origin: Option<&str>) -> Vec<String> {
    let mut ancestors: Vec<String> = match origin {
        Some(origin) => vec![origin.to_string()],
        None => config
            .allowed_domains
            .iter()
            .map(|d| format!("https://*.{d}"))
            .collect(),
    };
    ancestors.extend(config.frame_ancestors.iter().cloned());
    ancestors
}

/// Whether the CSP source list `ancestors` allows `origin` (exact, or `https://*.d`
/// for any host under `d`).
fn allows(ancestors: &[String], origin: &str) -> bool {
    let origin = origin.trim_end_matches('/').to_ascii_lowercase();
    ancestors.iter().any(|a| {
        let a = a.trim_end_matches('/').to_ascii_lowercase();
        match a.split_once("://*.") {
            Some((scheme, domain)) => origin
                .strip_prefix(&format!("{scheme}://"))
                .is_some_and(|host| host.ends_with(&format!(".{domain}"))),
            None => a == origin,
        }
    })
}

/// The last iframe POST as the operator's page shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Opened {
    /// The Flowlu page that sent it (its `Origin`).
    pub origin: String,
    /// The account it was for.
    pub account: String,
    /// When, `2026-11-23 06:46 UTC`.
    pub when: String,
    /// The page allows that origin to frame it.
    pub allowed: bool,
}

/// The iframe POSTs noted since start (the last one).
#[derive(Default)]
pub struct Framing {
    last: Mutex<Option<Opened>>,
}

impl Framing {
    /// Notes an iframe POST for `account` whose page allows `ancestors`. A top-level
    /// POST (`Sec-Fetch-Dest: document`) or one without a usable `Origin` says nothing
    /// about framing and is not noted.
    pub fn note(&self, headers: &HeaderMap, account: &str, ancestors: &[String]) {
        let dest = headers
            .get("sec-fetch-dest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(origin) = headers
            .get(hyper::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .filter(|o| o.starts_with("https://") || o.starts_with("http://"))
        else {
            return;
        };
        if dest == "document" {
            return;
        }
        let allowed = allows(ancestors, origin);
        if !allowed {
            log::warn!(
                "the settings page for {account} was opened from {origin}, which may not frame \
                 it: the browser shows \"refused to connect\"; add {origin} to [flowlu] \
                 frame_ancestors"
            );
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Opened {
            origin: origin.to_string(),
            account: account.to_string(),
            when: super::view::utc(crate::outbox::now_ms()),
            allowed,
        });
    }

    pub fn last(&self) -> Option<Opened> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the operator's page says about framing.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `[flowlu] frame_ancestors`.
    pub extra: Vec<String>,
    /// `[flowlu] allowed_domains`.
    pub allowed_domains: Vec<String>,
    pub last: Option<Opened>,
}

pub fn report(config: &FlowluConfig, framing: &Framing) -> Report {
    Report {
        extra: config.frame_ancestors.clone(),
        allowed_domains: config.allowed_domains.clone(),
        last: framing.last(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_iframe_post_from_an_origin_the_page_does_not_allow_is_noted() {
        let mut config = crate::config::Config::defaults().flowlu;
        config.frame_ancestors = vec!["https://apps.example.org".into()];
        let allowed = ancestors(&config, Some("https://acme.flowlu.com"));
        assert!(allows(&allowed, "https://acme.flowlu.com"));
        assert!(allows(&allowed, "https://apps.example.org/"));
        assert!(!allows(&allowed, "https://app.flowlu.com"));
        let before = ancestors(&config, None);
        assert!(allows(&before, "https://acme.flowlu.com"));
        assert!(!allows(&before, "https://flowlu.com.evil.org"));
        assert!(!allows(&before, "http://acme.flowlu.com"));

        let framing = Framing::default();
        framing.note(&headers(&[]), "acme.flowlu.com", &allowed);
        assert_eq!(framing.last(), None, "no Origin: nothing to judge");
        framing.note(
            &headers(&[
                ("origin", "https://app.flowlu.com"),
                ("sec-fetch-dest", "document"),
            ]),
            "acme.flowlu.com",
            &allowed,
        );
        assert_eq!(framing.last(), None, "top level: not framed");
        framing.note(
            &headers(&[
                ("origin", "https://app.flowlu.com"),
                ("sec-fetch-dest", "iframe"),
            ]),
            "acme.flowlu.com",
            &allowed,
        );
        let last = framing.last().unwrap();
        assert_eq!(
            (last.origin.as_str(), last.allowed),
            ("https://app.flowlu.com", false)
        );
        framing.note(
            &headers(&[("origin", "https://acme.flowlu.com")]),
            "acme.flowlu.com",
            &allowed,
        );
        assert!(framing.last().unwrap().allowed);
    }
}
