//! The requests Flowlu POSTs to our `webhook_url` and the answers we give [ours: contract
//! section 3]: field names, request types, defaults and limits, in one place.
//!
//! Read leniently (unknown fields ignored, numbers given as strings and strings given as
//! numbers accepted, text trimmed), answered strictly. What a request *does* is
//! `http::webhook`'s business; this module only knows the shapes.

use serde_json::{Map, Value, json};

use super::events::call_object;
use crate::calls::{Call, CallStatus, Direction};
use crate::pbx::PbxStatus;
use crate::util::rfc3339;

/// The request types, as Flowlu names them.
pub const TYPES: &[&str] = &[
    "call.make",
    "calls.list",
    "call.get",
    "employees.list",
    "call.redirect",
    "health.check",
];

/// `calls.list` page size when Flowlu names none, and the most it may ask for.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;
/// The longest id or number we accept in any field.
const MAX_TEXT: usize = 128;

/// Why a body is not a request we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Not JSON at all (400 `invalid_json`).
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    /// A `type` we do not serve (400 `unknown_type`).
    #[error("unknown request type {0:?}; this appliance serves {types}", types = TYPES.join(", "))]
    UnknownType(String),
    /// A field is missing or unusable (422).
    #[error("{0}")]
    Field(String),
}

/// One webhook request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    CallMake(CallMake),
    CallsList(CallsList),
    CallGet { call_id: String },
    EmployeesList,
    CallRedirect(CallRedirect),
    HealthCheck,
}

impl Request {
    /// The request type as Flowlu names it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::CallMake(_) => "call.make",
            Request::CallsList(_) => "calls.list",
            Request::CallGet { .. } => "call.get",
            Request::EmployeesList => "employees.list",
            Request::CallRedirect(_) => "call.redirect",
            Request::HealthCheck => "health.check",
        }
    }
}

/// `call.make`: ring employee `user_id`, then dial `phone`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallMake {
    pub user_id: String,
    /// As Flowlu wrote it; normalized by the handler.
    pub phone: String,
    /// Flowlu's id for the call, echoed as `crm_call_id`.
    pub call_id: Option<String>,
    /// The caller ID / trunk the customer should see.
    pub line: Option<String>,
    /// The caller's own id for the call, echoed in result callbacks (≤ 64 characters of
    /// `A-Z a-z 0-9 . _ : -`).
    pub uuid: Option<String>,
}

/// The longest `call.make` `uuid`.
pub const MAX_UUID: usize = 64;

/// Whether `uuid` is a usable caller's id: at most [`MAX_UUID`] letters, digits, `.`, `_`,
/// `:` or `-` (`call.make` and the click-to-call URL's `uuid`).
pub fn valid_uuid(uuid: &str) -> bool {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    uuid.len() <= MAX_UUID && uuid.chars().all(safe)
}

/// A `call.make` `uuid`: at most [`MAX_UUID`] letters, digits, `.`, `_`, `:` or `-`.
fn client_uuid(d: &Data<'_>) -> Result<Option<String>, ShapeError> {
    let Some(uuid) = d.text("uuid")? else {
        return Ok(None);
    };
    if !valid_uuid(&uuid) {
        return Err(ShapeError::Field(format!(
            "`uuid` must be at most {MAX_UUID} characters of A-Z, a-z, 0-9, '.', '_', ':', '-'"
        )));
    }
    Ok(Some(uuid))
}

/// `calls.list`: one page of the account's calls started in `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallsList {
    pub from_ms: i64,
    pub to_ms: i64,
    pub user_id: Option<String>,
    pub direction: Option<Direction>,
    pub status: Option<CallStatus>,
    /// The customer's number as Flowlu wrote it; normalized by the handler.
    pub phone: Option<String>,
    /// 1-based.
    pub page: u64,
    /// At most [`MAX_LIMIT`].
    pub limit: u64,
}

/// Who a redirected call should go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(String),
    Extension(String),
}

/// `call.redirect`: send a ringing or connected call to another employee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRedirect {
    pub call_id: String,
    pub target: Target,
}

/// Reads one request body.
pub fn parse(body: &[u8]) -> Result<Request, ShapeError> {
    let json: Value = super::json::parse(body).map_err(|e| ShapeError::Json(e.to_string()))?;
    let Value::Object(root) = json else {
        return Err(ShapeError::Field(
            "the body must be a JSON object {\"type\": ..., \"data\": {...}}".into(),
        ));
    };
    let kind = match root.get("type") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_ascii_lowercase(),
        None | Some(Value::Null) => return Err(ShapeError::Field("`type` is missing".into())),
        Some(_) => return Err(ShapeError::Field("`type` must be a string".into())),
    };
    let empty = Map::new();
    let data = match root.get("data") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => &empty,
        Some(_) => return Err(ShapeError::Field("`data` must be an object".into())),
    };
    let d = Data(data);
    Ok(match kind.as_str() {
        "call.make" => Request::CallMake(CallMake {
            user_id: d.required("user_id")?,
            phone: d.required("phone")?,
            call_id: d.text("call_id")?,
            line: d.text("line")?,
            uuid: client_uuid(&d)?,
        }),
        "calls.list" => Request::CallsList(calls_list(&d)?),
        "call.get" => Request::CallGet {
            call_id: d.required("call_id")?,
        },
        "employees.list" => Request::EmployeesList,
        "call.redirect" => {
            let call_id = d.required("call_id")?;
            let target = match (d.text("extension")?, d.text("user_id")?) {
                (Some(ext), _) => Target::Extension(ext),
                (None, Some(user)) => Target::User(user),
                (None, None) => {
                    return Err(ShapeError::Field(
                        "`user_id` or `extension` is required".into(),
                    ));
                }
            };
            Request::CallRedirect(CallRedirect { call_id, target })
        }
        "health.check" => Request::HealthCheck,
        _ => return Err(ShapeError::UnknownType(kind)),
    })
}

fn calls_list(d: &Data<'_>) -> Result<CallsList, ShapeError> {
    let from_ms = d.time("from")?;
    let to_ms = d.time("to")?;
    if to_ms <= from_ms {
        return Err(ShapeError::Field("`to` must be later than `from`".into()));
    }
    let direction = match d.text("direction")? {
        None => None,
        Some(s) => Some(Direction::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
            ShapeError::Field(format!(
                "`direction` {s:?} is not one of incoming, outgoing, internal"
            ))
        })?),
    };
    let status = match d.text("status")? {
        None => None,
        Some(s) => Some(CallStatus::parse(&s.to_ascii_lowercase()).ok_or_else(|| {
            ShapeError::Field(format!(
                "`status` {s:?} is not one of answered, missed, busy, no_answer, failed, canceled"
            ))
        })?),
    };
    let page = d.count("page")?.unwrap_or(1);
    if !(1..=1_000_000).contains(&page) {
        return Err(ShapeError::Field(
            "`page` must be between 1 and 1000000".into(),
        ));
    }
    let limit = d.count("limit")?.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 {
        return Err(ShapeError::Field("`limit` must be at least 1".into()));
    }
    Ok(CallsList {
        from_ms,
        to_ms,
        user_id: d.text("user_id")?,
        direction,
        status,
        phone: d.text("phone")?,
        page,
        limit: limit.min(MAX_LIMIT),
    })
}

/// Lenient reading of `data`'s fields.
struct Data<'a>(&'a Map<String, Value>);

impl Data<'_> {
    /// A string or a number, trimmed; empty and null count as absent.
    fn text(&self, key: &str) -> Result<Option<String>, ShapeError> {
        let s = match self.0.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(ShapeError::Field(format!(
                    "`{key}` must be a string or a number"
                )));
            }
        };
        if s.chars().count() > MAX_TEXT {
            return Err(ShapeError::Field(format!(
                "`{key}` is longer than {MAX_TEXT} characters"
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(ShapeError::Field(format!(
                "`{key}` contains control characters"
            )));
        }
        Ok((!s.is_empty()).then_some(s))
    }

    fn required(&self, key: &str) -> Result<String, ShapeError> {
        self.text(key)?
            .ok_or_else(|| ShapeError::Field(format!("`{key}` is required")))
    }

    /// A non-negative whole number, or the same as a string.
    fn count(&self, key: &str) -> Result<Option<u64>, ShapeError> {
        let bad = || ShapeError::Field(format!("`{key}` must be a whole number"));
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A required RFC 3339 time, as unix milliseconds.
    fn time(&self, key: &str) -> Result<i64, ShapeError> {
        let raw = self.required(key)?;
        let t = time::OffsetDateTime::parse(&raw, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
            ShapeError::Field(format!(
                "`{key}` {raw:?} is not an RFC 3339 time such as 2026-03-27T17:29:33+03:00"
            ))
        })?;
        Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
    }
}

/// `call.make`'s answer: the call is recorded and the PBX took the originate.
pub fn queued(call_id: &str) -> Value {
    json!({"call_id": call_id, "status": "queued"})
}

/// `call.redirect`'s answer: the PBX took the redirect.
pub fn redirected(call_id: &str, extension: &str) -> Value {
    json!({"call_id": call_id, "status": "redirecting", "extension": extension})
}

/// `call.get`'s answer: the call object of the events, with the queue or ring group it
/// went through (`queue`, when it went through one).
pub fn call(call: &Call) -> Value {
    let mut v = call_object(call, None);
    if let (Some(queue), Some(o)) = (&call.queue, v.as_object_mut()) {
        o.insert("queue".into(), json!(queue));
    }
    v
}

/// `calls.list`'s answer.
pub fn call_list(calls: &[Call], total: u64, page: u64, limit: u64) -> Value {
    let items: Vec<Value> = calls.iter().map(call).collect();
    json!({"items": items, "total": total, "page": page, "limit": limit})
}

/// An employee's line as `employees.list` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmployeeState {
    Online,
    Offline,
    Busy,
    Ringing,
}

impl EmployeeState {
    pub fn as_str(self) -> &'static str {
        match self {
            EmployeeState::Online => "online",
            EmployeeState::Offline => "offline",
            EmployeeState::Busy => "busy",
            EmployeeState::Ringing => "ringing",
        }
    }
}

/// One row of `employees.list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    pub extension: String,
    pub name: String,
    pub state: EmployeeState,
    /// The Flowlu user mapped to the extension, if any.
    pub user_id: Option<String>,
}

/// `employees.list`'s answer. `live` says whether the states came from the PBX (false:
/// it is down or could not list its extensions, and every state is `offline`).
pub fn employees(items: &[Employee], pbx: &PbxStatus, live: bool) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|e| {
            json!({
                "extension": e.extension,
                "name": e.name,
                "state": e.state.as_str(),
                "user_id": e.user_id,
            })
        })
        .collect();
    json!({"items": items, "pbx": pbx_object(pbx, Some(live))})
}

fn pbx_object(pbx: &PbxStatus, live: Option<bool>) -> Value {
    let mut o = json!({"state": pbx.state.as_str(), "type": pbx.kind});
    if let Some(detail) = &pbx.detail {
        o["detail"] = json!(detail);
    }
    if let Some(live) = live {
        o["live"] = json!(live);
    }
    o
}

/// The state of the OAuth token the appliance calls Flowlu with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenState {
    /// Valid until `expires_at` (unix seconds).
    Ok { expires_at: i64 },
    /// Past its expiry: refreshed before the next use.
    Expired { expires_at: i64 },
    /// The refresh failed: an admin must reopen the settings in Flowlu.
    NeedsReconnect,
    /// No user has given us a token yet.
    Missing,
}

/// `health.check`'s answer.
pub struct Health<'a> {
    pub pbx: &'a PbxStatus,
    pub pending: i64,
    pub failed: i64,
    pub token: TokenState,
    /// The telephony channel is registered with Flowlu.
    pub connected: bool,
    pub version: &'a str,
}

impl Health<'_> {
    /// `ok` while the PBX is up and the token usable, else `degraded`.
    pub fn status(&self) -> &'static str {
        let token_ok = matches!(
            self.token,
            TokenState::Ok { .. } | TokenState::Expired { .. }
        );
        if self.pbx.state == crate::pbx::LinkState::Up && token_ok {
            "ok"
        } else {
            "degraded"
        }
    }

    pub fn to_json(&self) -> Value {
        let token = match &self.token {
            TokenState::Ok { expires_at } => {
                json!({"state": "ok", "expires_at": rfc3339(Some(expires_at * 1000))})
            }
            TokenState::Expired { expires_at } => {
                json!({"state": "expired", "expires_at": rfc3339(Some(expires_at * 1000))})
            }
            TokenState::NeedsReconnect => json!({"state": "needs_reconnect"}),
            TokenState::Missing => json!({"state": "missing"}),
        };
        json!({
            "status": self.status(),
            "pbx": pbx_object(self.pbx, None),
            "outbox": {"pending": self.pending, "failed": self.failed},
            "token": token,
            "channel": {"connected": self.connected},
            "version": self.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: Value) -> Result<Request, ShapeError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn call_make_takes_a_safe_uuid() {
        let make = |uuid: Value| {
            p(
                json!({"type": "call.make", "data": {"user_id": 1, "phone": "79990001122",
                                                  "uuid": uuid}}),
            )
        };
        assert!(matches!(
            make(json!("order-42:a_b.C")),
            Ok(Request::CallMake(CallMake { uuid: Some(u), .. })) if u == "order-42:a_b.C"
        ));
        assert!(matches!(
            make(json!("")),
            Ok(Request::CallMake(CallMake { uuid: None, .. }))
        ));
        for bad in [
            json!("a b"),
            json!("x/y"),
            json!("<script>"),
            json!("é"),
            json!("a".repeat(65)),
        ] {
            assert!(
                matches!(make(bad.clone()), Err(ShapeError::Field(m)) if m.contains("uuid")),
                "{bad}"
            );
        }
    }

    #[test]
    fn call_make_is_read_leniently() {
        let r = p(json!({
            "type": " Call.Make ",
            "data": {"user_id": 17, "phone": " +7 999 000 11 22 ", "call_id": 991,
                     "line": "", "extra": {"ignored": true}},
            "also": "ignored"
        }));
        assert_eq!(
            r,
            Ok(Request::CallMake(CallMake {
                user_id: "17".into(),
                phone: "+7 999 000 11 22".into(),
                call_id: Some("991".into()),
                line: None,
                uuid: None,
            }))
        );
        assert_eq!(
            p(json!({"type": "call.make", "data": {"phone": "1"}})),
            Err(ShapeError::Field("`user_id` is required".into()))
        );
        assert_eq!(
            p(json!({"type": "call.make", "data": {"user_id": "1", "phone": ["7"]}})),
            Err(ShapeError::Field(
                "`phone` must be a string or a number".into()
            ))
        );
        assert!(matches!(
            p(json!({"type": "call.make", "data": {"user_id": "1\r\n", "phone": "7", "call_id": "a\u{0}b"}})),
            Err(ShapeError::Field(m)) if m.contains("call_id")
        ));
    }

    #[test]
    fn envelopes_and_types() {
        assert!(matches!(parse(b"{nope"), Err(ShapeError::Json(_))));
        assert!(matches!(parse(b""), Err(ShapeError::Json(_))));
        assert!(matches!(p(json!([1])), Err(ShapeError::Field(_))));
        assert!(matches!(p(json!({"data": {}})), Err(ShapeError::Field(_))));
        assert_eq!(
            p(json!({"type": "call.hangup"})),
            Err(ShapeError::UnknownType("call.hangup".into()))
        );
        assert_eq!(p(json!({"type": "health.check"})), Ok(Request::HealthCheck));
        assert_eq!(
            p(json!({"type": "employees.list", "data": null})),
            Ok(Request::EmployeesList)
        );
        assert!(matches!(
            p(json!({"type": "employees.list", "data": "x"})),
            Err(ShapeError::Field(_))
        ));
        assert_eq!(
            p(json!({"type": "call.redirect", "data": {"call_id": "c1", "user_id": 5}})),
            Ok(Request::CallRedirect(CallRedirect {
                call_id: "c1".into(),
                target: Target::User("5".into())
            }))
        );
        assert_eq!(
            p(
                json!({"type": "call.redirect", "data": {"call_id": "c1", "extension": 101, "user_id": 5}})
            ),
            Ok(Request::CallRedirect(CallRedirect {
                call_id: "c1".into(),
                target: Target::Extension("101".into())
            }))
        );
        assert!(matches!(
            p(json!({"type": "call.redirect", "data": {"call_id": "c1"}})),
            Err(ShapeError::Field(_))
        ));
    }

    #[test]
    fn calls_list_defaults_caps_and_refusals() {
        let list = |data: Value| p(json!({"type": "calls.list", "data": data}));
        let r = list(json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T03:00:00+03:00"}));
        assert_eq!(
            r,
            Ok(Request::CallsList(CallsList {
                from_ms: 1_767_225_600_000,
                to_ms: 1_767_312_000_000,
                user_id: None,
                direction: None,
                status: None,
                phone: None,
                page: 1,
                limit: DEFAULT_LIMIT,
            }))
        );
        let r = list(
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
            "page": "3", "limit": 5000, "direction": "Incoming", "status": "no_answer",
            "user_id": 17}),
        );
        let Ok(Request::CallsList(l)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (l.page, l.limit, l.direction, l.status, l.user_id.as_deref()),
            (
                3,
                MAX_LIMIT,
                Some(Direction::Incoming),
                Some(CallStatus::NoAnswer),
                Some("17")
            )
        );
        for bad in [
            json!({"to": "2026-01-02T00:00:00Z"}),
            json!({"from": "yesterday", "to": "2026-01-02T00:00:00Z"}),
            json!({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}),
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "page": 0}),
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "limit": "0"}),
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "limit": -1}),
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "direction": "up"}),
            json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "status": "ok"}),
        ] {
            assert!(
                matches!(list(bad.clone()), Err(ShapeError::Field(_))),
                "{bad}"
            );
        }
    }
}
