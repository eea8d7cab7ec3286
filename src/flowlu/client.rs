//! The REST calls we make on Flowlu, over ureq on the blocking pool, with a timeout.
//!
//! Requests only go to a [`CrmTarget`] (an allow-listed domain or the configured
//! override), never follow redirects (a token must not travel elsewhere), and are sent
//! form-encoded; answers are read as JSON, wrapped in `{"response": ...}` or bare.
//! Tokens travel only in the `Authorization` header or the refresh form, never in a URL,
//! and never appear in an error message.

use std::time::Duration;

use serde_json::Value;

use super::FlowluError;
use super::domain::CrmTarget;
use super::paths;
use crate::config::FlowluConfig;
use crate::secret::Secret;

/// Largest answer body we read from Flowlu.
const MAX_REPLY_BYTES: u64 = 1024 * 1024;
/// How much of an answer is kept in [`Reply::text`] (for delivery logs).
const KEPT_TEXT: usize = 4096;
/// Idle keep-alive connections kept, per host and in all.
const IDLE_CONNECTIONS: usize = 64;
/// ureq's read and write buffers per connection (an answer's headers must fit).
const BUFFER_BYTES: usize = 32 * 1024;
/// Header naming the account host when calls go to `base_url_override` (tests and
/// development), so a fake Flowlu can tell accounts apart.
pub const OVERRIDE_DOMAIN_HEADER: &str = "x-appliance-crm-domain";

/// An HTTP answer from Flowlu.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    /// The body as text, cut to a few KiB.
    pub text: String,
    /// The `Retry-After` header, when there was one.
    pub retry_after: Option<String>,
    /// The `Date` header: the server's clock (for `appliance doctor`).
    pub date: Option<String>,
}

#[cfg(test)]
impl Reply {
    /// An answer with `body` and no headers (unit tests).
    pub(crate) fn with_body(status: u16, body: &str) -> Reply {
        Reply {
            status,
            json: serde_json::from_str(body).ok(),
            text: body.into(),
            retry_after: None,
            date: None,
        }
    }
}

/// The user a token belongs to (core/user/get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowluUser {
    pub id: String,
    pub name: String,
    pub email: String,
}

/// What telephony/create needs [doc: field names].
#[derive(Debug, Clone)]
pub struct ChannelRequest {
    pub name: String,
    pub ref_id: String,
    pub webhook_url: String,
    pub icon_url: String,
    pub can_redirect: bool,
    pub manifest_id: String,
}

/// Tokens from a refresh.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub access_token: Secret,
    /// `None` when Flowlu did not rotate the refresh token.
    pub refresh_token: Option<Secret>,
    /// Unix seconds, when the answer said.
    pub expires_at: Option<i64>,
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    client_secret: Secret,
    utc_offset_minutes: i64,
}

enum Payload<'a> {
    None,
    Form(&'a [(&'a str, &'a str)]),
    Json(&'a Value),
    /// An already serialized JSON body and its idempotency key (call events).
    Event {
        body: &'a [u8],
        event_id: &'a str,
    },
}

impl Client {
    pub fn new(config: &FlowluConfig) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(config.request_timeout_secs)))
            .user_agent(format!("appliance/{}", crate::VERSION))
            // Keep a connection per delivery in flight (ureq keeps 3 per host by default:
            // with more deliveries at once, each request beyond them opened a connection,
            // with a resolver thread, and closed it again) ...
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            // ... with buffers sized to Flowlu's answers' headers, not 128 KiB each.
            .input_buffer_size(BUFFER_BYTES)
            .output_buffer_size(BUFFER_BYTES)
            .build();
        // Resolves each host once per half minute, not once per request on a thread of
        // its own (`resolve`).
        let agent = ureq::Agent::with_parts(
            agent,
            ureq::unversioned::transport::DefaultConnector::default(),
            super::resolve::CachingResolver::default(),
        );
        Client {
            agent,
            client_secret: config.client_secret.clone(),
            utc_offset_minutes: config.expires_at_utc_offset_minutes,
        }
    }

    /// One request on the blocking pool. Transport failures are `Unavailable`; any HTTP
    /// status is returned as a [`Reply`] for the caller to judge.
    async fn send(
        &self,
        target: &CrmTarget,
        method: &'static str,
        path: &str,
        bearer: Option<&Secret>,
        payload: Payload<'_>,
    ) -> Result<Reply, FlowluError> {
        let url = format!("{}{}", target.base, path);
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("accept", "application/json");
        if let Some(token) = bearer {
            builder = builder.header("authorization", format!("Bearer {}", token.expose()));
        }
        if target.overridden {
            builder = builder.header(OVERRIDE_DOMAIN_HEADER, &target.domain);
        }
        let body = match payload {
            Payload::None => Vec::new(),
            Payload::Form(fields) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields.iter())
                    .finish()
                    .into_bytes()
            }
            Payload::Json(value) => {
                builder = builder.header("content-type", "application/json");
                serde_json::to_vec(value).expect("JSON values serialize")
            }
            Payload::Event { body, event_id } => {
                builder = builder
                    .header("content-type", "application/json")
                    .header("idempotency-key", event_id);
                body.to_vec()
            }
        };
        let request = builder
            .body(body)
            .map_err(|e| FlowluError::Invalid(format!("cannot build a request to {path}: {e}")))?;
        let agent = self.agent.clone();
        // For logs and errors: a path's query may name a customer's number or a secret.
        // Written only when needed (an error, a debug log), not for each of thousands of
        // deliveries a second.
        let what = || crate::redact::redact_text(&format!("{method} {}{path}", target.domain));
        let joined = tokio::task::spawn_blocking(move || {
            let mut resp = agent.run(request)?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (retry_after, date) = (header("retry-after"), header("date"));
            let bytes = resp
                .body_mut()
                .with_config()
                .limit(MAX_REPLY_BYTES)
                .read_to_vec()?;
            Ok::<_, ureq::Error>((status, bytes, retry_after, date))
        })
        .await;
        let (status, bytes, retry_after, date) = match joined {
            Ok(Ok(answer)) => answer,
            // ureq's errors name the URL at most; tokens are in headers and bodies only.
            Ok(Err(ureq::Error::Timeout(_))) => {
                return Err(FlowluError::TimedOut(what()));
            }
            Ok(Err(e)) => {
                let why = crate::redact::redact_text(&e.to_string());
                return Err(FlowluError::Unavailable(format!("{}: {why}", what())));
            }
            Err(e) => return Err(FlowluError::Unavailable(format!("{}: {e}", what()))),
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut cut = KEPT_TEXT.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        log::debug!("{} -> {status}", what());
        Ok(Reply {
            status,
            json: serde_json::from_slice(&bytes).ok(),
            text: text[..cut].to_string(),
            retry_after,
            date,
        })
    }

    /// `GET core/user/get` with the Bearer token: who the token belongs to.
    pub async fn get_user(
        &self,
        target: &CrmTarget,
        token: &Secret,
    ) -> Result<FlowluUser, FlowluError> {
        let reply = self
            .send(target, "GET", paths::USER_GET, Some(token), Payload::None)
            .await?;
        let body = api_result(&reply)?;
        let id = text_field(&body, "id")
            .filter(|id| !id.is_empty())
            .ok_or_else(|| FlowluError::Protocol("core/user/get returned no user id".into()))?;
        let name = text_field(&body, "name")
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| {
                let parts: Vec<String> = ["first_name", "last_name"]
                    .iter()
                    .filter_map(|k| text_field(&body, k))
                    .filter(|s| !s.trim().is_empty())
                    .collect();
                parts.join(" ")
            });
        Ok(FlowluUser {
            id,
            name: name.chars().take(200).collect(),
            email: text_field(&body, "email")
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        })
    }

    /// `POST telephony/create`: registers the channel, returns its uuid.
    pub async fn create_channel(
        &self,
        target: &CrmTarget,
        token: &Secret,
        req: &ChannelRequest,
    ) -> Result<String, FlowluError> {
        // [ours] Booleans as 1/0: form-encoded "false" would read as true in PHP.
        let fields = [
            ("name", req.name.as_str()),
            ("ref_id", req.ref_id.as_str()),
            ("code", "mini_app"),
            ("webhook_url", req.webhook_url.as_str()),
            ("icon_url", req.icon_url.as_str()),
            ("can_redirect", if req.can_redirect { "1" } else { "0" }),
            ("manifest_id", req.manifest_id.as_str()),
        ];
        let reply = self
            .send(
                target,
                "POST",
                paths::TELEPHONY_CREATE,
                Some(token),
                Payload::Form(&fields),
            )
            .await?;
        let body = api_result(&reply)?;
        text_field(&body, "uuid")
            .filter(|u| !u.is_empty() && u.len() <= 128 && u.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| FlowluError::Protocol("telephony/create returned no uuid".into()))
    }

    /// `POST /oauth/token grant_type=refresh_token` [ours].
    pub async fn refresh(
        &self,
        target: &CrmTarget,
        refresh_token: &Secret,
        client_id: &str,
    ) -> Result<Refreshed, FlowluError> {
        let mut fields = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", client_id),
        ];
        if !self.client_secret.is_empty() {
            fields.push(("client_secret", self.client_secret.expose()));
        }
        let reply = self
            .send(
                target,
                "POST",
                paths::OAUTH_TOKEN,
                None,
                Payload::Form(&fields),
            )
            .await?;
        if let Some(Value::String(code)) = reply.json.as_ref().and_then(|j| j.get("error")) {
            // OAuth's own error shape: {"error": "invalid_grant", ...}.
            return Err(if matches!(reply.status, 429 | 500..) {
                FlowluError::Unavailable(format!("HTTP {}: {}", reply.status, short(code)))
            } else {
                FlowluError::Rejected(format!("HTTP {}: {}", reply.status, short(code)))
            });
        }
        if reply.status == 400 {
            return Err(FlowluError::Rejected("HTTP 400".into()));
        }
        let body = api_result(&reply)?;
        let access_token = text_field(&body, "access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| FlowluError::Protocol("the token answer has no access_token".into()))?;
        let now = super::store::now();
        let expires_at = match (
            text_field(&body, "expires_in").and_then(|s| s.trim().parse::<i64>().ok()),
            text_field(&body, "expires_at"),
        ) {
            (Some(secs), _) if secs > 0 => Some(now + secs),
            (_, Some(raw)) => super::tokens::parse_expires_at(&raw, self.utc_offset_minutes),
            _ => None,
        };
        Ok(Refreshed {
            access_token: Secret::new(access_token),
            refresh_token: text_field(&body, "refresh_token")
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            expires_at,
        })
    }

    /// `POST` a JSON document with the Bearer token (call events). The reply is returned
    /// whatever its status; [`classify`] says what it means.
    pub async fn post_json(
        &self,
        target: &CrmTarget,
        path: &str,
        token: &Secret,
        body: &Value,
    ) -> Result<Reply, FlowluError> {
        self.send(target, "POST", path, Some(token), Payload::Json(body))
            .await
    }

    /// `POST` form fields with the Bearer token (CRM entities: `crm::send`). The reply is
    /// returned whatever its status; [`classify`] says what it means.
    pub async fn post_form(
        &self,
        target: &CrmTarget,
        path: &str,
        token: &Secret,
        fields: &[(&str, &str)],
    ) -> Result<Reply, FlowluError> {
        self.send(target, "POST", path, Some(token), Payload::Form(fields))
            .await
    }

    /// `GET` with the Bearer token; `path` may carry a query. The reply whatever its status.
    pub async fn get(
        &self,
        target: &CrmTarget,
        path: &str,
        token: &Secret,
    ) -> Result<Reply, FlowluError> {
        self.send(target, "GET", path, Some(token), Payload::None)
            .await
    }

    /// `GET core/user/get` with the token, returning the answer whatever it is: for
    /// `appliance doctor` (reachability, token, the server's `Date`).
    pub async fn probe(&self, target: &CrmTarget, token: &Secret) -> Result<Reply, FlowluError> {
        self.send(
            target,
            "GET",
            super::paths::USER_GET,
            Some(token),
            Payload::None,
        )
        .await
    }

    /// `POST` one call event exactly as stored, with its id as `Idempotency-Key`.
    pub async fn post_event(
        &self,
        target: &CrmTarget,
        path: &str,
        token: &Secret,
        body: &[u8],
        event_id: &str,
    ) -> Result<Reply, FlowluError> {
        self.send(
            target,
            "POST",
            path,
            Some(token),
            Payload::Event { body, event_id },
        )
        .await
    }
}

/// What an answer means: the `response` object (or the bare body) on success, else the
/// error it stands for. 401/403 and error code 11 are `Rejected`; 429, 5xx and error
/// code 13 `Unavailable`; other failures `Api`.
pub fn classify(reply: &Reply) -> Result<Value, FlowluError> {
    api_result(reply)
}

fn api_result(reply: &Reply) -> Result<Value, FlowluError> {
    let error = reply.json.as_ref().and_then(|j| j.get("error"));
    let code = error
        .and_then(|e| e.get("error_code"))
        .and_then(|c| c.as_i64().or_else(|| c.as_str()?.trim().parse().ok()));
    let message = error
        .and_then(|e| e.get("error_msg"))
        .and_then(Value::as_str)
        .map(short)
        .unwrap_or_default();
    let what = match code {
        Some(code) => format!("HTTP {}, error {code} {message}", reply.status),
        None => format!("HTTP {}", reply.status),
    };
    let what = what.trim_end().to_string();
    if matches!(reply.status, 401 | 403) || code == Some(11) || code == Some(22) {
        return Err(FlowluError::Rejected(what));
    }
    if reply.status == 429 || reply.status >= 500 || code == Some(13) {
        return Err(FlowluError::Unavailable(what));
    }
    if !(200..300).contains(&reply.status) || error.is_some_and(|e| !e.is_null()) {
        return Err(FlowluError::Api(what));
    }
    match &reply.json {
        Some(Value::Object(map)) => Ok(match map.get("response") {
            Some(inner @ Value::Object(_)) => inner.clone(),
            _ => Value::Object(map.clone()),
        }),
        _ => Err(FlowluError::Protocol(format!(
            "HTTP {} with a body that is not a JSON object",
            reply.status
        ))),
    }
}

/// A text field of an object: strings as they are, numbers printed.
fn text_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Flowlu's own words, cut short and without control characters, for error messages.
fn short(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply::with_body(status, body)
    }

    #[test]
    fn answers_are_classified() {
        let ok = api_result(&reply(200, r#"{"response": {"id": 5}}"#)).unwrap();
        assert_eq!(ok["id"], 5);
        let bare = api_result(&reply(200, r#"{"uuid": "u-1"}"#)).unwrap();
        assert_eq!(bare["uuid"], "u-1");
        let cases = [
            (401, "{}", "rejected"),
            (403, "", "rejected"),
            (
                200,
                r#"{"error": {"error_code": 11, "error_msg": "authorization failed"}}"#,
                "rejected",
            ),
            (200, r#"{"error": {"error_code": "13"}}"#, "unavailable"),
            (500, "oops", "unavailable"),
            (429, "", "unavailable"),
            (
                400,
                r#"{"error": {"error_code": 21, "error_msg": "validation"}}"#,
                "api",
            ),
            (404, "", "api"),
            (200, "[1, 2]", "protocol"),
            (200, "not json", "protocol"),
        ];
        for (status, body, kind) in cases {
            let e = api_result(&reply(status, body)).unwrap_err();
            let got = match e {
                FlowluError::Rejected(_) => "rejected",
                FlowluError::Unavailable(_) => "unavailable",
                FlowluError::Api(_) => "api",
                FlowluError::Protocol(_) => "protocol",
                _ => "other",
            };
            assert_eq!(got, kind, "{status} {body}: {e}");
        }
    }
}
