//! `GET /metrics`: the Prometheus scrape endpoint, and who may read it.
//!
//! Loopback clients that did not come through a proxy may always read it; anyone else
//! needs `Authorization: Bearer <[metrics] token>`. The metrics themselves live in
//! `crate::metrics`.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::respond::{self, Response};
use super::{Ctx, HttpError};
use crate::app::State;
use crate::metrics::text;
use crate::secret::constant_time_eq;

pub async fn get(state: &State, ctx: &Ctx, headers: &HeaderMap) -> Result<Response, HttpError> {
    authorize(state, ctx, headers)?;
    // The outbox gauges are read from the table at scrape time: always exact, and no
    // counting work on the delivery path.
    match state
        .db
        .run(|c| Ok::<_, crate::db::DbError>(crate::outbox::summary(c, None)?))
        .await
    {
        Ok(s) => state.metrics.set_outbox(s.pending, s.failed),
        Err(e) => log::warn!("metrics: cannot count the outbox: {e}"),
    }
    let text = state.metrics.render(&state.pbx.get());
    // OpenMetrics for the scrapers that ask for it (Prometheus 2.5 and later do); the
    // Prometheus text format 0.0.4 for everyone else (promtool, older tools, curl).
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, text) = if text::wants_openmetrics(accept) {
        (crate::metrics::CONTENT_TYPE, text)
    } else {
        (text::CONTENT_TYPE, text::to_prometheus(&text))
    };
    Ok(respond::bytes(StatusCode::OK, content_type, text))
}

fn authorize(state: &State, ctx: &Ctx, headers: &HeaderMap) -> Result<(), HttpError> {
    // A request relayed by a proxy on this host arrives from loopback too: only a direct
    // loopback client counts as local.
    let proxied = ["x-forwarded-for", "forwarded", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h));
    if ctx.client_ip.is_loopback() && !proxied {
        return Ok(());
    }
    let token = &state.config.metrics.token;
    if token.is_empty() {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics are served to loopback clients only; set [metrics] token to allow others",
        ));
    }
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match offered {
        Some(offered) if constant_time_eq(offered.as_bytes(), token.expose().as_bytes()) => Ok(()),
        _ => Err(HttpError {
            www_authenticate: Some(HeaderValue::from_static("Bearer realm=\"metrics\"")),
            ..HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
        }),
    }
}
