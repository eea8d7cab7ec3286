//! What the interactive `--init` finds on this host before asking anything: a PBX
//! answering on the usual local ports, and credentials in its configuration files.
//!
//! Parsing is pure (tested on sample files); detection and the login test go through
//! `crate::pbx::probe`, the same check the settings page and `doctor` use.

use std::path::Path;
use std::time::Duration;

use crate::config::PbxType;
use crate::pbx::{self, ConnectionSettings, ProbeResult};
use crate::secret::Secret;

/// Credentials found in a PBX configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// AMI user name (empty for the event socket, which has none).
    pub user: String,
    pub secret: String,
    /// The port the file configures, when it names one.
    pub port: Option<u16>,
}

/// AMI users with a secret in an Asterisk `manager.conf`, the user named `appliance`
/// first. `#include`s and templates are not followed.
pub fn parse_manager_conf(text: &str) -> Vec<Found> {
    let mut users: Vec<Found> = Vec::new();
    let mut section: Option<String> = None;
    let mut port = None;
    for raw in text.lines() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest.split(']').next().unwrap_or("").trim().to_string();
            // "[name](!)" declares a template, not a user.
            let template = rest.contains("](!") || rest.contains("(!)");
            section = (!template).then_some(name);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim().trim_end_matches('>').trim(), value.trim());
        match section.as_deref() {
            Some("general") if key.eq_ignore_ascii_case("port") => port = value.parse().ok(),
            Some("general") | None => {}
            Some(user) if key.eq_ignore_ascii_case("secret") && !value.is_empty() => {
                users.retain(|u| u.user != user);
                users.push(Found {
                    user: user.to_string(),
                    secret: value.to_string(),
                    port: None,
                });
            }
            Some(_) => {}
        }
    }
    for user in &mut users {
        user.port = port;
    }
    users.sort_by_key(|u| u.user != "appliance");
    users
}

/// The password (and port) in FreeSWITCH's `event_socket.conf.xml`.
pub fn parse_event_socket_conf(text: &str) -> Option<Found> {
    // Drop XML comments, so a commented-out example is never offered.
    let mut clean = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<!--") {
        clean.push_str(&rest[..start]);
        rest = rest[start..]
            .find("-->")
            .map_or("", |end| &rest[start + end + 3..]);
    }
    clean.push_str(rest);
    let param = |name: &str| {
        clean.split("<param").skip(1).find_map(|tag| {
            let tag = tag.split('>').next()?;
            (attribute(tag, "name")? == name).then(|| attribute(tag, "value"))?
        })
    };
    let secret = param("password")?;
    Some(Found {
        user: String::new(),
        secret,
        port: param("listen-port").and_then(|p| p.parse().ok()),
    })
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}="))? + name.len() + 1;
    let quote = tag[start..].chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let value = &tag[start + 1..];
    Some(value[..value.find(quote)?].to_string())
}

/// Reads credentials for `kind` from `path`. `Err` explains why nothing can be offered
/// (missing, unreadable: e.g. not run as root).
pub fn read_credentials(kind: PbxType, path: &Path) -> Result<Vec<Found>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let found = match kind {
        PbxType::Asterisk => parse_manager_conf(&text),
        PbxType::Freeswitch => parse_event_socket_conf(&text).into_iter().collect(),
    };
    if found.is_empty() {
        return Err(format!("{}: no credentials found", path.display()));
    }
    Ok(found)
}

/// Splits `host:port` (IPv6 as `[::1]:5038`).
pub fn split_addr(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
    ))
}

/// True when something speaking `kind`'s protocol answers at `addr` (a refused login
/// counts: the PBX is there, only the credentials are unknown yet).
pub async fn detect(kind: PbxType, addr: &str) -> bool {
    let Some((host, port)) = split_addr(addr) else {
        return false;
    };
    let settings = ConnectionSettings {
        kind,
        host,
        port,
        user: String::new(),
        secret: Secret::default(),
    };
    !matches!(
        pbx::probe(&settings, Duration::from_secs(2)).await,
        ProbeResult::Down(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manager_conf_users_with_secrets() {
        let text = "\
; comment
[general]
enabled = yes
port = 5039
bindaddr = 127.0.0.1

[admin]
secret = adminpw ; trailing comment
read = all

[readonly](!)
secret = template-secret

[nosecret]
read = all

[appliance]
secret=s3cret
write = all
";
        let users = parse_manager_conf(text);
        assert_eq!(
            users,
            vec![
                Found {
                    user: "appliance".into(),
                    secret: "s3cret".into(),
                    port: Some(5039)
                },
                Found {
                    user: "admin".into(),
                    secret: "adminpw".into(),
                    port: Some(5039)
                },
            ]
        );
        assert!(parse_manager_conf("[general]\nenabled = yes\n").is_empty());
    }

    #[test]
    fn event_socket_password_ignores_comments() {
        let text = r#"<configuration name="event_socket.conf" description="Socket Client">
  <settings>
    <param name="nat-map" value="false"/>
    <param name="listen-ip" value="::"/>
    <param name="listen-port" value="8022"/>
    <!-- <param name="password" value="commented"/> -->
    <param name="password" value="ClueCon"/>
  </settings>
</configuration>"#;
        let found = parse_event_socket_conf(text).unwrap();
        assert_eq!(found.secret, "ClueCon");
        assert_eq!(found.port, Some(8022));
        assert!(parse_event_socket_conf("<configuration/>").is_none());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            split_addr("127.0.0.1:5038"),
            Some(("127.0.0.1".into(), 5038))
        );
        assert_eq!(split_addr("[::1]:8021"), Some(("::1".into(), 8021)));
        assert_eq!(split_addr("nope"), None);
    }
}
