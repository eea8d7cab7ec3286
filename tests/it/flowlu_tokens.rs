//! OAuth token upkeep: refresh before expiry, "needs reconnect" on failure (page and
//! /healthz), cleared by a fresh iframe POST, and the access-token API later stages use.

use serde_json::json;

use appliance::flowlu::FlowluError;
use appliance::flowlu::tokens::{access_token, force_refresh};
use appliance::secret::Secret;

use crate::fake_flowlu::{OAUTH_TOKEN, Reply};
use crate::flowlu_support::{Ctx, crm_time, rig};
use crate::harness::eventually;

fn stored_token(r: &crate::flowlu_support::Rig, id: i64) -> (String, String, i64) {
    r.app
        .db()
        .query_row(
            "SELECT t.access_token, t.refresh_token, t.expires_at FROM flowlu_tokens t
             JOIN flowlu_integrations i ON i.id = t.integration_id AND i.token_user_id = t.user_id
             WHERE i.id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_refreshed_before_they_expire() {
    let r = rig(|c| c.flowlu.client_secret = Secret::new("app-secret")).await;
    r.fake.add_user("tok-a", "7", "Ann", "");
    let mut ctx = Ctx::new("100", "acme.flowlu.com", "tok-a");
    // Expires in a minute: inside the default 600 s margin, so due now.
    ctx.expires_at = crm_time(60);
    assert_eq!(r.open(&ctx).await.status, 200);
    let id = r.integration_id("100");
    let refresh = eventually(10, "the token refresh", async || {
        r.fake.requests_to(OAUTH_TOKEN).pop()
    })
    .await;
    assert_eq!(refresh.method, "POST");
    assert!(refresh.header("authorization").is_none());
    let form = refresh.form();
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["refresh_token"], "r-tok-a");
    assert_eq!(form["client_id"], "miniapp-1");
    assert_eq!(form["client_secret"], "app-secret");
    let (access, refresh_token, expires_at) =
        eventually(10, "the refreshed token stored", async || {
            Some(stored_token(&r, id)).filter(|(a, _, _)| a.starts_with("refreshed-"))
        })
        .await;
    assert!(refresh_token.starts_with("refresh-"));
    let now = appliance::flowlu::store::now();
    assert!(
        (now + 3500..=now + 3700).contains(&expires_at),
        "expires_in 3600 is exact"
    );

    // The API later stages use: a valid token without another refresh...
    let creds = access_token(&r.app.state.flowlu, id).await.unwrap();
    assert_eq!(creds.access_token.expose(), access);
    assert_eq!(creds.target.domain, "acme.flowlu.com");
    assert_eq!(creds.integration.account_id, "100");
    assert_eq!(r.fake.count(OAUTH_TOKEN), 1);
    // ...a 401 on a token that was already replaced does not refresh again...
    let creds = force_refresh(&r.app.state.flowlu, id, &Secret::new("tok-a"))
        .await
        .unwrap();
    assert_eq!(creds.access_token.expose(), access);
    assert_eq!(r.fake.count(OAUTH_TOKEN), 1);
    // ...and a 401 on the current token refreshes exactly once, even when two ask.
    let rejected = Secret::new(access.clone());
    let (x, y) = tokio::join!(
        force_refresh(&r.app.state.flowlu, id, &rejected),
        force_refresh(&r.app.state.flowlu, id, &rejected)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.access_token, y.access_token);
    assert_ne!(x.access_token.expose(), access);
    assert_eq!(r.fake.count(OAUTH_TOKEN), 2);
    assert_eq!(stored_token(&r, id).0, x.access_token.expose());
    let health = r.app.get("/healthz").await.json();
    assert_eq!(health["flowlu"]["needs_reconnect"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_needs_reconnect_until_a_fresh_iframe_post() {
    let r = rig(|_| {}).await;
    r.fake.set_reply(
        OAUTH_TOKEN,
        Reply::json(
            400,
            json!({"error": "invalid_grant", "error_description": "expired"}),
        ),
    );
    r.fake.add_user("tok-a", "7", "Ann", "");
    let mut ctx = Ctx::new("100", "acme.flowlu.com", "tok-a");
    ctx.expires_at = crm_time(60);
    assert_eq!(r.open(&ctx).await.status, 200);
    let id = r.integration_id("100");
    let health = eventually(10, "needs_reconnect in /healthz", async || {
        let h = r.app.get("/healthz").await.json();
        (h["flowlu"]["needs_reconnect"] == 1).then_some(h)
    })
    .await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["flowlu"]["integrations"], 1);
    let text = health.to_string();
    assert!(
        !text.contains("acme") && !text.contains("100\""),
        "no account details: {text}"
    );
    assert!(matches!(
        access_token(&r.app.state.flowlu, id).await,
        Err(FlowluError::NeedsReconnect(i)) if i == id
    ));
    assert_eq!(r.fake.count(OAUTH_TOKEN), 1);
    // The page says so (the same token again: fast path, not a fresh one).
    let page = r.open(&ctx).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("id=\"needs-reconnect\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("invalid_grant"));
    // Flowlu opens the page again with fresh tokens: the state clears.
    r.fake.clear_reply(OAUTH_TOKEN);
    r.fake.add_user("tok-fresh", "7", "Ann", "");
    let mut fresh = ctx.clone();
    fresh.token = "tok-fresh".into();
    fresh.expires_at = crm_time(7200);
    let page = r.open(&fresh).await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("id=\"needs-reconnect\""));
    let health = r.app.get("/healthz").await.json();
    assert_eq!(health["flowlu"]["needs_reconnect"], 0);
    let creds = access_token(&r.app.state.flowlu, id).await.unwrap();
    assert_eq!(creds.access_token.expose(), "tok-fresh");
    assert_eq!(
        r.fake.count(OAUTH_TOKEN),
        1,
        "a fresh token needs no refresh"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_with_flowlu_down_needs_reconnect_and_is_retried() {
    let r = rig(|_| {}).await;
    r.fake.set_reply(OAUTH_TOKEN, Reply::status(503));
    r.fake.add_user("tok-a", "7", "Ann", "");
    let mut ctx = Ctx::new("100", "acme.flowlu.com", "tok-a");
    ctx.expires_at = crm_time(-60);
    assert_eq!(r.open(&ctx).await.status, 200);
    let id = r.integration_id("100");
    eventually(10, "needs_reconnect after a failed refresh", async || {
        let h = r.app.get("/healthz").await.json();
        (h["flowlu"]["needs_reconnect"] == 1).then_some(())
    })
    .await;
    // A transient failure keeps a retry scheduled (a refusal would not).
    let (failures, retry_at): (i64, Option<i64>) = r
        .app
        .db()
        .query_row(
            "SELECT refresh_failures, retry_at FROM flowlu_tokens WHERE integration_id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(failures, 1);
    let now = appliance::flowlu::store::now();
    assert!(
        retry_at.is_some_and(|t| t > now && t <= now + 31),
        "{retry_at:?}"
    );
    assert!(matches!(
        access_token(&r.app.state.flowlu, id).await,
        Err(FlowluError::NeedsReconnect(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_in_use_follows_the_installed_app_version() {
    let r = rig(|_| {}).await;
    r.fake.add_user("ann-v1", "7", "Ann", "");
    r.fake.add_user("bob-v1", "8", "Bob", "");
    r.fake.add_user("bob-v2", "8", "Bob", "");
    let ann = Ctx::new("100", "acme.flowlu.com", "ann-v1");
    assert_eq!(r.open(&ann).await.status, 200);
    let mut bob = Ctx::new("100", "acme.flowlu.com", "bob-v1");
    assert_eq!(r.open(&bob).await.status, 200);
    let id = r.integration_id("100");
    // The first user's token is the one in use; another user does not take it over.
    let creds = access_token(&r.app.state.flowlu, id).await.unwrap();
    assert_eq!(creds.access_token.expose(), "ann-v1");
    // The app is updated and Bob opens it first: Ann has no token for 1.1.0, Bob's is used.
    bob.version = "1.1.0".into();
    bob.token = "bob-v2".into();
    assert_eq!(r.open(&bob).await.status, 200);
    let creds = access_token(&r.app.state.flowlu, id).await.unwrap();
    assert_eq!(creds.access_token.expose(), "bob-v2");
    assert_eq!(creds.integration.app_version, "1.1.0");
}
