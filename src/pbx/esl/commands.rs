//! The [`PbxHandle`](crate::pbx::PbxHandle) commands as event socket commands:
//! `bgapi originate`, `uuid_transfer`, `uuid_kill`, `list_users` + `show registrations as
//! json` + `show channels as json`.
//!
//! Arguments arrive validated by the handle (no spaces, commas, braces or quotes can
//! reach a command line); this module only builds commands and reads their answers.

use std::collections::HashMap;

use super::client::Client;
use super::events;
use crate::pbx::endpoints::{self, Endpoints, Kind};
use crate::pbx::handle::clean_name;
use crate::pbx::{
    CALL_ID_VAR_FS, ChannelSnapshot, ChannelState, Extension, LineState, OriginateRequest,
    Originated, PbxError,
};

pub(crate) async fn originate(
    client: &Client,
    req: &OriginateRequest,
) -> Result<Originated, PbxError> {
    let opts = &client.opts;
    let uuid = crate::pbx::new_uuid();
    let job = crate::pbx::new_uuid();
    let ring = req.ring.unwrap_or(opts.ring).as_secs().max(1);
    let mut vars = vec![
        format!("origination_uuid={uuid}"),
        format!("{CALL_ID_VAR_FS}={}", req.call_id),
        format!("originate_timeout={ring}"),
        "ignore_early_media=true".to_string(),
    ];
    if let Some(line) = req.line.as_deref().filter(|l| !l.is_empty()) {
        vars.push(format!("appliance_line={line}"));
    }
    if !req.caller_id_number.is_empty() {
        vars.push(format!(
            "origination_caller_id_number={}",
            req.caller_id_number
        ));
    }
    let name = clean_name(&req.caller_id_name);
    if !name.is_empty() {
        vars.push(format!("origination_caller_id_name='{name}'"));
    }
    let channel = opts.agent_channel.replace("{ext}", &req.agent);
    let command = format!(
        "originate {{{}}}{channel} {} {} {}",
        vars.join(","),
        req.customer,
        opts.dialplan,
        opts.context
    );
    let text = client.bgapi(&command, &job, Some(&req.call_id)).await?;
    if !text.starts_with("+OK") {
        return Err(PbxError::Refused(text));
    }
    Ok(Originated {
        channel: uuid,
        reference: job,
    })
}

/// `+OK` → Ok; `-ERR No such channel!` → [`PbxError::NoSuchChannel`]; else a refusal.
fn expect_ok(body: String) -> Result<(), PbxError> {
    let body = body.trim();
    if body.starts_with("+OK") {
        return Ok(());
    }
    if body.to_ascii_lowercase().contains("no such channel") {
        return Err(PbxError::NoSuchChannel);
    }
    Err(PbxError::Refused(body.to_string()))
}

/// `uuid_transfer`: the channel itself, or with `bleg` the party bridged to it.
pub(crate) async fn transfer(
    client: &Client,
    channel: &str,
    exten: &str,
    bleg: bool,
) -> Result<(), PbxError> {
    let opts = &client.opts;
    let leg = if bleg { " -bleg" } else { "" };
    let body = client
        .api(&format!(
            "uuid_transfer {channel}{leg} {exten} {} {}",
            opts.dialplan, opts.transfer_context
        ))
        .await?;
    expect_ok(body)
}

pub(crate) async fn hangup(client: &Client, channel: &str) -> Result<(), PbxError> {
    expect_ok(client.api(&format!("uuid_kill {channel}")).await?)
}

pub(crate) async fn channels(client: &Client) -> Result<Vec<ChannelSnapshot>, PbxError> {
    let body = client.api("show channels as json").await?;
    events::snapshot(&body).map_err(PbxError::Protocol)
}

/// One directory user from `list_users` (`userid|context|domain|group|contact|...`).
struct User {
    id: String,
    name: Option<String>,
    contact: String,
}

fn parse_list_users(body: &str) -> Result<Vec<User>, PbxError> {
    let mut lines = body.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = match lines.next() {
        Some(h) if h.starts_with("userid|") => h.split('|').collect(),
        _ => {
            return Err(PbxError::Protocol(format!(
                "list_users: {:.80}",
                body.trim()
            )));
        }
    };
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (id, contact, name) = (
        col("userid"),
        col("contact"),
        col("effective_caller_id_name"),
    );
    let mut seen = std::collections::HashSet::new();
    let mut users = Vec::new();
    for line in lines {
        if line.starts_with("+OK") || line.starts_with("-ERR") {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        let get = |i: Option<usize>| i.and_then(|i| fields.get(i)).map(|s| s.trim().to_string());
        let Some(user) = get(id).filter(|u| !u.is_empty()) else {
            continue;
        };
        // A user in several groups is listed once per group.
        if seen.insert(user.clone()) {
            users.push(User {
                id: user,
                name: get(name).filter(|n| !n.is_empty()),
                contact: get(contact).unwrap_or_default(),
            });
        }
    }
    Ok(users)
}

pub(crate) async fn extensions(client: &Client) -> Result<Vec<Extension>, PbxError> {
    let users = parse_list_users(&client.api("list_users").await?)?;
    let registrations: serde_json::Value =
        serde_json::from_str(client.api("show registrations as json").await?.trim())
            .map_err(|e| PbxError::Protocol(format!("show registrations as json: {e}")))?;
    let mut contacts: HashMap<String, Vec<String>> = HashMap::new();
    for row in registrations["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if let (Some(user), Some(url)) = (row["reg_user"].as_str(), row["url"].as_str()) {
            contacts
                .entry(user.to_string())
                .or_default()
                .push(url.to_string());
        }
    }
    let mut busy: HashMap<String, LineState> = HashMap::new();
    for channel in channels(client).await? {
        let Some(user) = channel.endpoint else {
            continue;
        };
        let state = match channel.state {
            ChannelState::Up => LineState::InCall,
            ChannelState::Ring | ChannelState::Ringing => LineState::Ringing,
            _ => continue,
        };
        let entry = busy.entry(user).or_insert(state);
        if state == LineState::InCall {
            *entry = LineState::InCall;
        }
    }
    let mut out: Vec<Extension> = users
        .into_iter()
        .map(|user| {
            let mut registered = contacts.remove(&user.id).unwrap_or_default();
            if registered.is_empty()
                && !user.contact.is_empty()
                && !user.contact.starts_with("error/")
            {
                registered.push(user.contact.clone());
            }
            let state = match (registered.is_empty(), busy.get(&user.id)) {
                (true, _) => LineState::Offline,
                (false, Some(state)) => *state,
                (false, None) => LineState::Online,
            };
            Extension {
                ext: user.id,
                name: user.name,
                state,
                contacts: registered,
            }
        })
        .collect();
    out.sort_by(|a, b| a.ext.cmp(&b.ext));
    Ok(out)
}

/// The PBX's own endpoint lists ([`crate::pbx::endpoints`]): every directory user
/// (`list_users`) an employee, every sofia gateway (`sofia status`) a trunk. Either may
/// fail (no mod_sofia, an answer that is no list): the other still counts. `None` when
/// neither answered.
pub(crate) async fn endpoints(client: &Client) -> Option<Endpoints> {
    let mut out = Endpoints::default();
    match client
        .api("list_users")
        .await
        .and_then(|b| parse_list_users(&b))
    {
        Ok(users) => {
            for user in users {
                out.add(&user.id, Kind::Employee);
            }
            out.sources.push("list_users");
        }
        Err(e) => log::debug!("PBX: no directory users from list_users: {e}"),
    }
    match client.api("sofia status").await {
        Ok(body) => match endpoints::sofia_gateways(&body) {
            Some(gateways) => {
                for gw in gateways {
                    out.add(&gw, Kind::Trunk);
                }
                out.sources.push("sofia status");
            }
            None => log::debug!("PBX: no gateways from sofia status: {:.80}", body.trim()),
        },
        Err(e) => log::debug!("PBX: no gateways from sofia status: {e}"),
    }
    (!out.sources.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_users_is_read_once_per_user() {
        let body = "userid|context|domain|group|contact|callgroup|effective_caller_id_name|effective_caller_id_number\n1000|agents-sip|127.0.0.1|agents|sofia/internal/sip:1000@127.0.0.1:5101||Agent 1000|1000\n1000|agents-sip|127.0.0.1|sales|sofia/internal/sip:1000@127.0.0.1:5101||Agent 1000|1000\n1002|agents-sip|127.0.0.1|agents|error/user_not_registered||Agent 1002|1002\n\n+OK\n";
        let users = parse_list_users(body).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].id, "1000");
        assert_eq!(users[0].name.as_deref(), Some("Agent 1000"));
        assert_eq!(users[1].contact, "error/user_not_registered");
        assert!(parse_list_users("-ERR no such command").is_err());
    }

    #[test]
    fn api_answers_map_to_errors() {
        assert_eq!(expect_ok("+OK\n".into()), Ok(()));
        assert_eq!(
            expect_ok("-ERR No such channel!\n".into()),
            Err(PbxError::NoSuchChannel)
        );
        assert_eq!(
            expect_ok("-USAGE: <uuid>".into()),
            Err(PbxError::Refused("-USAGE: <uuid>".into()))
        );
    }
}
