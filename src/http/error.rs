//! The one place where errors become HTTP statuses.
//!
//! Handlers return `Result<Response, HttpError>`; domain errors convert into `HttpError`
//! here, and only here. Internal details are logged, never sent: the client gets a short,
//! stable code and message.

use hyper::StatusCode;
use hyper::header::{self, HeaderValue};
use serde_json::json;

use super::pages::Pages;
use super::respond::{self, Response};
use crate::db::DbError;
use crate::flowlu::FlowluError;
use crate::flowlu::webhook::ShapeError;
use crate::http::c2c::C2cError;
use crate::http::webhook::WebhookError;
use crate::pbx::PbxError;
use crate::recordings::RecordingError;

#[derive(Debug)]
pub struct HttpError {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: &'static str,
    /// Short human-readable text, safe to show anyone.
    pub message: String,
    /// For 405: the methods that are allowed.
    pub allow: Option<&'static str>,
    /// For 401: the `WWW-Authenticate` challenge.
    pub www_authenticate: Option<HeaderValue>,
    /// For 429: seconds until a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
            allow: None,
            www_authenticate: None,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such page")
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        HttpError {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this address accepts {allow}"),
            )
        }
    }

    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the appliance log",
        )
    }

    /// JSON `{"error": {"code", "message"}}`, or a small HTML page for browsers.
    pub fn into_response(self, pages: &Pages, html: bool) -> Response {
        let mut resp = if html {
            respond::html(self.status, pages.error(self.status, &self.message))
        } else {
            respond::json(
                self.status,
                &json!({"error": {"code": self.code, "message": self.message}}),
            )
        };
        if let Some(allow) = self.allow {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(challenge) = self.www_authenticate {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

impl From<DbError> for HttpError {
    fn from(e: DbError) -> Self {
        log::error!("database error while serving a request: {e}");
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the appliance database is unavailable; see the appliance log",
        )
    }
}

impl From<FlowluError> for HttpError {
    fn from(e: FlowluError) -> Self {
        use FlowluError as F;
        let message = e.to_string();
        let (status, code) = match &e {
            F::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            F::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            F::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            F::DomainNotAllowed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "domain_not_allowed"),
            F::NotAdmitted(_) => (StatusCode::FORBIDDEN, "not_admitted"),
            F::NoPublicUrl => (StatusCode::UNPROCESSABLE_ENTITY, "no_public_url"),
            F::Rejected(_) => {
                log::warn!("Flowlu refused a token: {e}");
                return HttpError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_session",
                    "Flowlu did not accept this session's access token: close the settings \
                     and open them again in Flowlu",
                );
            }
            F::Unavailable(_) | F::TimedOut(_) | F::Api(_) | F::Protocol(_) => {
                log::warn!("Flowlu call failed: {e}");
                (StatusCode::BAD_GATEWAY, "flowlu_unavailable")
            }
            F::NeedsReconnect(_) | F::NoToken(_) | F::Conflict(_) => {
                (StatusCode::CONFLICT, "conflict")
            }
            F::UnknownIntegration(_) => (StatusCode::NOT_FOUND, "not_found"),
            F::Db(_) => {
                let F::Db(db) = e else { unreachable!() };
                return db.into();
            }
        };
        HttpError::new(status, code, message)
    }
}

impl From<RecordingError> for HttpError {
    fn from(e: RecordingError) -> Self {
        use RecordingError as R;
        match e {
            // Nothing that would tell a guesser more than "not here".
            R::UnknownLink | R::Replaced => {
                HttpError::new(StatusCode::NOT_FOUND, "not_found", "no such recording")
            }
            R::Expired => HttpError::new(
                StatusCode::GONE,
                "expired",
                "this recording link has expired",
            ),
            R::Gone => HttpError::new(
                StatusCode::GONE,
                "gone",
                "this recording is no longer available",
            ),
            R::Db(db) => db.into(),
            // Publishing errors never reach a client; if one did, it says nothing more.
            other => {
                log::error!("recording: {other}");
                HttpError::internal()
            }
        }
    }
}

impl From<WebhookError> for HttpError {
    fn from(e: WebhookError) -> Self {
        use StatusCode as S;
        use WebhookError as W;
        let message = e.to_string();
        let (status, code) = match &e {
            W::Shape(ShapeError::Json(_)) => (S::BAD_REQUEST, "invalid_json"),
            W::Shape(ShapeError::UnknownType(_)) => (S::BAD_REQUEST, "unknown_type"),
            W::Shape(ShapeError::Field(_)) => (S::UNPROCESSABLE_ENTITY, "invalid_field"),
            W::UnsupportedMediaType(_) => (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            W::Phone(_) => (S::UNPROCESSABLE_ENTITY, "invalid_phone"),
            W::UserNotMapped(_) => (S::NOT_FOUND, "user_not_mapped"),
            W::AgentBusy(_) => (S::CONFLICT, "agent_busy"),
            W::NotFound => (S::NOT_FOUND, "not_found"),
            W::CallNotRinging(_) => (S::CONFLICT, "call_not_ringing"),
            W::InProgress => (S::CONFLICT, "request_in_progress"),
            W::KeyReused => (S::CONFLICT, "request_id_reused"),
            W::Pbx(pbx) => return pbx_error(pbx),
            W::EngineStopped => {
                log::error!("webhook: {e}");
                (S::SERVICE_UNAVAILABLE, "engine_unavailable")
            }
            W::Internal => return HttpError::internal(),
            W::Db(_) => {
                let W::Db(db) = e else { unreachable!() };
                return db.into();
            }
        };
        HttpError::new(status, code, message)
    }
}

impl From<C2cError> for HttpError {
    fn from(e: C2cError) -> Self {
        use StatusCode as S;
        let message = e.to_string();
        match e {
            C2cError::Forbidden => HttpError::new(S::FORBIDDEN, "forbidden", message),
            C2cError::RateLimited(seconds) => HttpError {
                retry_after: Some(seconds),
                ..HttpError::new(S::TOO_MANY_REQUESTS, "rate_limited", message)
            },
            C2cError::Query(_) => HttpError::new(S::UNPROCESSABLE_ENTITY, "invalid_field", message),
            C2cError::AmbiguousAgent(_) => {
                HttpError::new(S::UNPROCESSABLE_ENTITY, "ambiguous_agent", message)
            }
        }
    }
}

/// What a PBX command's failure means to the client that asked for it.
fn pbx_error(e: &PbxError) -> HttpError {
    use StatusCode as S;
    let (status, code) = match e {
        PbxError::Unavailable(_) => (S::SERVICE_UNAVAILABLE, "pbx_unavailable"),
        PbxError::Invalid { .. } => (S::UNPROCESSABLE_ENTITY, "invalid_field"),
        PbxError::NoSuchChannel => (S::CONFLICT, "call_not_ringing"),
        PbxError::Refused(_) => (S::BAD_GATEWAY, "pbx_refused"),
        PbxError::Timeout(_) => (S::GATEWAY_TIMEOUT, "pbx_timeout"),
        PbxError::Protocol(_) => (S::BAD_GATEWAY, "pbx_error"),
    };
    if status.is_server_error() {
        log::warn!("webhook: PBX command failed: {e}");
    }
    HttpError::new(status, code, e.to_string())
}

/// True when the client prefers an HTML page (a browser) to JSON.
pub fn wants_html(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}
