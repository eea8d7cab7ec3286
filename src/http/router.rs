//! Which handler serves which method and path. Nothing else decides routing.

use hyper::body::Incoming;
use hyper::{Method, Request};

use super::error::wants_html;
use super::respond::Response;
use super::{
    Ctx, HttpError, assets, c2c, entity_hooks, health, metrics, recordings, settings, webhook,
};
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

/// The route that served a request, as a response extension: the `route` label of
/// `appliance_http_requests_total`. A fixed name per route, never the raw path (paths
/// carry secrets).
#[derive(Debug, Clone, Copy)]
pub struct RouteName(pub &'static str);

pub async fn route(state: &State, ctx: &Ctx, req: Request<Incoming>) -> Response {
    let html = wants_html(req.headers());
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let (name, result): (&'static str, Result<Response, HttpError>) = match segments.as_slice() {
        [""] => (
            "index",
            match allow(&method, GET, "GET, HEAD") {
                Ok(()) => Ok(health::index(state, ctx, req.headers()).await),
                Err(e) => Err(e),
            },
        ),
        ["healthz"] => (
            "healthz",
            match allow(&method, GET, "GET, HEAD") {
                Ok(()) => Ok(health::get(state, ctx, req.headers()).await),
                Err(e) => Err(e),
            },
        ),
        ["metrics"] => (
            "metrics",
            match allow(&method, GET, "GET, HEAD") {
                Ok(()) => metrics::get(state, ctx, req.headers()).await,
                Err(e) => Err(e),
            },
        ),
        ["assets", name] => (
            "assets",
            allow(&method, GET, "GET, HEAD").and_then(|()| assets::get(name, req.headers())),
        ),
        ["recordings", token] => (
            "recording",
            match allow(&method, GET, "GET, HEAD") {
                Ok(()) => recordings::get(state, token, &method, req.headers()).await,
                Err(e) => Err(e),
            },
        ),
        ["integration", "settings"] => (
            "settings",
            match method {
                Method::POST => return named("settings", settings::entry(state, req).await),
                // The page after a form's redirect (settings::views).
                Method::GET => return named("settings", settings::show(state, req).await),
                _ => Err(HttpError::method_not_allowed("GET, POST")),
            },
        ),
        ["integration", "settings", action] => (
            "settings_action",
            match allow(&method, POST, "POST") {
                Ok(()) => {
                    let action = action.to_string();
                    return named(
                        "settings_action",
                        settings::action(state, &action, req).await,
                    );
                }
                Err(e) => Err(e),
            },
        ),
        ["c2c"] => {
            let resp = c2c::handle(state, &method, req.headers(), req.uri().query()).await;
            return named("c2c", resp);
        }
        ["hooks", "flowlu", id, secret] => {
            let (id, secret) = (id.to_string(), secret.to_string());
            let (name, response) = webhook::handle(state, &id, &secret, req).await;
            return named(name, response);
        }
        // Flowlu's entity webhooks (issue 8): the contact cache.
        ["hooks", "flowlu-entities", id, secret] => {
            let (id, secret) = (id.to_string(), secret.to_string());
            let (name, response) = entity_hooks::handle(state, &id, &secret, req).await;
            return named(name, response);
        }
        _ => ("not_found", Err(HttpError::not_found())),
    };
    named(
        name,
        result.unwrap_or_else(|e| e.into_response(&state.pages, html)),
    )
}

/// Tags a response with the route that served it.
fn named(name: &'static str, mut response: Response) -> Response {
    response.extensions_mut().insert(RouteName(name));
    response
}
