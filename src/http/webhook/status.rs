//! `employees.list` and `health.check`: what the PBX and the appliance look like to one
//! account. Both answer while the PBX is down (saying so) rather than failing.

use std::collections::{HashMap, HashSet};

use super::replay::Answer;
use super::{WebhookError, ok};
use crate::app::State;
use crate::calls::tracker::Rules;
use crate::flowlu::store::{self, Integration};
use crate::flowlu::webhook::{self as shapes, Employee, EmployeeState, Health, TokenState};
use crate::pbx::{Extension, LineState, PbxStatus};

/// Every employee line: the PBX's extensions with their live state, and the account's
/// mapped users. Trunks and names that are not extensions by `[calls]` rules are left
/// out unless mapped; so are extensions another account has mapped. Mapped users whose
/// extension the PBX does not list (or every one, while the PBX is down) are offline.
pub async fn employees(state: &State, integration: i64) -> Result<Answer, WebhookError> {
    let (items, pbx, live) = employee_lines(state, integration).await?;
    Ok(ok(shapes::employees(&items, &pbx, live)))
}

/// The lines of [`employees`] (also shown on the settings page), the PBX state as this
/// account may see it, and whether the PBX listed its extensions (false while it is down).
pub async fn employee_lines(
    state: &State,
    integration: i64,
) -> Result<(Vec<Employee>, PbxStatus, bool), WebhookError> {
    let (users, others) = state
        .db
        .run(move |c| {
            Ok::<_, WebhookError>((
                store::users(c, integration)?,
                store::extensions_of_other_accounts(c, integration)?,
            ))
        })
        .await?;
    let mut pbx = pbx_status_for(state, integration).await?;
    let live: Option<Vec<Extension>> = if state.pbx_handle.is_up() {
        match state.pbx_handle.extensions().await {
            Ok(lines) => Some(lines),
            Err(e) => {
                log::warn!("webhook: employees.list: cannot list the PBX's extensions: {e}");
                pbx.detail = Some(format!("cannot list extensions: {e}"));
                None
            }
        }
    } else {
        None
    };
    let mapped: HashMap<&str, &store::UserRow> = users
        .iter()
        .filter_map(|u| u.extension.as_deref().map(|e| (e, u)))
        .collect();
    let others: HashSet<&str> = others.iter().map(String::as_str).collect();
    let config = state.current();
    let rules = Rules::new(&config.calls);
    let trunks = &config.calls.trunk_endpoints;
    let mut items = Vec::new();
    let mut listed = HashSet::new();
    for line in live.iter().flatten() {
        let user = mapped.get(line.ext.as_str());
        let wanted = !trunks.contains(&line.ext)
            && (user.is_some()
                || (rules.is_extension(&line.ext) && !others.contains(line.ext.as_str())));
        if !wanted || !listed.insert(line.ext.clone()) {
            continue;
        }
        let line_state = employee_state(line, state.engine.agent_busy(&line.ext).await);
        items.push(Employee {
            extension: line.ext.clone(),
            name: user
                .map(|u| u.name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| line.name.clone())
                .unwrap_or_default(),
            state: line_state,
            user_id: user.map(|u| u.user_id.clone()),
        });
    }
    for (ext, user) in &mapped {
        if !listed.contains(*ext) {
            items.push(Employee {
                extension: ext.to_string(),
                name: user.name.clone(),
                state: EmployeeState::Offline,
                user_id: Some(user.user_id.clone()),
            });
        }
    }
    items.sort_by(|a, b| (a.extension.len(), &a.extension).cmp(&(b.extension.len(), &b.extension)));
    Ok((items, pbx, live.is_some()))
}

/// The PBX's line state, made busy when the engine has the employee on a call.
fn employee_state(line: &Extension, on_call: bool) -> EmployeeState {
    match line.state {
        LineState::InCall => EmployeeState::Busy,
        LineState::Ringing => EmployeeState::Ringing,
        LineState::Offline => EmployeeState::Offline,
        LineState::Unknown if line.contacts.is_empty() => EmployeeState::Offline,
        LineState::Online | LineState::Unknown if on_call => EmployeeState::Busy,
        LineState::Online | LineState::Unknown => EmployeeState::Online,
    }
}

/// The PBX state as `integration` may see it: its detail (which names the PBX's address)
/// only for the account that owns the PBX (`flowlu::pbx_settings::may_edit`).
async fn pbx_status_for(state: &State, integration: i64) -> Result<PbxStatus, WebhookError> {
    let mut pbx = state.pbx.get();
    let config_pbx = state.config.pbx.kind().is_some();
    let owner = state
        .db
        .run(move |c| crate::flowlu::pbx_settings::may_edit(c, integration, config_pbx))
        .await?;
    if !owner {
        pbx.detail = None;
    }
    Ok(pbx)
}

/// `health.check`: the PBX link, this account's outbox and token, the version.
pub async fn health(state: &State, integration: &Integration) -> Result<Answer, WebhookError> {
    let (id, token_user) = (integration.id, integration.token_user_id.clone());
    let (summary, token) = state
        .db
        .run(move |c| {
            let summary = crate::outbox::summary(c, Some(id))?;
            let token = match &token_user {
                Some(user) => store::token_for_user(c, id, user)?,
                None => None,
            };
            Ok::<_, WebhookError>((summary, token))
        })
        .await?;
    let token = match token {
        _ if integration.needs_reconnect => TokenState::NeedsReconnect,
        None => TokenState::Missing,
        Some(t) if t.expires_at <= store::now() => TokenState::Expired {
            expires_at: t.expires_at,
        },
        Some(t) => TokenState::Ok {
            expires_at: t.expires_at,
        },
    };
    let pbx = pbx_status_for(state, id).await?;
    let health = Health {
        pbx: &pbx,
        pending: summary.pending,
        failed: summary.failed,
        token,
        connected: integration.telephony_uuid.is_some(),
        version: crate::VERSION,
    };
    Ok(ok(health.to_json()))
}
