//! The settings page's "Result callbacks" section: the per-account switch, adding and
//! deleting callbacks, rotating a signing secret, the "send test event" button, and the
//! delivery log. Every read and write is scoped to the session's integration.
//!
//! A new signing secret is shown once, in the notice that answers the form that made it;
//! afterwards the page shows it masked. The auth header's value is only ever masked.

use hyper::StatusCode;
use serde::Serialize;

use super::actions::{Fields, Outcome, field};
use super::view::{Notice, t};
use crate::app::State;
use crate::callbacks::store::{self, Outcome as Delivery};
use crate::callbacks::{CallbackError, sign, target};
use crate::http::HttpError;

/// The form actions of this section (`POST /integration/settings/<name>`).
pub const NAMES: &[&str] = &[
    "callbacks",
    "callback-add",
    "callback-delete",
    "callback-rotate",
    "callback-test",
];

fn refused(lang: &str, status: StatusCode, why: impl std::fmt::Display) -> Outcome {
    Outcome {
        notice: Notice::error(lang, "not_saved", why),
        status,
        pbx_form: None,
    }
}

impl From<CallbackError> for HttpError {
    fn from(e: CallbackError) -> Self {
        match e {
            CallbackError::Db(e) => e.into(),
            CallbackError::NoSuchCallback => HttpError::not_found(),
        }
    }
}

pub async fn run(
    state: &State,
    name: &str,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    if name == "callbacks" {
        let on = field(fields, "enabled") == "1";
        state
            .db
            .run(move |c| Ok::<_, CallbackError>(store::set_enabled(c, id, on)?))
            .await?;
        return Ok(Outcome::text(t(
            lang,
            if on { "cb_saved_on" } else { "cb_saved_off" },
        )));
    }
    if name == "callback-add" {
        return add(state, id, lang, fields).await;
    }
    let Ok(callback) = field(fields, "callback").trim().parse::<i64>() else {
        return Ok(refused(
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            t(lang, "cb_not_found"),
        ));
    };
    let exists = state
        .db
        .run(move |c| Ok::<_, CallbackError>(store::get(c, id, callback)?.is_some()))
        .await?;
    if !exists {
        return Ok(refused(
            lang,
            StatusCode::NOT_FOUND,
            t(lang, "cb_not_found"),
        ));
    }
    match name {
        "callback-delete" => {
            state
                .db
                .run(move |c| Ok::<_, CallbackError>(store::delete(c, id, callback)?))
                .await?;
            Ok(Outcome::text(t(lang, "cb_deleted")))
        }
        "callback-rotate" => {
            let secret = sign::new_secret();
            let stored = secret.clone();
            state
                .db
                .run(move |c| Ok::<_, CallbackError>(store::rotate(c, id, callback, &stored)?))
                .await?;
            log::info!("callbacks: signing secret of callback {callback} rotated");
            Ok(Outcome::text(format!("{} {secret}", t(lang, "cb_rotated"))))
        }
        "callback-test" => {
            let r = state.callbacks.send_test(id, callback).await?;
            let what = r
                .error
                .clone()
                .or_else(|| r.status.map(|s| format!("HTTP {s}")))
                .unwrap_or_default();
            let text = format!(
                "{} ({what}, {} ms, {})",
                t(
                    lang,
                    if r.outcome == Delivery::Delivered {
                        "cb_test_ok"
                    } else {
                        "cb_test_failed"
                    }
                ),
                r.duration_ms,
                r.delivery_id
            );
            Ok(Outcome {
                notice: Notice {
                    text,
                    error: r.outcome != Delivery::Delivered,
                },
                status: StatusCode::OK,
                pbx_form: None,
            })
        }
        _ => Err(HttpError::not_found()),
    }
}

async fn add(
    state: &State,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let checked = target::check_url(
        field(fields, "url"),
        state.config.callbacks.allow_http_loopback,
    )
    .and_then(|url| {
        target::check_header(field(fields, "auth_header"), field(fields, "auth_value"))
            .map(|auth| (url, auth))
    });
    let (url, auth) = match checked {
        Ok(ok) => ok,
        Err(why) => return Ok(refused(lang, StatusCode::UNPROCESSABLE_ENTITY, why)),
    };
    let secret = sign::new_secret();
    let stored = secret.clone();
    let added = state
        .db
        .run(move |c| Ok::<_, CallbackError>(store::add(c, id, &url, auth, &stored)?))
        .await?;
    match added {
        Some(callback) => {
            log::info!("callbacks: callback {callback} added for integration {id}");
            Ok(Outcome::text(format!("{} {secret}", t(lang, "cb_added"))))
        }
        None => Ok(refused(
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            t(lang, "cb_too_many"),
        )),
    }
}

/// The section as the page shows it.
#[derive(Debug, Serialize)]
pub struct CallbacksView {
    pub enabled: bool,
    pub items: Vec<CallbackView>,
}

#[derive(Debug, Serialize)]
pub struct CallbackView {
    id: i64,
    url: String,
    secret: String,
    auth_header: Option<String>,
    auth_value: Option<String>,
    pending: i64,
    log: Vec<LogView>,
}

#[derive(Debug, Serialize)]
struct LogView {
    at: String,
    kind: String,
    call: Option<String>,
    delivery_id: String,
    attempt: i64,
    status: Option<u16>,
    duration_ms: i64,
    error: Option<String>,
    state: String,
}

impl From<CallbackError> for crate::flowlu::FlowluError {
    fn from(e: CallbackError) -> Self {
        match e {
            CallbackError::Db(e) => crate::flowlu::FlowluError::Db(e),
            other => crate::flowlu::FlowluError::Invalid(other.to_string()),
        }
    }
}

/// Loads the section for `integration`.
pub async fn view(state: &State, integration: i64) -> Result<CallbacksView, CallbackError> {
    let log_size = state.config.callbacks.log_size as usize;
    state
        .db
        .run(move |c| {
            let mut items = Vec::new();
            for cb in store::list(c, integration)? {
                let log = store::log(c, cb.id, log_size)?
                    .into_iter()
                    .map(|l| LogView {
                        at: utc_seconds(l.started_at),
                        kind: l.kind,
                        call: l.call_id,
                        delivery_id: l.delivery_id,
                        attempt: l.attempt,
                        status: l.status,
                        duration_ms: l.duration_ms,
                        error: l.error,
                        state: l.state,
                    })
                    .collect();
                items.push(CallbackView {
                    id: cb.id,
                    url: target::display_url(&cb.url),
                    secret: target::mask(cb.secret.expose()),
                    auth_header: cb.auth.as_ref().map(|(name, _)| name.clone()),
                    auth_value: cb.auth.as_ref().map(|_| "***".to_string()),
                    pending: store::pending_count(c, cb.id)?,
                    log,
                });
            }
            Ok::<_, CallbackError>(CallbacksView {
                enabled: store::enabled(c, integration)?,
                items,
            })
        })
        .await
}

/// Unix milliseconds as `2026-11-23 06:46:08 UTC`.
fn utc_seconds(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}
