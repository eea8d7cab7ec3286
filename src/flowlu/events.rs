//! Call events to Flowlu's event hook: the outbox's [`Transport`] for Flowlu, the call
//! object every event (and the webhook's call answers) carries, and reading the routing
//! decision out of the answer to an incoming call's `call.init`.
//!
//! Flowlu-specific meaning of answers is decided here and nowhere else: error code 11 in
//! a body counts as a 401 (refresh the token), error code 13 as a 503 (retry later).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::client::Client;
use super::{FlowluError, paths, store, tokens};
use crate::calls::{Call, CallStatus};
use crate::config::FlowluConfig;
use crate::db::Db;
use crate::outbox::{BoxFuture, Loaded, Readiness, Reply, SendError, Transport, parse_retry_after};
use crate::secret::Secret;
use crate::util::rfc3339;

/// Delivers outbox rows to `/external/telephony/hook/mini_app/{account}/{uuid}`.
///
/// The worker's batch transaction reads each account's row and token once
/// ([`Transport::load_account`]); the rows of that batch go out with those credentials
/// without another database trip, unless the token is about to expire (then
/// [`tokens::access_token`] refreshes it first, as for any other caller).
pub struct EventTransport {
    db: Db,
    client: Client,
    /// Which hosts may be called (`[flowlu]`, as the service started).
    config: FlowluConfig,
    /// Token upkeep and the CRM's REST requests (`crm.*` rows), provided by `app`.
    accounts: Arc<dyn Accounts>,
    /// The token each account's last event went out with, to refresh exactly that one
    /// after a 401.
    last_token: Mutex<HashMap<i64, Secret>>,
}

/// What the transport needs from the rest of the appliance beyond the database and the
/// HTTP client: token upkeep ([`tokens::access_token`], [`tokens::force_refresh`]) and a
/// `crm.*` row's requests (`crm::send::deliver`). `app` wires it up.
pub trait Accounts: Send + Sync + 'static {
    /// A valid token for account `id`, refreshed first when it is due.
    fn access_token(&self, id: i64) -> BoxFuture<'_, Result<tokens::Credentials, FlowluError>>;
    /// One refresh after Flowlu refused `rejected` (none when it was replaced meanwhile).
    fn force_refresh(
        &self,
        id: i64,
        rejected: Secret,
    ) -> BoxFuture<'_, Result<tokens::Credentials, FlowluError>>;
    /// Sends a `crm.*` row of `kind` with `creds`.
    fn deliver_crm<'a>(
        &'a self,
        creds: &'a tokens::Credentials,
        kind: &'a str,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>>;
}

/// What a batch read about an account: its credentials, or why there are none now.
struct Snapshot {
    credentials: Result<(tokens::Credentials, i64), String>,
}

impl EventTransport {
    pub fn new(
        db: Db,
        client: Client,
        config: FlowluConfig,
        accounts: Arc<dyn Accounts>,
    ) -> EventTransport {
        EventTransport {
            db,
            client,
            config,
            accounts,
            last_token: Mutex::new(HashMap::new()),
        }
    }

    async fn readiness_of(&self, id: i64) -> Readiness {
        let found = self
            .db
            .run(move |c| Ok::<_, FlowluError>(store::integration(c, id)?))
            .await;
        readiness(id, found)
    }

    /// An account's state, read in the worker's transaction.
    fn load(&self, conn: &rusqlite::Connection, id: i64) -> Loaded {
        let found = store::integration(conn, id).map_err(FlowluError::from);
        let rate_limit = found
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map(|i| i.ratelimit.max(1));
        let credentials = match &found {
            Ok(Some(i)) => self.stored_credentials(conn, i),
            _ => Err(String::new()),
        };
        Loaded {
            readiness: readiness(id, found),
            rate_limit,
            context: Some(Arc::new(Snapshot { credentials })),
        }
    }

    /// The stored token of `integration` and when it expires (unix seconds).
    fn stored_credentials(
        &self,
        conn: &rusqlite::Connection,
        integration: &store::Integration,
    ) -> Result<(tokens::Credentials, i64), String> {
        let user = integration.token_user_id.as_deref().ok_or("no token")?;
        let row = store::token_for_user(conn, integration.id, user)
            .map_err(|e| e.to_string())?
            .ok_or("no token")?;
        let target = integration
            .target(&self.config)
            .map_err(|e| e.to_string())?;
        let credentials = tokens::Credentials {
            integration: integration.clone(),
            target,
            access_token: row.access_token,
        };
        Ok((credentials, row.expires_at))
    }

    /// Account `id`'s credentials for one delivery, remembering the token it goes out
    /// with.
    async fn credentials(&self, id: i64) -> Result<tokens::Credentials, SendError> {
        let creds = self
            .accounts
            .access_token(id)
            .await
            .map_err(|e| SendError::Network(e.to_string()))?;
        self.last_token
            .lock()
            .expect("token map")
            .insert(id, creds.access_token.clone());
        Ok(creds)
    }

    /// The batch's credentials for `id` while its token is valid for another 30 s, else
    /// (or without a batch) a fresh read and, when due, a refresh.
    async fn credentials_for(
        &self,
        id: i64,
        context: Option<&(dyn Any + Send + Sync)>,
    ) -> Result<tokens::Credentials, SendError> {
        let snapshot = context.and_then(|c| c.downcast_ref::<Snapshot>());
        if let Some(Snapshot {
            credentials: Ok((creds, expires_at)),
        }) = snapshot
            && *expires_at > store::now() + 30
        {
            self.last_token
                .lock()
                .expect("token map")
                .insert(id, creds.access_token.clone());
            return Ok(creds.clone());
        }
        self.credentials(id).await
    }

    async fn send_event(
        &self,
        id: i64,
        event_id: &str,
        body: &[u8],
        context: Option<&(dyn Any + Send + Sync)>,
    ) -> Result<Reply, SendError> {
        let creds = self.credentials_for(id, context).await?;
        let uuid = creds
            .integration
            .telephony_uuid
            .clone()
            .ok_or_else(|| SendError::Network(NOT_CONNECTED.into()))?;
        let path = paths::event_hook(&creds.integration.account_id, &uuid);
        let reply = self
            .client
            .post_event(&creds.target, &path, &creds.access_token, body, event_id)
            .await;
        match reply {
            Ok(reply) => Ok(Reply {
                status: effective_status(reply.status, reply.json.as_ref()),
                retry_after: reply
                    .retry_after
                    .as_deref()
                    .and_then(|v| parse_retry_after(v, SystemTime::now())),
                body: reply.text,
            }),
            Err(FlowluError::TimedOut(_)) => Err(SendError::Timeout),
            Err(e) => Err(SendError::Network(e.to_string())),
        }
    }

    /// A `crm.*` row: the CRM REST requests its kind stands for (`crm::send`).
    async fn send_crm(
        &self,
        id: i64,
        kind: &str,
        event_id: &str,
        body: &[u8],
        context: Option<&(dyn Any + Send + Sync)>,
    ) -> Result<Reply, SendError> {
        let creds = self.credentials_for(id, context).await?;
        self.accounts
            .deliver_crm(&creds, kind, event_id, body)
            .await
    }

    async fn refresh_token(&self, id: i64) -> Result<(), String> {
        let rejected = self.last_token.lock().expect("token map").get(&id).cloned();
        let result = match rejected {
            Some(rejected) => self.accounts.force_refresh(id, rejected).await,
            None => self.accounts.access_token(id).await,
        };
        result.map(|_| ()).map_err(|e| e.to_string())
    }
}

impl Transport for EventTransport {
    fn readiness(&self, integration_id: i64) -> BoxFuture<'_, Readiness> {
        Box::pin(self.readiness_of(integration_id))
    }

    fn rate_limit(&self, integration_id: i64) -> BoxFuture<'_, Option<u32>> {
        Box::pin(async move {
            self.db
                .run(move |c| Ok::<_, FlowluError>(store::integration(c, integration_id)?))
                .await
                .ok()
                .flatten()
                .map(|i| i.ratelimit.max(1))
        })
    }

    fn send<'a>(
        &'a self,
        integration_id: i64,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        Box::pin(self.send_event(integration_id, event_id, body, None))
    }

    fn send_kind<'a>(
        &'a self,
        integration_id: i64,
        kind: &'a str,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        if super::crm::kinds::is_crm(kind) {
            Box::pin(self.send_crm(integration_id, kind, event_id, body, None))
        } else {
            Box::pin(self.send_event(integration_id, event_id, body, None))
        }
    }

    fn load_account(&self, conn: &rusqlite::Connection, integration_id: i64) -> Option<Loaded> {
        Some(self.load(conn, integration_id))
    }

    fn send_loaded<'a>(
        &'a self,
        context: &'a (dyn Any + Send + Sync),
        integration_id: i64,
        kind: &'a str,
        event_id: &'a str,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<Reply, SendError>> {
        let context = Some(context);
        if super::crm::kinds::is_crm(kind) {
            Box::pin(self.send_crm(integration_id, kind, event_id, body, context))
        } else {
            Box::pin(self.send_event(integration_id, event_id, body, context))
        }
    }

    fn refresh(&self, integration_id: i64) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.refresh_token(integration_id))
    }
}

/// The error of a send to an account whose channel is gone (the settings page shows it
/// translated, `http::settings::delivery`).
pub const NOT_CONNECTED: &str = "the telephony channel is not connected";
/// Why an account's events wait: its channel is not registered.
pub const HOLD_NOT_CONNECTED: &str =
    "the telephony channel is not connected (Connect on the settings page)";
/// Why an account's events wait: Flowlu refused its tokens.
pub const HOLD_RECONNECT: &str = "the account needs to be reconnected in Flowlu";

/// Whether account `id` (as read) can take deliveries now.
fn readiness(id: i64, found: Result<Option<store::Integration>, FlowluError>) -> Readiness {
    match found {
        Ok(Some(i)) if i.needs_reconnect => Readiness::Hold(HOLD_RECONNECT.into()),
        Ok(Some(i)) if i.telephony_uuid.is_none() => Readiness::Hold(HOLD_NOT_CONNECTED.into()),
        Ok(Some(_)) => Readiness::Ready,
        Ok(None) => Readiness::Hold(format!("no account {id}")),
        Err(e) => Readiness::Hold(e.to_string()),
    }
}

/// The HTTP status an answer stands for: Flowlu's error code 11 ("authorization failed")
/// is a 401 and code 13 ("internal error, retry later") a 503, whatever the HTTP status.
pub(crate) fn effective_status(status: u16, json: Option<&Value>) -> u16 {
    let code = json
        .and_then(|j| j.get("error"))
        .and_then(|e| e.get("error_code"))
        .and_then(|c| c.as_i64().or_else(|| c.as_str()?.trim().parse().ok()));
    match code {
        Some(11) => 401,
        Some(13) => 503,
        Some(_) if (200..300).contains(&status) => 422,
        _ => status,
    }
}

/// The body of one call event [ours: contract section 4]: `event`, `event_id` and the
/// call as it is now ([`call_object`]).
pub fn payload(kind: &str, event_id: &str, call: &Call, recording_url: Option<&str>) -> Value {
    json!({"event": kind, "event_id": event_id, "call": call_object(call, recording_url)})
}

/// A call as Flowlu sees it, in events and in the webhook's `call.get` / `calls.list`
/// answers alike. Absent values are left out rather than sent as null.
pub fn call_object(call: &Call, recording_url: Option<&str>) -> Value {
    let mut c = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() {
            c.insert(key.to_string(), value);
        }
    };
    let text = |s: &str| {
        if s.is_empty() { Value::Null } else { json!(s) }
    };
    put("id", json!(call.id));
    put("crm_call_id", json!(call.crm_call_id));
    put("direction", json!(call.direction.as_str()));
    put("phone", json!(call.phone));
    put("line", text(&call.line));
    put("user_id", json!(call.user_id));
    put("extension", json!(call.extension));
    put("state", json!(call.state.as_str()));
    put("status", json!(call.status.map(CallStatus::as_str)));
    put("started_at", rfc3339(Some(call.started_at)));
    put("answered_at", rfc3339(call.answered_at));
    put("ended_at", rfc3339(call.ended_at));
    put("duration", json!(call.duration));
    put("wait", json!(call.wait));
    put(
        "hangup_cause",
        text(call.hangup_cause.as_deref().unwrap_or("")),
    );
    put("recording_url", json!(recording_url));
    if call.backfilled {
        // Reported from the PBX's call records, not seen live (`crate::cdr`).
        put("backfilled", json!(true));
    }
    Value::Object(c)
}

/// The employee Flowlu chose in its answer to an incoming call's `call.init`:
/// `{"route": {"user_id": ..}}` or `{"route": {"extension": ..}}`, bare or inside
/// `{"response": ..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteChoice {
    User(String),
    Extension(String),
}

pub fn route_from_answer(body: &str) -> Option<RouteChoice> {
    let json: Value = serde_json::from_str(body).ok()?;
    let root = json.get("response").unwrap_or(&json);
    let route = root.get("route")?;
    let text = |key: &str| {
        route.get(key).and_then(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    text("extension")
        .map(RouteChoice::Extension)
        .or_else(|| text("user_id").map(RouteChoice::User))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn flowlu_error_codes_map_onto_statuses() {
        let code = |c: Value| json!({"error": {"error_code": c, "error_msg": "x"}});
        assert_eq!(effective_status(200, Some(&code(json!(11)))), 401);
        assert_eq!(effective_status(400, Some(&code(json!("11")))), 401);
        assert_eq!(effective_status(200, Some(&code(json!(13)))), 503);
        assert_eq!(effective_status(200, Some(&code(json!(21)))), 422);
        assert_eq!(effective_status(404, Some(&code(json!(20)))), 404);
        assert_eq!(effective_status(200, Some(&json!({"response": {}}))), 200);
        assert_eq!(effective_status(429, None), 429);
    }

    #[test]
    fn payload_follows_the_contract_and_omits_unknowns() {
        let call = Call {
            id: "c1".into(),
            integration_id: Some(1),
            crm_call_id: None,
            pbx_call: "1795416368.27".into(),
            direction: crate::calls::Direction::Incoming,
            phone: "79161234567".into(),
            line: "74950000000".into(),
            extension: Some("100".into()),
            user_id: Some("17".into()),
            state: crate::calls::CallState::Ended,
            status: Some(CallStatus::Answered),
            started_at: 1_795_416_368_000,
            answered_at: Some(1_795_416_373_000),
            ended_at: Some(1_795_416_379_250),
            duration: Some(6),
            wait: Some(5),
            hangup_cause: Some("16 Normal Clearing".into()),
            recording_path: Some("/var/spool/asterisk/monitor/x.wav".into()),
            backfilled: false,
            queue: None,
        };
        let p = payload(
            "call.completed",
            "e1",
            &call,
            Some("https://a/recordings/t"),
        );
        assert_eq!(
            p,
            json!({
                "event": "call.completed",
                "event_id": "e1",
                "call": {
                    "id": "c1", "direction": "incoming", "phone": "79161234567",
                    "line": "74950000000", "user_id": "17", "extension": "100",
                    "state": "ended", "status": "answered",
                    "started_at": "2026-11-23T06:46:08Z",
                    "answered_at": "2026-11-23T06:46:13Z",
                    "ended_at": "2026-11-23T06:46:19.25Z",
                    "duration": 6, "wait": 5, "hangup_cause": "16 Normal Clearing",
                    "recording_url": "https://a/recordings/t"
                }
            })
        );
        assert!(
            !p.to_string().contains("/var/spool"),
            "PBX paths are not sent"
        );
    }

    #[test]
    fn routes_are_read_from_either_shape() {
        assert_eq!(
            route_from_answer(r#"{"route": {"extension": "101"}}"#),
            Some(RouteChoice::Extension("101".into()))
        );
        assert_eq!(
            route_from_answer(r#"{"response": {"route": {"user_id": 17}}}"#),
            Some(RouteChoice::User("17".into()))
        );
        assert_eq!(route_from_answer(r#"{"response": {}}"#), None);
        assert_eq!(route_from_answer(r#"{"route": {"extension": " "}}"#), None);
        assert_eq!(route_from_answer("<html>"), None);
    }
}
