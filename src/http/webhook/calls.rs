//! The call requests: `call.make`, `calls.list`, `call.get`, `call.redirect`.

use hyper::StatusCode;

use super::replay::{Answer, Settled};
use super::{WebhookError, ok};
use crate::app::State;
use crate::calls::{CallState, phone, store as calls};
use crate::engine::ClickToCall;
use crate::flowlu::store;
use crate::flowlu::webhook::{self as shapes, CallMake, CallRedirect, CallsList, Target};
use crate::pbx::{LineState, PbxError};

/// `call.make`: 202 with our call id once the call is recorded and the PBX took the
/// originate; nobody has answered yet. Runs once per request (see `replay`): the answer
/// is kept when a call was placed, or when it failed after its call row was written.
pub async fn make(state: State, integration: i64, m: CallMake) -> Settled {
    let result = place(&state, integration, &m).await;
    let keep_error = match (&result, &m.call_id) {
        (Err(_), Some(crm)) => {
            let crm = crm.clone();
            state
                .db
                .run(move |c| Ok::<_, WebhookError>(crm_call(c, integration, &crm)?.is_some()))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    Settled::from_result(
        result.map(|id| Answer::new(StatusCode::ACCEPTED, shapes::queued(&id))),
        keep_error,
    )
}

async fn place(state: &State, integration: i64, m: &CallMake) -> Result<String, WebhookError> {
    let (user, crm) = (m.user_id.clone(), m.call_id.clone());
    let (settings, extension, existing) = state
        .db
        .run(move |c| {
            let existing = match &crm {
                Some(crm) => crm_call(c, integration, crm)?,
                None => None,
            };
            Ok::<_, WebhookError>((
                store::settings(c, integration)?,
                store::extension_for_user(c, integration, &user)?,
                existing,
            ))
        })
        .await?;
    if let Some(id) = existing {
        // Flowlu asked for this call before (its answer is no longer stored): it stands.
        return Ok(id);
    }
    let phone = phone::normalize(&m.phone, &settings.default_country_code)?;
    let extension = extension.ok_or_else(|| WebhookError::UserNotMapped(m.user_id.clone()))?;
    let line = m
        .line
        .as_deref()
        .or(Some(settings.default_line.as_str()))
        .map(|l| {
            l.chars()
                .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
                .collect::<String>()
        })
        .filter(|l| !l.is_empty());
    if state.current().webhook.refuse_busy_agents && agent_busy(state, &extension).await {
        return Err(WebhookError::AgentBusy(extension));
    }
    let call = state
        .engine
        .click_to_call(ClickToCall {
            integration_id: integration,
            user_id: Some(m.user_id.clone()),
            extension,
            phone,
            line,
            crm_call_id: m.call_id.clone(),
            uuid: m.uuid.clone(),
        })
        .await?;
    Ok(call.id)
}

/// Our id of the call Flowlu calls `crm`, if there is one.
fn crm_call(
    c: &rusqlite::Connection,
    integration: i64,
    crm: &str,
) -> Result<Option<String>, rusqlite::Error> {
    Ok(calls::find(c, integration, crm)?
        .filter(|call| call.crm_call_id.as_deref() == Some(crm))
        .map(|call| call.id))
}

/// On a call or ringing, as the call engine knows it or the PBX's line state says.
async fn agent_busy(state: &State, extension: &str) -> bool {
    if state.engine.agent_busy(extension).await {
        return true;
    }
    if !state.pbx_handle.is_up() {
        return false; // the originate answers 503 next
    }
    match state.pbx_handle.extensions().await {
        Ok(lines) => lines.iter().any(|l| {
            l.ext == extension && matches!(l.state, LineState::InCall | LineState::Ringing)
        }),
        Err(e) => {
            log::debug!(
                "webhook: line state of {extension} unknown ({e}); the engine's view stands"
            );
            false
        }
    }
}

/// `calls.list`: a page of the account's calls, newest first.
pub async fn list(state: &State, integration: i64, l: CallsList) -> Result<Answer, WebhookError> {
    let phone = match &l.phone {
        Some(raw) => {
            let country = state
                .db
                .run(move |c| Ok::<_, WebhookError>(store::settings(c, integration)?))
                .await?
                .default_country_code;
            Some(phone::normalize(raw, &country)?)
        }
        None => None,
    };
    let filter = calls::Filter {
        from_ms: Some(l.from_ms),
        to_ms: Some(l.to_ms),
        user_id: l.user_id.clone(),
        direction: l.direction,
        status: l.status,
        phone,
    };
    let offset = (l.page - 1) * l.limit;
    let limit = l.limit;
    let (items, total) = state
        .db
        .run(move |c| Ok::<_, WebhookError>(calls::list(c, integration, &filter, offset, limit)?))
        .await?;
    Ok(ok(shapes::call_list(&items, total, l.page, l.limit)))
}

/// `call.get`: by our id or Flowlu's.
pub async fn get(state: &State, integration: i64, id: String) -> Result<Answer, WebhookError> {
    let call = state
        .db
        .run(move |c| Ok::<_, WebhookError>(calls::find(c, integration, &id)?))
        .await?
        .ok_or(WebhookError::NotFound)?;
    Ok(ok(shapes::call(&call)))
}

/// `call.redirect`: the customer's channel of a live call goes to another employee.
pub async fn redirect(state: State, integration: i64, r: CallRedirect) -> Settled {
    Settled::from_result(redirect_call(&state, integration, r).await, false)
}

async fn redirect_call(
    state: &State,
    integration: i64,
    r: CallRedirect,
) -> Result<Answer, WebhookError> {
    let (call, extension) = state
        .db
        .run(move |c| {
            let Some(call) = calls::find(c, integration, &r.call_id)? else {
                return Err(WebhookError::NotFound);
            };
            let extension = match r.target {
                Target::Extension(e) => e,
                Target::User(user) => store::extension_for_user(c, integration, &user)?
                    .ok_or(WebhookError::UserNotMapped(user))?,
            };
            Ok((call, extension))
        })
        .await?;
    if call.state == CallState::Ended {
        return Err(WebhookError::CallNotRinging("the call has ended".into()));
    }
    if !state.pbx_handle.is_up() {
        let status = state.pbx.get();
        return Err(PbxError::Unavailable(status.detail.unwrap_or_default()).into());
    }
    let channel = state
        .engine
        .customer_channel(&call.id)
        .await
        .ok_or_else(|| {
            WebhookError::CallNotRinging(
                "the call has no customer leg on the PBX to move (yet)".into(),
            )
        })?;
    match state.pbx_handle.redirect(&channel, &extension).await {
        Ok(()) => {
            log::info!(
                "webhook: call {} redirected to extension {extension}",
                call.id
            );
            Ok(Answer::new(
                StatusCode::ACCEPTED,
                shapes::redirected(&call.id, &extension),
            ))
        }
        Err(PbxError::NoSuchChannel) => {
            Err(WebhookError::CallNotRinging("the call has ended".into()))
        }
        Err(e) => Err(e.into()),
    }
}
