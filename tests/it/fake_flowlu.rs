//! A fake Flowlu on 127.0.0.1:0 (plain HTTP), reached through `[flowlu]
//! base_url_override`. It records every request and answers:
//!
//! - `GET /api/v1/module/core/user/get`: the user registered for the Bearer token with
//!   [`FakeFlowlu::add_user`] (optionally only for one account domain, told by the
//!   appliance's `x-appliance-crm-domain` header), else 401 with error code 11;
//! - `POST /api/v1/module/telephony/telephony/create`: `{"response": {"uuid": "fake-uuid-N"}}`;
//! - `POST /oauth/token`: new tokens `refreshed-N` / `refresh-N`, `expires_in` 3600;
//! - anything else (e.g. the call-event hook `/external/telephony/hook/mini_app/...`):
//!   `{"response": {}}`.
//!
//! Any path's answer can be replaced mid-test: [`FakeFlowlu::set_reply`] (until cleared)
//! or [`FakeFlowlu::queue_reply`] (once, before the standing one), each with a status,
//! body and delay.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub const USER_GET: &str = "/api/v1/module/core/user/get";
pub const TELEPHONY_CREATE: &str = "/api/v1/module/telephony/telephony/create";
pub const OAUTH_TOKEN: &str = "/oauth/token";
pub const DOMAIN_HEADER: &str = "x-appliance-crm-domain";

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as URL-encoded form fields.
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A programmed answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            body: String::new(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }

    /// Answer only after `delay` (a slow Flowlu).
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Adds a response header (e.g. `Retry-After`).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

#[derive(Debug, Clone)]
struct FakeUser {
    domain: Option<String>,
    body: Value,
}

#[derive(Default)]
struct Inner {
    requests: Mutex<Vec<Recorded>>,
    standing: Mutex<HashMap<String, Reply>>,
    queued: Mutex<HashMap<String, VecDeque<Reply>>>,
    users: Mutex<HashMap<String, FakeUser>>,
    counter: AtomicU64,
}

pub struct FakeFlowlu {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`: put it in `[flowlu] base_url_override`.
    pub base: String,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeFlowlu {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeFlowlu {
    pub async fn start() -> FakeFlowlu {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inner = Arc::new(Inner::default());
        let served = inner.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let inner = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(answer(&inner, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeFlowlu {
            addr,
            base: format!("http://{addr}"),
            inner,
            task,
        }
    }

    /// Makes `token` belong to a user, at any domain.
    pub fn add_user(&self, token: &str, id: &str, name: &str, email: &str) {
        self.add_user_body(token, None, json!({"id": id, "name": name, "email": email}));
    }

    /// Makes `token` belong to a user only when presented for `domain`.
    pub fn add_user_at(&self, token: &str, domain: &str, id: &str, name: &str) {
        self.add_user_body(
            token,
            Some(domain),
            json!({"id": id, "name": name, "email": ""}),
        );
    }

    /// Registers any `core/user/get` answer body (inside `response`) for `token`.
    pub fn add_user_body(&self, token: &str, domain: Option<&str>, body: Value) {
        self.inner.users.lock().unwrap().insert(
            token.to_string(),
            FakeUser {
                domain: domain.map(str::to_string),
                body,
            },
        );
    }

    pub fn remove_user(&self, token: &str) {
        self.inner.users.lock().unwrap().remove(token);
    }

    /// Answer `path` with `reply` from now on (until [`Self::clear_reply`]).
    pub fn set_reply(&self, path: &str, reply: Reply) {
        self.inner
            .standing
            .lock()
            .unwrap()
            .insert(path.to_string(), reply);
    }

    pub fn clear_reply(&self, path: &str) {
        self.inner.standing.lock().unwrap().remove(path);
    }

    /// Answer the next request to `path` with `reply`, once.
    pub fn queue_reply(&self, path: &str, reply: Reply) {
        self.inner
            .queued
            .lock()
            .unwrap()
            .entry(path.to_string())
            .or_default()
            .push_back(reply);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    pub fn clear_requests(&self) {
        self.inner.requests.lock().unwrap().clear();
    }
}

fn respond(reply: &Reply) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    for (name, value) in &reply.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(reply.body.clone())))
        .unwrap()
}

async fn answer(inner: &Inner, req: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // A request whose body never fully arrived (the client died mid-send, e.g. the
    // SIGKILL tests) is not a request a real server would act on: answer nothing
    // useful and do not record it.
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return respond(&Reply::status(400)),
    };
    let recorded = Recorded {
        at: std::time::Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: body.to_vec(),
    };
    inner.requests.lock().unwrap().push(recorded.clone());

    let programmed = {
        let queued = inner
            .queued
            .lock()
            .unwrap()
            .get_mut(&recorded.path)
            .and_then(VecDeque::pop_front);
        queued.or_else(|| inner.standing.lock().unwrap().get(&recorded.path).cloned())
    };
    let reply = match programmed {
        Some(reply) => reply,
        None => default_reply(inner, &recorded),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    respond(&reply)
}

fn default_reply(inner: &Inner, r: &Recorded) -> Reply {
    let n = inner.counter.fetch_add(1, Ordering::SeqCst) + 1;
    match r.path.as_str() {
        USER_GET => {
            let token = r
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let users = inner.users.lock().unwrap();
            match users.get(token) {
                Some(user)
                    if user
                        .domain
                        .as_deref()
                        .is_none_or(|d| Some(d) == r.header(DOMAIN_HEADER)) =>
                {
                    Reply::json(200, json!({"response": user.body}))
                }
                _ => Reply::json(
                    401,
                    json!({"error": {"error_code": 11, "error_msg": "authorization failed"}}),
                ),
            }
        }
        TELEPHONY_CREATE => {
            Reply::json(200, json!({"response": {"uuid": format!("fake-uuid-{n}")}}))
        }
        OAUTH_TOKEN => Reply::json(
            200,
            json!({
                "access_token": format!("refreshed-{n}"),
                "refresh_token": format!("refresh-{n}"),
                "token_type": "bearer",
                "expires_in": 3600,
            }),
        ),
        _ => Reply::json(200, json!({"response": {}})),
    }
}
