//! The [`PbxHandle`](crate::pbx::PbxHandle) commands in AMI actions, and the session's
//! event `Filter`s: `Originate`,
//! `Redirect`, `BlindTransfer`, `Hangup`, `PJSIPShowEndpoints`/`PJSIPShowContacts` (or
//! `SIPpeers` + `DeviceStateList` on chan_sip systems) and `CoreShowChannels`.
//!
//! Arguments arrive validated by the handle; this module only builds actions and reads
//! their answers.

use std::collections::HashMap;

use super::client::{Client, Reply};
use super::codec::Message;
use super::events::{self, EVENTS, RING_GROUP_CONTEXT, VARIABLES};
use crate::pbx::endpoints::{self, Endpoints};
use crate::pbx::handle::clean_name;
use crate::pbx::{
    CALL_ID_VAR, ChannelSnapshot, Extension, LineState, OriginateRequest, Originated, PbxError,
};

pub(crate) async fn originate(
    client: &Client,
    req: &OriginateRequest,
) -> Result<Originated, PbxError> {
    let opts = &client.opts;
    let channel = opts.agent_channel.replace("{ext}", &req.agent);
    let channel_id = crate::pbx::new_uuid();
    let other_id = crate::pbx::new_uuid();
    let caller_id = format!(
        "\"{}\" <{}>",
        clean_name(&req.caller_id_name),
        req.caller_id_number
    );
    let ring_ms = req.ring.unwrap_or(opts.ring).as_millis().to_string();
    let variable = format!("{CALL_ID_VAR}={}", req.call_id);
    let line_variable = req
        .line
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(|l| format!("APPLIANCE_LINE={l}"));
    let mut headers = vec![
        ("Channel", channel.as_str()),
        ("Context", opts.context.as_str()),
        ("Exten", req.customer.as_str()),
        ("Priority", "1"),
        ("CallerID", caller_id.as_str()),
        ("Timeout", ring_ms.as_str()),
        ("Async", "true"),
        ("ChannelId", channel_id.as_str()),
        ("Variable", variable.as_str()),
    ];
    if let Some(v) = &line_variable {
        headers.push(("Variable", v.as_str()));
    }
    if channel.starts_with("Local/") {
        headers.push(("OtherChannelId", other_id.as_str()));
    }
    let reply = client
        .send_tagged("Originate", &headers, Some(&req.call_id))
        .await?
        .ok()?;
    Ok(Originated {
        channel: channel_id,
        reference: reply.response.action_id().unwrap_or_default().to_string(),
    })
}

async fn name_of(client: &Client, channel: &str) -> Result<String, PbxError> {
    client
        .channel_name(channel)
        .await?
        .ok_or(PbxError::NoSuchChannel)
}

/// A refusal that says the channel is gone becomes [`PbxError::NoSuchChannel`].
fn channel_error(e: PbxError) -> PbxError {
    match &e {
        PbxError::Refused(msg)
            if msg.to_ascii_lowercase().contains("no such channel")
                || msg.to_ascii_lowercase().contains("does not exist") =>
        {
            PbxError::NoSuchChannel
        }
        _ => e,
    }
}

pub(crate) async fn redirect(client: &Client, channel: &str, exten: &str) -> Result<(), PbxError> {
    let name = name_of(client, channel).await?;
    client
        .send(
            "Redirect",
            &[
                ("Channel", &name),
                ("Context", &client.opts.transfer_context),
                ("Exten", exten),
                ("Priority", "1"),
            ],
        )
        .await?
        .ok()
        .map_err(channel_error)?;
    Ok(())
}

pub(crate) async fn blind_transfer(
    client: &Client,
    channel: &str,
    exten: &str,
) -> Result<(), PbxError> {
    let name = name_of(client, channel).await?;
    client
        .send(
            "BlindTransfer",
            &[
                ("Channel", &name),
                ("Context", &client.opts.transfer_context),
                ("Exten", exten),
            ],
        )
        .await?
        .ok()
        .map_err(channel_error)?;
    Ok(())
}

pub(crate) async fn hangup(client: &Client, channel: &str) -> Result<(), PbxError> {
    let name = name_of(client, channel).await?;
    client
        .send("Hangup", &[("Channel", &name), ("Cause", "16")])
        .await?
        .ok()
        .map_err(channel_error)?;
    Ok(())
}

pub(crate) async fn channels(client: &Client) -> Result<Vec<ChannelSnapshot>, PbxError> {
    let reply = client.send("CoreShowChannels", &[]).await?.ok()?;
    Ok(reply.items.iter().map(events::snapshot).collect())
}

pub(crate) async fn extensions(client: &Client) -> Result<Vec<Extension>, PbxError> {
    let endpoints = client.send("PJSIPShowEndpoints", &[]).await?;
    if !endpoints.response.is_success() {
        log::debug!(
            "PJSIPShowEndpoints refused ({}); trying chan_sip",
            endpoints.response.message()
        );
        return sip_peers(client).await;
    }
    let contacts = client.send("PJSIPShowContacts", &[]).await?;
    let mut by_endpoint: HashMap<String, Vec<String>> = HashMap::new();
    if contacts.response.is_success() {
        for item in &contacts.items {
            let (Some(endpoint), Some(uri)) =
                (item.fields.value("Endpoint"), item.fields.value("Uri"))
            else {
                continue;
            };
            let status = item.fields.str("Status");
            if !status.eq_ignore_ascii_case("Unreachable") {
                by_endpoint
                    .entry(endpoint.to_string())
                    .or_default()
                    .push(uri.to_string());
            }
        }
    }
    let mut out: Vec<Extension> = listed(&endpoints, "EndpointList")
        .map(|(ext, item)| {
            let state = LineState::from_asterisk(item.fields.str("DeviceState"));
            Extension {
                contacts: by_endpoint.remove(&ext).unwrap_or_default(),
                ext,
                name: None,
                state,
            }
        })
        .collect();
    out.sort_by(|a, b| a.ext.cmp(&b.ext));
    Ok(out)
}

/// chan_sip (Asterisk 20 and older): `SIPpeers` for registration, `DeviceStateList` for
/// ringing / in use.
async fn sip_peers(client: &Client) -> Result<Vec<Extension>, PbxError> {
    let peers = client.send("SIPpeers", &[]).await?.ok()?;
    let devices = client.send("DeviceStateList", &[]).await?;
    let states: HashMap<String, LineState> = devices
        .items
        .iter()
        .filter_map(|item| {
            Some((
                item.fields.value("Device")?.to_string(),
                LineState::from_asterisk(item.fields.str("State")),
            ))
        })
        .collect();
    let mut out: Vec<Extension> = listed(&peers, "PeerEntry")
        .map(|(ext, item)| {
            let address = item.fields.str("IPaddress");
            let status = item.fields.str("Status").to_ascii_uppercase();
            let registered = !address.is_empty()
                && address != "-none-"
                && !status.starts_with("UNREACHABLE")
                && !status.starts_with("UNKNOWN");
            let state = match (registered, states.get(&format!("SIP/{ext}"))) {
                (false, _) => LineState::Offline,
                (true, Some(state))
                    if *state != LineState::Unknown && *state != LineState::Offline =>
                {
                    *state
                }
                (true, _) => LineState::Online,
            };
            let contacts = if registered {
                vec![format!("sip:{ext}@{address}:{}", item.fields.str("IPport"))]
            } else {
                Vec::new()
            };
            Extension {
                ext,
                name: None,
                state,
                contacts,
            }
        })
        .collect();
    out.sort_by(|a, b| a.ext.cmp(&b.ext));
    Ok(out)
}

/// The named items of a list answer: `EndpointList` / `PeerEntry` events by `ObjectName`.
fn listed<'a>(reply: &'a Reply, event: &'a str) -> impl Iterator<Item = (String, &'a Message)> {
    reply
        .items
        .iter()
        .filter(move |item| item.event() == Some(event))
        .filter_map(|item| Some((item.fields.value("ObjectName")?.to_string(), item)))
}

/// The PBX's own endpoint lists ([`crate::pbx::endpoints`]): `PJSIPShowEndpoints` and
/// `SIPpeers`, asked together since a PBX may run both drivers. Either may be refused
/// (its driver is not loaded) or not answered in time: the other still counts. `None`
/// when neither answered.
pub(crate) async fn endpoints(client: &Client) -> Option<Endpoints> {
    let (pjsip, sip) = tokio::join!(
        client.send("PJSIPShowEndpoints", &[]),
        client.send("SIPpeers", &[])
    );
    let mut out = Endpoints::default();
    for (action, reply) in [("PJSIPShowEndpoints", pjsip), ("SIPpeers", sip)] {
        let reply = match reply.and_then(Reply::ok) {
            Ok(reply) => reply,
            Err(e) => {
                log::debug!("PBX: no endpoint list from {action}: {e}");
                continue;
            }
        };
        endpoint_kinds(&reply, &mut out);
        out.sources.push(action);
    }
    (!out.sources.is_empty()).then_some(out)
}

/// Adds what a `PJSIPShowEndpoints` or `SIPpeers` answer says of each endpoint.
fn endpoint_kinds(reply: &Reply, out: &mut Endpoints) {
    for (name, item) in listed(reply, "EndpointList") {
        let f = &item.fields;
        out.add(
            &name,
            endpoints::pjsip_kind(f.str("Auths"), f.str("OutboundAuths")),
        );
    }
    for (name, item) in listed(reply, "PeerEntry") {
        out.add(&name, endpoints::sip_peer_kind(item.fields.str("Dynamic")));
    }
}

/// The session `Filter`s: `VarSet` for our variables only, then one per event name. The
/// risky one goes first, so a refusal leaves the session unfiltered rather than half
/// filtered. `Ok(false)`: the PBX refused filters (no `system` write permission), which
/// is fine when manager.conf has the `eventfilter`s. `Err`: refused after some were
/// accepted; the connection must be dropped.
pub(crate) async fn add_filters(client: &Client) -> Result<bool, PbxError> {
    let variables = format!("^({})$", VARIABLES.join("|"));
    let first = client
        .send(
            "Filter",
            &[
                ("Operation", "Add"),
                (
                    "MatchCriteria",
                    "action(include),name(VarSet),header(Variable),method(regex)",
                ),
                ("Filter", &variables),
            ],
        )
        .await?;
    if !first.response.is_success() {
        log::info!(
            "AMI refused the session event filter ({}); relying on manager.conf eventfilter",
            first.response.message()
        );
        return Ok(false);
    }
    let mut filters: Vec<(String, Option<&str>)> = EVENTS
        .iter()
        .map(|name| (format!("action(include),name({name})"), None))
        .collect();
    // Dialplan steps in FreePBX's ring groups only, not the Newexten flood.
    filters.push((
        "action(include),name(Newexten),header(Context),method(exact)".into(),
        Some(RING_GROUP_CONTEXT),
    ));
    for (criteria, filter) in &filters {
        let mut headers = vec![("Operation", "Add"), ("MatchCriteria", criteria.as_str())];
        if let Some(f) = filter {
            headers.push(("Filter", f));
        }
        let reply = client.send("Filter", &headers).await?;
        if !reply.response.is_success() {
            return Err(PbxError::Refused(format!(
                "AMI filter {criteria}: {}",
                reply.response.message()
            )));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbx::ami::codec;

    fn reply_of(bytes: &[u8], action_id: &str) -> Reply {
        let all = codec::parse_all(bytes).unwrap();
        let mut mine = all.into_iter().filter(|m| m.action_id() == Some(action_id));
        let response = mine.next().unwrap();
        Reply {
            response,
            items: mine.filter(|m| !m.completes_list()).collect(),
        }
    }

    #[test]
    fn the_recorded_pjsip_endpoints_are_three_phones_and_a_trunk() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/asterisk/sip-actions-registered.txt"
        );
        let bytes = std::fs::read(path).unwrap();
        let start = bytes.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let mut out = Endpoints::default();
        endpoint_kinds(&reply_of(&bytes[start..], "eps-1"), &mut out);
        let names = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
        assert_eq!(names(&out.employees), ["100", "101", "102"]);
        assert_eq!(names(&out.trunks), ["trunk"]);
    }

    #[test]
    fn chan_sip_peers_are_phones_when_dynamic() {
        let bytes = b"Response: Success\r\nActionID: p\r\nEventList: start\r\nMessage: Peer status list will follow\r\n\r\nEvent: PeerEntry\r\nActionID: p\r\nChanneltype: SIP\r\nObjectName: 150010001\r\nChanObjectType: peer\r\nIPaddress: 10.0.0.5\r\nIPport: 5060\r\nDynamic: yes\r\nStatus: OK (12 ms)\r\n\r\nEvent: PeerEntry\r\nActionID: p\r\nChanneltype: SIP\r\nObjectName: 74950000000\r\nChanObjectType: peer\r\nIPaddress: 192.0.2.1\r\nIPport: 5060\r\nDynamic: no\r\nStatus: OK (30 ms)\r\n\r\nEvent: PeerlistComplete\r\nActionID: p\r\nEventList: Complete\r\nListItems: 2\r\n\r\n";
        let mut out = Endpoints::default();
        endpoint_kinds(&reply_of(bytes, "p"), &mut out);
        assert!(out.employees.contains("150010001") && out.employees.len() == 1);
        assert!(out.trunks.contains("74950000000") && out.trunks.len() == 1);
    }
}
