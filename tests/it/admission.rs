//! Issue 12, written as the attack: a stranger Flowlu account with a valid token of its
//! own opens the settings iframe of an appliance it was never admitted to.

use appliance::flowlu::admission;

use crate::flowlu_support::{Ctx, Rig, hidden_field, notice_of, rig};

const STRANGER: &str = "stranger.flowlu.com";

/// Every row that could hold something of an account, its users or tokens.
fn stored_for(r: &Rig, domain: &str) -> Vec<(&'static str, i64)> {
    [
        (
            "flowlu_integrations",
            "SELECT count(*) FROM flowlu_integrations WHERE domain = ?1 OR account_id = '777'",
        ),
        (
            "flowlu_users",
            "SELECT count(*) FROM flowlu_users WHERE name = 'Mallory' OR integration_id IN
             (SELECT id FROM flowlu_integrations WHERE domain = ?1)",
        ),
        (
            "flowlu_tokens",
            "SELECT count(*) FROM flowlu_tokens WHERE domain = ?1 OR access_token LIKE 'tok-777%'",
        ),
        (
            "flowlu_admissions",
            "SELECT count(*) FROM flowlu_admissions WHERE domain = ?1",
        ),
    ]
    .into_iter()
    .map(|(table, sql)| {
        let n = r
            .app
            .db()
            .query_row(sql, [domain], |row| row.get(0))
            .unwrap();
        (table, n)
    })
    .collect()
}

fn nothing_stored(r: &Rig, domain: &str) {
    for (table, n) in stored_for(r, domain) {
        assert_eq!(n, 0, "{table} holds {n} row(s) for {domain}");
    }
    for table in ["flowlu_settings", "flowlu_extensions", "pbx_settings"] {
        assert_eq!(
            r.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
}

/// The hidden `pending` field of the refusal page's claim form.
fn pending_of(page: &str) -> String {
    hidden_field(page, "pending")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_account_is_refused_and_nothing_is_stored_for_it() {
    let r = rig(|_| {}).await;
    r.fake.add_user_at("tok-777", STRANGER, "1", "Mallory");
    let ctx = Ctx::new("777", STRANGER, "tok-777");
    // JSON and form bodies alike.
    for resp in [
        r.open(&ctx).await,
        r.post_form(
            "/integration/settings",
            &ctx.fields(false)
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await,
    ] {
        assert_eq!(resp.status, 403, "{}", resp.body);
        assert!(
            resp.body.contains(
                "This appliance is not set up for your Flowlu account; ask its administrator."
            ),
            "{}",
            resp.body
        );
        // No claim code is pending: no form to type one into.
        assert!(!resp.body.contains("claim_code"), "{}", resp.body);
        assert!(!resp.body.contains("name=\"session\""));
        // It may be shown in the stranger's own Flowlu iframe, and nowhere else.
        let csp = resp.header("content-security-policy").unwrap();
        assert!(
            csp.contains("frame-ancestors https://stranger.flowlu.com"),
            "{csp}"
        );
    }
    // Its token was not even checked with Flowlu: nothing was sent anywhere.
    assert!(r.fake.requests().is_empty(), "{:?}", r.fake.requests());
    nothing_stored(&r, STRANGER);

    // An admitted account on the same appliance works as before.
    r.fake.add_user("tok-acme", "7", "Ann", "");
    let ok = r
        .open(&Ctx::new("100", "acme.flowlu.com", "tok-acme"))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(r.count("SELECT count(*) FROM flowlu_integrations"), 1);
    assert_eq!(r.count("SELECT count(*) FROM flowlu_tokens"), 1);
    for (table, n) in stored_for(&r, STRANGER) {
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_claim_code_admits_exactly_one_account_once() {
    let r = rig(|_| {}).await;
    let code = admission::new_claim_code(&r.app.db()).unwrap();
    r.fake.add_user_at("tok-777", STRANGER, "1", "Mallory");
    let refused = r.open(&Ctx::new("777", STRANGER, "tok-777")).await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body.contains("id=\"claim_code\""),
        "{}",
        refused.body
    );
    let pending = pending_of(&refused.body);
    assert!(
        !refused.body.contains(&code),
        "the code itself is never shown"
    );

    // A wrong code: refused, nothing admitted, the real code still valid.
    let claim = |pending: String, code: String| {
        let r = &r;
        async move {
            r.post_form(
                "/integration/settings/claim",
                &[("pending", &pending), ("claim_code", &code), ("lang", "en")],
            )
            .await
        }
    };
    let wrong = claim(pending.clone(), "AAAA-BBBB-CCCC-DDDD-EEEE".into()).await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert_eq!(
        notice_of(&wrong.body).unwrap(),
        "That claim code is not right."
    );
    nothing_stored(&r, STRANGER);
    // A forged or tampered pending note names no account.
    let forged = claim(format!("{pending}x"), code.clone()).await;
    assert_eq!(forged.status, 403);
    nothing_stored(&r, STRANGER);

    // The right code, typed loosely: admitted. The page holds no token or session.
    let typed = code.to_lowercase().replace('-', " ");
    let done = claim(pending.clone(), typed).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(
        notice_of(&done.body)
            .unwrap()
            .starts_with("The account is admitted.")
    );
    assert!(!done.body.contains("tok-777") && !done.body.contains("name=\"session\""));
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_admissions WHERE domain = 'stranger.flowlu.com' AND source = 'claim'"),
        1
    );
    // Reopening the settings now works and stores the account.
    let page = r.open(&Ctx::new("777", STRANGER, "tok-777")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(r.count("SELECT count(*) FROM flowlu_integrations"), 1);

    // Once: the same code admits nobody else, and no form is offered any more.
    r.fake
        .add_user_at("tok-888", "other.flowlu.com", "2", "Oscar");
    let other = r
        .open(&Ctx::new("888", "other.flowlu.com", "tok-888"))
        .await;
    assert_eq!(other.status, 403);
    assert!(!other.body.contains("id=\"claim_code\""), "{}", other.body);
    let again = claim(pending, code).await;
    assert_eq!(again.status, 403);
    assert!(
        notice_of(&again.body)
            .unwrap()
            .starts_with("No claim code is pending")
    );
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_admissions WHERE domain = 'other.flowlu.com'"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_account_loses_its_page_channel_and_tokens() {
    let r = rig(|_| {}).await;
    r.fake.add_user("tok-acme", "7", "Ann", "");
    let ctx = Ctx::new("100", "acme.flowlu.com", "tok-acme");
    let session = r.session(&ctx).await;
    let connected = r.act("connect", &session, &[("channel_name", "PBX")]).await;
    assert_eq!(connected.status, 200, "{}", connected.body);
    let secret_before: String = r
        .app
        .db()
        .query_row(
            "SELECT webhook_secret FROM flowlu_integrations",
            [],
            |row| row.get(0),
        )
        .unwrap();

    assert_eq!(
        admission::revoke(&mut r.app.db(), "acme.flowlu.com").unwrap(),
        Some(1)
    );
    // The open page's forms stop working, and reopening it is refused.
    let form = r
        .act("calls", &session, &[("incoming_routing", "pbx")])
        .await;
    assert_eq!(form.status, 403, "{}", form.body);
    assert_eq!(r.open(&ctx).await.status, 403);
    // Its tokens are gone, the channel forgotten under a new webhook secret.
    assert_eq!(r.count("SELECT count(*) FROM flowlu_tokens"), 0);
    let (uuid, secret): (Option<String>, String) = r
        .app
        .db()
        .query_row(
            "SELECT telephony_uuid, webhook_secret FROM flowlu_integrations",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(uuid, None);
    assert_ne!(secret, secret_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_pbx_owner_admits_more_accounts_on_the_settings_page() {
    let r = rig(|_| {}).await;
    r.fake.add_user("tok-a", "7", "Ann", "");
    r.fake.add_user("tok-b", "9", "Bea", "");
    // beta is admitted but does not own the PBX: it sees no other account, admits none.
    let beta = r.open(&Ctx::new("200", "beta.flowlu.com", "tok-b")).await;
    assert!(!beta.body.contains("id=\"accounts\""), "{}", beta.body);
    assert!(!beta.body.contains("acme.flowlu.com"));
    let beta = crate::flowlu_support::session_of(&beta.body);
    let refused = r
        .act("accounts-admit", &beta, &[("domain", "newco.flowlu.com")])
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_admissions WHERE domain = 'newco.flowlu.com'"),
        0
    );
    // acme (admitted first: the PBX owner) sees the list and admits newco.
    let acme = r.open(&Ctx::new("100", "acme.flowlu.com", "tok-a")).await;
    assert!(
        acme.body.contains("<li>beta.flowlu.com</li>"),
        "{}",
        acme.body
    );
    let acme = crate::flowlu_support::session_of(&acme.body);
    let bad = r
        .act("accounts-admit", &acme, &[("domain", "evil.com")])
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    let done = r
        .act("accounts-admit", &acme, &[("domain", "NewCo.flowlu.com")])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(notice_of(&done.body).unwrap(), "Account admitted.");
    assert!(done.body.contains("<li>newco.flowlu.com</li>"));
    r.fake.add_user_at("tok-n", "newco.flowlu.com", "3", "Nia");
    let newco = r.open(&Ctx::new("300", "newco.flowlu.com", "tok-n")).await;
    assert_eq!(newco.status, 200, "{}", newco.body);
}
