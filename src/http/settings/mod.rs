//! The Flowlu settings page: `POST /integration/settings` (the iframe Flowlu opens) and
//! the page's own forms, `POST /integration/settings/<action>`.
//!
//! The iframe POST is verified by the Flowlu side ([`crate::flowlu::setup::identify`]);
//! the page then carries a signed session token ([`session`]) that every form sends
//! back. All reads and writes are scoped to the integration named in that token; no form
//! field can name another integration. Each form answers with a redirect to a GET of
//! the page ([`views`]: POST/redirect/GET without the session in the URL). Responses
//! may be framed only by the account's
//! Flowlu origin (see [`view::with_frame_headers`]). An account the operator did not
//! admit gets the refusal page (403) instead, with the claim-code form ([`claim`]).

mod accounts;
mod actions;
mod c2c;
mod callbacks;
mod claim;
mod crm;
mod delivery;
pub mod framing;
pub mod history;
mod lines;
mod pbx;
pub mod session;
mod view;
pub mod views;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::error::HttpError;
use super::form::{self, Decoded};
use super::respond::{self, Response};
use crate::app::State;
use crate::flowlu::{FlowluError, context, domain, setup, store};

/// The settings page's state kept in memory (a restart forgets it).
#[derive(Default)]
pub struct Live {
    /// The history import (one at a time per appliance).
    pub history: history::Imports,
    /// The last iframe POST, for the operator page's framing line.
    pub framing: framing::Framing,
}

/// `POST /integration/settings`: Flowlu opens the iframe with the account context.
pub async fn entry(state: &State, req: Request<Incoming>) -> Response {
    let mut origin = None;
    let mut lang = view::accept_lang(req.headers());
    match open(state, req, &mut origin, &mut lang).await {
        Ok(resp) => resp,
        Err(e) => error_page(state, e, lang, origin.as_deref()),
    }
}

async fn open(
    state: &State,
    req: Request<Incoming>,
    origin: &mut Option<String>,
    lang: &mut &'static str,
) -> Result<Response, HttpError> {
    let headers = req.headers().clone();
    let (parts, body) = respond::read_body(req, state.config.server.max_body_bytes).await?;
    let offset = state.config.flowlu.expires_at_utc_offset_minutes;
    let ctx = match form::decode(&parts.headers, &body, true)? {
        Decoded::Json(json) => {
            let value = serde_json::from_slice::<serde_json::Value>(&json).ok();
            if let Some(l) = value.as_ref().and_then(|v| v["language"].as_str()) {
                *lang = view::lang(Some(l));
            }
            context::from_json(&json, offset)?
        }
        Decoded::Fields(fields) => {
            if let Some(l) = form_field(&fields, "language") {
                *lang = view::lang(Some(l));
            }
            context::from_fields(&fields, offset)?
        }
    };
    // Frame the answer (even a 401) for the POSTing account only once its domain passed.
    if let Ok(target) = domain::target(&state.config.flowlu, &ctx.domain, ctx.https) {
        *origin = Some(target.origin);
    }
    let ancestors = framing::ancestors(&state.config.flowlu, origin.as_deref());
    state
        .settings_live
        .framing
        .note(&headers, &ctx.domain, &ancestors);
    let who = match setup::identify(&state.flowlu, &ctx).await {
        Ok(who) => who,
        Err(FlowluError::NotAdmitted(domain)) => {
            return Ok(claim::refuse(state, &domain, ctx.language, origin.as_deref()).await);
        }
        Err(e) => return Err(e.into()),
    };
    let expires = store::now() + state.config.flowlu.session_minutes as i64 * 60;
    let token = session::sign(
        state.flowlu.session_key(),
        who.integration.id,
        &who.user_id,
        expires,
    );
    log::debug!(
        "settings opened for integration {} by user {} ({} path)",
        who.integration.id,
        who.user_id,
        if who.fast_path { "fast" } else { "slow" }
    );
    Ok(view::page(
        state,
        view::PageRequest {
            integration_id: who.integration.id,
            user_id: &who.user_id,
            lang: ctx.language,
            session: &token,
            notice: None,
            section: "",
            pbx_form: None,
            status: StatusCode::OK,
        },
    )
    .await?)
}

/// `POST /integration/settings/<action>`: one of the page's forms.
pub async fn action(state: &State, name: &str, req: Request<Incoming>) -> Response {
    let mut origin = None;
    let mut lang = view::accept_lang(req.headers());
    match act(state, name, req, &mut origin, &mut lang).await {
        Ok(resp) => resp,
        Err(e) => error_page(state, e, lang, origin.as_deref()),
    }
}

async fn act(
    state: &State,
    name: &str,
    req: Request<Incoming>,
    origin: &mut Option<String>,
    lang: &mut &'static str,
) -> Result<Response, HttpError> {
    if name != "claim" && !actions::NAMES.contains(&name) && !callbacks::NAMES.contains(&name) {
        return Err(HttpError::not_found());
    }
    let fields = read_fields(state, req).await?;
    if let Some(l) = form_field(&fields, "lang") {
        *lang = view::lang(Some(l));
    }
    if name == "claim" {
        // The refusal page's form: no session (the account is not admitted yet).
        let view = claim::redeem(state, &fields).await?;
        *origin = view.claim.as_ref().and_then(|c| c.origin.clone());
        return Ok(see_other(state, view, origin.as_deref()));
    }
    let lang = *lang;
    let token = form_field(&fields, "session").unwrap_or("");
    let (session, integration) = authorize(state, token, origin).await?;
    let outcome = actions::run(state, name, &session, &integration, lang, &fields).await?;
    let view = views::View {
        session: token.to_string(),
        lang,
        notice: Some(outcome.notice),
        section: section_of(name),
        pbx_form: outcome.pbx_form,
        status: outcome.status,
        claim: None,
    };
    Ok(see_other(state, view, origin.as_deref()))
}

/// `303 See Other` to the GET that shows `view`.
fn see_other(state: &State, view: views::View, origin: Option<&str>) -> Response {
    let view_token = state.settings_views.put(view);
    let mut resp = respond::bytes(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(location) =
        hyper::header::HeaderValue::from_str(&format!("/integration/settings?token={view_token}"))
    {
        resp.headers_mut().insert(hyper::header::LOCATION, location);
    }
    view::with_frame_headers(resp, &state.config.flowlu, origin)
}

/// The page section (its element id) a form belongs to.
fn section_of(action: &str) -> &'static str {
    match action {
        "connect" | "disconnect" => "channel",
        "calls" => "calls",
        "pbx" | "pbx-test" => "pbx",
        "mapping" => "mapping",
        "crm" | "crm-rotate" => "crm",
        "c2c" | "c2c-rotate" => "c2c",
        "accounts-admit" => "accounts",
        "events-retry" | "events-resend" => "events",
        "history-import" | "history-status" => "history",
        _ => "callbacks",
    }
}

/// Checks a settings session token and that its account is still admitted.
async fn authorize(
    state: &State,
    token: &str,
    origin: &mut Option<String>,
) -> Result<(session::Session, store::Integration), HttpError> {
    let session = session::verify(state.flowlu.session_key(), token, store::now()).map_err(
        |why| {
            log::warn!("settings form refused: session token {why:?}");
            HttpError::new(
                StatusCode::FORBIDDEN,
                "invalid_session",
                match why {
                    session::Refused::Expired => {
                        "this settings page has expired: close it and open the settings again in Flowlu"
                    }
                    _ => "this form does not carry a valid session: open the settings again in Flowlu",
                },
            )
        },
    )?;
    let id = session.integration_id;
    let integration = state
        .db
        .run(move |c| store::integration(c, id))
        .await?
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::FORBIDDEN,
                "invalid_session",
                "this settings page belongs to an integration that no longer exists",
            )
        })?;
    if let Ok(target) = integration.target(&state.config.flowlu) {
        *origin = Some(target.origin);
    }
    let domain = integration.domain.clone();
    let admitted = state
        .db
        .run(move |c| crate::flowlu::admission::is_admitted(c, &domain))
        .await?;
    if !admitted {
        // Revoked since the page was opened.
        return Err(FlowluError::NotAdmitted(integration.domain.clone()).into());
    }
    Ok((session, integration))
}

/// `GET /integration/settings?token=<view>`: the page after a form's redirect.
pub async fn show(state: &State, req: Request<Incoming>) -> Response {
    let mut origin = None;
    let lang = view::accept_lang(req.headers());
    let token = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    if token.is_empty() {
        // The iframe URL opened on its own (typed into a browser): not from Flowlu.
        let e = HttpError::new(
            StatusCode::FORBIDDEN,
            "not_from_flowlu",
            "this is the settings page of the Flowlu telephony app: it is meant to be opened \
             from Flowlu (the app's settings), which sends the account's context; open the \
             settings again in Flowlu",
        );
        return error_page(state, e, lang, None);
    }
    let Some(v) = state.settings_views.load(&token) else {
        let e = HttpError::new(
            StatusCode::FORBIDDEN,
            "view_expired",
            "this settings page has expired: close it and open the settings again in Flowlu",
        );
        return error_page(state, e, lang, None);
    };
    let lang = v.lang;
    if let Some(claim) = v.claim.clone() {
        return claim::show(state, v, claim);
    }
    let result = async {
        let (session, _) = authorize(state, &v.session, &mut origin).await?;
        Ok::<_, HttpError>(
            view::page(
                state,
                view::PageRequest {
                    integration_id: session.integration_id,
                    user_id: &session.user_id,
                    lang,
                    session: &v.session,
                    notice: v.notice,
                    section: v.section,
                    pbx_form: v.pbx_form,
                    status: v.status,
                },
            )
            .await?,
        )
    }
    .await;
    result.unwrap_or_else(|e| error_page(state, e, lang, origin.as_deref()))
}

/// A form POST's fields (URL-encoded or multipart; JSON is refused).
async fn read_fields(
    state: &State,
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, HttpError> {
    let (parts, body) = respond::read_body(req, state.config.server.max_body_bytes).await?;
    let Decoded::Fields(fields) = form::decode(&parts.headers, &body, false)? else {
        unreachable!("JSON is refused when not allowed");
    };
    Ok(fields)
}

/// A field of a decoded form.
fn form_field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The catalogue of `lang`'s texts, and the language an `Accept-Language` prefers, for
/// the pages outside the settings page (`/`, `/c2c`).
pub use view::{accept_lang, texts};

/// An error as a small HTML page in `lang` (for pages outside the settings iframe).
pub fn error_response(pages: &super::Pages, e: HttpError, lang: &'static str) -> Response {
    let page = view::error_html(pages, &e, lang);
    let mut resp = e.into_response(pages, true);
    *resp.body_mut() = respond::full(page);
    resp
}

/// An error as a small page in `lang` the iframe may show.
fn error_page(state: &State, e: HttpError, lang: &'static str, origin: Option<&str>) -> Response {
    let resp = error_response(&state.pages, e, lang);
    view::with_frame_headers(resp, &state.config.flowlu, origin)
}
