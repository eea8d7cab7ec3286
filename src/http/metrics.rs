//! `GET /metrics`: the Prometheus scrape endpoint, and who may read it.
//!
//! Clients in `[server] trusted_networks` (loopback by default) that did not come
//! through a proxy may always read it; anyone else needs `Authorization: Bearer
//! <[metrics] token>` (see `http::trust`). The metrics themselves live in
//! `crate::metrics`.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};

use super::respond::{self, Response};
use super::{Ctx, HttpError};
use crate::app::State;
use crate::metrics::text;

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
    if super::trust::from_trusted_network(&state.config, ctx, headers) {
        return Ok(());
    }
    match super::trust::bearer(&state.config, headers) {
        Some(true) => Ok(()),
        None => Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "metrics are served to [server] trusted_networks only; set [metrics] token to allow others",
        )),
        Some(false) => Err(HttpError {
            www_authenticate: Some(HeaderValue::from_static("Bearer realm=\"metrics\"")),
            ..HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
        }),
    }
}
