//! Redirect after POST without leaking the session into a URL.
//!
//! Every settings form answers `303 See Other` to `GET /integration/settings?token=<view>`,
//! so reloading the page shows it again instead of re-submitting the form. The page is a
//! cross-site iframe without cookies and its session is a signed token in a hidden field:
//! that token must not travel in a URL (logs, history, `Referer`). So the redirect names
//! an opaque *view token* instead: 32 random bytes, kept in memory only, that map to the
//! session, the language and the form's outcome (the notice, the echoed PBX form, the
//! status). A view token
//!
//! - lives [`LIFETIME`] (and never past its session), then the page says to reopen it;
//! - shows its notice once: a reload shows the page as it is now, without the notice;
//! - is sent as the query parameter `token`, which the access log masks
//!   ([`crate::redact`]), and the page is served with `Referrer-Policy:
//!   no-referrer`;
//! - grants nothing the session does not: the GET re-checks the session and admission.
//!
//! A restart forgets every view token (the admin opens the settings again in Flowlu).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use super::view::{Notice, PbxForm};

/// How long a redirect's view token can be loaded (and reloaded).
pub const LIFETIME: Duration = Duration::from_secs(10 * 60);

/// At most this many view tokens are kept; the oldest is dropped first.
const MAX_VIEWS: usize = 4096;

/// What a view token stands for.
#[derive(Debug, Clone)]
pub struct View {
    /// The signed session token (put back into the page's hidden fields).
    pub session: String,
    pub lang: &'static str,
    /// The form's outcome, shown on the first GET only.
    pub notice: Option<Notice>,
    /// The section whose form was sent: its notice is shown there, and it is open.
    pub section: &'static str,
    pub pbx_form: Option<PbxForm>,
    pub status: StatusCode,
    /// The refusal page's claim form was sent (no session then): what that page shows.
    pub claim: Option<ClaimView>,
}

/// The not-admitted page after its claim form (`settings::claim`).
#[derive(Debug, Clone)]
pub struct ClaimView {
    pub admitted: bool,
    pub claim_pending: bool,
    /// The signed note of the account's domain, for the form again.
    pub pending: String,
    /// The account's Flowlu origin, allowed to frame the page.
    pub origin: Option<String>,
}

struct Entry {
    view: View,
    created: Instant,
}

/// The live view tokens of one appliance.
#[derive(Default)]
pub struct Views {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Views {
    /// Stores `view` and returns its new token.
    pub fn put(&self, view: View) -> String {
        self.put_at(view, Instant::now())
    }

    fn put_at(&self, view: View, now: Instant) -> String {
        let token = crate::secret::random_token(32);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, e| now.duration_since(e.created) < LIFETIME);
        if entries.len() >= MAX_VIEWS
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(token.clone(), Entry { view, created: now });
        token
    }

    /// The view for `token`, if it is live. The outcome is handed out once: later loads
    /// of the same token show the page without the notice, with a 200.
    pub fn load(&self, token: &str) -> Option<View> {
        self.load_at(token, Instant::now())
    }

    fn load_at(&self, token: &str, now: Instant) -> Option<View> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let entry = entries.get_mut(token)?;
        if now.duration_since(entry.created) >= LIFETIME {
            entries.remove(token);
            return None;
        }
        let view = entry.view.clone();
        entry.view.notice = None;
        entry.view.pbx_form = None;
        entry.view.status = StatusCode::OK;
        Some(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> View {
        View {
            session: "v1.signed".into(),
            lang: "ru",
            notice: Some(Notice {
                text: "Saved.".into(),
                error: false,
            }),
            section: "calls",
            pbx_form: None,
            status: StatusCode::UNPROCESSABLE_ENTITY,
            claim: None,
        }
    }

    #[test]
    fn a_view_shows_its_notice_once_and_expires() {
        let views = Views::default();
        let t0 = Instant::now();
        let token = views.put_at(view(), t0);
        assert_eq!(token.len(), 43, "32 random bytes, base64url");
        let first = views.load_at(&token, t0).unwrap();
        assert_eq!(first.notice.unwrap().text, "Saved.");
        assert_eq!(first.status, StatusCode::UNPROCESSABLE_ENTITY);
        let reload = views.load_at(&token, t0 + Duration::from_secs(1)).unwrap();
        assert!(reload.notice.is_none());
        assert_eq!(reload.status, StatusCode::OK);
        assert_eq!(reload.session, "v1.signed");
        assert!(views.load_at(&token, t0 + LIFETIME).is_none());
        assert!(
            views.load_at(&token, t0).is_none(),
            "an expired view is gone"
        );
        assert!(views.load_at("guessed", t0).is_none());
    }

    #[test]
    fn the_number_of_views_is_bounded() {
        let views = Views::default();
        let t0 = Instant::now();
        let first = views.put_at(view(), t0);
        for i in 1..=MAX_VIEWS as u64 {
            views.put_at(view(), t0 + Duration::from_millis(i));
        }
        assert_eq!(views.entries.lock().unwrap().len(), MAX_VIEWS);
        assert!(views.load_at(&first, t0).is_none(), "the oldest went first");
    }

    #[test]
    fn the_access_log_masks_the_view_token() {
        let logged = crate::redact::redact_path("/integration/settings", Some("token=abc"));
        assert!(!logged.contains("abc"), "{logged}");
    }
}
