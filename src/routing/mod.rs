//! Incoming-call routing: the PBX's dialplan asks us who should take a new incoming call,
//! we ask the CRM (through `call.init`), and answer within a bounded time.
//!
//! Owns the dialplan-facing side (the FastAGI server for Asterisk in [`agi`], the
//! outbound event socket server for FreeSWITCH in [`esl_outbound`], both started by
//! [`serve_all`]), the dialplan snippets that call them, and the contract every decider
//! must keep: a decision arrives within `decision_timeout` or not at all, and "no
//! decision" always means the PBX's own routing goes on unchanged. It does not know how
//! the decision is made: that is the call engine's [`Decider`].

pub mod agi;
pub mod esl_outbound;
mod servers;

pub use servers::{
    RoutingHealth, RoutingSettings, RoutingStatus, ServerState, ServerStatus, serve_all,
};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::Serialize;

/// What the dialplan tells us about a new incoming call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteRequest {
    /// The channel's unique id as the PBX knows it (Asterisk `Uniqueid`, FreeSWITCH UUID).
    pub channel_id: String,
    /// The call's group id when the PBX tells it (Asterisk `Linkedid` passed by the
    /// dialplan, FreeSWITCH `Channel-Call-UUID`).
    pub group_id: Option<String>,
    /// Channel name, e.g. `PJSIP/trunk-00000017`.
    pub channel: String,
    /// The caller's number.
    pub caller: String,
    pub caller_name: String,
    /// The number that was called (DID).
    pub called: String,
    /// Dialplan context the call is in.
    pub context: String,
}

/// Where the CRM wants the call to go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteDecision {
    /// The employee's extension, e.g. `101`.
    pub extension: String,
    /// A ready dial string for that extension, e.g. `PJSIP/101`.
    pub dial: String,
}

pub type DecisionFuture = Pin<Box<dyn Future<Output = Option<RouteDecision>> + Send>>;

/// Makes routing decisions. The servers here enforce the time limit themselves, so a
/// decider that hangs can never hold a call.
pub trait Decider: Send + Sync + 'static {
    fn decide(&self, request: RouteRequest) -> DecisionFuture;
}

/// Runs `decider` with a hard deadline; `None` on timeout or no decision.
pub async fn decide_within(
    decider: &dyn Decider,
    request: RouteRequest,
    limit: Duration,
) -> Option<RouteDecision> {
    let channel = request.channel_id.clone();
    match tokio::time::timeout(limit, decider.decide(request)).await {
        Ok(decision) => decision,
        Err(_) => {
            log::info!(
                "routing: no decision for {channel} within {} ms; the PBX routes it",
                limit.as_millis()
            );
            None
        }
    }
}

/// The Asterisk dialplan to paste (plain Asterisk and FreePBX), for README, `--init` and
/// the settings page.
pub fn asterisk_dialplan(agi_listen: &str) -> String {
    format!(
        "; Plain Asterisk (extensions.conf): in the context your trunk delivers calls to.
[from-trunk]
exten => _X.,1,AGI(agi://{agi_listen}/route,${{CHANNEL(linkedid)}})
 same => n,GotoIf($[\"${{APPLIANCE_ROUTE}}\" = \"\"]?pbx)
 same => n,Dial(${{APPLIANCE_ROUTE}},30)
 same => n(pbx),NoOp(the PBX's own routing goes on here)
 ; ... your existing Dial/Queue lines ...

; FreePBX (extensions_custom.conf): add a Custom Destination `appliance-route,s,1`
; (with \"Return\" enabled) and point the inbound route's destination at it; it sends
; the call to the CRM's choice or returns to continue with the inbound route's fallback.
[appliance-route]
exten => s,1,AGI(agi://{agi_listen}/route,${{CHANNEL(linkedid)}})
 same => n,GotoIf($[\"${{APPLIANCE_ROUTE_EXTEN}}\" = \"\"]?pbx)
 same => n,Goto(from-internal,${{APPLIANCE_ROUTE_EXTEN}},1)
 same => n(pbx),Return()
"
    )
}

/// The FreeSWITCH XML dialplan to paste: an extension at the top of the `public` context
/// that asks the appliance over the outbound event socket, then a small `appliance`
/// context that rings the CRM's choice. Without a choice (timeout, CRM down, appliance
/// stopped) nothing is set and the call goes on to the public context's own extensions.
pub fn freeswitch_dialplan(esl_listen: &str) -> String {
    format!(
        r#"<include>
  <!-- dialplan/public/00_appliance_route.xml: runs first for every incoming call, then
       (continue="true") the public context's own extensions, as before. -->
  <extension name="appliance_route" continue="true">
    <condition field="${{appliance_asked}}" expression="^$"/>
    <condition field="destination_number" expression="^.+$">
      <action application="set" data="appliance_asked=true"/>
      <!-- The dialplan goes on after the socket, whatever happens to the appliance. -->
      <action application="set" data="socket_resume=true"/>
      <action application="socket" data="{esl_listen} async"/>
      <action application="execute_extension" data="appliance_route XML appliance"/>
    </condition>
  </extension>
</include>

<include>
  <!-- dialplan/appliance.xml: rings the employee the CRM chose; without a choice, or
       when the employee does not answer within 30 s, the call goes back to the public
       context's own routing. -->
  <context name="appliance">
    <extension name="appliance_route">
      <condition field="destination_number" expression="^appliance_route$"/>
      <condition field="${{appliance_route}}" expression="^.+$">
        <action application="set" data="hangup_after_bridge=true"/>
        <action application="set" data="continue_on_fail=true"/>
        <action application="set" data="call_timeout=30"/>
        <action application="bridge" data="${{appliance_route}}"/>
        <!-- Not answered: undo, and let the PBX's own routing take the call. -->
        <action application="unset" data="hangup_after_bridge"/>
        <action application="unset" data="continue_on_fail"/>
        <action application="unset" data="call_timeout"/>
        <anti-action application="log" data="INFO no CRM route; the PBX routes the call"/>
      </condition>
    </extension>
  </context>
</include>
"#
    )
}

#[cfg(test)]
mod tests;
