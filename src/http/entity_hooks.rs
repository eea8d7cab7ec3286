//! `POST /hooks/flowlu-entities/<integration id>/<secret>`: Flowlu's entity webhooks
//! ("Webhooks for Custom Applications"), which keep the contact cache of `flowlu::crm`
//! current.
//!
//! Owns authenticating (the account must have switched the hooks on; the secret is
//! compared in constant time; anything wrong is the same 404 as an unknown path),
//! reading the body (JSON only, size limit) and answering. Duplicates and out-of-order
//! deliveries are the cache's business (`crm::store::apply`): the answer is 200 either
//! way, so Flowlu does not retry something we chose to ignore.

use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use serde_json::json;

use super::HttpError;
use super::respond::{self, Response, read_body};
use crate::app::State;
use crate::db::DbError;
use crate::flowlu::crm::{self, PayloadError, store as crm_store};
use crate::flowlu::store::settings;

/// The whole route; returns the route name for the metrics (`not_found` when the request
/// does not authenticate, like the unknown path it is made to look like).
pub async fn handle(
    state: &State,
    id: &str,
    secret: &str,
    req: Request<Incoming>,
) -> (&'static str, Response) {
    let authenticated = authenticate(state, id, secret).await.map_err(|e| {
        log::error!("entity webhook: {e}");
        HttpError::internal()
    });
    respond::secret_hook(state, "entity_hook", req, authenticated, async |i, req| {
        serve(state, i, req).await
    })
    .await
}

async fn authenticate(state: &State, id: &str, secret: &str) -> Result<Option<i64>, DbError> {
    let Some(id) = respond::path_id(id) else {
        return Ok(None);
    };
    let secret = secret.to_string();
    let open = state
        .db
        .run(move |c| crm_store::hook_open(c, id, &secret))
        .await?;
    Ok(open.then_some(id))
}

async fn serve(
    state: &State,
    integration: i64,
    req: Request<Incoming>,
) -> Result<Response, HttpError> {
    check_content_type(req.headers())?;
    let (_, body) = read_body(req, state.config.server.max_body_bytes).await?;
    let event = match crm::parse_event(&body) {
        Ok(Some(event)) => event,
        Ok(None) => {
            return Ok(respond::json(
                StatusCode::OK,
                &json!({"status": "ignored", "reason": "not a CRM account"}),
            ));
        }
        Err(PayloadError::Json(why)) => {
            return Err(HttpError::bad_request(
                "invalid_json",
                format!("invalid JSON: {why}"),
            ));
        }
        Err(PayloadError::Shape(why)) => {
            return Err(HttpError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_payload",
                why,
            ));
        }
    };
    let applied = state
        .db
        .run(move |c| {
            // One IMMEDIATE transaction: two deliveries of one account cannot interleave.
            let tx = c.transaction()?;
            let country = settings(&tx, integration)?.default_country_code;
            let applied = crm_store::apply(&tx, integration, &event, &country)?;
            tx.commit()?;
            Ok::<_, DbError>((applied, event.account.id))
        })
        .await;
    match applied {
        Ok((applied, contact)) => {
            log::debug!(
                "entity webhook: account {contact} of integration {integration}: {applied:?}"
            );
            Ok(respond::json(
                StatusCode::OK,
                &json!({"status": applied, "id": contact}),
            ))
        }
        Err(e) => {
            log::error!("entity webhook: {e}");
            Err(HttpError::internal())
        }
    }
}

/// JSON, or no Content-Type at all (read as JSON); anything else is 415.
fn check_content_type(headers: &HeaderMap) -> Result<(), HttpError> {
    respond::json_content_type(headers).map_err(|_| {
        HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the webhook as application/json",
        )
    })
}
