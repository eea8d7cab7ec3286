//! `systemctl reload` (SIGHUP): re-reads the configuration and applies what can change
//! without a new listener or connection.
//!
//! Applied live ([`LIVE`]): `[log] level`, `[calls]` (the call tracker's rules),
//! `[outbox]` (retry schedule, throttling, parallel deliveries, `keep_delivered`),
//! `[recordings]`, `[webhook]` and `[c2c]`; their users read the configuration in force
//! (or follow it: the `watch` channel handed to [`reload`]) instead of the start-up
//! one. Every other
//! section needs a restart: a reload that changes one of them logs it and keeps the
//! running values, so the configuration in force is always one the service can serve.
//! A file that does not load (syntax, unknown key, invalid value) changes nothing.

use std::sync::Arc;

use log::LevelFilter;
use tokio::sync::watch;

use crate::config::{self, Config, LoadOptions};
use crate::outbox::Outbox;

/// The sections a reload applies.
pub const LIVE: &[&str] = &["log", "calls", "outbox", "recordings", "webhook", "c2c"];

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Keys applied, as `section.key`.
    pub applied: Vec<String>,
    /// Keys that changed in the file but need a restart (kept as they run).
    pub need_restart: Vec<String>,
    /// Why the file was refused (then nothing changed).
    pub refused: Option<String>,
}

/// What a reload changes: the configuration in force (`live`), the outbox's schedule
/// and, through `set_log_level` (false when `RUST_LOG` is in charge), `[log] level`.
pub struct Targets<'a> {
    pub live: &'a watch::Sender<Arc<Config>>,
    pub outbox: &'a Outbox,
    pub set_log_level: fn(LevelFilter) -> bool,
}

/// Loads the configuration as at start-up (`options`: file, environment, flags) and
/// applies it; logs the outcome.
pub fn reload(targets: &Targets<'_>, options: &LoadOptions) -> Outcome {
    let outcome = match config::load(options) {
        Ok((new, _)) => apply(targets, new),
        Err(e) => Outcome {
            refused: Some(e.to_string()),
            ..Outcome::default()
        },
    };
    log_outcome(&outcome);
    outcome
}

/// Applies `new`'s live sections; the others stay as they run.
pub fn apply(targets: &Targets<'_>, new: Config) -> Outcome {
    let old = targets.live.borrow().clone();
    let (old_v, new_v) = (sections(&old), sections(&new));
    let mut outcome = Outcome::default();
    for (section, new_keys) in &new_v {
        let old_keys = old_v.get(section).cloned().unwrap_or_default();
        for (key, value) in new_keys {
            if old_keys.get(key) != Some(value) {
                let name = format!("{section}.{key}");
                if LIVE.contains(&section.as_str()) {
                    outcome.applied.push(name);
                } else {
                    outcome.need_restart.push(name);
                }
            }
        }
    }
    if outcome.applied.is_empty() {
        return outcome;
    }
    let mut merged = (*old).clone();
    merged.log = new.log.clone();
    merged.calls = new.calls.clone();
    merged.outbox = new.outbox.clone();
    merged.recordings = new.recordings.clone();
    merged.webhook = new.webhook.clone();
    merged.c2c = new.c2c.clone();
    if merged.log.level != old.log.level
        && let Ok(level) = merged.log.level.parse()
    {
        if (targets.set_log_level)(level) {
            log::debug!("reload: log level now {level}");
        } else {
            log::info!("reload: RUST_LOG is set, so [log] level does not apply");
        }
    }
    targets.outbox.set_policy(
        crate::outbox::RetryPolicy::from_config(&merged.outbox),
        merged.outbox.max_in_flight as usize,
    );
    targets.live.send_replace(Arc::new(merged));
    outcome
}

fn log_outcome(outcome: &Outcome) {
    if let Some(why) = &outcome.refused {
        log::error!("reload: keeping the running configuration: {why}");
        return;
    }
    if !outcome.need_restart.is_empty() {
        log::warn!(
            "reload: changed, but applied only after `systemctl restart appliance`: {}",
            outcome.need_restart.join(", ")
        );
    }
    if outcome.applied.is_empty() {
        log::info!("reload: no change to apply");
    } else {
        log::info!("reload: applied {}", outcome.applied.join(", "));
    }
}

type Sections = std::collections::BTreeMap<String, serde_json::Map<String, serde_json::Value>>;

/// Each section's keys and values (secrets included: compared, never printed).
fn sections(config: &Config) -> Sections {
    let mut out = Sections::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(config) {
        for (section, keys) in map {
            if let serde_json::Value::Object(keys) = keys {
                out.insert(section, keys);
            }
        }
    }
    out
}
