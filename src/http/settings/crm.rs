//! The settings page's "CRM contacts and call rules" section (issue 8): entity webhooks
//! on/off with their URL and the cache size, the routing fallback, and the call-handling
//! rules. Its own forms: `crm` (save the switches) and `crm-rotate` (a new webhook URL).
//!
//! The webhook URL carries a secret, so the page shows it masked; the full URL appears
//! once, in the notice after switching the hooks on or asking for a new one, for the
//! admin to paste into Flowlu's System Settings → Webhooks.

use serde::Serialize;

use super::actions::{Fields, Outcome, field};
use crate::app::State;
use crate::db::DbError;
use crate::flowlu::crm::{paths, store as crm};
use crate::http::HttpError;

#[derive(Debug, Serialize)]
pub struct CrmView {
    pub rules: crm::Rules,
    /// The webhook URL with its secret cut to a few characters; empty while there is none.
    pub hook_url_masked: String,
    pub contacts: i64,
    pub numbers: i64,
}

pub async fn view(state: &State, id: i64) -> Result<CrmView, DbError> {
    let (rules, (contacts, numbers)) = state
        .db
        .run(move |c| Ok::<_, DbError>((crm::rules(c, id)?, crm::cache_size(c, id)?)))
        .await?;
    let hook_url_masked = match &rules.hook_secret {
        Some(secret) => hook_url(state, id, &format!("{}…", &secret[..4.min(secret.len())])),
        None => String::new(),
    };
    Ok(CrmView {
        rules,
        hook_url_masked,
        contacts,
        numbers,
    })
}

fn hook_url(state: &State, id: i64, secret: &str) -> String {
    let base = state.config.public_url().unwrap_or_default();
    format!(
        "{}{}",
        base.trim_end_matches('/'),
        paths::entity_hook(id, secret)
    )
}

fn shown_once(state: &State, lang: &str, id: i64, secret: &str) -> Outcome {
    Outcome::text(format!(
        "{} {}",
        super::view::t(lang, "crm_hook_new"),
        hook_url(state, id, secret)
    ))
}

/// `crm` and `crm-rotate`.
pub async fn run(
    state: &State,
    name: &str,
    id: i64,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    if name == "crm-rotate" {
        let secret = state.db.run(move |c| crm::rotate_secret(c, id)).await?;
        return Ok(shown_once(state, lang, id, &secret));
    }
    let flag = |key: &str| -> Result<bool, String> {
        match field(fields, key) {
            "" | "0" | "false" | "off" => Ok(false),
            "1" | "true" | "on" => Ok(true),
            _ => Err(super::view::tf(lang, "invalid_on_off", &[("field", key)])),
        }
    };
    let flags = [
        "entity_hooks",
        "fallback_routing",
        "missed_task",
        "create_contact",
        "create_lead",
    ]
    .map(flag);
    if let Some(Err(why)) = flags.iter().find(|f| f.is_err()) {
        return Ok(Outcome::invalid(lang, why));
    }
    let [hooks, fallback, task, contact, lead] = flags.map(|f| f.unwrap_or(false));
    let due = field(fields, "task_due_minutes").trim();
    let due = if due.is_empty() {
        60
    } else {
        match due.parse::<i64>() {
            Ok(m) if (0..=10_080).contains(&m) => m,
            _ => {
                return Ok(Outcome::invalid(
                    lang,
                    super::view::t(lang, "invalid_due_minutes"),
                ));
            }
        }
    };
    let user = field(fields, "default_user_id").trim().to_string();
    if user.len() > 32 || !user.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Outcome::invalid(
            lang,
            super::view::t(lang, "invalid_default_user"),
        ));
    }
    let rules = crm::Rules {
        entity_hooks: hooks,
        hook_secret: None,
        fallback_routing: fallback,
        missed_task: task,
        task_due_minutes: due,
        default_user_id: user,
        create_contact: contact,
        create_lead: lead,
    };
    let (before, after) = state
        .db
        .run(move |c| {
            let before = crm::rules(c, id)?.hook_secret;
            crm::save_rules(c, id, &rules)?;
            Ok::<_, DbError>((before, crm::rules(c, id)?.hook_secret))
        })
        .await?;
    Ok(match (before, after) {
        // Just switched on for the first time: the admin needs the URL now.
        (None, Some(secret)) => shown_once(state, lang, id, &secret),
        _ => Outcome::ok(lang, "saved"),
    })
}
