//! Which handler serves which method and path. Nothing else decides routing.

use hyper::body::Incoming;
use hyper::{Method, Request};

use super::error::wants_html;
use super::respond::Response;
use super::{Ctx, HttpError, assets, health, settings};
use crate::app::State;

/// Fails with 405 (and an `Allow` header) unless `method` is one of `allowed`.
fn allow(method: &Method, allowed: &[Method], allow_header: &'static str) -> Result<(), HttpError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(HttpError::method_not_allowed(allow_header))
    }
}

const GET: &[Method] = &[Method::GET, Method::HEAD];
const POST: &[Method] = &[Method::POST];

pub async fn route(state: &State, _ctx: &Ctx, req: Request<Incoming>) -> Response {
    let html = wants_html(req.headers());
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let result: Result<Response, HttpError> = match segments.as_slice() {
        [""] => match allow(&method, GET, "GET, HEAD") {
            Ok(()) => Ok(health::index(state).await),
            Err(e) => Err(e),
        },
        ["healthz"] => match allow(&method, GET, "GET, HEAD") {
            Ok(()) => Ok(health::get(state).await),
            Err(e) => Err(e),
        },
        ["assets", name] => {
            allow(&method, GET, "GET, HEAD").and_then(|()| assets::get(name, req.headers()))
        }
        ["integration", "settings"] => match allow(&method, POST, "POST") {
            Ok(()) => return settings::entry(state, req).await,
            Err(e) => Err(e),
        },
        ["integration", "settings", action] => match allow(&method, POST, "POST") {
            Ok(()) => {
                let action = action.to_string();
                return settings::action(state, &action, req).await;
            }
            Err(e) => Err(e),
        },
        _ => Err(HttpError::not_found()),
    };
    result.unwrap_or_else(|e| e.into_response(&state.pages, html))
}
