//! `GET /healthz` and the operator's landing page `GET /`.
//!
//! Both answer anyone, but only clients that [`trust::sees_detail`] (trusted networks,
//! the metrics token) get the detail: the PBX state, address and error text, account
//! counts, the routing servers. Everyone else gets `status` and `version` only.

use hyper::StatusCode;
use hyper::header::{self, HeaderMap, HeaderValue};
use minijinja::context;
use serde::Serialize;

use super::respond::{self, Response};
use super::{Ctx, trust};
use crate::app::State;
use crate::config::PbxType;
use crate::pbx::{LinkState, PbxStatus};
use crate::routing::RoutingHealth;

#[derive(Serialize)]
pub struct Health {
    /// "ok" when everything is up, "degraded" when the appliance serves but something
    /// it depends on (the PBX, the routing server the PBX calls) is not available,
    /// "error" when the database is not.
    pub status: &'static str,
    pub version: &'static str,
    /// "ok" or "error".
    pub database: &'static str,
    /// not_configured, down, auth_failed, challenge_refused, unsupported_version or up.
    pub pbx: &'static str,
    pub pbx_detail: PbxStatus,
    /// Flowlu accounts served, as counts only (no account details).
    pub flowlu: FlowluHealth,
    /// The incoming-call routing servers (Asterisk FastAGI, FreeSWITCH outbound socket).
    pub routing: RoutingHealth,
    /// The last back-fill from the PBX's call records (`crate::cdr`): when, and how many
    /// calls it reported and corrected; null when none ran.
    pub backfill: Option<crate::cdr::store::Run>,
}

#[derive(Serialize, Default)]
pub struct FlowluHealth {
    /// Flowlu accounts that opened the settings page.
    pub integrations: i64,
    /// Of those, with a registered telephony channel.
    pub connected: i64,
    /// Of those, whose token could not be refreshed: events are held until an admin
    /// reopens the settings in Flowlu.
    pub needs_reconnect: i64,
}

pub async fn collect(state: &State) -> Health {
    let database = match state.db.ping().await {
        Ok(()) => "ok",
        Err(e) => {
            log::error!("health check: database: {e}");
            "error"
        }
    };
    let flowlu = match state
        .db
        .run(|c| crate::flowlu::store::health_counts(c))
        .await
    {
        Ok((integrations, connected, needs_reconnect)) => FlowluHealth {
            integrations,
            connected,
            needs_reconnect,
        },
        Err(e) => {
            log::error!("health check: flowlu: {e}");
            FlowluHealth::default()
        }
    };
    let backfill = state
        .db
        .run(|c| crate::cdr::store::last_run(c, "backfill").map_err(crate::db::DbError::from))
        .await
        .unwrap_or_else(|e| {
            log::error!("health check: back-fill: {e}");
            None
        });
    let pbx = state.pbx.get();
    let routing = state.routing.get();
    let routing_degraded = routing.degraded(pbx.kind.and_then(PbxType::parse));
    let status = match (database, pbx.state) {
        ("error", _) => "error",
        _ if flowlu.needs_reconnect > 0 || routing_degraded => "degraded",
        (_, LinkState::Up) => "ok",
        _ => "degraded",
    };
    Health {
        status,
        version: crate::VERSION,
        database,
        pbx: pbx.state.as_str(),
        pbx_detail: pbx,
        flowlu,
        routing,
        backfill,
    }
}

/// What `/healthz` tells a client that may not see the detail.
#[derive(Serialize)]
pub struct PublicHealth {
    pub status: &'static str,
    pub version: &'static str,
}

/// 200 while the appliance can serve (even with the PBX down), 503 when the database fails.
pub async fn get(state: &State, ctx: &Ctx, headers: &HeaderMap) -> Response {
    let health = collect(state).await;
    let status = if health.database == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if trust::sees_detail(&state.config, ctx, headers) {
        respond::json(status, &health)
    } else {
        let public = PublicHealth {
            status: health.status,
            version: health.version,
        };
        respond::json(status, &public)
    }
}

pub async fn index(state: &State, ctx: &Ctx, headers: &HeaderMap) -> Response {
    let health = collect(state).await;
    let detail = trust::sees_detail(&state.config, ctx, headers);
    let iframe_url = state
        .config
        .public_url()
        .map(|base| format!("{base}/integration/settings"));
    let lang = crate::http::settings::accept_lang(headers);
    let framing =
        crate::http::settings::framing::report(&state.config.flowlu, &state.settings_live.framing);
    let page = state.pages.render(
        "index.html",
        context! {
            lang => lang,
            t => crate::http::settings::texts(lang),
            framing => minijinja::Value::from(minijinja::value::Serde(&framing)),
            version => health.version,
            status => health.status,
            detail => detail,
            database => health.database,
            pbx => minijinja::Value::from(minijinja::value::Serde(&health.pbx_detail)),
            flowlu => minijinja::Value::from(minijinja::value::Serde(&health.flowlu)),
            iframe_url => iframe_url,
        },
    );
    let mut resp = respond::html(StatusCode::OK, page);
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'",
        ),
    );
    resp
}
