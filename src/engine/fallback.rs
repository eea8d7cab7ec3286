//! Routing fallback: when Flowlu gives no routing decision in time (or errs), ring the
//! caller's responsible manager from the contact cache (`flowlu::crm`), if the account
//! switched it on, the manager has an extension, and the engine does not have that
//! extension on a call. Anything missing is "no decision": the PBX's own routing goes on.

use super::route::Router;
use crate::calls::phone;
use crate::engine::RouteTicket;
use crate::flowlu::crm::store as crm;
use crate::flowlu::store::{extension_for_user, settings};
use crate::routing::RouteDecision;

pub async fn responsible_manager(
    router: &Router,
    ticket: &RouteTicket,
    caller: &str,
) -> Option<RouteDecision> {
    let integration = ticket.integration_id;
    let caller = caller.to_string();
    let found = router
        .deps
        .db
        .run(move |c| {
            if !crm::rules(c, integration)?.fallback_routing {
                return Ok(None);
            }
            let country = settings(c, integration)?.default_country_code;
            let Ok(number) = phone::normalize(&caller, &country) else {
                return Ok(None);
            };
            let Some(manager) = crm::lookup(c, integration, &number)?.and_then(|k| k.manager_id)
            else {
                return Ok(None);
            };
            Ok::<_, crate::db::DbError>(
                extension_for_user(c, integration, &manager)?.map(|ext| (manager, ext)),
            )
        })
        .await;
    let (manager, extension) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            log::warn!("routing fallback: {e}");
            return None;
        }
    };
    if router.engine.agent_busy(&extension).await {
        log::info!(
            "routing: {}'s responsible manager {manager} ({extension}) is busy; the PBX routes it",
            ticket.call_id
        );
        return None;
    }
    let decision = super::route::dial_to(router, &extension)?;
    log::info!(
        "routing: {} goes to {extension}, the caller's responsible manager {manager} (fallback)",
        ticket.call_id
    );
    Some(decision)
}
