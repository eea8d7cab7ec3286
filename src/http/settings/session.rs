//! Settings-page sessions without cookies.
//!
//! The page lives in a cross-site iframe, where browsers block third-party cookies. So
//! after a verified iframe POST the page carries a signed, expiring token in a hidden
//! form field, and every later form POST must send it back. The token binds the
//! integration id, the Flowlu user id and the expiry with HMAC-SHA256 under a key kept
//! in the `meta` table; it is also the CSRF protection (another site cannot read it).
//! It holds no OAuth token: a leaked session token grants this page only, until expiry.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const VERSION: &str = "v1";

/// Who a valid session token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub integration_id: i64,
    pub user_id: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Why a token was refused (all are a 403 for the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Malformed,
    BadSignature,
    Expired,
}

fn mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// Signs a session for `integration_id` and `user_id` that expires at `expires_at`.
pub fn sign(key: &[u8], integration_id: i64, user_id: &str, expires_at: i64) -> String {
    let payload = format!(
        "{VERSION}.{integration_id}.{expires_at}.{}",
        URL_SAFE_NO_PAD.encode(user_id)
    );
    let tag = mac(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Checks a token's signature and expiry at `now` (Unix seconds).
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<Session, Refused> {
    if token.is_empty() {
        return Err(Refused::Missing);
    }
    if token.len() > 1024 {
        return Err(Refused::Malformed);
    }
    let (payload, tag) = token.rsplit_once('.').ok_or(Refused::Malformed)?;
    let tag = URL_SAFE_NO_PAD
        .decode(tag)
        .map_err(|_| Refused::Malformed)?;
    mac(key, payload)
        .verify_slice(&tag)
        .map_err(|_| Refused::BadSignature)?;
    let parts: Vec<&str> = payload.split('.').collect();
    let [version, id, expires, user] = parts.as_slice() else {
        return Err(Refused::Malformed);
    };
    if *version != VERSION {
        return Err(Refused::Malformed);
    }
    let integration_id = id.parse::<i64>().map_err(|_| Refused::Malformed)?;
    let expires_at = expires.parse::<i64>().map_err(|_| Refused::Malformed)?;
    let user_id = URL_SAFE_NO_PAD
        .decode(user)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(Refused::Malformed)?;
    if now >= expires_at {
        return Err(Refused::Expired);
    }
    Ok(Session {
        integration_id,
        user_id,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip_and_expiry() {
        let t = sign(KEY, 7, "user.1", 1000);
        assert_eq!(
            verify(KEY, &t, 999),
            Ok(Session {
                integration_id: 7,
                user_id: "user.1".into(),
                expires_at: 1000
            })
        );
        assert_eq!(verify(KEY, &t, 1000), Err(Refused::Expired));
        assert_eq!(verify(KEY, "", 0), Err(Refused::Missing));
    }

    #[test]
    fn forged_or_altered_tokens_are_refused() {
        let t = sign(KEY, 7, "42", 1000);
        assert_eq!(
            verify(b"another key, another appliance!!", &t, 0),
            Err(Refused::BadSignature)
        );
        // Another integration id with the old signature.
        let (payload, tag) = t.rsplit_once('.').unwrap();
        let other = payload.replacen(".7.", ".8.", 1);
        assert_eq!(
            verify(KEY, &format!("{other}.{tag}"), 0),
            Err(Refused::BadSignature)
        );
        // A later expiry with the old signature.
        let later = payload.replacen(".1000.", ".9999.", 1);
        assert_eq!(
            verify(KEY, &format!("{later}.{tag}"), 0),
            Err(Refused::BadSignature)
        );
        for junk in ["x", "a.b", "v1.7.1000.NDI.!!!", &"a".repeat(2000)] {
            assert!(verify(KEY, junk, 0).is_err(), "{junk}");
        }
    }
}
