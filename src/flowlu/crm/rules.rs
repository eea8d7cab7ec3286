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
use crate::outbox::NewEvent;
use crate::util::now_ms;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::CallState;
    use crate::flowlu::crm::Account;
    use crate::flowlu::crm::store::Rules;

    fn call(direction: Direction, status: CallStatus) -> Call {
        Call {
            id: "c1".into(),
            integration_id: Some(1),
            pbx_call: "1.1".into(),
            phone: "8 916 123-45-67".into(),
            line: "74950000000".into(),
            state: CallState::Ended,
            status: Some(status),
            ended_at: Some(2_000_000),
            ..Call::new(direction, 1_000_000)
        }
    }

    fn kinds_of(rows: &[NewEvent]) -> Vec<&str> {
        rows.iter().map(|r| r.kind.as_str()).collect()
    }

    #[test]
    fn rules_pick_contact_lead_and_task_rows() {
        let (_dir, db) = crate::db::test_db();
        let id = 1;
        db.with_conn(|c| {
            c.execute(
                "INSERT INTO flowlu_settings (integration_id, channel_name, default_line,
                     default_country_code, record_calls, incoming_routing, updated_at)
                 VALUES (?1, '', '', '7', 0, 'pbx', 0)",
                [id],
            )?;
            let missed = call(Direction::Incoming, CallStatus::Missed);
            assert!(
                on_completed(c, id, &missed)?.is_empty(),
                "all off by default"
            );
            let all = Rules {
                missed_task: true,
                task_due_minutes: 30,
                default_user_id: "99".into(),
                create_contact: true,
                create_lead: true,
                ..Rules::default()
            };
            store::save_rules(c, id, &all)?;
            let rows = on_completed(c, id, &missed)?;
            assert_eq!(
                kinds_of(&rows),
                vec![kinds::CONTACT, kinds::LEAD, kinds::TASK]
            );
            assert!(rows.iter().all(|r| r.call_key == "crm:c1"));
            assert_eq!(rows[0].payload["phone"], "79161234567");
            assert_eq!(
                rows[2].payload["responsible_id"], "99",
                "no manager: default"
            );
            assert_eq!(rows[2].payload["due_at_ms"], 2_000_000 + 30 * 60_000);
            // Known with a manager: no contact, the task goes to the manager.
            let known = Account {
                id: "5".into(),
                manager_id: Some("17".into()),
                phones: vec!["+79161234567".into()],
                ..Account::default()
            };
            store::store_account(c, id, &known, "7")?;
            let rows = on_completed(c, id, &missed)?;
            assert_eq!(kinds_of(&rows), vec![kinds::TASK]);
            assert_eq!(rows[0].payload["responsible_id"], "17");
            assert_eq!(rows[0].payload["contact_id"], "5");
            // Answered, outgoing: nothing for a known number.
            let answered = call(Direction::Incoming, CallStatus::Answered);
            assert!(on_completed(c, id, &answered)?.is_empty());
            let outgoing = call(Direction::Outgoing, CallStatus::NoAnswer);
            assert!(on_completed(c, id, &outgoing)?.is_empty());
            // No manager and no default user: no task.
            store::save_rules(
                c,
                id,
                &Rules {
                    missed_task: true,
                    ..Rules::default()
                },
            )?;
            let mut stranger = missed.clone();
            stranger.phone = "+44 20 7946 0000".into();
            assert!(on_completed(c, id, &stranger)?.is_empty());
            Ok::<_, DbError>(())
        })
        .unwrap();
    }
}
