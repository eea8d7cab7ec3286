//! What an admin may enter for a callback: its URL (https only, plus the config-only
//! loopback escape hatch), an optional extra header, and how both are shown back.

use std::net::IpAddr;

/// A refused callback field, in words for the settings page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

const MAX_URL: usize = 2048;

/// Checks and normalizes a callback URL: `https://host[:port]/path[?query]`, no user
/// name or password, no fragment. `http://` only for a loopback host and only when
/// `allow_http_loopback` is set (development and tests).
pub fn check_url(raw: &str, allow_http_loopback: bool) -> Result<String, Invalid> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(invalid("the URL is required"));
    }
    if raw.len() > MAX_URL || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(format!(
            "the URL must be at most {MAX_URL} characters, without spaces"
        )));
    }
    let url = url::Url::parse(raw)
        .map_err(|e| invalid(format!("not a URL ({e}); expected https://host/path")))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("the URL has no host name"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http_loopback && is_loopback(host) => {}
        "http" if allow_http_loopback => {
            return Err(invalid(
                "the URL must start with https:// (plain http:// is accepted only for a \
                 loopback host in development)",
            ));
        }
        _ => return Err(invalid("the URL must start with https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "the URL must not carry a user name or password: use the auth header instead",
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid("the URL must not have a #fragment"));
    }
    Ok(url.to_string())
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Headers the appliance sets itself (or HTTP manages) and an admin may not override.
const RESERVED: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    "te",
    "upgrade",
];

/// Checks the optional extra header: both name and value, or neither.
pub fn check_header(name: &str, value: &str) -> Result<Option<(String, String)>, Invalid> {
    let (name, value) = (name.trim(), value.trim());
    match (name.is_empty(), value.is_empty()) {
        (true, true) => return Ok(None),
        (true, false) => return Err(invalid("the auth header needs a name")),
        (false, true) => return Err(invalid("the auth header needs a value")),
        (false, false) => {}
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.len() > 64 || !name.chars().all(token) {
        return Err(invalid(
            "the auth header name must be at most 64 letters, digits or - (e.g. Authorization)",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED.contains(&lower.as_str()) || lower.starts_with("x-appliance-") {
        return Err(invalid(format!(
            "the header {name} is set by the appliance itself"
        )));
    }
    if value.len() > 1024
        || !value
            .chars()
            .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
    {
        return Err(invalid(
            "the auth header value must be at most 1024 printable ASCII characters on one line",
        ));
    }
    Ok(Some((name.to_string(), value.to_string())))
}

/// The URL as the settings page and logs show it: the query (often a token) masked, and
/// token-like path segments (`https://hooks.example/T0/<secret>`) too.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            let path = crate::redact::redact_path(u.path(), None);
            u.set_path(&path);
            u.to_string()
        }
        Err(_) => "***".into(),
    }
}

/// A secret as the settings page shows it after it was first revealed: its first few
/// characters (enough to tell two apart) and `…`.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(10).collect();
    if secret.chars().count() <= 16 {
        return "***".into();
    }
    format!("{shown}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            check_url(" https://hooks.example.com/calls?k=1 ", false).unwrap(),
            "https://hooks.example.com/calls?k=1"
        );
        assert_eq!(
            check_url("https://Example.COM:8443", false).unwrap(),
            "https://example.com:8443/"
        );
        for (raw, why) in [
            ("", "required"),
            ("hooks.example.com/x", "not a URL"),
            ("http://hooks.example.com/x", "https://"),
            ("ftp://hooks.example.com/x", "https://"),
            ("http://127.0.0.1:9/x", "https://"),
            ("https://user:pw@hooks.example.com/", "user name"),
            ("https://hooks.example.com/#frag", "fragment"),
            ("https://hooks.example.com/a b", "spaces"),
        ] {
            let e = check_url(raw, false).unwrap_err().0;
            assert!(e.contains(why), "{raw}: {e}");
        }
        // The escape hatch: loopback only.
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_url("http://[::1]:9/x", true).is_ok());
        assert!(check_url("http://localhost/x", true).is_ok());
        let e = check_url("http://10.0.0.1/x", true).unwrap_err().0;
        assert!(e.contains("loopback"), "{e}");
    }

    #[test]
    fn headers() {
        assert_eq!(check_header(" ", "").unwrap(), None);
        assert_eq!(
            check_header("Authorization", "Bearer abc").unwrap(),
            Some(("Authorization".into(), "Bearer abc".into()))
        );
        assert!(check_header("X-Api-Key", "").is_err());
        assert!(check_header("", "v").is_err());
        assert!(check_header("Bad Name", "v").is_err());
        assert!(check_header("Content-Type", "v").is_err());
        assert!(check_header("X-Appliance-Signature", "v").is_err());
        assert!(check_header("X-Api-Key", "a\r\nInjected: 1").is_err());
    }

    #[test]
    fn masking() {
        assert_eq!(
            display_url("https://h.example/p?token=s3cret"),
            "https://h.example/p?***"
        );
        assert_eq!(display_url("https://h.example/p"), "https://h.example/p");
        assert_eq!(mask("short"), "***");
        let m = mask("whsec_abcdefghijklmnopqrstuvwxyz");
        assert_eq!(m, "whsec_abcd…");
    }
}
