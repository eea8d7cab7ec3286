//! Response and request-body helpers shared by every handler.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::HttpError;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;
pub type Response = hyper::Response<Body>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn bytes(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut resp = hyper::Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("response types serialize");
    bytes(status, "application/json", body)
}

pub fn html(status: StatusCode, page: String) -> Response {
    bytes(status, "text/html; charset=utf-8", page)
}

/// Reads the whole body, refusing more than `limit` bytes with 413 before reading it
/// when Content-Length says so, and while reading otherwise.
pub async fn read_body(
    req: Request<Incoming>,
    limit: u64,
) -> Result<(hyper::http::request::Parts, Bytes), HttpError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HttpError::payload_too_large(limit));
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, limit as usize).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(HttpError::payload_too_large(limit))
        }
        Err(e) => Err(HttpError::bad_request(
            "bad_body",
            format!("could not read the request body: {e}"),
        )),
    }
}

/// A hook under a secret path (`/hooks/.../<id>/<secret>`), once `authenticated` says
/// whose it is: nobody's is the same 404 as an unknown path (and counts as `not_found`
/// in the metrics), a failed lookup its error, anything but POST a 405; the rest is
/// `serve`d. Returns the route name for the metrics with the response.
pub async fn secret_hook<T>(
    state: &crate::app::State,
    route: &'static str,
    req: Request<Incoming>,
    authenticated: Result<Option<T>, HttpError>,
    serve: impl AsyncFnOnce(T, Request<Incoming>) -> Result<Response, HttpError>,
) -> (&'static str, Response) {
    let owner = match authenticated {
        Ok(Some(owner)) => owner,
        Ok(None) => {
            let html = super::error::wants_html(req.headers());
            let resp = HttpError::not_found().into_response(&state.pages, html);
            return ("not_found", resp);
        }
        Err(e) => return (route, e.into_response(&state.pages, false)),
    };
    if req.method() != hyper::Method::POST {
        let resp = HttpError::method_not_allowed("POST").into_response(&state.pages, false);
        return (route, resp);
    }
    let resp = serve(owner, req)
        .await
        .unwrap_or_else(|e| e.into_response(&state.pages, false));
    (route, resp)
}

/// The integration id of a hook path (`/hooks/.../<id>/<secret>`): only plain decimal
/// ids, since "+1" or "01" would name integration 1 by another path.
pub fn path_id(id: &str) -> Option<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0 && n.to_string() == id)
}

/// Accepts a JSON body's `Content-Type` (`application/json`, `text/json`,
/// `application/*+json`) or none; otherwise the declared type, cut to 100 characters.
pub fn json_content_type(headers: &header::HeaderMap) -> Result<(), String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("?");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(text.chars().take(100).collect())
    }
}
