//! The routing decider for incoming calls: the dialplan asks (FastAGI, the FreeSWITCH
//! outbound socket), the engine finds the call and its reserved `call.init`, we send that
//! event to Flowlu at once and read the employee it names from the answer.
//!
//! Every step is bounded by the routing server's deadline; any failure is "no decision",
//! so the PBX's own routing goes on. The `call.init` stays in the outbox either way: if
//! this attempt fails it is delivered again like any other event. When Flowlu gives no
//! usable decision in time (no answer, an error, no employee), the caller's responsible manager from the contact cache may
//! take the call instead (`engine::fallback`, switched on per account).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Deps, EngineHandle};
use crate::calls::tracker::Rules;
use crate::flowlu::events::{RouteChoice, route_from_answer};
use crate::flowlu::store::{
    IncomingRouting, extension_for_user, extensions_of_other_accounts, settings, user_for_extension,
};
use crate::pbx::ConnectionSettings;
use crate::routing::{Decider, DecisionFuture, RouteDecision, RouteRequest};

/// Asks Flowlu through `call.init`.
pub struct CrmDecider {
    router: Arc<Router>,
}

/// What a routing decision uses.
pub(super) struct Router {
    pub(super) deps: Deps,
    /// Finds the call and its reserved `call.init`; says which employees are busy.
    pub(super) engine: EngineHandle,
    /// The PBX connection in force (the settings page's, else `[pbx]`): its dial string.
    pbx_settings: watch::Receiver<Option<ConnectionSettings>>,
}

impl CrmDecider {
    pub fn new(
        deps: Deps,
        engine: EngineHandle,
        pbx_settings: watch::Receiver<Option<ConnectionSettings>>,
    ) -> CrmDecider {
        let router = Router {
            deps,
            engine,
            pbx_settings,
        };
        CrmDecider {
            router: Arc::new(router),
        }
    }
}

/// Longer than any configured decision timeout: the routing server cuts us off first.
const SEND_WAIT: Duration = Duration::from_secs(15);

impl Decider for CrmDecider {
    fn decide(&self, request: RouteRequest) -> DecisionFuture {
        let router = self.router.clone();
        Box::pin(async move {
            let ticket = router
                .engine
                .route_ticket(&request.channel_id, request.group_id.as_deref())
                .await?;
            let integration = ticket.integration_id;
            let routing = router
                .deps
                .db
                .run(move |c| settings(c, integration))
                .await
                .ok()?
                .incoming_routing;
            if routing != IncomingRouting::Crm {
                return None;
            }
            // Leave time for the cached fallback before the routing server's deadline.
            let limit = router.deps.config.routing.decision_timeout();
            let budget = limit.saturating_sub(FALLBACK_RESERVE.min(limit / 4));
            match tokio::time::timeout(budget, ask_flowlu(&router, &ticket)).await {
                Ok(Some(decision)) => Some(decision),
                Ok(None) => {
                    super::fallback::responsible_manager(&router, &ticket, &request.caller).await
                }
                Err(_) => {
                    log::info!(
                        "routing: Flowlu did not answer call.init of {} within {} ms",
                        ticket.call_id,
                        budget.as_millis()
                    );
                    super::fallback::responsible_manager(&router, &ticket, &request.caller).await
                }
            }
        })
    }
}

/// How long before the routing deadline we stop waiting for Flowlu, to look in the
/// contact cache instead (at most a quarter of the deadline).
const FALLBACK_RESERVE: Duration = Duration::from_millis(500);

/// Flowlu's choice for an incoming call; `None`: no answer, an error, or no usable
/// employee in the answer (the cached responsible manager may then take the call).
async fn ask_flowlu(router: &Router, ticket: &crate::engine::RouteTicket) -> Option<RouteDecision> {
    let integration = ticket.integration_id;
    let reply = router
        .deps
        .outbox
        .deliver_now(ticket.init_row, SEND_WAIT)
        .await?;
    if !(200..300).contains(&reply.status) {
        log::info!(
            "routing: Flowlu answered call.init of {} with HTTP {}",
            ticket.call_id,
            reply.status
        );
        return None;
    }
    let extension = match route_from_answer(&reply.body)? {
        RouteChoice::Extension(ext) => ext,
        RouteChoice::User(user) => {
            let found = router
                .deps
                .db
                .run(move |c| extension_for_user(c, integration, &user))
                .await
                .ok()
                .flatten();
            if found.is_none() {
                log::info!(
                    "routing: Flowlu chose a user with no extension for {}",
                    ticket.call_id
                );
            }
            found?
        }
    };
    if !routable(router, integration, &extension).await {
        log::info!(
            "routing: Flowlu chose {extension} for {}, which is not one of this account's \
             employees; the PBX's own routing stands",
            ticket.call_id
        );
        return None;
    }
    let decision = dial_to(router, &extension)?;
    log::info!(
        "routing: {} goes to {extension} (Flowlu's choice)",
        ticket.call_id
    );
    Some(decision)
}

/// Whether Flowlu may send a call to `extension`: one of the account's employees as
/// `employees.list` shows them, i.e. mapped to one of its users, or an extension by the
/// `[calls]` rules that is no trunk and that no other account has mapped. Never an
/// outside number (a FreePBX `from-internal` would dial it out) nor another account's
/// employee.
async fn routable(router: &Router, integration: i64, extension: &str) -> bool {
    let ext = extension.to_string();
    let (mine, others) = match router
        .deps
        .db
        .run(move |c| {
            Ok::<_, crate::db::DbError>((
                user_for_extension(c, integration, &ext)?.is_some(),
                extensions_of_other_accounts(c, integration)?,
            ))
        })
        .await
    {
        Ok(found) => found,
        Err(e) => {
            log::warn!("routing: cannot read the account's extensions: {e}");
            return false;
        }
    };
    let calls = &router.deps.config.calls;
    mine || (Rules::new(calls).is_extension(extension)
        && !calls.trunk_endpoints.iter().any(|t| t == extension)
        && !others.iter().any(|o| o == extension))
}

/// The decision for `extension`: checked, with the dial string of the PBX in force.
pub(super) fn dial_to(router: &Router, extension: &str) -> Option<RouteDecision> {
    if !extension.bytes().all(|b| b.is_ascii_alphanumeric()) || extension.len() > 32 {
        log::warn!("routing: ignoring an unusable extension");
        return None;
    }
    // The PBX in force: saved on the settings page, else [pbx] type.
    let kind = router
        .pbx_settings
        .borrow()
        .as_ref()
        .map(|s| s.kind)
        .or(router.deps.config.pbx.kind())?;
    let dial = router
        .deps
        .config
        .pbx
        .agent_channel(kind)
        .replace("{ext}", extension);
    Some(RouteDecision {
        extension: extension.to_string(),
        dial,
    })
}
