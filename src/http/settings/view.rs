//! Rendering the settings page: texts in English or Russian, the page model, and the
//! headers that let the page live in Flowlu's iframe and nowhere else.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use serde::Serialize;

use crate::app::State;
use crate::config::FlowluConfig;
use crate::flowlu::pbx_settings;
use crate::flowlu::store::{self, CallSettings, UserRow};
use crate::flowlu::{FlowluError, setup};
use crate::http::respond::{self, Response};
use crate::pbx::LinkState;

type Texts = BTreeMap<String, String>;

/// Every text of `lang` (English for an unknown language).
pub fn texts(lang: &str) -> &'static Texts {
    static EN: OnceLock<Texts> = OnceLock::new();
    static RU: OnceLock<Texts> = OnceLock::new();
    let parse = |src: &str| toml::from_str::<Texts>(src).expect("i18n files are valid TOML");
    match lang {
        "ru" => RU.get_or_init(|| parse(include_str!("../../../assets/i18n/ru.toml"))),
        _ => EN.get_or_init(|| parse(include_str!("../../../assets/i18n/en.toml"))),
    }
}

/// The text for `key` in `lang`.
pub fn t(lang: &str, key: &str) -> String {
    texts(lang)
        .get(key)
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

/// The text for `key` in `lang` with each `{name}` replaced by its value.
pub fn tf(lang: &str, key: &str, args: &[(&str, &str)]) -> String {
    let mut text = t(lang, key);
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// `en` or `ru` from a request field.
pub fn lang(raw: Option<&str>) -> &'static str {
    match raw {
        Some("ru") => "ru",
        _ => "en",
    }
}

/// `ru` when the browser's `Accept-Language` prefers Russian (for pages answered before
/// the request names its language), else `en`.
pub fn accept_lang(headers: &hyper::HeaderMap) -> &'static str {
    let first = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if first == "ru" || first.starts_with("ru-") || first.starts_with("ru;") {
        "ru"
    } else {
        "en"
    }
}

/// An error page in `lang`: the status and the error's text from the i18n files
/// (`error_<status>`, `error_<code>`), the English message where no text exists.
pub fn error_html(
    pages: &crate::http::Pages,
    e: &crate::http::HttpError,
    lang: &'static str,
) -> String {
    let texts = texts(lang);
    let status = e.status.as_u16();
    let reason = texts
        .get(&format!("error_{status}"))
        .cloned()
        .unwrap_or_else(|| e.status.canonical_reason().unwrap_or("").to_string());
    let message = match texts.get(&format!("error_{}", e.code)) {
        // English keeps the precise message; other languages get the translation.
        Some(text) if lang != "en" => text.clone(),
        _ => e.message.clone(),
    };
    pages.render(
        "error.html",
        minijinja::context! {
            lang => lang,
            status => status,
            reason => reason,
            message => message,
            hint => texts.get("error_hint"),
        },
    )
}

/// A message at the top of the page.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

impl Notice {
    pub fn ok(lang: &str, key: &str) -> Notice {
        Notice {
            text: t(lang, key),
            error: false,
        }
    }

    pub fn error(lang: &str, key: &str, detail: impl std::fmt::Display) -> Notice {
        Notice {
            text: format!("{}: {detail}", t(lang, key)),
            error: true,
        }
    }
}

/// PBX form values echoed back into the page (never the secret).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PbxForm {
    pub kind: String,
    pub host: String,
    pub port: String,
    pub user: String,
    pub has_secret: bool,
    /// The PBX's (or the system's) own words from the last test, untranslated.
    pub detail: String,
}

/// Everything the page shows besides what is loaded from the database.
pub struct PageRequest<'a> {
    pub integration_id: i64,
    pub user_id: &'a str,
    pub lang: &'static str,
    pub session: &'a str,
    pub notice: Option<Notice>,
    /// The section whose form produced the notice (shown there, open).
    pub section: &'static str,
    /// The PBX form as submitted, to show after a failed save or a test.
    pub pbx_form: Option<PbxForm>,
    pub status: StatusCode,
}

#[derive(Serialize)]
struct PbxView {
    state: &'static str,
    detail: Option<String>,
    can_edit: bool,
    form: PbxForm,
}

#[derive(Serialize)]
struct ChannelView {
    uuid: Option<String>,
}

#[derive(Serialize)]
struct UserView {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct Page<'a> {
    lang: &'static str,
    t: &'static Texts,
    session: &'a str,
    domain: String,
    user: UserView,
    notice: Option<Notice>,
    section: &'static str,
    needs_reconnect: bool,
    reconnect_reason: Option<String>,
    channel: ChannelView,
    public_url_set: bool,
    default_channel_name: &'static str,
    calls: CallSettings,
    pbx: PbxView,
    users: Vec<UserRow>,
    /// The PBX's lines for the mapping section (settings::lines).
    lines: super::lines::LinesView,
    /// Live state by extension, for the mapped users.
    line_state: BTreeMap<String, &'static str>,
    /// The delivery log (settings::delivery).
    events: super::delivery::EventsView,
    /// History import and the last back-fill (settings::history).
    history: super::history::HistoryView,
    /// Result callbacks (src/http/settings/callbacks.rs).
    callbacks: super::callbacks::CallbacksView,
    /// Issue 8: CRM contacts and call rules.
    crm: super::crm::CrmView,
    /// The click-to-call URL section.
    c2c: super::c2c::C2cView,
    /// Issue 12: the admitted accounts, for the PBX owner only.
    accounts: super::accounts::AccountsView,
}

/// Renders the page for the session's integration and user, with its CSP.
pub async fn page(state: &State, req: PageRequest<'_>) -> Result<Response, FlowluError> {
    let id = req.integration_id;
    let (c2c, accounts) = state
        .db
        .run(move |c| Ok((super::c2c::load(c, id)?, super::accounts::view(c, id)?)))
        .await
        .map_err(FlowluError::Db)?;
    let config_pbx = state.config.pbx.kind().is_some();
    let (integration, settings, users, stored_pbx, may_edit, events) = state
        .db
        .run(move |c| {
            let integration =
                store::integration(c, id)?.ok_or(FlowluError::UnknownIntegration(id))?;
            Ok::<_, FlowluError>((
                integration,
                store::settings(c, id)?,
                store::users(c, id)?,
                pbx_settings::load(c)?,
                pbx_settings::may_edit(c, id, config_pbx)?,
                super::delivery::load(c, id)?,
            ))
        })
        .await?;
    let callbacks = super::callbacks::view(state, id).await?;
    let history = super::history::view(state, &integration).await?;
    let status = state.pbx.get();
    let current = state.pbx_settings.borrow().clone();
    let form = req.pbx_form.unwrap_or_else(|| match &current {
        // Only the owner ever sees the address and user of the PBX.
        Some(_) if !may_edit => PbxForm::default(),
        Some(s) => PbxForm {
            kind: s.kind.as_str().to_string(),
            host: s.host.clone(),
            port: s.port.to_string(),
            user: s.user.clone(),
            has_secret: !s.secret.is_empty(),
            detail: String::new(),
        },
        None => PbxForm {
            kind: "asterisk".into(),
            host: "127.0.0.1".into(),
            ..PbxForm::default()
        },
    });
    // Saved settings the supervisor has not picked up yet still count as configured.
    let state_name = match (status.state, stored_pbx.is_some() || current.is_some()) {
        (LinkState::NotConfigured, true) => LinkState::Down.as_str(),
        (s, _) => s.as_str(),
    };
    let user_name = users
        .iter()
        .find(|u| u.user_id == req.user_id)
        .map(|u| u.name.clone())
        .unwrap_or_default();
    let crm = super::crm::view(state, id).await?;
    let lines = super::lines::view(state, id).await;
    let line_state = users
        .iter()
        .filter_map(|u| u.extension.as_deref())
        .filter_map(|ext| Some((ext.to_string(), lines.state_of(ext)?)))
        .collect();
    let page = Page {
        lang: req.lang,
        t: texts(req.lang),
        session: req.session,
        domain: integration.domain.clone(),
        user: UserView {
            id: req.user_id.to_string(),
            name: user_name,
        },
        notice: req.notice,
        section: req.section,
        needs_reconnect: integration.needs_reconnect,
        reconnect_reason: integration.reconnect_reason.clone(),
        channel: ChannelView {
            uuid: integration.telephony_uuid.clone(),
        },
        public_url_set: state.config.public_url().is_some(),
        default_channel_name: setup::DEFAULT_CHANNEL_NAME,
        calls: settings,
        pbx: PbxView {
            state: state_name,
            detail: status.detail.filter(|_| may_edit),
            can_edit: may_edit,
            form,
        },
        users,
        lines,
        line_state,
        events,
        history,
        callbacks,
        crm,
        c2c: super::c2c::view(state, c2c),
        accounts,
    };
    let html = state.pages.render("settings.html", &page);
    let origin = integration
        .target(&state.config.flowlu)
        .ok()
        .map(|t| t.origin);
    Ok(with_frame_headers(
        respond::html(req.status, html),
        &state.config.flowlu,
        origin.as_deref(),
    ))
}

/// Unix milliseconds as `2026-11-23 06:46 UTC`.
pub(super) fn utc(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Adds the settings page's headers: a CSP whose `frame-ancestors` is the account's
/// Flowlu origin (or, before we know the account, the allow-listed Flowlu domains) plus
/// `[flowlu] frame_ancestors`; `nosniff`; `no-store`.
pub fn with_frame_headers(
    mut resp: Response,
    config: &FlowluConfig,
    origin: Option<&str>,
) -> Response {
    let ancestors = super::framing::ancestors(config, origin);
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; \
         form-action 'self'; base-uri 'none'; frame-ancestors {}",
        ancestors.join(" ")
    );
    let h = resp.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A redirect's view token is in the page's URL: never send it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let en: Vec<&String> = texts("en").keys().collect();
        let ru: Vec<&String> = texts("ru").keys().collect();
        assert_eq!(en, ru);
        assert!(en.len() > 40);
        assert_eq!(t("ru", "save"), "Сохранить");
        assert_eq!(t("xx", "save"), "Save");
    }

    #[test]
    fn the_template_uses_only_known_keys() {
        let src = include_str!("../../../assets/templates/settings.html");
        let mut pieces = src.split("t.");
        let mut before = pieces.next().unwrap_or("");
        for piece in pieces {
            // `t.` itself, not the end of a longer name (`history.last_import.found`).
            let own = !before
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            before = piece;
            if !own {
                continue;
            }
            let key: String = piece
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !key.is_empty() {
                assert!(texts("en").contains_key(&key), "unknown text key {key}");
            }
        }
        // The keys the templates build (`t["events_state_" ~ state]`, ...).
        for key in [
            "events_state_",
            "history_days_",
            "index_status_",
            "c2c_status_",
        ] {
            assert!(texts("en").keys().any(|k| k.starts_with(key)), "{key}");
        }
        for state in ["pending", "delivered", "failed"] {
            assert!(texts("ru").contains_key(&format!("events_state_{state}")));
        }
        for days in super::super::history::DAYS {
            assert!(texts("ru").contains_key(&format!("history_days_{days}")));
        }
        for status in ["ok", "degraded", "error"] {
            assert!(texts("ru").contains_key(&format!("index_status_{status}")));
        }
        for state in [
            "up",
            "down",
            "auth_failed",
            "challenge_refused",
            "unsupported_version",
            "not_configured",
        ] {
            assert!(texts("en").contains_key(&format!("pbx_state_{state}")));
        }
    }

    #[test]
    fn csp_names_the_account_origin_and_extras() {
        let mut config = crate::config::Config::defaults().flowlu;
        config.frame_ancestors = vec!["http://localhost:1234".into()];
        let resp = with_frame_headers(
            respond::html(StatusCode::OK, String::new()),
            &config,
            Some("https://acme.flowlu.com"),
        );
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.ends_with("frame-ancestors https://acme.flowlu.com http://localhost:1234"),
            "{csp}"
        );
        let resp = with_frame_headers(respond::html(StatusCode::OK, String::new()), &config, None);
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            csp.contains("frame-ancestors https://*.flowlu.com https://*.flowlu.ru"),
            "{csp}"
        );
    }
}
