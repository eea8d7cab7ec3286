//! The page an account that is not admitted gets (403, nothing stored for it), and the
//! one-time claim code form on it: `POST /integration/settings/claim`.
//!
//! The form carries a signed, expiring note of the account's domain (`pending`), never
//! its OAuth token: after a successful claim the admin reopens the settings in Flowlu,
//! and that POST is identified as usual.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use hyper::StatusCode;
use serde::Serialize;
use sha2::Sha256;

use super::actions::{self, Fields};
use super::view::{self, Notice};
use super::views::{ClaimView, View};
use crate::app::State;
use crate::flowlu::admission::{self, Claim};
use crate::flowlu::store;
use crate::http::HttpError;
use crate::http::respond::{self, Response};

/// How long the refusal page's claim form may be submitted.
const PENDING_SECS: i64 = 30 * 60;
const TAG: &str = "claim1";

fn mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

/// `claim1.<expires>.<domain, base64>.<HMAC>`: not a settings session (other tag).
fn sign(key: &[u8], domain: &str, expires_at: i64) -> String {
    let payload = format!("{TAG}.{expires_at}.{}", URL_SAFE_NO_PAD.encode(domain));
    let tag = mac(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// The domain a valid, unexpired `pending` value names.
fn verify(key: &[u8], token: &str, now: i64) -> Option<String> {
    let (payload, tag) = token.rsplit_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    mac(key, payload).verify_slice(&tag).ok()?;
    let [tag, expires, domain] = payload.split('.').collect::<Vec<_>>()[..] else {
        return None;
    };
    let expires: i64 = expires.parse().ok()?;
    if tag != TAG || now >= expires {
        return None;
    }
    String::from_utf8(URL_SAFE_NO_PAD.decode(domain).ok()?).ok()
}

#[derive(Serialize)]
struct Page<'a> {
    lang: &'static str,
    t: &'static std::collections::BTreeMap<String, String>,
    notice: Option<Notice>,
    admitted: bool,
    claim_pending: bool,
    pending: &'a str,
}

fn render(
    state: &State,
    lang: &'static str,
    status: StatusCode,
    page: (Option<Notice>, bool, bool, &str),
    origin: Option<&str>,
) -> Response {
    let (notice, admitted, claim_pending, pending) = page;
    let html = state.pages.render(
        "not_admitted.html",
        Page {
            lang,
            t: view::texts(lang),
            notice,
            admitted,
            claim_pending,
            pending,
        },
    );
    view::with_frame_headers(respond::html(status, html), &state.config.flowlu, origin)
}

/// The 403 page for `domain`, with the claim form while a claim code is pending.
pub async fn refuse(
    state: &State,
    domain: &str,
    lang: &'static str,
    origin: Option<&str>,
) -> Response {
    let pending = state.db.run(|c| admission::claim_pending(c)).await;
    let pending = pending.unwrap_or_else(|e| {
        log::error!("cannot read the claim code: {e}");
        false
    });
    let token = sign(
        state.flowlu.session_key(),
        domain,
        store::now() + PENDING_SECS,
    );
    render(
        state,
        lang,
        StatusCode::FORBIDDEN,
        (None, false, pending, &token),
        origin,
    )
}

fn error(lang: &str, key: &str) -> Notice {
    Notice {
        text: view::t(lang, key),
        error: true,
    }
}

/// `POST /integration/settings/claim`: the claim code typed on the refusal page. The
/// outcome is shown by the GET its view (returned here) redirects to.
pub async fn redeem(state: &State, fields: &Fields) -> Result<View, HttpError> {
    let field = |k: &str| actions::field(fields, k);
    let lang = view::lang(Some(field("lang")));
    let pending = field("pending").to_string();
    let Some(domain) = verify(state.flowlu.session_key(), &pending, store::now()) else {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "invalid_session",
            "this page has expired: open the settings again in Flowlu",
        ));
    };
    let origin = crate::flowlu::domain::target(&state.config.flowlu, &domain, true)
        .ok()
        .map(|t| t.origin);
    let code = field("claim_code").to_string();
    let claimed = domain.clone();
    let outcome = state
        .db
        .run(move |c| admission::redeem(c, &code, &claimed))
        .await?;
    let (status, notice, admitted, still_pending) = match outcome {
        Claim::Admitted => {
            log::info!("{domain} admitted with the claim code");
            (StatusCode::OK, Notice::ok(lang, "claim_done"), true, false)
        }
        Claim::Wrong => {
            log::warn!("a wrong claim code was typed for {domain}");
            (
                StatusCode::FORBIDDEN,
                error(lang, "claim_wrong"),
                false,
                true,
            )
        }
        Claim::NonePending => (
            StatusCode::FORBIDDEN,
            error(lang, "claim_none"),
            false,
            false,
        ),
    };
    Ok(View {
        session: String::new(),
        lang,
        notice: Some(notice),
        section: "",
        pbx_form: None,
        status,
        claim: Some(ClaimView {
            admitted,
            claim_pending: still_pending,
            pending,
            origin,
        }),
    })
}

/// The page a claim's redirect shows.
pub fn show(state: &State, v: View, claim: ClaimView) -> Response {
    render(
        state,
        v.lang,
        v.status,
        (
            v.notice,
            claim.admitted,
            claim.claim_pending,
            &claim.pending,
        ),
        claim.origin.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_notes_are_signed_and_expire() {
        let key = [7u8; 32];
        let token = sign(&key, "x.flowlu.com", 100);
        assert_eq!(verify(&key, &token, 99).as_deref(), Some("x.flowlu.com"));
        assert_eq!(verify(&key, &token, 100), None);
        assert_eq!(verify(&[8u8; 32], &token, 99), None);
        let forged = token.replace(&URL_SAFE_NO_PAD.encode("x.flowlu.com"), "eQ");
        assert_eq!(verify(&key, &forged, 99), None);
        // A settings session token is not a claim note.
        let session = super::super::session::sign(&key, 1, "u", 100);
        assert_eq!(verify(&key, &session, 99), None);
    }
}
