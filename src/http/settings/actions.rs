//! The settings page's forms, each scoped to the session's integration: Connect,
//! Disconnect, call settings and the extension mapping here; the PBX connection (save
//! and test) in `settings::pbx`, the other sections in their own modules.
//!
//! A refused form is not an HTTP error page: the page is shown again with the reason on
//! top and a matching status (422 invalid, 403 not allowed, 401/502 Flowlu trouble).

use std::collections::HashSet;

use hyper::StatusCode;

use super::session::Session;
use super::view::{Notice, PbxForm, t, tf};
use crate::app::State;
use crate::flowlu::FlowluError;
use crate::flowlu::setup::{self, Connected};
use crate::flowlu::store::{self, CallSettings, IncomingRouting, Integration};
use crate::http::HttpError;

pub const NAMES: &[&str] = &[
    "events-retry",
    "events-resend",
    // Issue 14: history import (settings::history).
    "history-import",
    "history-status",
    "connect",
    "disconnect",
    "calls",
    "pbx",
    "pbx-test",
    "mapping",
    // Issue 8: CRM contacts and call rules (settings::crm).
    "crm",
    "crm-rotate",
    "c2c",
    "c2c-rotate",
    // Issue 12: more Flowlu accounts, admitted by the PBX owner (settings::accounts).
    "accounts-admit",
];

pub struct Outcome {
    pub notice: Notice,
    pub status: StatusCode,
    pub pbx_form: Option<PbxForm>,
}

impl Outcome {
    pub(super) fn ok(lang: &str, key: &str) -> Outcome {
        Outcome {
            notice: Notice::ok(lang, key),
            status: StatusCode::OK,
            pbx_form: None,
        }
    }

    /// A success notice with its own text (e.g. a secret shown once).
    pub(super) fn text(text: String) -> Outcome {
        Outcome {
            notice: Notice { text, error: false },
            status: StatusCode::OK,
            pbx_form: None,
        }
    }

    /// A 403 with the text of `key`.
    pub(super) fn forbidden(lang: &str, key: &str) -> Outcome {
        Outcome {
            notice: Notice {
                text: super::view::t(lang, key),
                error: true,
            },
            status: StatusCode::FORBIDDEN,
            pbx_form: None,
        }
    }

    pub(super) fn invalid(lang: &str, why: impl std::fmt::Display) -> Outcome {
        Outcome {
            notice: Notice::error(lang, "not_saved", why),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            pbx_form: None,
        }
    }
}

/// A form's fields, as decoded.
pub(super) type Fields = [(String, String)];

/// A form field's value; empty when absent.
pub(super) fn field<'a>(fields: &'a Fields, key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

pub async fn run(
    state: &State,
    name: &str,
    session: &Session,
    integration: &Integration,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let id = integration.id;
    match name {
        "connect" => connect(state, session, id, lang, fields).await,
        "disconnect" => Ok(match setup::disconnect(&state.flowlu, id).await? {
            true => Outcome::ok(lang, "disconnected"),
            false => Outcome::ok(lang, "not_connected"),
        }),
        "calls" => calls(state, id, lang, fields).await,
        "pbx" | "pbx-test" => super::pbx::form(state, id, lang, fields, name == "pbx-test").await,
        "mapping" => mapping(state, id, lang, fields).await,
        // Result callbacks (src/http/settings/callbacks.rs).
        n if super::callbacks::NAMES.contains(&n) => {
            super::callbacks::run(state, n, id, lang, fields).await
        }
        "crm" | "crm-rotate" => super::crm::run(state, name, id, lang, fields).await,
        "c2c" => super::c2c::toggle(state, id, lang, field(fields, "enabled")).await,
        "c2c-rotate" => super::c2c::rotate(state, id, lang).await,
        "accounts-admit" => super::accounts::admit(state, id, lang, fields).await,
        "events-retry" => super::delivery::retry_all(state, id, lang).await,
        "events-resend" => super::delivery::resend(state, id, lang, fields).await,
        "history-import" => super::history::start(state, integration, lang, fields).await,
        "history-status" => super::history::status(state, lang).await,
        _ => Err(HttpError::not_found()),
    }
}

fn plain_text(value: &str, max: usize) -> bool {
    value.chars().count() <= max && !value.chars().any(char::is_control)
}

async fn connect(
    state: &State,
    session: &Session,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let name = field(fields, "channel_name").trim().to_string();
    if !plain_text(&name, 100) {
        return Ok(Outcome::invalid(lang, t(lang, "invalid_channel_name")));
    }
    state
        .db
        .run(move |c| {
            let mut s = store::settings(c, id)?;
            if s.channel_name != name {
                s.channel_name = name;
                store::save_settings(c, id, &s)?;
            }
            Ok::<_, FlowluError>(())
        })
        .await?;
    match setup::connect(&state.flowlu, id, &session.user_id).await {
        Ok(Connected::Registered(_)) => Ok(Outcome::ok(lang, "connected")),
        Ok(Connected::AlreadyRegistered(_)) => Ok(Outcome::ok(lang, "already_connected")),
        Err(FlowluError::Db(e)) => Err(e.into()),
        Err(e) => {
            log::warn!("integration {id}: Connect failed: {e}");
            let http = HttpError::from(e);
            Ok(Outcome {
                notice: Notice::error(lang, "connect_failed", &http.message),
                status: http.status,
                pbx_form: None,
            })
        }
    }
}

async fn calls(
    state: &State,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let line = field(fields, "default_line").trim().to_string();
    if line.len() > 64
        || !line
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+*#@._-/".contains(&b))
    {
        return Ok(Outcome::invalid(lang, t(lang, "invalid_default_line")));
    }
    let country = field(fields, "default_country_code")
        .trim()
        .trim_start_matches('+')
        .to_string();
    if country.len() > 3
        || !country.bytes().all(|b| b.is_ascii_digit())
        || country.starts_with('0')
        || !crate::calls::phone::is_country_code(&country)
    {
        return Ok(Outcome::invalid(lang, t(lang, "invalid_country_code")));
    }
    let record = match field(fields, "record_calls") {
        "" | "0" | "false" | "off" => false,
        "1" | "true" | "on" => true,
        _ => {
            return Ok(Outcome::invalid(
                lang,
                tf(lang, "invalid_on_off", &[("field", "record_calls")]),
            ));
        }
    };
    let Some(routing) = IncomingRouting::parse(field(fields, "incoming_routing")) else {
        return Ok(Outcome::invalid(lang, t(lang, "invalid_routing")));
    };
    // The new country's numbering plan, compiled now rather than in front of a call.
    let warm = vec![country.clone()];
    tokio::task::spawn_blocking(move || crate::calls::phone::warm_up(&warm));
    state
        .db
        .run(move |c| {
            let old = store::settings(c, id)?;
            let new = CallSettings {
                channel_name: old.channel_name,
                default_line: line,
                default_country_code: country,
                record_calls: record,
                incoming_routing: routing,
            };
            store::save_settings(c, id, &new)
        })
        .await?;
    Ok(Outcome::ok(lang, "saved"))
}

fn valid_extension(ext: &str) -> bool {
    !ext.is_empty()
        && ext.len() <= 32
        && ext
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*#+_.-".contains(&b))
}

async fn mapping(
    state: &State,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    // (user_id, extension or None to unmap)
    let mut wanted: Vec<(String, Option<String>)> = Vec::new();
    for (key, value) in fields {
        let Some(user) = key.strip_prefix("ext[").and_then(|k| k.strip_suffix(']')) else {
            continue;
        };
        let ext = value.trim();
        if !ext.is_empty() && !valid_extension(ext) {
            return Ok(Outcome::invalid(
                lang,
                tf(lang, "invalid_extension", &[("ext", ext)]),
            ));
        }
        wanted.push((user.to_string(), (!ext.is_empty()).then(|| ext.to_string())));
    }
    let new_user = field(fields, "new_user_id").trim().to_string();
    let new_name = field(fields, "new_user_name").trim().to_string();
    let new_ext = field(fields, "new_extension").trim().to_string();
    if !new_user.is_empty() {
        if new_user.len() > 64
            || !new_user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Ok(Outcome::invalid(lang, t(lang, "invalid_user_id")));
        }
        if !plain_text(&new_name, 100) {
            return Ok(Outcome::invalid(lang, t(lang, "invalid_name")));
        }
        if !new_ext.is_empty() && !valid_extension(&new_ext) {
            return Ok(Outcome::invalid(
                lang,
                tf(lang, "invalid_extension", &[("ext", &new_ext)]),
            ));
        }
        wanted.retain(|(u, _)| *u != new_user);
        wanted.push((
            new_user.clone(),
            (!new_ext.is_empty()).then(|| new_ext.clone()),
        ));
    } else if !new_ext.is_empty() || !new_name.is_empty() {
        return Ok(Outcome::invalid(lang, t(lang, "invalid_new_user_missing")));
    }
    let mut seen_users = HashSet::new();
    let mut seen_exts = HashSet::new();
    for (user, ext) in &wanted {
        if !seen_users.insert(user.clone()) {
            return Ok(Outcome::invalid(
                lang,
                tf(lang, "invalid_user_twice", &[("user", user)]),
            ));
        }
        if let Some(ext) = ext
            && !seen_exts.insert(ext.clone())
        {
            return Ok(Outcome::invalid(
                lang,
                tf(lang, "invalid_extension_twice", &[("ext", ext)]),
            ));
        }
    }
    let result = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            if !new_user.is_empty() {
                store::add_user(&tx, id, &new_user, &new_name)?;
            }
            let submitted: HashSet<&str> = wanted.iter().map(|(u, _)| u.as_str()).collect();
            // Unmap every submitted user first, so extensions can move between them.
            for (user, _) in &wanted {
                if !store::set_extension(&tx, id, user, None)? {
                    return Ok(Err(tf(lang, "invalid_not_employee", &[("user", user)])));
                }
            }
            for (user, ext) in &wanted {
                let Some(ext) = ext else { continue };
                if let Some(holder) = store::user_for_extension(&tx, id, ext)?
                    && !submitted.contains(holder.as_str())
                {
                    return Ok(Err(tf(
                        lang,
                        "invalid_extension_taken",
                        &[("ext", ext), ("user", &holder)],
                    )));
                }
                store::set_extension(&tx, id, user, Some(ext))?;
            }
            tx.commit()?;
            Ok::<_, FlowluError>(Ok(()))
        })
        .await?;
    Ok(match result {
        Ok(()) => Outcome::ok(lang, "saved"),
        Err(why) => Outcome::invalid(lang, why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        for ok in ["101", "*97", "sip-100", "2001#"] {
            assert!(valid_extension(ok), "{ok}");
        }
        for bad in ["", "1 01", "10/1", &"1".repeat(33)] {
            assert!(!valid_extension(bad), "{bad}");
        }
    }
}
