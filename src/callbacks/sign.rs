//! The signature receivers check: `X-Appliance-Signature: t=<unix seconds>,v1=<hex>`,
//! where `<hex>` is HMAC-SHA256, keyed with the callback's secret (its UTF-8 bytes as
//! shown on the settings page), over `"<t>.<raw body>"`. The timestamp is inside the
//! signed bytes so a captured delivery cannot be replayed later with a fresh `t`.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header value for `body` signed at unix time `t` with `secret`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks a header as a receiver would (used by tests and documented in the README):
/// the `v1` HMAC must match and `t` must be within `tolerance_secs` of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.extend(hex::decode(value).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let expected = mac(secret, t, body);
    v1.iter()
        .any(|sig| crate::secret::constant_time_eq(sig, &expected))
}

/// A fresh signing secret: `whsec_` and 32 random bytes, URL-safe base64.
pub fn new_secret() -> String {
    format!("whsec_{}", crate::secret::random_token(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_vector_and_verifies() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test",
        //   b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        let header = signature_header("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        assert!(verify(
            "whsec_test",
            &header,
            br#"{"a":1}"#,
            1_700_000_100,
            300
        ));
        assert!(!verify(
            "whsec_other",
            &header,
            br#"{"a":1}"#,
            1_700_000_100,
            300
        ));
        assert!(!verify(
            "whsec_test",
            &header,
            br#"{"a":2}"#,
            1_700_000_100,
            300
        ));
        assert!(
            !verify("whsec_test", &header, br#"{"a":1}"#, 1_700_000_301, 300),
            "too old"
        );
        assert!(!verify("whsec_test", "v1=00", b"", 0, 300));
    }

    #[test]
    fn secrets_are_fresh() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a.len() > 40);
        assert_ne!(a, b);
    }
}
