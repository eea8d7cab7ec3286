//! `GET /c2c?agent=<id>&to=<number>&from=<caller id>&key=<key>`: the click-to-call URL
//! ("CTI URL") a CRM link or a browser opens to place a call.
//!
//! Owns the key check (per account, `c2c_settings`, see [`store`]), the per-key rate limit
//! ([`limit`]) and reading the query. The call itself is placed by the webhook's
//! `call.make` (`webhook::calls::make`): the same mapping of the agent to an extension,
//! the same busy check, normalization and errors, and, with `request_id`, the same
//! idempotency (`webhook::replay`). Answers JSON, or a small page when the client asks
//! for HTML. The key never reaches a log line: the access log masks `key=` and this
//! module names only the account.

mod limit;
pub mod store;

use std::time::Instant;

use http_body_util::BodyExt;
use hyper::Method;
use hyper::header::{self, HeaderMap, HeaderValue};
use serde_json::Value;

use super::HttpError;
use super::error::wants_html;
use super::respond::{self, Response};
use super::webhook::{calls, replay};
use crate::app::State;
use crate::flowlu::webhook::CallMake;

pub use limit::Limiter;

/// Why a click-to-call URL is refused before a call is attempted. Statuses are mapped
/// in `http::error`.
#[derive(Debug, thiserror::Error)]
pub enum C2cError {
    /// Missing, wrong, rotated, or the URL is off for the key's account: one answer.
    #[error("this click-to-call link is not valid: ask your administrator for the current one")]
    Forbidden,
    #[error("too many calls from this link; try again in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Query(String),
    #[error(
        "agent {0:?} is the Flowlu user id of one employee and the extension of another: use the user id"
    )]
    AmbiguousAgent(String),
}

/// The query of one request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    agent: String,
    to: String,
    from: Option<String>,
    key: String,
    request_id: Option<String>,
    /// The caller's own id, echoed in result callbacks (as `call.make`'s `uuid`).
    uuid: Option<String>,
}

/// The whole route. HEAD is refused like any other method: it must not place calls.
pub async fn handle(
    state: &State,
    method: &Method,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Response {
    let html = wants_html(headers);
    let lang = crate::http::settings::accept_lang(headers);
    let resp = if method == Method::GET {
        match serve(state, query).await {
            Ok(resp) if html => page(state, resp, lang).await,
            Ok(resp) => resp,
            Err(e) if html => crate::http::settings::error_response(&state.pages, e, lang),
            Err(e) => e.into_response(&state.pages, html),
        }
    } else {
        HttpError::method_not_allowed("GET").into_response(&state.pages, html)
    };
    private(resp)
}

async fn serve(state: &State, query: Option<&str>) -> Result<Response, HttpError> {
    // The key first: without a valid one nothing else is told, not even a bad query.
    let key = param(query.unwrap_or(""), "key").unwrap_or_default();
    let k = key.clone();
    let integration = state
        .db
        .run(move |c| store::integration_for_key(c, &k))
        .await?
        .ok_or(C2cError::Forbidden)?;
    let config = state.current();
    let c2c = &config.c2c;
    if let Err(wait) = state
        .c2c
        .take(&key, c2c.rate_per_minute, c2c.burst, Instant::now())
    {
        log::info!("c2c: integration {integration}: rate limited");
        return Err(C2cError::RateLimited(wait.as_secs_f64().ceil().max(1.0) as u64).into());
    }
    let p = parse(query.unwrap_or("")).map_err(C2cError::Query)?;
    let agent = p.agent.clone();
    let resolved = state
        .db
        .run(move |c| store::resolve_agent(c, integration, &agent))
        .await?;
    let user_id = match resolved {
        Ok(Some(user)) => user,
        // Unmapped: call.make answers 404 user_not_mapped for it.
        Ok(None) => p.agent.clone(),
        Err(()) => return Err(C2cError::AmbiguousAgent(p.agent).into()),
    };
    log::info!("c2c: integration {integration}: call for Flowlu user {user_id}");
    let m = CallMake {
        user_id,
        phone: p.to,
        call_id: None,
        line: p.from,
        uuid: p.uuid,
    };
    let request_id = p.request_id.map(|r| format!("c2c:{r}"));
    let keys = replay::Keys::new(
        "c2c",
        request_id.as_deref(),
        None,
        &[
            &m.user_id,
            &m.phone,
            m.line.as_deref().unwrap_or(""),
            m.uuid.as_deref().unwrap_or(""),
        ],
    );
    let action = calls::make(state.clone(), integration, m);
    Ok(replay::once(state, integration, keys, action).await?)
}

/// No caching, and no `Referer` carrying the key to anything the page loads.
fn private(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The JSON answer as a small page for a browser, with the same status.
async fn page(state: &State, resp: Response, lang: &'static str) -> Response {
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return HttpError::internal().into_response(&state.pages, true),
    };
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let status = parts.status;
    if !status.is_success() {
        let message = json["error"]["message"].as_str().unwrap_or("").to_string();
        let code = json["error"]["code"].as_str().unwrap_or("");
        let e = HttpError::new(status, "", format!("{message} ({code})"));
        return crate::http::settings::error_response(&state.pages, e, lang);
    }
    let html = state.pages.render(
        "c2c.html",
        minijinja::context! {
            lang => lang,
            t => crate::http::settings::texts(lang),
            call_id => json["call_id"].as_str().unwrap_or(""),
            status => json["status"].as_str().unwrap_or(""),
        },
    );
    let mut out = respond::html(status, html);
    if let Some(v) = parts.headers.get("idempotent-replayed") {
        out.headers_mut().insert("idempotent-replayed", v.clone());
    }
    out
}

/// Decodes a query as browsers and CRMs write it. `+` is a space, except at the start
/// of a value, where it is the `+` of an international number written unencoded
/// (`to=+4420…`): nobody starts a number with a space.
fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let plus = v.starts_with('+');
        let v = if plus { &v[1..] } else { v };
        let decode = |s: &str| -> String {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let value = decode(v);
        (decode(k), if plus { format!("+{value}") } else { value })
    })
}

/// The first value of `name`.
fn param(query: &str, name: &str) -> Option<String> {
    pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// The known parameters; unknown ones (tracking tags a CRM adds) are ignored.
fn parse(query: &str) -> Result<Params, String> {
    let mut p = Params::default();
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in pairs(query) {
        let known = ["agent", "to", "from", "key", "request_id", "uuid"];
        if !known.contains(&k.as_str()) {
            continue;
        }
        if seen.contains(&k) {
            return Err(format!("`{k}` is given more than once"));
        }
        seen.push(k.clone());
        let v = v.trim().to_string();
        if v.chars().count() > 200 || v.chars().any(char::is_control) {
            return Err(format!(
                "`{k}` must be at most 200 characters without control characters"
            ));
        }
        match k.as_str() {
            "agent" => p.agent = v,
            "to" => p.to = v,
            "from" => p.from = Some(v).filter(|v| !v.is_empty()),
            "key" => p.key = v,
            "uuid" => {
                if !crate::flowlu::webhook::valid_uuid(&v) {
                    return Err(format!(
                        "`uuid` must be at most {} characters of A-Z, a-z, 0-9, '.', '_', ':', '-'",
                        crate::flowlu::webhook::MAX_UUID
                    ));
                }
                p.uuid = Some(v).filter(|v| !v.is_empty());
            }
            _ => {
                if !v.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err("`request_id` must be printable ASCII without spaces".into());
                }
                p.request_id = Some(v).filter(|v| !v.is_empty());
            }
        }
    }
    if p.agent.is_empty() {
        return Err("`agent` (the Flowlu user id or extension to ring first) is required".into());
    }
    if p.to.is_empty() {
        return Err("`to` (the number to call) is required".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_as_browsers_write_them() {
        let p = parse("agent=17&to=+44%2020%207946%200958&from=%2B7495&key=k&request_id=r-1&uuid=crm:42&utm=x")
            .unwrap();
        assert_eq!(
            p,
            Params {
                agent: "17".into(),
                to: "+44 20 7946 0958".into(),
                from: Some("+7495".into()),
                key: "k".into(),
                request_id: Some("r-1".into()),
                uuid: Some("crm:42".into()),
            }
        );
        // A form's spaces as `+` inside the value.
        assert_eq!(parse("agent=1&to=8+999+000").unwrap().to, "8 999 000");
        assert_eq!(param("a=1&k%65y=s3cr3t", "key").as_deref(), Some("s3cr3t"));
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        for (q, want) in [
            ("to=1", "`agent`"),
            ("agent=1", "`to`"),
            ("agent=1&to=", "`to`"),
            ("agent=1&agent=2&to=3", "more than once"),
            ("agent=1&to=3&request_id=a%20b", "printable"),
            ("agent=1%0A2&to=3", "control"),
            ("agent=1&to=3&uuid=a/b", "`uuid`"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
    }
}
