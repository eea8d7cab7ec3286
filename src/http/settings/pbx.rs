//! The settings page's PBX connection form (`pbx`, `pbx-test`): only the account that
//! owns the PBX may test or save it (`flowlu::pbx_settings::may_edit`), and a saved secret is
//! only ever sent to the type, host and port it was saved for.

use std::time::Duration;

use hyper::StatusCode;

use super::actions::{Fields, Outcome, field};
use super::view::{Notice, PbxForm};
use crate::app::State;
use crate::config::PbxType;
use crate::flowlu::pbx_settings;
use crate::http::HttpError;
use crate::pbx::{self, ConnectionSettings, ProbeResult};
use crate::secret::Secret;
use crate::util::is_host_name;

/// How long "test connection" waits for the PBX.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a PBX form with an empty secret and a new address is refused (a text key).
const SECRET_AGAIN: &str = "pbx_secret_again";

/// Reads the PBX form. `Err` carries the text key of the message for the admin.
fn parse_pbx(
    fields: &Fields,
    current: Option<&ConnectionSettings>,
) -> Result<ConnectionSettings, &'static str> {
    let kind = PbxType::parse(field(fields, "pbx_type")).ok_or("invalid_pbx_type")?;
    let host = field(fields, "pbx_host").trim().to_ascii_lowercase();
    let host_ok = host.parse::<std::net::IpAddr>().is_ok()
        || (host.starts_with('[')
            && host.ends_with(']')
            && host[1..host.len() - 1]
                .parse::<std::net::Ipv6Addr>()
                .is_ok())
        || is_host_name(&host);
    if !host_ok {
        return Err("invalid_pbx_host");
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = match field(fields, "pbx_port").trim() {
        "" | "0" => kind.default_port(),
        p => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or("invalid_pbx_port")?,
    };
    let user = field(fields, "pbx_user").trim().to_string();
    if user.len() > 64 || !user.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("invalid_pbx_user");
    }
    if kind == PbxType::Asterisk && user.is_empty() {
        return Err("invalid_pbx_user_missing");
    }
    let typed = field(fields, "pbx_secret");
    if typed.len() > 256 || typed.chars().any(char::is_control) {
        return Err("invalid_pbx_secret");
    }
    // A saved secret is only ever sent to the PBX it was saved for: a new type, host or
    // port needs it typed again, so a changed address can never collect it.
    let secret = match (typed.is_empty(), current) {
        (false, _) => Secret::new(typed),
        (true, Some(c)) if !c.secret.is_empty() => {
            if c.kind != kind || c.host != host || c.port != port {
                return Err(SECRET_AGAIN);
            }
            c.secret.clone()
        }
        (true, _) => return Err("invalid_pbx_secret_missing"),
    };
    Ok(ConnectionSettings {
        kind,
        host,
        port,
        user,
        secret,
    })
}

pub(super) async fn form(
    state: &State,
    id: i64,
    lang: &'static str,
    fields: &Fields,
    test_only: bool,
) -> Result<Outcome, HttpError> {
    let current = state.pbx_settings.borrow().clone();
    let mut echo = PbxForm {
        kind: field(fields, "pbx_type").to_string(),
        host: field(fields, "pbx_host").to_string(),
        port: field(fields, "pbx_port").to_string(),
        user: field(fields, "pbx_user").to_string(),
        has_secret: current.as_ref().is_some_and(|c| !c.secret.is_empty()),
        detail: String::new(),
    };
    let config_pbx = state.config.pbx.kind().is_some();
    let may_edit = state
        .db
        .run(move |c| pbx_settings::may_edit(c, id, config_pbx))
        .await?;
    if !may_edit {
        log::warn!("integration {id}: refused a PBX change: another integration owns the PBX");
        return Ok(Outcome::forbidden(lang, "pbx_not_owner"));
    }
    let settings = match parse_pbx(fields, current.as_ref()) {
        Ok(s) => s,
        Err(why) => {
            return Ok(Outcome {
                pbx_form: Some(echo),
                ..Outcome::invalid(lang, super::view::t(lang, why))
            });
        }
    };
    // Save tests the connection first and keeps the old settings when the test fails,
    // unless the admin ticked "save anyway".
    let allow_plain = state.config.pbx.allow_plain_login;
    let probe = pbx::probe_with(&settings, PROBE_TIMEOUT, allow_plain).await;
    let (key, detail) = match &probe {
        ProbeResult::Ok(d) => ("probe_ok", d),
        ProbeResult::Down(d) => ("probe_down", d),
        ProbeResult::AuthFailed(d) => ("probe_auth_failed", d),
        ProbeResult::ChallengeRefused(d) => ("probe_challenge_refused", d),
        ProbeResult::UnsupportedVersion(d) => ("probe_unsupported_version", d),
    };
    let passed = matches!(probe, ProbeResult::Ok(_));
    // The PBX's own words stay untranslated, shown under the notice (`lang="en"`).
    let text = super::view::t(lang, key);
    echo.detail = detail.clone();
    if test_only {
        return Ok(Outcome {
            notice: Notice {
                text,
                error: !passed,
            },
            status: StatusCode::OK,
            pbx_form: Some(echo),
        });
    }
    if !passed && field(fields, "save_anyway") != "1" {
        log::info!("integration {id}: PBX connection not saved: the test failed ({key})");
        return Ok(Outcome {
            notice: Notice {
                text: format!("{text}. {}", super::view::t(lang, "pbx_not_saved_test")),
                error: true,
            },
            status: StatusCode::UNPROCESSABLE_ENTITY,
            pbx_form: Some(echo),
        });
    }
    let to_save = settings.clone();
    let saved = state
        .db
        .run(move |c| pbx_settings::save(c, &to_save, id, config_pbx))
        .await?;
    if !saved {
        return Ok(Outcome::forbidden(lang, "pbx_not_owner"));
    }
    log::info!(
        "integration {id} saved the PBX connection: {} at {}:{}",
        settings.kind.as_str(),
        settings.host,
        settings.port
    );
    let mut board = state.pbx.subscribe();
    board.mark_unchanged();
    state.pbx_settings.send_replace(Some(settings));
    wait_for_new_state(&mut board, passed).await;
    Ok(Outcome::ok(lang, "pbx_saved"))
}

/// Waits (at most [`PROBE_TIMEOUT`]) until the connection supervisor reports the new
/// settings' state, so the page after a save does not show the old connection's state:
/// `up` after a passed test, else any other state it reports once it has tried.
async fn wait_for_new_state(board: &mut tokio::sync::watch::Receiver<pbx::PbxStatus>, up: bool) {
    let wait = async {
        while board.changed().await.is_ok() {
            let now = board.borrow_and_update().state;
            let done = match up {
                true => now == pbx::LinkState::Up,
                false => now != pbx::LinkState::Up && now != pbx::LinkState::NotConfigured,
            };
            if done {
                return;
            }
        }
    };
    if tokio::time::timeout(PROBE_TIMEOUT, wait).await.is_err() {
        log::debug!("the PBX state after a save did not settle within {PROBE_TIMEOUT:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pbx_form_validation() {
        let ok = parse_pbx(
            &f(&[
                ("pbx_type", "asterisk"),
                ("pbx_host", "PBX.local"),
                ("pbx_port", ""),
                ("pbx_user", "appliance"),
                ("pbx_secret", "s"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("pbx.local", 5038));
        let current = ok.clone();
        let kept = parse_pbx(
            &f(&[
                ("pbx_type", "asterisk"),
                ("pbx_host", "pbx.local"),
                ("pbx_port", "5038"),
                ("pbx_user", "appliance"),
                ("pbx_secret", ""),
            ]),
            Some(&current),
        )
        .unwrap();
        assert_eq!(kept.secret.expose(), "s");
        assert_eq!((kept.host.as_str(), kept.port), ("pbx.local", 5038));
        // A new type, host or port: the saved secret is not reused.
        for (kind, host, port) in [
            ("freeswitch", "pbx.local", "5038"),
            ("asterisk", "pbx.evil", ""),
            ("asterisk", "pbx.local", "5039"),
        ] {
            let moved = parse_pbx(
                &f(&[
                    ("pbx_type", kind),
                    ("pbx_host", host),
                    ("pbx_port", port),
                    ("pbx_user", "appliance"),
                    ("pbx_secret", ""),
                ]),
                Some(&current),
            );
            assert_eq!(moved.unwrap_err(), SECRET_AGAIN, "{kind} {host} {port}");
            assert!(super::super::view::texts("en").contains_key(SECRET_AGAIN));
        }
        let typed = parse_pbx(
            &f(&[
                ("pbx_type", "freeswitch"),
                ("pbx_host", "[::1]"),
                ("pbx_port", "8022"),
                ("pbx_secret", "new"),
            ]),
            Some(&current),
        )
        .unwrap();
        assert_eq!((typed.host.as_str(), typed.port), ("::1", 8022));
        assert_eq!(typed.secret.expose(), "new");
        for bad in [
            vec![("pbx_type", "cisco")],
            vec![("pbx_type", "asterisk"), ("pbx_host", "a b")],
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h:5038"),
                ("pbx_user", "u"),
            ],
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h"),
                ("pbx_port", "70000"),
                ("pbx_user", "u"),
            ],
            vec![
                ("pbx_type", "asterisk"),
                ("pbx_host", "h"),
                ("pbx_user", ""),
            ],
            vec![
                ("pbx_type", "freeswitch"),
                ("pbx_host", "h"),
                ("pbx_secret", ""),
            ],
        ] {
            let why = parse_pbx(&f(&bad), None).expect_err(&format!("{bad:?}"));
            assert!(
                super::super::view::texts("ru").contains_key(why),
                "{why} is a text of the catalogue"
            );
        }
    }
}
