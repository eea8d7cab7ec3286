//! Sending one `crm.*` outbox row: the requests a row's kind stands for, made idempotent
//! as far as Flowlu's API lets us.
//!
//! - Every row first looks in `crm_created`: a row that already created its entity (its
//!   answer got lost, or the process stopped before the row was marked delivered) answers
//!   200 without asking Flowlu again.
//! - A contact is also looked up before it is created: in the local cache, then in
//!   Flowlu (`account/list` by the number as we write it), so a retry after a lost answer
//!   or a second call from the same unknown number finds the first one's contact.
//! - What a row created is recorded (its id) and a new contact goes into the cache.
//!
//! The answer is the outbox's [`Reply`], so retries, 401 refresh and "failed" work as for
//! call events. Remaining gap: a lead or task whose 2xx is lost in transit is created
//! again on retry (Flowlu offers no idempotency key we know of).

use std::time::SystemTime;

use serde_json::Value;

use super::{Account, crm_time, kinds, paths, store};
use crate::flowlu::client::{Reply as FlowluReply, classify};
use crate::flowlu::events::effective_status;
use crate::flowlu::tokens::Credentials;
use crate::flowlu::{Flowlu, FlowluError, store::settings};
use crate::outbox::{Reply, SendError, parse_retry_after};

/// Sends one row of `kind` (a [`kinds`] constant) with `creds`.
pub async fn deliver(
    flowlu: &Flowlu,
    creds: &Credentials,
    kind: &str,
    event_id: &str,
    body: &[u8],
) -> Result<Reply, SendError> {
    let row: Value = serde_json::from_slice(body)
        .map_err(|e| SendError::Network(format!("unreadable row: {e}")))?;
    let id = creds.integration.id;
    let (event, kind_owned) = (event_id.to_string(), kind.to_string());
    let looked = flowlu
        .db
        .run(move |c| {
            let done = store::created(c, &event)?;
            let country = settings(c, id)?.default_country_code;
            Ok::<_, FlowluError>((done, country))
        })
        .await;
    let (done, country) = looked.map_err(|e| SendError::Network(e.to_string()))?;
    if let Some(entity) = done {
        return Ok(ok(&format!("{kind_owned}: already created {entity}")));
    }
    let field = |k: &str| match row.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let phone = field("phone");
    match kind {
        kinds::CONTACT => {
            let number =
                phone.ok_or_else(|| SendError::Network("contact without a number".into()))?;
            contact(
                flowlu,
                creds,
                event_id,
                &number,
                field("name"),
                field("owner_id"),
                &country,
            )
            .await
        }
        kinds::LEAD => {
            let contact_id = match &phone {
                Some(n) => cached(flowlu, id, n).await?,
                None => None,
            };
            let plus = phone.as_ref().map(|n| format!("+{n}"));
            let mut fields: Vec<(&str, String)> = vec![("name", field("name").unwrap_or_default())];
            push(&mut fields, "contact_id", contact_id);
            push(&mut fields, "contact_phone", plus);
            push(&mut fields, "assignee_id", field("assignee_id"));
            let cache = |_: &str| None;
            create(
                flowlu,
                creds,
                event_id,
                "lead",
                paths::LEAD_CREATE,
                &fields,
                cache,
            )
            .await
        }
        kinds::TASK => {
            let due = row.get("due_at_ms").and_then(Value::as_i64).unwrap_or(0);
            let offset = flowlu.config.expires_at_utc_offset_minutes;
            let mut fields: Vec<(&str, String)> = vec![
                ("name", field("name").unwrap_or_default()),
                ("description", field("description").unwrap_or_default()),
            ];
            push(&mut fields, "responsible_id", field("responsible_id"));
            push(&mut fields, "deadline", Some(crm_time(due, offset)));
            let cache = |_: &str| None;
            create(
                flowlu,
                creds,
                event_id,
                "task",
                paths::TASK_CREATE,
                &fields,
                cache,
            )
            .await
        }
        other => Err(SendError::Network(format!("unknown CRM row kind {other}"))),
    }
}

fn push(fields: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        fields.push((key, v));
    }
}

/// A 200 that did not come from Flowlu (nothing left to do).
fn ok(note: &str) -> Reply {
    Reply {
        status: 200,
        retry_after: None,
        body: note.to_string(),
    }
}

fn reply_of(r: &FlowluReply) -> Reply {
    Reply {
        status: effective_status(r.status, r.json.as_ref()),
        retry_after: r
            .retry_after
            .as_deref()
            .and_then(|v| parse_retry_after(v, SystemTime::now())),
        body: r.text.clone(),
    }
}

fn transport(e: FlowluError) -> SendError {
    match e {
        FlowluError::TimedOut(_) => SendError::Timeout,
        e => SendError::Network(e.to_string()),
    }
}

/// The `id` of a created entity in an answer (`{"response": {"id": ..}}` or bare).
fn created_id(r: &FlowluReply) -> Option<String> {
    let v = classify(r).ok()?;
    match v.get("id")? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

async fn cached(flowlu: &Flowlu, id: i64, number: &str) -> Result<Option<String>, SendError> {
    let number = number.to_string();
    flowlu
        .db
        .run(move |c| store::lookup(c, id, &number))
        .await
        .map(|k| k.map(|k| k.contact_id))
        .map_err(|e| SendError::Network(e.to_string()))
}

async fn remember(
    flowlu: &Flowlu,
    event_id: &str,
    entity: &'static str,
    entity_id: &str,
    account: Option<(i64, Account, String)>,
) {
    let (event, entity_id) = (event_id.to_string(), entity_id.to_string());
    let stored = flowlu
        .db
        .run(move |c| {
            store::record_created(c, &event, entity, &entity_id)?;
            if let Some((id, account, country)) = account {
                store::store_account(c, id, &account, &country)?;
            }
            Ok::<_, crate::db::DbError>(())
        })
        .await;
    if let Err(e) = stored {
        log::error!("crm: cannot record created {entity}: {e}");
    }
}

/// POSTs `fields` to `path` and records the created id, and what `cache` makes of it
/// for the contact cache.
async fn create(
    flowlu: &Flowlu,
    creds: &Credentials,
    event_id: &str,
    entity: &'static str,
    path: &str,
    fields: &[(&str, String)],
    cache: impl FnOnce(&str) -> Option<(i64, Account, String)>,
) -> Result<Reply, SendError> {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let answer = flowlu
        .client
        .post_form(&creds.target, path, &creds.access_token, &pairs)
        .await
        .map_err(transport)?;
    let reply = reply_of(&answer);
    if (200..300).contains(&reply.status) {
        match created_id(&answer) {
            Some(new) => {
                log::info!("crm: created {entity} {new} (row {event_id})");
                remember(flowlu, event_id, entity, &new, cache(&new)).await;
            }
            None => log::warn!("crm: Flowlu created a {entity} but named no id (row {event_id})"),
        }
    }
    Ok(reply)
}

/// Finds or creates the contact for `number` (E.164 digits) and caches it.
async fn contact(
    flowlu: &Flowlu,
    creds: &Credentials,
    event_id: &str,
    number: &str,
    name: Option<String>,
    owner: Option<String>,
    country: &str,
) -> Result<Reply, SendError> {
    let id = creds.integration.id;
    if let Some(known) = cached(flowlu, id, number).await? {
        remember(flowlu, event_id, "account", &known, None).await;
        return Ok(ok(&format!("contact {known} already known")));
    }
    let plus = format!("+{number}");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("filter[phone]", &plus)
        .finish();
    let listed = flowlu
        .client
        .get(
            &creds.target,
            &format!("{}?{query}", paths::ACCOUNT_LIST),
            &creds.access_token,
        )
        .await
        .map_err(transport)?;
    let reply = reply_of(&listed);
    if !(200..300).contains(&reply.status) {
        return Ok(reply);
    }
    let account = |contact_id: String, manager: Option<String>| Account {
        id: contact_id,
        name: name.clone().unwrap_or_default(),
        manager_id: manager,
        phones: vec![number.to_string()],
        version: None,
        retired: false,
    };
    // Flowlu ignores a filter it does not support and lists every account: only one that
    // really has the number is the caller's contact.
    if let Some((found, manager)) = matching_item(&listed, number, country) {
        let a = account(found.clone(), manager);
        remember(
            flowlu,
            event_id,
            "account",
            &found,
            Some((id, a, country.into())),
        )
        .await;
        return Ok(ok(&format!("contact {found} found in Flowlu")));
    }
    let mut fields: Vec<(&str, String)> = vec![
        ("type", "2".into()),
        ("name", name.clone().unwrap_or_else(|| plus.clone())),
        ("phone", plus.clone()),
    ];
    push(&mut fields, "owner_id", owner.clone());
    let cache = |new: &str| Some((id, account(new.to_string(), owner), country.to_string()));
    create(
        flowlu,
        creds,
        event_id,
        "account",
        paths::ACCOUNT_CREATE,
        &fields,
        cache,
    )
    .await
}

/// The first account of a list answer (`response.items`) that has `number` (E.164
/// digits) in one of its phone fields, read with the account's default `country` as the
/// cache reads them; with its owner.
fn matching_item(r: &FlowluReply, number: &str, country: &str) -> Option<(String, Option<String>)> {
    let v = classify(r).ok()?;
    v.get("items")?.as_array()?.iter().find_map(|item| {
        let text = |k: &str| match item.get(k)? {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
            _ => None,
        };
        let has_number = ["phone", "phone2", "phone3"].iter().any(|k| {
            text(k).is_some_and(|raw| {
                crate::calls::phone::normalize(&raw, country).is_ok_and(|n| n == number)
            })
        });
        if !has_number {
            return None;
        }
        Some((text("id")?, text("owner_id").filter(|o| o != "0")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> FlowluReply {
        FlowluReply::with_body(status, body)
    }

    #[test]
    fn ids_and_list_items_are_read_from_either_shape() {
        assert_eq!(
            created_id(&answer(200, r#"{"response": {"id": 5}}"#)),
            Some("5".into())
        );
        assert_eq!(created_id(&answer(200, r#"{"id": "6"}"#)), Some("6".into()));
        assert_eq!(created_id(&answer(200, r#"{"response": {}}"#)), None);
        assert_eq!(created_id(&answer(500, r#"{"id": 5}"#)), None);
        let n = "79161234567";
        let list = r#"{"response": {"items": [{"id": 9, "owner_id": 0, "phone": "+79161234567"},
                      {"id": 10, "phone": "+79161234567"}]}}"#;
        assert_eq!(
            matching_item(&answer(200, list), n, "7"),
            Some(("9".into(), None))
        );
        let owned = r#"{"response": {"items": [{"id": "9", "owner_id": 17, "phone3": "8 (916) 123-45-67"}]}}"#;
        assert_eq!(
            matching_item(&answer(200, owned), n, "7"),
            Some(("9".into(), Some("17".into())))
        );
        assert_eq!(
            matching_item(&answer(200, r#"{"response": {"items": []}}"#), n, "7"),
            None
        );
    }

    #[test]
    fn a_listed_account_without_the_number_is_not_the_contact() {
        let n = "79161234567";
        // Flowlu ignored the filter: every account, none with the caller's number.
        let unrelated = r#"{"response": {"items": [{"id": 1, "phone": "+74950000000"},
                           {"id": 2}, {"id": 3, "phone": "not a number", "phone2": "79161234568"}]}}"#;
        assert_eq!(matching_item(&answer(200, unrelated), n, "7"), None);
        let among = r#"{"response": {"items": [{"id": 1, "phone": "+74950000000"},
                       {"id": 2, "phone": "+1 202 555 0100", "phone2": "+7 916 123-45-67", "owner_id": "5"},
                       {"id": 3, "phone": "+79161234567"}]}}"#;
        assert_eq!(
            matching_item(&answer(200, among), n, "7"),
            Some(("2".into(), Some("5".into())))
        );
    }

    #[test]
    fn flowlu_errors_keep_their_meaning_for_the_outbox() {
        let auth = answer(200, r#"{"error": {"error_code": 11}}"#);
        assert_eq!(reply_of(&auth).status, 401);
        let validation = answer(200, r#"{"error": {"error_code": 21}}"#);
        assert_eq!(reply_of(&validation).status, 422);
    }
}
