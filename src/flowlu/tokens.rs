//! OAuth token upkeep: reading Flowlu's expiry, refreshing before it, the "needs
//! reconnect" state, and handing a valid token to whoever calls Flowlu.
//!
//! Working assumption [ours]: `auth.expires_at` ("2026-03-27 17:29:33") is the CRM's
//! local time without a zone; we read it as UTC shifted by
//! `[flowlu] expires_at_utc_offset_minutes` and store Unix seconds. A refresh answer's
//! `expires_in` is exact and replaces the guess.
//!
//! Refresh outcomes: success stores the new tokens and clears "needs reconnect"; a
//! refusal (HTTP 400/401/403, `invalid_grant`, error code 11) marks the integration
//! "needs reconnect" and stops trying; a transient failure (network, timeout, 429, 5xx)
//! is retried with backoff, and marks "needs reconnect" only once the access token has
//! actually expired, retrying on. A fresh iframe POST clears the state either way.
//! Nothing is ever dropped: callers get [`FlowluError::NeedsReconnect`] and hold work.

use std::time::Duration;

use sha2::Digest;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};
use tokio::sync::watch;

use super::domain::CrmTarget;
use super::store::{self, Integration, TokenRow, now};
use super::{Flowlu, FlowluError};
use crate::secret::{self, Secret};

/// Used when a refresh answer gives no expiry [ours].
const DEFAULT_LIFETIME_SECS: i64 = 3600;
/// The worker wakes at least this often, even with nothing due.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// Reads `auth.expires_at`: `YYYY-MM-DD HH:MM:SS` (or with `T`, optional fraction) as
/// local time at `offset_minutes` east of UTC; RFC 3339 with a zone as given; or Unix
/// seconds. `None` when unreadable.
pub fn parse_expires_at(raw: &str, offset_minutes: i64) -> Option<i64> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse::<i64>().ok().filter(|&t| t > 0);
    }
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(t.unix_timestamp());
    }
    let plain = raw.replacen('T', " ", 1);
    let plain = plain.split('.').next().unwrap_or("");
    let local = PrimitiveDateTime::parse(
        plain,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    let offset = UtcOffset::from_whole_seconds(i32::try_from(offset_minutes * 60).ok()?).ok()?;
    Some(local.assume_offset(offset).unix_timestamp())
}

/// The fast-path key: a hash of the access token, the domain and the app version.
pub fn fast_hash(access_token: &Secret, domain: &str, app_version: &str) -> String {
    let mut h = sha2::Sha256::new();
    for part in [access_token.expose(), domain, app_version] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// What a caller needs to call Flowlu for an integration.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub integration: Integration,
    pub target: CrmTarget,
    pub access_token: Secret,
}

/// A valid access token for `integration_id`, refreshed first when it has expired.
/// `NeedsReconnect` while the integration waits for an admin; hold the work and retry
/// later.
pub async fn access_token(
    flowlu: &Flowlu,
    integration_id: i64,
) -> Result<Credentials, FlowluError> {
    let (integration, row) = current(flowlu, integration_id).await?;
    if row.expires_at > now() + 30 {
        return credentials(flowlu, integration, row);
    }
    let lock = flowlu.lock(integration_id);
    let _guard = lock.lock().await;
    let (integration, row) = current(flowlu, integration_id).await?;
    if row.expires_at > now() + 30 {
        return credentials(flowlu, integration, row);
    }
    refresh_row(flowlu, &integration, row).await
}

/// Refreshes once after Flowlu answered 401 (or error code 11) to `rejected`. When the
/// stored token is no longer `rejected` (someone refreshed meanwhile) the current one
/// is returned without another refresh.
pub async fn force_refresh(
    flowlu: &Flowlu,
    integration_id: i64,
    rejected: &Secret,
) -> Result<Credentials, FlowluError> {
    let lock = flowlu.lock(integration_id);
    let _guard = lock.lock().await;
    let (integration, row) = current(flowlu, integration_id).await?;
    if !secret::constant_time_eq(
        row.access_token.expose().as_bytes(),
        rejected.expose().as_bytes(),
    ) {
        return credentials(flowlu, integration, row);
    }
    refresh_row(flowlu, &integration, row).await
}

async fn current(
    flowlu: &Flowlu,
    integration_id: i64,
) -> Result<(Integration, TokenRow), FlowluError> {
    flowlu
        .db
        .run(move |c| {
            let integration = store::integration(c, integration_id)?
                .ok_or(FlowluError::UnknownIntegration(integration_id))?;
            if integration.needs_reconnect {
                return Err(FlowluError::NeedsReconnect(integration_id));
            }
            let user = integration
                .token_user_id
                .clone()
                .ok_or(FlowluError::NoToken(integration_id))?;
            let row = store::token_for_user(c, integration_id, &user)?
                .ok_or(FlowluError::NoToken(integration_id))?;
            Ok((integration, row))
        })
        .await
}

fn credentials(
    flowlu: &Flowlu,
    integration: Integration,
    row: TokenRow,
) -> Result<Credentials, FlowluError> {
    let target = integration.target(&flowlu.config)?;
    Ok(Credentials {
        integration,
        target,
        access_token: row.access_token,
    })
}

/// Refreshes one token row and records the outcome. Call with the integration's lock.
async fn refresh_row(
    flowlu: &Flowlu,
    integration: &Integration,
    row: TokenRow,
) -> Result<Credentials, FlowluError> {
    let id = integration.id;
    let target = match integration.target(&flowlu.config) {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("the account's domain is no longer allowed: {e}");
            flowlu
                .db
                .run(move |c| store::mark_needs_reconnect(c, id, &reason))
                .await?;
            return Err(e);
        }
    };
    let outcome = flowlu
        .client
        .refresh(&target, &row.refresh_token, &integration.app_id)
        .await;
    match outcome {
        Ok(new) => {
            let access = new.access_token;
            let refresh = new
                .refresh_token
                .unwrap_or_else(|| row.refresh_token.clone());
            let expires_at = new.expires_at.unwrap_or(now() + DEFAULT_LIFETIME_SECS);
            let hash = fast_hash(&access, &row.domain, &row.app_version);
            let (row2, access2) = (row.clone(), access.clone());
            let stored = flowlu
                .db
                .run(move |c| {
                    let stored =
                        store::save_refreshed(c, &row2, &access2, &refresh, expires_at, &hash)?;
                    if stored {
                        store::clear_needs_reconnect(c, id)?;
                    }
                    Ok::<_, FlowluError>(stored)
                })
                .await?;
            log::info!("integration {id}: access token refreshed");
            flowlu.outbox.release(id).await;
            if !stored {
                // A fresh iframe POST replaced the row meanwhile; its token wins.
                let (integration, row) = current(flowlu, id).await?;
                return credentials(flowlu, integration, row);
            }
            Ok(Credentials {
                integration: integration.clone(),
                target,
                access_token: access,
            })
        }
        Err(FlowluError::Rejected(why)) => {
            log::warn!(
                "integration {id}: Flowlu refused the token refresh ({why}); needs reconnect"
            );
            let reason = format!("Flowlu refused the token refresh ({why})");
            flowlu
                .db
                .run(move |c| {
                    store::record_refresh_failure(c, row.id, None)?;
                    store::mark_needs_reconnect(c, id, &reason)
                })
                .await?;
            Err(FlowluError::NeedsReconnect(id))
        }
        Err(e) => {
            let failures = row.refresh_failures;
            let backoff = (30i64 << failures.clamp(0, 5)).min(600);
            let expired = row.expires_at <= now();
            log::warn!(
                "integration {id}: token refresh failed ({e}); retrying in {backoff}s{}",
                if expired {
                    "; token expired, needs reconnect"
                } else {
                    ""
                }
            );
            let reason = format!("the token expired and Flowlu could not refresh it ({e})");
            flowlu
                .db
                .run(move |c| {
                    store::record_refresh_failure(c, row.id, Some(now() + backoff))?;
                    if expired {
                        store::mark_needs_reconnect(c, id, &reason)?;
                    }
                    Ok::<_, FlowluError>(())
                })
                .await?;
            if expired {
                Err(FlowluError::NeedsReconnect(id))
            } else {
                Err(e)
            }
        }
    }
}

/// One pass of the refresh worker: refreshes every token in use that expires within
/// `[flowlu] refresh_before_secs`. Returns how many refreshes were attempted. Public so
/// tests can drive it step by step.
pub async fn refresh_due(flowlu: &Flowlu) -> Result<usize, FlowluError> {
    let margin = flowlu.config.refresh_before_secs as i64;
    let due = flowlu
        .db
        .run(move |c| store::due_for_refresh(c, now(), margin))
        .await?;
    let mut attempted = 0;
    for row in due {
        let lock = flowlu.lock(row.integration_id);
        let _guard = lock.lock().await;
        // Re-read under the lock: another task may have refreshed it already.
        let id = row.integration_id;
        let fresh = flowlu
            .db
            .run(move |c| {
                let integration = store::integration(c, id)?;
                let still_due = store::due_for_refresh(c, now(), margin)?
                    .into_iter()
                    .find(|r| r.id == row.id);
                Ok::<_, FlowluError>(integration.zip(still_due))
            })
            .await?;
        let Some((integration, row)) = fresh else {
            continue;
        };
        attempted += 1;
        // Failures are recorded by refresh_row; the worker moves on.
        let _ = refresh_row(flowlu, &integration, row).await;
    }
    Ok(attempted)
}

/// Runs [`refresh_due`] whenever a token becomes due, new tokens arrive, or at least
/// every few minutes, until `stop` turns true (or its sender goes away).
pub async fn run_refresher(flowlu: std::sync::Arc<Flowlu>, mut stop: watch::Receiver<bool>) {
    let margin = flowlu.config.refresh_before_secs as i64;
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(e) = refresh_due(&flowlu).await {
            log::error!("token refresh pass failed: {e}");
        }
        let next = flowlu
            .db
            .run(move |c| super::store::next_due(c, margin))
            .await
            .unwrap_or_else(|e| {
                log::error!("token refresh schedule: {e}");
                None
            });
        let sleep = match next {
            Some(at) => {
                Duration::from_secs((at - now()).clamp(1, MAX_SLEEP.as_secs() as i64) as u64)
            }
            None => MAX_SLEEP,
        };
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = flowlu.refresh_wake.notified() => {}
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    log::debug!("token refresh worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_at_formats() {
        let t = 1_774_632_573;
        assert_eq!(parse_expires_at("2026-03-27 17:29:33", 0), Some(t));
        assert_eq!(parse_expires_at("2026-03-27T17:29:33", 0), Some(t));
        assert_eq!(parse_expires_at("2026-03-27 17:29:33.250", 0), Some(t));
        assert_eq!(
            parse_expires_at("2026-03-27 17:29:33", 180),
            Some(t - 10800)
        );
        assert_eq!(parse_expires_at("2026-03-27 17:29:33", -60), Some(t + 3600));
        assert_eq!(parse_expires_at("2026-03-27T20:29:33+03:00", 0), Some(t));
        assert_eq!(parse_expires_at("1774632573", 0), Some(t));
        for bad in ["", "soon", "2026-13-01 00:00:00", "0", "2026-03-27"] {
            assert_eq!(parse_expires_at(bad, 0), None, "{bad}");
        }
    }

    #[test]
    fn fast_hash_binds_all_three_parts() {
        let t = Secret::new("tok");
        let base = fast_hash(&t, "a.flowlu.com", "1.0");
        assert_eq!(base.len(), 64);
        assert_eq!(base, fast_hash(&t, "a.flowlu.com", "1.0"));
        assert_ne!(base, fast_hash(&Secret::new("tok2"), "a.flowlu.com", "1.0"));
        assert_ne!(base, fast_hash(&t, "b.flowlu.com", "1.0"));
        assert_ne!(base, fast_hash(&t, "a.flowlu.com", "1.1"));
        // Length prefixes keep boundaries: ("ab", "c") differs from ("a", "bc").
        assert_ne!(
            fast_hash(&Secret::new("ab"), "c", "1"),
            fast_hash(&Secret::new("a"), "bc", "1")
        );
    }
}
