//! The settings page's delivery log (issue 15): this account's call events to Flowlu,
//! the failed ones and the most recent, each with its last answer, and "send again".
//!
//! Everything comes from the outbox's own functions (`outbox::{summary, list, replay}`)
//! and is scoped to the session's integration: the `events-resend` form names an event
//! id, and an id that is not this account's is a 404 that changes nothing. The text
//! shown is the last attempt's HTTP status and the outbox's error text for it, passed
//! through [`crate::redact::redact_text`] (a transport error may quote a URL), and
//! never the event's body or the account's tokens.

use hyper::StatusCode;
use serde::Serialize;

use super::actions::{Fields, Outcome, field};
use crate::app::State;
use crate::db::DbError;
use crate::flowlu::events;
use crate::http::HttpError;
use crate::outbox::{self, Row};

/// How many rows each list shows.
const SHOWN: usize = 20;

/// Delivery of this account's call events: counts and the log.
#[derive(Serialize)]
pub struct EventsView {
    pub pending: i64,
    pub failed: i64,
    pub delivered: i64,
    /// The oldest undelivered event's age, in minutes.
    pub oldest_pending_minutes: Option<i64>,
    /// The latest failed events (each can be sent again).
    pub failures: Vec<EventRow>,
    /// The latest events in any state.
    pub recent: Vec<EventRow>,
}

/// One event as the log shows it.
#[derive(Serialize)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub call: String,
    pub state: &'static str,
    pub created: String,
    pub attempts: i64,
    /// The last attempt's HTTP status, when it got an answer and `error` does not say it.
    pub status: Option<u16>,
    /// The outbox's text for the last attempt (redacted); empty when it went through.
    pub error: String,
    /// The catalogue key (`events_why_*`) of `error` when it is one of the appliance's
    /// own reasons, shown in the page's language instead; other texts (Flowlu's answers,
    /// network errors) are shown as they came.
    pub error_key: Option<&'static str>,
}

/// The catalogue key of one of the appliance's own reasons for holding or failing a
/// delivery, as the outbox stores it (a hold reason after [`outbox::HELD`]).
fn reason_key(error: &str) -> Option<&'static str> {
    match error.strip_prefix(outbox::HELD) {
        Some(events::HOLD_NOT_CONNECTED) => Some("events_why_not_connected"),
        Some(events::HOLD_RECONNECT) => Some("events_why_reconnect"),
        None if error == events::NOT_CONNECTED => Some("events_why_not_connected"),
        _ => None,
    }
}

fn row(r: Row) -> EventRow {
    let error = r
        .last_error
        .as_deref()
        .map(crate::redact::redact_text)
        .unwrap_or_default();
    // The outbox's text often names the status itself (`HTTP 422: …`): say it once.
    let status = r
        .last_status
        .filter(|s| !error.starts_with(&format!("HTTP {s}")));
    EventRow {
        id: r.id,
        kind: r.kind,
        call: r.call_key,
        state: r.state.as_str(),
        created: super::view::utc(r.created_at),
        attempts: r.attempts,
        status,
        error_key: reason_key(&error),
        error,
    }
}

/// Loads the section for integration `id`.
pub fn load(c: &rusqlite::Connection, id: i64) -> Result<EventsView, DbError> {
    let summary = outbox::summary(c, Some(id))?;
    let failures = outbox::list(c, Some(outbox::State::Failed), Some(id), SHOWN)?;
    let recent = outbox::list(c, None, Some(id), SHOWN)?;
    let now_ms = outbox::now_ms();
    Ok(EventsView {
        pending: summary.pending,
        failed: summary.failed,
        delivered: summary.delivered,
        oldest_pending_minutes: summary.oldest_pending_at.map(|t| (now_ms - t) / 60_000),
        failures: failures.into_iter().map(row).collect(),
        recent: recent.into_iter().map(row).collect(),
    })
}

/// `events-retry`: every failed event of the account again.
pub async fn retry_all(state: &State, id: i64, lang: &'static str) -> Result<Outcome, HttpError> {
    let requeued = state
        .db
        .run(move |c| Ok::<_, DbError>(outbox::replay(c, &[], Some(id))?))
        .await?;
    state.outbox.wake();
    log::info!("integration {id}: {requeued} failed event(s) queued again from the settings page");
    Ok(Outcome::ok(
        lang,
        if requeued > 0 {
            "events_requeued"
        } else {
            "events_none_failed"
        },
    ))
}

/// `events-resend`: the failed event `event` (an outbox id of this account) again.
pub async fn resend(
    state: &State,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let Ok(event) = field(fields, "event").trim().parse::<i64>() else {
        return Ok(Outcome::invalid(
            lang,
            super::view::t(lang, "events_no_such"),
        ));
    };
    let requeued = state
        .db
        .run(move |c| {
            // Only this account's own rows: replay's integration filter, and a lookup
            // to tell "not ours" (404) from "ours, no longer failed".
            let own = outbox::show(c, event)?.filter(|(r, _, _)| r.integration_id == id);
            if own.is_none() {
                return Ok::<_, DbError>(None);
            }
            Ok(Some(outbox::replay(c, &[event], Some(id))?))
        })
        .await?;
    match requeued {
        None => {
            log::warn!("integration {id}: refused to re-send event {event}: not its own");
            Err(HttpError::not_found())
        }
        Some(0) => Ok(Outcome {
            status: StatusCode::CONFLICT,
            ..Outcome::forbidden(lang, "events_not_failed")
        }),
        Some(_) => {
            state.outbox.wake();
            log::info!("integration {id}: event {event} queued again from the settings page");
            Ok(Outcome::ok(lang, "events_resent"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_appliances_own_reasons_are_catalogue_texts_in_both_languages() {
        let held = |why: &str| format!("{}{why}", outbox::HELD);
        for stored in [
            held(events::HOLD_NOT_CONNECTED),
            held(events::HOLD_RECONNECT),
            events::NOT_CONNECTED.to_string(),
        ] {
            let key = reason_key(&stored).unwrap_or_else(|| panic!("no key for {stored}"));
            let (en, ru) = (
                super::super::view::t("en", key),
                super::super::view::t("ru", key),
            );
            assert_ne!(en, key, "{key} missing in en.toml");
            assert_ne!(ru, key, "{key} missing in ru.toml");
            assert_ne!(en, ru, "{key} is not translated");
        }
        // Flowlu's own answers, and a hold reason the page has no text for, come as they are.
        assert_eq!(reason_key("HTTP 422: bad phone"), None);
        assert_eq!(reason_key(&held("no account 7")), None);
    }
}
