//! ACME (RFC 8555) certificates: obtaining one for `[acme] domain`, writing it to
//! `server.tls_cert`/`server.tls_key`, and renewing it before expiry while the service runs,
//! hot-swapped through [`ReloadableCert`] (no restart, no dropped connections).
//!
//! Owns the ACME account file (`<data_dir>/acme/account.json`, 0600) and the renewal
//! schedule. Does not own the served certificate's resolver (`tls.rs`) nor the listeners
//! (`app.rs` binds them; [`challenge`] answers on them).

pub mod challenge;
mod client;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use challenge::{Challenges, serve_http01};

use crate::config::{AcmeChallenge, Config};
use crate::tls::{self, CertInfo, ReloadableCert};

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME setup: {0}")]
    Setup(String),
    #[error("ACME server {directory}: {source}")]
    Protocol {
        directory: String,
        source: instant_acme::Error,
    },
    #[error("ACME order for {domain} failed: {detail}")]
    Order { domain: String, detail: String },
    #[error("cannot store the ACME {what} {path}: {reason}")]
    Store {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
}

/// Why the served certificate must be replaced, or `None` when it is fine for now.
pub fn renewal_reason(
    info: Result<&CertInfo, &str>,
    domain: &str,
    renew_days: u64,
) -> Option<String> {
    let info = match info {
        Ok(info) => info,
        Err(e) => return Some(format!("the current certificate is unusable ({e})")),
    };
    if info.self_signed {
        return Some("the current certificate is a self-signed placeholder".into());
    }
    if !info.covers(domain) {
        return Some(format!("the current certificate does not cover {domain}"));
    }
    let left = info.remaining();
    if left < time::Duration::days(renew_days as i64) {
        return Some(format!(
            "the current certificate expires in {} day(s)",
            left.whole_days()
        ));
    }
    None
}

/// What [`renew_if_due`] did.
#[derive(Debug)]
pub enum Renewal {
    /// A new certificate was issued and is being served. Holds it.
    Renewed(CertInfo),
    /// Nothing to do; check again after this long.
    NotDue(Duration),
}

/// Longest sleep between two checks (the files may change under us, the clock may jump).
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);

/// Checks the served certificate and, when it is a placeholder, for another name, or
/// within `renew_days` of expiry, obtains a new one and swaps it in.
pub async fn renew_if_due(
    config: &Config,
    challenges: &Challenges,
    reloader: &ReloadableCert,
) -> Result<Renewal, AcmeError> {
    let domain = config
        .acme_domain()
        .ok_or_else(|| AcmeError::Setup("no domain to certify (set acme.domain)".into()))?;
    let (cert_path, key_path) = reloader.paths();
    let current = tls::inspect_file(cert_path).map_err(|e| e.to_string());
    let reason = renewal_reason(
        current.as_ref().map_err(String::as_str),
        &domain,
        config.acme.renew_days,
    );
    let Some(reason) = reason else {
        let info = current.expect("no reason means the certificate was read");
        let due = info.remaining() - time::Duration::days(config.acme.renew_days as i64);
        let wait = Duration::try_from(due).unwrap_or_default();
        return Ok(Renewal::NotDue(wait.min(MAX_CHECK_INTERVAL)));
    };
    log::info!("ACME: requesting a certificate for {domain}: {reason}");
    let issued = issue(config, &domain, challenges).await?;
    store_pair(cert_path, key_path, &issued.cert_chain_pem, &issued.key_pem)?;
    reloader.reload().map_err(|e| AcmeError::Store {
        what: "certificate",
        path: cert_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let info = tls::inspect_file(cert_path).map_err(|e| AcmeError::Store {
        what: "certificate",
        path: cert_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    log::info!(
        "ACME: now serving a certificate for {domain} valid until {}",
        info.not_after
    );
    Ok(Renewal::Renewed(info))
}

/// Delays after failed attempts; the last one repeats. Public CAs limit failed
/// validations per hour, so this starts at minutes, not seconds.
const RETRY_DELAYS: [u64; 4] = [300, 900, 3600, 6 * 3600];

/// The background task the service runs with `[acme] enabled = true`: renews when due,
/// retries failures on a widening schedule, and ends when `stop` turns true.
pub async fn renewal_task(
    config: Arc<Config>,
    challenges: Arc<Challenges>,
    reloader: Arc<ReloadableCert>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0usize;
    loop {
        let wait = match renew_if_due(&config, &challenges, &reloader).await {
            Ok(Renewal::Renewed(_)) => {
                failures = 0;
                // Re-check soon after a renewal, but never in a tight loop.
                Duration::from_secs(3600)
            }
            Ok(Renewal::NotDue(wait)) => {
                failures = 0;
                wait.max(Duration::from_secs(60))
            }
            Err(e) => {
                let delay = RETRY_DELAYS[failures.min(RETRY_DELAYS.len() - 1)];
                failures += 1;
                log::error!("{e}; keeping the current certificate and retrying in {delay}s");
                Duration::from_secs(delay)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// A freshly issued certificate chain and its private key, both PEM.
pub struct Issued {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

/// Runs one complete ACME order for `domain`, answering its challenge through
/// `challenges` (which the caller's listeners must be serving).
pub async fn issue(
    config: &Config,
    domain: &str,
    challenges: &Challenges,
) -> Result<Issued, AcmeError> {
    let result = issue_inner(config, domain, challenges).await;
    challenges.clear();
    result
}

async fn issue_inner(
    config: &Config,
    domain: &str,
    challenges: &Challenges,
) -> Result<Issued, AcmeError> {
    let acme = &config.acme;
    let directory = acme.directory_url.clone();
    let protocol = |source: instant_acme::Error| AcmeError::Protocol {
        directory: directory.clone(),
        source,
    };
    let account = account(config).await?;
    let identifiers = [Identifier::Dns(domain.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(protocol)?;
    let wanted = match acme.challenge() {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(protocol)?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Order {
                    domain: domain.to_string(),
                    detail: format!("authorization is {other:?}"),
                });
            }
        }
        let mut challenge = authz
            .challenge(wanted.clone())
            .ok_or_else(|| AcmeError::Order {
                domain: domain.to_string(),
                detail: format!("the CA offers no {} challenge", acme.challenge),
            })?;
        let key_authorization = challenge.key_authorization();
        match acme.challenge() {
            AcmeChallenge::Http01 => {
                challenges.set_http01(&challenge.token, key_authorization.as_str())
            }
            AcmeChallenge::TlsAlpn01 => {
                challenges.set_tls_alpn01(domain, key_authorization.digest().as_ref())?
            }
        }
        challenge.set_ready().await.map_err(protocol)?;
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let status = order.poll_ready(&retry).await.map_err(protocol)?;
    if status != OrderStatus::Ready {
        let detail = order_problem(&mut order).await;
        return Err(AcmeError::Order {
            domain: domain.to_string(),
            detail: format!("order is {status:?}{detail}"),
        });
    }
    let key_pem = order.finalize().await.map_err(protocol)?;
    let cert_chain_pem = order.poll_certificate(&retry).await.map_err(protocol)?;
    Ok(Issued {
        cert_chain_pem,
        key_pem,
    })
}

/// The CA's explanation of a failed validation, when it gave one.
async fn order_problem(order: &mut instant_acme::Order) -> String {
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for challenge in &authz.challenges {
            if let Some(problem) = &challenge.error {
                return format!(
                    ": {}",
                    problem.detail.as_deref().unwrap_or("validation failed")
                );
            }
        }
    }
    String::new()
}

#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

fn account_path(config: &Config) -> PathBuf {
    config.data_dir().join("acme").join("account.json")
}

/// The stored account for this directory, or a new one (then stored, 0600).
async fn account(config: &Config) -> Result<Account, AcmeError> {
    let acme = &config.acme;
    let ca_file = (!acme.ca_file.is_empty()).then(|| Path::new(&acme.ca_file));
    let http = || -> Result<_, AcmeError> { Ok(Box::new(client::UreqClient::new(ca_file)?)) };
    let protocol = |source: instant_acme::Error| AcmeError::Protocol {
        directory: acme.directory_url.clone(),
        source,
    };
    let path = account_path(config);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(stored) = serde_json::from_str::<StoredAccount>(&text)
        && stored.directory_url == acme.directory_url
    {
        return Account::builder_with_http(http()?)
            .from_credentials(stored.credentials)
            .await
            .map_err(protocol);
    }
    let contact = format!("mailto:{}", acme.email);
    let contacts: Vec<&str> = if acme.email.is_empty() {
        Vec::new()
    } else {
        vec![contact.as_str()]
    };
    let (account, credentials) = Account::builder_with_http(http()?)
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            acme.directory_url.clone(),
            None,
        )
        .await
        .map_err(protocol)?;
    let stored = StoredAccount {
        directory_url: acme.directory_url.clone(),
        credentials,
    };
    let store_err = |reason: String| AcmeError::Store {
        what: "account",
        path: path.clone(),
        reason,
    };
    let dir = path.parent().expect("account path has a parent");
    std::fs::create_dir_all(dir).map_err(|e| store_err(e.to_string()))?;
    let json = serde_json::to_vec_pretty(&stored).map_err(|e| store_err(e.to_string()))?;
    tls::write_file(&path, &json, 0o600).map_err(|e| store_err(e.to_string()))?;
    log::info!("ACME: registered a new account at {}", acme.directory_url);
    Ok(account)
}

/// Replaces key and certificate files atomically (write aside, then rename), key first.
fn store_pair(cert: &Path, key: &Path, cert_pem: &str, key_pem: &str) -> Result<(), AcmeError> {
    for (path, contents, mode, what) in [
        (key, key_pem, 0o600, "private key"),
        (cert, cert_pem, 0o644, "certificate"),
    ] {
        let aside = path.with_extension("acme-new");
        let store_err = |reason: String| AcmeError::Store {
            what,
            path: path.to_path_buf(),
            reason,
        };
        tls::write_file(&aside, contents.as_bytes(), mode).map_err(|e| store_err(e.to_string()))?;
        std::fs::rename(&aside, path).map_err(|e| store_err(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_reasons() {
        let now = time::OffsetDateTime::now_utc();
        let mut info = CertInfo {
            not_before: now - time::Duration::days(1),
            not_after: now + time::Duration::days(60),
            names: vec!["pbx.example.com".into()],
            self_signed: false,
        };
        assert_eq!(renewal_reason(Ok(&info), "pbx.example.com", 30), None);
        assert!(
            renewal_reason(Ok(&info), "other.example.com", 30)
                .unwrap()
                .contains("cover")
        );
        assert!(
            renewal_reason(Ok(&info), "pbx.example.com", 90)
                .unwrap()
                .contains("expires")
        );
        assert!(
            renewal_reason(Err("gone"), "pbx.example.com", 30)
                .unwrap()
                .contains("gone")
        );
        info.self_signed = true;
        assert!(
            renewal_reason(Ok(&info), "pbx.example.com", 30)
                .unwrap()
                .contains("placeholder")
        );
    }
}
