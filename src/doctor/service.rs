//! Doctor checks of what the running service talks to: Flowlu for each connected account
//! (and the clock against Flowlu's); and the PBX the service uses.
//!
//! Read-only like every check: the database is opened read-only and tokens are used as
//! stored (never refreshed).

use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OpenFlags};

use super::{CheckFuture, Context, Finding};
use crate::config::Config;
use crate::flowlu::client::Client;
use crate::flowlu::pbx_settings;
use crate::flowlu::store::{self, Integration};
use crate::pbx::ConnectionSettings;
use crate::secret::Secret;

fn config_of(ctx: &Context) -> Option<&Config> {
    ctx.config.as_ref().ok()
}

/// Clock difference beyond which events' times look wrong in Flowlu.
const SKEW_WARN: Duration = Duration::from_secs(30);
const SKEW_FAIL: Duration = Duration::from_secs(300);

/// The PBX connection the service uses: the one saved from the settings page (which takes
/// precedence at start-up), else `[pbx]`; with where it comes from.
pub fn pbx_in_force(config: &Config) -> Option<(ConnectionSettings, &'static str)> {
    let path = config.database_path();
    let saved = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .ok()
        .and_then(|conn| {
            let _ = conn.busy_timeout(Duration::from_secs(5));
            pbx_settings::load(&conn).ok().flatten()
        });
    match saved {
        Some(stored) => Some((stored.settings, "the settings page")),
        None => ConnectionSettings::from_config(&config.pbx).map(|s| (s, "[pbx]")),
    }
}

/// Connected accounts and the token each uses, read from the database.
fn accounts(config: &Config) -> Result<Vec<(Integration, Option<Secret>)>, String> {
    let path = config.database_path();
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM flowlu_integrations WHERE telephony_uuid IS NOT NULL ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for id in ids {
        let Some(integration) = store::integration(&conn, id).map_err(|e| e.to_string())? else {
            continue;
        };
        let token = match &integration.token_user_id {
            Some(user) => store::token_for_user(&conn, id, user)
                .map_err(|e| e.to_string())?
                .map(|t| t.access_token),
            None => None,
        };
        out.push((integration, token));
    }
    Ok(out)
}

/// Each connected Flowlu account: reachable, token accepted; plus the clock skew.
pub fn flowlu(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        let config = config.clone();
        let listed = tokio::task::spawn_blocking({
            let config = config.clone();
            move || accounts(&config)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let accounts = match listed {
            Ok(accounts) => accounts,
            Err(e) => {
                return vec![Finding::fail(
                    "flowlu",
                    format!("cannot read the accounts: {e}"),
                )];
            }
        };
        if accounts.is_empty() {
            return vec![Finding::warn(
                "flowlu",
                "no Flowlu account is connected yet: open the appliance's settings in Flowlu and press Connect",
            )];
        }
        let client = Client::new(&config.flowlu);
        let mut out = Vec::new();
        let mut skews = Vec::new();
        for (integration, token) in accounts {
            let name = format!(
                "account {} ({})",
                integration.account_id, integration.domain
            );
            if integration.needs_reconnect {
                out.push(Finding::fail(
                    "flowlu",
                    format!("{name}: needs a reconnect: an admin must open the settings in Flowlu"),
                ));
                continue;
            }
            let (Some(token), Ok(target)) = (token, integration.target(&config.flowlu)) else {
                out.push(Finding::fail(
                    "flowlu",
                    format!("{name}: no usable token or domain"),
                ));
                continue;
            };
            let started = SystemTime::now();
            match client.probe(&target, &token).await {
                Ok(reply) => {
                    if let Some(date) = reply.date.as_deref().and_then(parse_http_date) {
                        // The server stamped its Date while we waited: compare with the
                        // middle of the request.
                        let mid = started + started.elapsed().unwrap_or_default() / 2;
                        skews.push((name.clone(), signed_diff(mid, date)));
                    }
                    match reply.status {
                        200..=299 => out.push(Finding::ok("flowlu", format!("{name}: reachable, token accepted"))),
                        401 | 403 => out.push(Finding::warn(
                            "flowlu",
                            format!(
                                "{name}: reachable, but the token was refused (HTTP {}): the service refreshes it; if that fails, reconnect in Flowlu",
                                reply.status
                            ),
                        )),
                        status => out.push(Finding::fail(
                            "flowlu",
                            format!("{name}: Flowlu answered HTTP {status}"),
                        )),
                    }
                }
                Err(e) => out.push(Finding::fail("flowlu", format!("{name}: {e}"))),
            }
        }
        out.extend(skew_findings(&skews));
        out
    })
}

fn skew_findings(skews: &[(String, i64)]) -> Vec<Finding> {
    let Some((name, worst)) = skews.iter().max_by_key(|(_, s)| s.abs()) else {
        return Vec::new();
    };
    let secs = worst.unsigned_abs();
    let how = if *worst > 0 { "ahead of" } else { "behind" };
    let detail = format!("this host's clock is {secs} s {how} Flowlu's ({name})");
    if secs >= SKEW_FAIL.as_secs() {
        vec![Finding::fail(
            "clock",
            format!("{detail}: call times will be wrong; enable NTP (timedatectl set-ntp true)"),
        )]
    } else if secs >= SKEW_WARN.as_secs() {
        vec![Finding::warn(
            "clock",
            format!("{detail}; enable NTP (timedatectl set-ntp true)"),
        )]
    } else {
        vec![Finding::ok("clock", format!("within {secs} s of Flowlu's"))]
    }
}

/// Seconds `ours` is ahead of `theirs` (negative: behind).
fn signed_diff(ours: SystemTime, theirs: SystemTime) -> i64 {
    match ours.duration_since(theirs) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// An HTTP date such as `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc2822)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_is_graded() {
        let f = skew_findings(&[("a".into(), 3), ("b".into(), -45)]);
        assert_eq!(f[0].status, super::super::Status::Warn);
        assert!(f[0].detail.contains("45 s behind"), "{}", f[0].detail);
        let f = skew_findings(&[("a".into(), 600)]);
        assert_eq!(f[0].status, super::super::Status::Fail);
        let f = skew_findings(&[("a".into(), 2)]);
        assert_eq!(f[0].status, super::super::Status::Ok);
        assert!(skew_findings(&[]).is_empty());
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
    }
}
