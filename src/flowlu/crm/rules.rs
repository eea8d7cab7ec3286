//! The call-handling rules: what an ended incoming call asks of the CRM. Runs inside the
//! call engine's transaction that writes `call.completed`, and only decides: the outbox
//! rows it returns are sent later by [`super::send::deliver`].
//!
//! - An unknown number (not in the contact cache) and "create contact" on: a
//!   `crm.contact.create` row, then with "create lead" a `crm.lead.create` row.
//! - A missed call and "missed-call task" on: a `crm.task.create` row for the contact's
//!   responsible manager, else the default user (none: no task, logged).
//!
//! The rows of one call share the key `crm:<call id>`, so they go out in that order
//! (contact before lead and task) and never wait behind the call's own events.

use rusqlite::Connection;
use serde_json::json;

use super::{kinds, store};
use crate::calls::{Call, CallStatus, Direction, phone};
use crate::db::DbError;
use crate::flowlu::store::settings;
use crate::outbox::{NewEvent, now_ms};

/// The rows to enqueue for `call`, which just ended (empty when no rule applies).
pub fn on_completed(
    conn: &Connection,
    integration_id: i64,
    call: &Call,
) -> Result<Vec<NewEvent>, DbError> {
    if call.direction != Direction::Incoming {
        return Ok(Vec::new());
    }
    let rules = store::rules(conn, integration_id)?;
    let missed = call.status == Some(CallStatus::Missed);
    if !(rules.create_contact || (rules.missed_task && missed)) {
        return Ok(Vec::new());
    }
    let country = settings(conn, integration_id)?.default_country_code;
    let number = phone::normalize(&call.phone, &country).ok();
    let known = match &number {
        Some(n) => store::lookup(conn, integration_id, n)?,
        None => None,
    };
    let shown = number
        .as_ref()
        .map_or_else(|| call.phone.clone(), |n| format!("+{n}"));
    let default_user = Some(rules.default_user_id.clone()).filter(|u| !u.is_empty());
    let mut rows = Vec::new();
    let mut row = |kind: &str, payload: serde_json::Value| {
        rows.push(NewEvent {
            integration_id,
            call_key: format!("crm:{}", call.id),
            event_id: format!("c{}", crate::secret::random_token(15)),
            kind: kind.to_string(),
            payload,
        });
    };
    if let (Some(number), None, true) = (&number, &known, rules.create_contact) {
        row(
            kinds::CONTACT,
            json!({"phone": number, "name": shown, "owner_id": default_user, "call_id": call.id}),
        );
        if rules.create_lead {
            row(
                kinds::LEAD,
                json!({"phone": number, "name": format!("Call from {shown}"),
                       "assignee_id": default_user, "call_id": call.id}),
            );
        }
    }
    if missed && rules.missed_task {
        let assignee = known
            .as_ref()
            .and_then(|k| k.manager_id.clone())
            .or(default_user);
        match assignee {
            Some(user) => {
                let ended = call.ended_at.unwrap_or_else(now_ms);
                let due = ended + rules.task_due_minutes.max(0) * 60_000;
                row(
                    kinds::TASK,
                    json!({
                        "phone": number, "name": format!("Call back {shown} (missed call)"),
                        "description": format!(
                            "Missed incoming call from {shown} on line {}; call {}.",
                            if call.line.is_empty() { "-" } else { &call.line },
                            call.id
                        ),
                        "responsible_id": user, "due_at_ms": due,
                        "contact_id": known.as_ref().map(|k| k.contact_id.clone()),
                        "call_id": call.id,
                    }),
                );
            }
            None => log::info!(
                "missed call {}: no responsible manager known and no default user set; \
                 no follow-up task",
                call.id
            ),
        }
    }
    Ok(rows)
}
