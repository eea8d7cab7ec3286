//! `POST /hooks/flowlu/<integration id>/<secret>`: what Flowlu asks of the appliance
//! through the `webhook_url` we registered (contract section 3): place a call, list and
//! look up calls, list employees, redirect a call, check health.
//!
//! Owns authenticating the request (the secret in the path, compared in constant time; a
//! wrong one is the same 404 as an unknown path), reading the body (JSON only, size
//! limit), dispatching by type, and the one error type of this boundary
//! ([`WebhookError`], mapped to statuses in `http::error`). Request and answer shapes are
//! `flowlu::webhook`'s; calls are placed through the call engine and the PBX handle.
//! Every answer concerns the authenticated account only: another account's calls are
//! never found.

pub(super) mod calls;
pub(super) mod replay;
pub(in crate::http) mod status;

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::HttpError;
use super::respond::{self, Response, read_body};
use crate::app::State;
use crate::calls::phone::PhoneError;
use crate::db::DbError;
use crate::engine::EngineError;
use crate::flowlu::store::{self, Integration};
use crate::flowlu::webhook::{self as shapes, ShapeError};
use crate::pbx::PbxError;

pub use replay::{Answer, Inflight};

/// The one error type of the webhook. `http::error` maps each to a status and code.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// Unreadable JSON, unknown type, missing or invalid fields.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("send the request as application/json (got {0})")]
    UnsupportedMediaType(String),
    #[error("invalid phone number: {0}")]
    Phone(#[from] PhoneError),
    #[error("Flowlu user {0} has no PBX extension: map one on the settings page")]
    UserNotMapped(String),
    #[error("extension {0} is already on a call")]
    AgentBusy(String),
    #[error("no such call")]
    NotFound,
    #[error("{0}")]
    CallNotRinging(String),
    #[error("the same request is still being processed; retry later")]
    InProgress,
    #[error("this X-Request-Id was already used for a different request")]
    KeyReused,
    #[error(transparent)]
    Pbx(#[from] PbxError),
    #[error("the call engine is not running")]
    EngineStopped,
    #[error("internal error")]
    Internal,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<EngineError> for WebhookError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Pbx(e) => WebhookError::Pbx(e),
            EngineError::Db(e) => WebhookError::Db(e),
            EngineError::Stopped => WebhookError::EngineStopped,
        }
    }
}

impl From<rusqlite::Error> for WebhookError {
    fn from(e: rusqlite::Error) -> Self {
        WebhookError::Db(e.into())
    }
}

/// An error as the answer it becomes (to store it for duplicates).
pub(super) fn error_answer(e: WebhookError) -> Answer {
    let e = HttpError::from(e);
    Answer::new(
        e.status,
        json!({"error": {"code": e.code, "message": e.message}}),
    )
}

/// The whole route: authenticate, then read and serve one request. Returns the route
/// name for the metrics too: a request that does not authenticate is counted as
/// `not_found`, like the unknown path it is made to look like.
pub async fn handle(
    state: &State,
    id: &str,
    secret: &str,
    req: Request<Incoming>,
) -> (&'static str, Response) {
    let authenticated = authenticate(state, id, secret)
        .await
        .map_err(HttpError::from);
    respond::secret_hook(state, "webhook", req, authenticated, async |i, req| {
        serve(state, i, req).await
    })
    .await
}

/// The integration the path names, if its secret matches.
async fn authenticate(
    state: &State,
    id: &str,
    secret: &str,
) -> Result<Option<Integration>, DbError> {
    let Some(id) = super::respond::path_id(id) else {
        return Ok(None);
    };
    let secret = secret.to_string();
    state
        .db
        .run(move |c| store::integration_by_webhook(c, id, &secret))
        .await
}

async fn serve(
    state: &State,
    integration: Integration,
    req: Request<Incoming>,
) -> Result<Response, HttpError> {
    check_content_type(req.headers())?;
    let request_id = request_id(req.headers())?;
    let (_, body) = read_body(req, state.config.server.max_body_bytes).await?;
    let request = shapes::parse(&body).map_err(WebhookError::from)?;
    log::debug!(
        "webhook: {} for integration {}",
        request.kind(),
        integration.id
    );
    Ok(dispatch(state, &integration, request, request_id.as_deref()).await?)
}

async fn dispatch(
    state: &State,
    integration: &Integration,
    request: shapes::Request,
    request_id: Option<&str>,
) -> Result<Response, WebhookError> {
    use shapes::Request as R;
    let id = integration.id;
    let answer = match request {
        R::CallMake(m) => {
            let keys = replay::Keys::new(
                "call.make",
                request_id,
                m.call_id.as_deref(),
                &[
                    &m.user_id,
                    &m.phone,
                    m.call_id.as_deref().unwrap_or(""),
                    m.line.as_deref().unwrap_or(""),
                    m.uuid.as_deref().unwrap_or(""),
                ],
            );
            let action = calls::make(state.clone(), id, m);
            return replay::once(state, id, keys, action).await;
        }
        R::CallRedirect(r) => {
            let target = match &r.target {
                shapes::Target::User(u) => format!("user:{u}"),
                shapes::Target::Extension(e) => format!("extension:{e}"),
            };
            let keys = replay::Keys::new("call.redirect", request_id, None, &[&r.call_id, &target]);
            let action = calls::redirect(state.clone(), id, r);
            return replay::once(state, id, keys, action).await;
        }
        R::CallsList(list) => calls::list(state, id, list).await?,
        R::CallGet { call_id } => calls::get(state, id, call_id).await?,
        R::EmployeesList => status::employees(state, id).await?,
        R::HealthCheck => status::health(state, integration).await?,
    };
    Ok(respond::json(answer.status, &answer.body))
}

/// JSON, or no Content-Type at all (read as JSON); anything else is 415.
fn check_content_type(headers: &HeaderMap) -> Result<(), WebhookError> {
    super::respond::json_content_type(headers).map_err(WebhookError::UnsupportedMediaType)
}

/// The `X-Request-Id` header: printable ASCII, at most 200 characters.
fn request_id(headers: &HeaderMap) -> Result<Option<String>, WebhookError> {
    let Some(value) = headers.get("x-request-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > 200 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ShapeError::Field(
            "X-Request-Id must be at most 200 printable ASCII characters".into(),
        )
        .into());
    }
    Ok(Some(text.to_string()))
}

/// 200 with a JSON body.
fn ok(body: serde_json::Value) -> Answer {
    Answer::new(StatusCode::OK, body)
}
