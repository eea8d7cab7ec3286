//! The settings iframe's Flowlu side: identifying who opened it (the two-way lookup),
//! storing their tokens, and registering or forgetting the telephony channel.

use super::admission;
use super::client::ChannelRequest;
use super::context::IframeContext;
use super::domain::{self, CrmTarget};
use super::store::{self, Integration};
use super::tokens::fast_hash;
use super::{Flowlu, FlowluError};
use crate::secret;

/// Channel name sent to telephony/create when the admin gave none.
pub const DEFAULT_CHANNEL_NAME: &str = "PBX";

/// Who opened the settings iframe.
#[derive(Debug, Clone)]
pub struct Identified {
    pub integration: Integration,
    pub user_id: String,
    /// True when the token was recognised without calling Flowlu.
    pub fast_path: bool,
}

/// The iframe POST's lookup [doc]: the fast path recognises a token Flowlu accepted
/// before (hash of access token + domain + app version); the slow path asks Flowlu
/// (core/user/get) and stores the user and tokens, removing those of other app
/// versions. Nothing is stored unless one of the two succeeded, and nothing is sent
/// anywhere unless the domain passed the allow-list and the account is admitted
/// ([`admission`]; an admitted account renamed in Flowlu is followed once its token
/// confirms the rename).
pub async fn identify(flowlu: &Flowlu, ctx: &IframeContext) -> Result<Identified, FlowluError> {
    let config = &flowlu.config;
    let target = domain::target(config, &ctx.domain, ctx.https)?;
    let renamed_from = check_admitted(flowlu, ctx, &target).await?;
    let hash = fast_hash(&ctx.access_token, &target.domain, &ctx.app_version);

    if let Some(found) = fast_path(flowlu, ctx, &target, hash.clone()).await? {
        return Ok(found);
    }

    let user = flowlu.client.get_user(&target, &ctx.access_token).await?;
    let existing = {
        let (platform, account, app) = (
            target.platform.clone(),
            ctx.account_id.clone(),
            ctx.app_id.clone(),
        );
        flowlu
            .db
            .run(move |c| store::find_integration(c, &platform, &account, &app))
            .await?
    };
    if let Some(existing) = &existing
        && existing.domain != target.domain
    {
        confirm_domain_change(flowlu, ctx, existing, &user.id).await?;
    }
    if renamed_from.is_some() && existing.is_none() {
        // The integration went away in the meantime: nothing confirms the rename.
        return Err(FlowluError::NotAdmitted(target.domain.clone()));
    }

    let ctx2 = ctx.clone();
    let target2 = target.clone();
    let user2 = user.clone();
    let (integration, removed) = flowlu
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            if let Some(old) = &renamed_from {
                admission::rename(&tx, old, &target2.domain)?;
            }
            let integration = store::upsert_integration(&tx, &ctx2, &target2)?;
            store::upsert_seen_user(&tx, integration.id, &user2.id, &user2.name, &user2.email)?;
            store::upsert_token(
                &tx,
                integration.id,
                &user2.id,
                &target2.domain,
                &ctx2.app_version,
                &ctx2.access_token,
                &ctx2.refresh_token,
                ctx2.expires_at,
                &hash,
            )?;
            let removed = store::delete_other_versions(
                &tx,
                integration.id,
                &user2.id,
                &target2.domain,
                &ctx2.app_version,
            )?;
            // A fresh token Flowlu just accepted: use it when the integration has no
            // usable one (none yet, none for this domain and app version, or one that
            // could not be refreshed: this clears "needs reconnect"), or when it is the
            // token user's own new token.
            let token_user = integration.token_user_id.clone();
            let usable = match &token_user {
                Some(u) => store::token_for_user(&tx, integration.id, u)?.is_some(),
                None => false,
            };
            if !usable || integration.needs_reconnect || token_user.as_deref() == Some(&user2.id) {
                store::use_token_of(&tx, integration.id, &user2.id)?;
            }
            let integration = store::integration(&tx, integration.id)?.expect("exists");
            tx.commit()?;
            Ok::<_, FlowluError>((integration, removed))
        })
        .await?;
    log::info!(
        "integration {}: Flowlu user {} identified by core/user/get{}",
        integration.id,
        user.id,
        if removed > 0 {
            format!("; removed {removed} token(s) of other app versions")
        } else {
            String::new()
        }
    );
    flowlu.refresh_wake.notify_one();
    // Fresh tokens: events held while the account needed a reconnect can go now.
    flowlu.outbox.release(integration.id).await;
    Ok(Identified {
        integration,
        user_id: user.id,
        fast_path: false,
    })
}

/// Refuses an account the operator did not admit, before anything is stored or sent.
/// `Some(old domain)` when the account is not admitted under this domain but its stored
/// integration is, under `old`: a renamed subdomain, which the caller must confirm.
async fn check_admitted(
    flowlu: &Flowlu,
    ctx: &IframeContext,
    target: &CrmTarget,
) -> Result<Option<String>, FlowluError> {
    let (domain, platform, account, app) = (
        target.domain.clone(),
        target.platform.clone(),
        ctx.account_id.clone(),
        ctx.app_id.clone(),
    );
    let verdict = flowlu
        .db
        .run(move |c| {
            if admission::is_admitted(c, &domain)? {
                return Ok(Ok(None));
            }
            if let Some(existing) = store::find_integration(c, &platform, &account, &app)?
                && existing.domain != domain
                && admission::is_admitted(c, &existing.domain)?
            {
                return Ok(Ok(Some(existing.domain)));
            }
            Ok::<_, FlowluError>(Err(()))
        })
        .await?;
    verdict.map_err(|()| {
        log::warn!(
            "settings refused for {} (account {:?}): not admitted to this appliance",
            target.domain,
            ctx.account_id
        );
        FlowluError::NotAdmitted(target.domain.clone())
    })
}

/// A stored token with the same hash, for the same account, domain and version: the
/// user is known without calling Flowlu. Updates only what the POST says about the
/// installation (placement, language, rate limit), never the tokens.
async fn fast_path(
    flowlu: &Flowlu,
    ctx: &IframeContext,
    target: &CrmTarget,
    hash: String,
) -> Result<Option<Identified>, FlowluError> {
    let ctx = ctx.clone();
    let target = target.clone();
    flowlu
        .db
        .run(move |c| {
            let Some(row) = store::find_by_fast_hash(c, &hash)? else {
                return Ok(None);
            };
            let Some(integration) = store::integration(c, row.integration_id)? else {
                return Ok(None);
            };
            let same = secret::constant_time_eq(
                row.access_token.expose().as_bytes(),
                ctx.access_token.expose().as_bytes(),
            ) && row.domain == target.domain
                && row.app_version == ctx.app_version
                && integration.platform == target.platform
                && integration.account_id == ctx.account_id
                && integration.app_id == ctx.app_id
                && integration.domain == target.domain;
            if !same {
                return Ok(None);
            }
            let integration = store::upsert_integration(c, &ctx, &target)?;
            Ok::<_, FlowluError>(Some(Identified {
                integration,
                user_id: row.user_id,
                fast_path: true,
            }))
        })
        .await
}

/// The account id in the POST matches an integration registered under another domain.
/// Only the token can prove it is the same account (a renamed subdomain), not a
/// stranger quoting someone else's account id: the token must also work at the old
/// domain, for the same user. Otherwise the stored integration is left alone.
async fn confirm_domain_change(
    flowlu: &Flowlu,
    ctx: &IframeContext,
    existing: &Integration,
    user_id: &str,
) -> Result<(), FlowluError> {
    let refuse = || {
        FlowluError::Conflict(format!(
            "Flowlu account {} is connected to this appliance under {}, and this request \
             comes from {}; the change of address could not be confirmed, so nothing was \
             changed. Open the settings from {} or ask the appliance operator.",
            existing.account_id, existing.domain, ctx.domain, existing.domain
        ))
    };
    let old =
        domain::target(&flowlu.config, &existing.domain, existing.https).map_err(|_| refuse())?;
    match flowlu.client.get_user(&old, &ctx.access_token).await {
        Ok(user) if user.id == user_id => {
            log::info!(
                "integration {}: domain changed from {} to {}",
                existing.id,
                existing.domain,
                ctx.domain
            );
            Ok(())
        }
        Ok(_) | Err(FlowluError::Rejected(_)) | Err(FlowluError::Api(_)) => Err(refuse()),
        Err(e) => Err(e),
    }
}

/// What Connect did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connected {
    /// telephony/create registered a channel with this uuid.
    Registered(String),
    /// A channel was registered before; nothing was sent.
    AlreadyRegistered(String),
}

/// Registers the telephony channel with `user_id`'s token, once: a second Connect (or
/// two at once) finds the stored uuid and sends nothing. The connecting user's token
/// becomes the one the appliance uses.
pub async fn connect(
    flowlu: &Flowlu,
    integration_id: i64,
    user_id: &str,
) -> Result<Connected, FlowluError> {
    let public_url = flowlu
        .public_url()
        .ok_or(FlowluError::NoPublicUrl)?
        .to_string();
    let lock = flowlu.lock(integration_id);
    let _guard = lock.lock().await;
    let uid = user_id.to_string();
    let (integration, token, settings) = flowlu
        .db
        .run(move |c| {
            let integration = store::integration(c, integration_id)?
                .ok_or(FlowluError::UnknownIntegration(integration_id))?;
            let token = store::token_for_user(c, integration_id, &uid)?;
            let settings = store::settings(c, integration_id)?;
            Ok::<_, FlowluError>((integration, token, settings))
        })
        .await?;
    if let Some(uuid) = integration.telephony_uuid {
        return Ok(Connected::AlreadyRegistered(uuid));
    }
    let token = token.ok_or(FlowluError::NoToken(integration_id))?;
    let target = integration.target(&flowlu.config)?;
    let name = match settings.channel_name.trim() {
        "" => DEFAULT_CHANNEL_NAME.to_string(),
        name => name.to_string(),
    };
    let request = ChannelRequest {
        name,
        ref_id: integration.app_id.clone(),
        webhook_url: format!(
            "{public_url}{}",
            super::paths::webhook(integration.id, integration.webhook_secret.expose())
        ),
        icon_url: format!("{public_url}/assets/icon.svg"),
        can_redirect: true,
        manifest_id: integration.placement_id.clone(),
    };
    let uuid = flowlu
        .client
        .create_channel(&target, &token.access_token, &request)
        .await?;
    let (uuid2, uid) = (uuid.clone(), user_id.to_string());
    flowlu
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            store::set_telephony_uuid(&tx, integration_id, Some(&uuid2))?;
            store::use_token_of(&tx, integration_id, &uid)?;
            tx.commit()?;
            Ok::<_, FlowluError>(())
        })
        .await?;
    log::info!("integration {integration_id}: telephony channel registered");
    flowlu.outbox.release(integration_id).await;
    flowlu.refresh_wake.notify_one();
    Ok(Connected::Registered(uuid))
}

/// Forgets the registered channel (and replaces the webhook secret, so the old channel
/// can no longer reach us). Returns whether there was one.
pub async fn disconnect(flowlu: &Flowlu, integration_id: i64) -> Result<bool, FlowluError> {
    let lock = flowlu.lock(integration_id);
    let _guard = lock.lock().await;
    flowlu
        .db
        .run(move |c| {
            let had = store::integration(c, integration_id)?
                .ok_or(FlowluError::UnknownIntegration(integration_id))?
                .telephony_uuid
                .is_some();
            if had {
                store::set_telephony_uuid(c, integration_id, None)?;
                log::info!("integration {integration_id}: telephony channel forgotten");
            }
            Ok(had)
        })
        .await
}
