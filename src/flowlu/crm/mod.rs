//! Flowlu's CRM beyond telephony: the entity webhooks Flowlu sends ("Webhooks for Custom
//! Applications": `meta.module`, `meta.model`, `meta.action`, `current`, `previous`), the
//! local cache of CRM accounts' phone numbers and responsible managers built from them,
//! and the call-handling rules that create tasks, contacts and leads through the REST API.
//!
//! Every path and field name of these features lives here (see `docs/flowlu-contract.md`
//! section 7). The HTTP endpoint is `http::entity_hooks`; rows are written by the call
//! engine (`engine::persist`, through [`rules::on_completed`]) and sent by the outbox
//! through [`send::deliver`]. Nothing here renders pages or talks to the PBX.

pub mod rules;
pub mod send;
pub mod store;

use serde_json::{Map, Value};

/// Flowlu's CRM paths, in one place.
pub mod paths {
    /// `GET`: CRM accounts (contacts and organizations) [doc: `/api/v1/module/crm/account/`
    /// with the `list` method]; the `filter[phone]` query is [ours].
    pub const ACCOUNT_LIST: &str = "/api/v1/module/crm/account/list";
    /// `POST`: create a CRM account [doc].
    pub const ACCOUNT_CREATE: &str = "/api/v1/module/crm/account/create";
    /// `POST`: create a lead [doc].
    pub const LEAD_CREATE: &str = "/api/v1/module/crm/lead/create";
    /// `POST`: create a task [ours: the tasks module's path as its other entities are named].
    pub const TASK_CREATE: &str = "/api/v1/module/task/tasks/create";

    /// Our entity-webhook path, to enter in Flowlu's System Settings → Webhooks [ours].
    pub fn entity_hook(integration_id: i64, secret: &str) -> String {
        format!("/hooks/flowlu-entities/{integration_id}/{secret}")
    }
}

/// Outbox row kinds of the call-handling rules (the transport picks the request by them).
pub mod kinds {
    pub const CONTACT: &str = "crm.contact.create";
    pub const LEAD: &str = "crm.lead.create";
    pub const TASK: &str = "crm.task.create";

    pub fn is_crm(kind: &str) -> bool {
        kind.starts_with("crm.")
    }
}

/// What happened to an entity [doc: `meta.action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// A CRM account as the webhook shows it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub id: String,
    pub name: String,
    /// `owner_id` [doc: "Owner user id"], the responsible manager.
    pub manager_id: Option<String>,
    /// `phone`, `phone2`, `phone3` [doc], as written in Flowlu.
    pub phones: Vec<String>,
    /// Last change time (unix ms) from `updated_date` and friends [ours], if given.
    pub version: Option<i64>,
    /// Merged into another account [doc: `merged_to`] or archived (`active` = 0): it
    /// keeps no numbers in the cache.
    pub retired: bool,
}

/// One entity webhook we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityEvent {
    pub action: Action,
    /// For create/update: the state after the change; for delete: the state before it.
    pub account: Account,
}

/// Why a webhook body was refused (422), or why it is acknowledged but not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(String),
}

/// Reads a webhook body. `Ok(None)`: a valid webhook about something other than CRM
/// accounts (acknowledged and ignored).
pub fn parse_event(body: &[u8]) -> Result<Option<EntityEvent>, PayloadError> {
    let json: Value = super::json::parse(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    let root = json
        .as_object()
        .ok_or_else(|| shape("the body must be a JSON object"))?;
    let meta = root
        .get("meta")
        .and_then(Value::as_object)
        .ok_or_else(|| shape("meta must be an object"))?;
    let word = |key: &str| -> Result<String, PayloadError> {
        match meta.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 64 => {
                Ok(s.trim().to_ascii_lowercase())
            }
            _ => Err(shape(&format!("meta.{key} must be a non-empty string"))),
        }
    };
    let (module, model, action) = (word("module")?, word("model")?, word("action")?);
    let action = match action.as_str() {
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        _ => return Err(shape("meta.action must be create, update or delete")),
    };
    let object = |key: &str| -> Result<Option<&Map<String, Value>>, PayloadError> {
        match root.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            // An empty list is how a PHP encoder writes an empty object.
            Some(Value::Array(a)) if a.is_empty() => Ok(None),
            Some(_) => Err(shape(&format!("{key} must be an object or null"))),
        }
    };
    let (current, previous) = (object("current")?, object("previous")?);
    let entity = match action {
        Action::Create | Action::Update => {
            current.ok_or_else(|| shape("current is required for create and update"))?
        }
        Action::Delete => previous
            .or(current)
            .ok_or_else(|| shape("previous is required for delete"))?,
    };
    if (module.as_str(), model.as_str()) != ("crm", "account") {
        return Ok(None);
    }
    let account = account(entity)?;
    Ok(Some(EntityEvent { action, account }))
}

fn shape(why: &str) -> PayloadError {
    PayloadError::Shape(why.to_string())
}

/// A string or number field as text, trimmed; empty is absent.
fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    let s = match m.get(key)? {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

fn account(m: &Map<String, Value>) -> Result<Account, PayloadError> {
    let id = text(m, "id")
        .filter(|id| id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| shape("the entity needs a numeric id"))?;
    let manager_id = text(m, "owner_id")
        .or_else(|| text(m, "responsible_id"))
        .filter(|u| u != "0" && u.len() <= 32 && u.bytes().all(|b| b.is_ascii_digit()));
    let phones = ["phone", "phone2", "phone3"]
        .iter()
        .filter_map(|k| text(m, k))
        .filter(|p| p.len() <= 64)
        .collect();
    let version = [
        "updated_date",
        "updated_at",
        "date_updated",
        "modified_date",
    ]
    .iter()
    .find_map(|k| m.get(*k).and_then(parse_time));
    let merged = text(m, "merged_to").is_some_and(|v| v != "0");
    let archived = text(m, "active").is_some_and(|v| v == "0" || v == "false");
    let name = text(m, "name")
        .or_else(|| {
            let first = text(m, "first_name").unwrap_or_default();
            let last = text(m, "last_name").unwrap_or_default();
            let both = format!("{first} {last}").trim().to_string();
            (!both.is_empty()).then_some(both)
        })
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    Ok(Account {
        id,
        name,
        manager_id,
        phones,
        version,
        retired: merged || archived,
    })
}

/// `YYYY-MM-DD HH:MM:SS` (Flowlu's API format, read as UTC: only the order matters),
/// RFC 3339, or unix seconds; as unix ms.
pub fn parse_time(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return (n > 0).then_some(n * 1000);
    }
    let s = v.as_str()?.trim();
    if let Ok(n) = s.parse::<i64>() {
        return (n > 0).then_some(n * 1000);
    }
    let plain = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    if let Ok(t) = time::PrimitiveDateTime::parse(s, &plain) {
        return Some((t.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Unix ms as Flowlu's `YYYY-MM-DD HH:MM:SS` in the account's local time, `offset_minutes`
/// east of UTC (`[flowlu] expires_at_utc_offset_minutes`, the same assumption as tokens).
pub fn crm_time(ms: i64, offset_minutes: i64) -> String {
    let plain = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ms / 1000 + offset_minutes * 60)
        .ok()
        .and_then(|t| t.format(&plain).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Option<EntityEvent>, PayloadError> {
        parse_event(v.to_string().as_bytes())
    }

    #[test]
    fn an_account_update_is_read_leniently() {
        let e = parse(json!({
            "meta": {"module": "crm", "model": "account", "action": "update"},
            "current": {"id": 42, "type": 2, "name": "Ivan", "owner_id": "17",
                        "phone": "+7 (916) 123-45-67", "phone2": "", "phone3": 89160000000u64,
                        "updated_date": "2026-11-23 10:00:05"},
            "previous": {"id": 42}
        }))
        .unwrap()
        .unwrap();
        assert_eq!(e.action, Action::Update);
        assert_eq!(e.account.id, "42");
        assert_eq!(e.account.manager_id.as_deref(), Some("17"));
        assert_eq!(e.account.phones, vec!["+7 (916) 123-45-67", "89160000000"]);
        assert_eq!(e.account.version, Some(1_795_428_005_000));
        assert!(!e.account.retired);
    }

    #[test]
    fn deletes_read_previous_and_other_models_are_ignored() {
        let e = parse(json!({
            "meta": {"module": "crm", "model": "account", "action": "delete"},
            "current": null, "previous": {"id": "7", "merged_to": 0}
        }))
        .unwrap()
        .unwrap();
        assert_eq!((e.action, e.account.id.as_str()), (Action::Delete, "7"));
        let lead = json!({"meta": {"module": "crm", "model": "lead", "action": "create"},
                          "current": {"id": 1}, "previous": []});
        assert_eq!(parse(lead).unwrap(), None);
    }

    #[test]
    fn bad_shapes_are_refused() {
        for bad in [
            json!([]),
            json!({"meta": {}}),
            json!({"meta": {"module": "crm", "model": "account", "action": "merge"}}),
            json!({"meta": {"module": "crm", "model": "account", "action": "update"}}),
            json!({"meta": {"module": "crm", "model": "account", "action": "update"},
                   "current": "x"}),
            json!({"meta": {"module": "crm", "model": "account", "action": "update"},
                   "current": {"id": "abc"}}),
            json!({"meta": {"module": "crm", "model": "account", "action": "delete"},
                   "current": null, "previous": null}),
        ] {
            assert!(
                matches!(parse(bad.clone()), Err(PayloadError::Shape(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_event(b"{"), Err(PayloadError::Json(_))));
    }

    #[test]
    fn times_round_trip() {
        let ms = parse_time(&json!("2026-11-23 10:00:05")).unwrap();
        assert_eq!(crm_time(ms, 0), "2026-11-23 10:00:05");
        assert_eq!(crm_time(ms, 180), "2026-11-23 13:00:05");
        assert_eq!(parse_time(&json!("2026-11-23T10:00:05Z")), Some(ms));
        assert_eq!(parse_time(&json!(1_795_428_005)), Some(ms));
        assert_eq!(parse_time(&json!("soon")), None);
    }
}
