//! `POST /integration/settings`: the iframe Flowlu opens. Input shapes, validation, the
//! domain allow-list, the two-way user lookup and token storage.

use std::time::Duration;

use serde_json::json;

use crate::fake_flowlu::{DOMAIN_HEADER, OAUTH_TOKEN, Reply, USER_GET};
use crate::flowlu_support::{BOUNDARY, Ctx, multipart, rig, session_of, urlencode};

const IFRAME: &str = "/integration/settings";

fn assert_frame_headers(resp: &crate::harness::Resp, origin: &str) {
    let csp = resp.header("content-security-policy").unwrap();
    assert!(
        csp.contains(&format!("frame-ancestors {origin}")),
        "frame-ancestors must name {origin}: {csp}"
    );
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert!(resp.header("x-frame-options").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_input_shape_opens_the_page() {
    let r = rig(|_| {}).await;
    let shapes: Vec<(&str, String, Vec<u8>)> = {
        let mut v = Vec::new();
        for (i, shape) in [
            "json",
            "brackets",
            "dots",
            "multipart",
            "json-field",
            "json-field-multipart",
        ]
        .iter()
        .enumerate()
        {
            let ctx = Ctx::new("100", "acme.flowlu.com", &format!("tok-{i}"));
            r.fake
                .add_user(&ctx.token, &format!("{}", 10 + i), &format!("User {i}"), "");
            let json_field = vec![("data".to_string(), ctx.json().to_string())];
            let (ct, body) = match *shape {
                "json" => (
                    "application/json".to_string(),
                    ctx.json().to_string().into_bytes(),
                ),
                "brackets" => (
                    "application/x-www-form-urlencoded".into(),
                    urlencode(&ctx.fields(false)),
                ),
                "dots" => (
                    "application/x-www-form-urlencoded".into(),
                    urlencode(&ctx.fields(true)),
                ),
                "multipart" => (
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                    multipart(&ctx.fields(false)),
                ),
                "json-field" => (
                    "application/x-www-form-urlencoded".into(),
                    urlencode(&json_field),
                ),
                _ => (
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                    multipart(&json_field),
                ),
            };
            v.push((*shape, ct, body));
        }
        v
    };
    for (i, (shape, content_type, body)) in shapes.into_iter().enumerate() {
        let resp = r
            .app
            .request(
                "POST",
                IFRAME,
                &[("content-type", &content_type)],
                Some(body),
            )
            .await;
        assert_eq!(resp.status, 200, "{shape}: {}", resp.body);
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/html"),
            "{shape}"
        );
        assert_frame_headers(&resp, "https://acme.flowlu.com");
        assert!(resp.body.contains(&format!("User {i}")), "{shape}");
        // One plain-text title, and each section once.
        let title = resp.body.split("<title>").nth(1).unwrap();
        assert!(
            !title.split("</title>").next().unwrap().contains('<'),
            "{title}"
        );
        assert_eq!(
            resp.body
                .matches("<details class=\"card\" id=\"events\"")
                .count(),
            1
        );
        assert!(!session_of(&resp.body).is_empty());
        let token = format!("tok-{i}");
        assert!(
            !resp.body.contains(&token),
            "{shape}: the token leaked into the page"
        );
        // The lookup went to the fake with the Bearer token, for the account's domain.
        let lookup = r.fake.requests_to(USER_GET).pop().unwrap();
        assert_eq!(lookup.method, "GET");
        assert_eq!(
            lookup.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(lookup.header(DOMAIN_HEADER), Some("acme.flowlu.com"));
    }
    assert_eq!(r.fake.count(USER_GET), 6);
    // One account, six users, six tokens; no token in the access log's paths either.
    assert_eq!(r.count("SELECT count(*) FROM flowlu_integrations"), 1);
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_users WHERE seen = 1"),
        6
    );
    assert_eq!(r.count("SELECT count(*) FROM flowlu_tokens"), 6);
    let (domain, ratelimit, placement): (String, i64, String) = r
        .app
        .db()
        .query_row(
            "SELECT domain, ratelimit, placement_id FROM flowlu_integrations",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (domain.as_str(), ratelimit, placement.as_str()),
        ("acme.flowlu.com", 16, "placement-9")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn russian_is_chosen_by_language() {
    let r = rig(|_| {}).await;
    let mut ctx = Ctx::new("100", "acme.flowlu.com", "tok-ru");
    ctx.language = "ru".into();
    r.fake.add_user(&ctx.token, "1", "Иван", "");
    let page = r.open(&ctx).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html lang=\"ru\">"));
    assert!(page.body.contains("Телефония АТС"), "{}", page.body);
    assert!(page.body.contains("name=\"lang\" value=\"ru\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn validation_failures_are_clear_pages_and_call_nobody() {
    let r = rig(|_| {}).await;
    let base = Ctx::new("100", "acme.flowlu.com", "sekrit-1");
    r.fake.add_user("sekrit-1", "1", "U", "");
    let mut cases: Vec<(serde_json::Value, u16, &str)> = Vec::new();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.json();
        f(&mut v);
        v
    };
    cases.push((
        with(&|v| v["auth"]["access_token"] = json!("")),
        422,
        "auth.access_token",
    ));
    cases.push((
        with(&|v| v["auth"].as_object_mut().unwrap().clear()),
        422,
        "auth.access_token",
    ));
    cases.push((with(&|v| v["account"] = json!({})), 422, "account.id"));
    cases.push((
        with(&|v| v["app"]["version"] = json!("")),
        422,
        "app.version",
    ));
    cases.push((with(&|v| v["placement"] = json!(null)), 422, "placement.id"));
    cases.push((
        with(&|v| v["auth"]["expires_at"] = json!("someday")),
        422,
        "auth.expires_at",
    ));
    cases.push((with(&|v| v["https"] = json!("0")), 422, "https"));
    cases.push((with(&|v| v["https"] = json!("maybe")), 422, "https"));
    cases.push((
        with(&|v| v["ratelimit"]["limit"] = json!("lots")),
        422,
        "ratelimit.limit",
    ));
    cases.push((with(&|v| v["domain"] = json!("")), 422, "domain"));
    for (body, status, needle) in cases {
        let resp = r.post_json(IFRAME, &body).await;
        assert_eq!(resp.status, status, "{body}: {}", resp.body);
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        assert!(resp.body.contains(needle), "{needle}: {}", resp.body);
        assert!(!resp.body.contains("sekrit"), "{}", resp.body);
    }
    for (ct, body) in [
        ("application/json", "{not json"),
        ("application/json", "[1,2]"),
        (
            "application/x-www-form-urlencoded",
            "domain=a.flowlu.com&domain=b.flowlu.com",
        ),
        ("multipart/form-data; boundary=x", "garbage"),
        ("multipart/form-data", "--x--"),
    ] {
        let resp = r
            .app
            .request("POST", IFRAME, &[("content-type", ct)], Some(body.into()))
            .await;
        assert_eq!(resp.status, 400, "{ct} {body}: {}", resp.body);
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
    }
    assert!(r.fake.requests().is_empty(), "{:?}", r.fake.requests());
    assert_eq!(r.count("SELECT count(*) FROM flowlu_integrations"), 0);
}

/// A JSON key given twice (at the top or nested, in a JSON body or in the one form field
/// that carries the whole context) is a 400, as a form field given twice is: one request
/// must never have two readings. Nothing is asked of Flowlu and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_key_given_twice_is_a_400_and_stores_nothing() {
    let r = rig(|_| {}).await;
    let ctx = Ctx::new("100", "acme.flowlu.com", "sekrit-1");
    r.fake.add_user("sekrit-1", "1", "U", "");
    let text = ctx.json().to_string();
    assert!(
        text.starts_with('{') && text.contains("\"auth\":{"),
        "{text}"
    );
    let top = text.replacen('{', "{\"domain\":\"other.flowlu.com\",", 1);
    let nested = text.replacen("\"auth\":{", "\"auth\":{\"access_token\":\"sekrit-2\",", 1);
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("data", &nested);
    let embedded = form.finish();
    for (ct, body) in [
        ("application/json", top.as_str()),
        ("application/json", nested.as_str()),
        ("application/x-www-form-urlencoded", embedded.as_str()),
    ] {
        let resp = r
            .app
            .request("POST", IFRAME, &[("content-type", ct)], Some(body.into()))
            .await;
        assert_eq!(resp.status, 400, "{ct} {body}: {}", resp.body);
        assert!(resp.body.contains("given twice"), "{}", resp.body);
        assert!(!resp.body.contains("sekrit"), "{}", resp.body);
    }
    assert!(r.fake.requests().is_empty(), "{:?}", r.fake.requests());
    for table in ["flowlu_integrations", "flowlu_users", "flowlu_tokens"] {
        assert_eq!(
            r.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
    // The same context without the duplicate opens the page.
    assert_eq!(r.post_json(IFRAME, &ctx.json()).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn domains_outside_the_allow_list_are_refused_without_any_request() {
    let r = rig(|_| {}).await;
    r.fake.add_user("tok", "1", "U", "");
    for domain in [
        "127.0.0.1",
        "evil.com",
        "x.flowlu.com.evil.com",
        "x.flowlu.com:5038",
        "user@x.flowlu.com",
        "user:pw@x.flowlu.com",
        "[::1]",
        "::1",
        "[fe80::1%25eth0]",
        "2130706433",
        "https://x.flowlu.com",
        "x.flowlu.com/api",
        "flowlu.com",
        "localhost",
        "x.flowlu.com ",
        "X.Flowlu.Com",
    ] {
        let ctx = Ctx::new("100", domain, "tok");
        for (ct, body) in [
            ("application/json", ctx.json().to_string().into_bytes()),
            (
                "application/x-www-form-urlencoded",
                urlencode(&ctx.fields(false)),
            ),
        ] {
            let resp = r
                .app
                .request("POST", IFRAME, &[("content-type", ct)], Some(body))
                .await;
            assert_eq!(resp.status, 422, "{domain:?}: {}", resp.body);
            let csp = resp.header("content-security-policy").unwrap();
            assert!(
                csp.contains("frame-ancestors https://*.flowlu.com https://*.flowlu.ru"),
                "{csp}"
            );
        }
    }
    assert!(r.fake.requests().is_empty(), "{:?}", r.fake.requests());
    assert_eq!(r.count("SELECT count(*) FROM flowlu_integrations"), 0);

    // Configured suffixes are the allow-list: a custom one works, the default is gone.
    let r = rig(|c| c.flowlu.allowed_domains = vec!["crm.example.org".into()]).await;
    r.fake.add_user("tok", "1", "U", "");
    assert_eq!(
        r.open(&Ctx::new("1", "a.flowlu.com", "tok")).await.status,
        422
    );
    assert!(r.fake.requests().is_empty());
    r.app.admit("a.crm.example.org");
    assert_eq!(
        r.open(&Ctx::new("1", "a.crm.example.org", "tok"))
            .await
            .status,
        200
    );
    assert_eq!(r.fake.count(USER_GET), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_413_wrong_types_415_put_405_and_get_without_a_view_403() {
    let r = rig(|c| c.server.max_body_bytes = 2048).await;
    let big = format!("{{\"domain\": \"{}\"}}", "a".repeat(4096));
    let resp = r
        .app
        .request(
            "POST",
            IFRAME,
            &[("content-type", "application/json")],
            Some(big.into()),
        )
        .await;
    assert_eq!(resp.status, 413);
    let resp = r
        .app
        .request(
            "POST",
            IFRAME,
            &[("content-type", "text/plain")],
            Some(b"hi".to_vec()),
        )
        .await;
    assert_eq!(resp.status, 415);
    let resp = r
        .app
        .request("POST", IFRAME, &[], Some(b"{}".to_vec()))
        .await;
    assert_eq!(resp.status, 415);
    let resp = r
        .app
        .request("PUT", IFRAME, &[("accept", "text/html")], None)
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, POST"));
    // A GET is the page after a form's redirect: without a live view token it says to
    // open the settings again, in the browser's language.
    for (query, lang, text) in [
        ("", "en", "meant to be opened from Flowlu"),
        ("?token=guessed", "ru", "откройте настройки снова во Flowlu"),
        ("", "ru", "она открывается из Flowlu"),
    ] {
        let resp = r
            .app
            .request(
                "GET",
                &format!("{IFRAME}{query}"),
                &[("accept", "text/html"), ("accept-language", lang)],
                None,
            )
            .await;
        assert_eq!(resp.status, 403, "{}", resp.body);
        assert!(resp.body.contains(text), "{}", resp.body);
        assert!(
            resp.body.contains(&format!("<html lang=\"{lang}\">")),
            "{}",
            resp.body
        );
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    }
    assert!(r.fake.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_path_skips_flowlu_and_slow_path_asks_it() {
    let r = rig(|_| {}).await;
    let ctx = Ctx::new("100", "acme.flowlu.com", "tok-a");
    r.fake.add_user("tok-a", "7", "Ann", "ann@example.com");
    let first = r.open(&ctx).await;
    assert_eq!(first.status, 200);
    assert_eq!(r.fake.count(USER_GET), 1);
    // The same token again: recognised by its hash, no call.
    let second = r.open(&ctx).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(second.body.contains("Ann"));
    assert_eq!(r.fake.count(USER_GET), 1, "fast path must not call Flowlu");
    // The same token for another account id or domain is not a fast-path hit.
    let mut other = ctx.clone();
    other.account = "200".into();
    assert_eq!(r.open(&other).await.status, 200);
    assert_eq!(r.fake.count(USER_GET), 2);
    // A new token for the same user: slow path, replaces the stored one.
    let mut fresh = ctx.clone();
    fresh.token = "tok-a2".into();
    r.fake.add_user("tok-a2", "7", "Ann", "ann@example.com");
    assert_eq!(r.open(&fresh).await.status, 200);
    assert_eq!(r.fake.count(USER_GET), 3);
    let id = r.integration_id("100");
    let stored: String = r
        .app
        .db()
        .query_row(
            "SELECT access_token FROM flowlu_tokens WHERE integration_id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(stored, "tok-a2");
    // The old token is no longer a fast-path key.
    r.fake.remove_user("tok-a");
    assert_eq!(r.open(&ctx).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_flowlu_rejects_is_a_401_and_stores_nothing() {
    let r = rig(|c| c.flowlu.request_timeout_secs = 1).await;
    let ctx = Ctx::new("100", "acme.flowlu.com", "stolen");
    // Unknown token: the fake answers 401 with error code 11.
    let resp = r.open(&ctx).await;
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert!(
        resp.body.contains("open them again in Flowlu"),
        "{}",
        resp.body
    );
    assert_frame_headers(&resp, "https://acme.flowlu.com");
    // 403, and error code 11 inside a 200.
    r.fake.queue_reply(USER_GET, Reply::status(403));
    assert_eq!(r.open(&ctx).await.status, 401);
    r.fake.queue_reply(
        USER_GET,
        Reply::json(
            200,
            json!({"error": {"error_code": 11, "error_msg": "authorization failed"}}),
        ),
    );
    assert_eq!(r.open(&ctx).await.status, 401);
    // Flowlu down, slow or answering nonsense: 502.
    r.fake.queue_reply(USER_GET, Reply::status(500));
    assert_eq!(r.open(&ctx).await.status, 502);
    r.fake.queue_reply(
        USER_GET,
        Reply::json(200, json!({"response": {}})).delayed(Duration::from_secs(3)),
    );
    assert_eq!(r.open(&ctx).await.status, 502);
    r.fake.queue_reply(
        USER_GET,
        Reply::json(200, json!({"response": {"name": "no id"}})),
    );
    assert_eq!(r.open(&ctx).await.status, 502);
    assert_eq!(r.fake.count(USER_GET), 6);
    for table in ["flowlu_integrations", "flowlu_users", "flowlu_tokens"] {
        assert_eq!(
            r.count(&format!("SELECT count(*) FROM {table}")),
            0,
            "{table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_app_version_replaces_the_tokens_of_older_ones() {
    let r = rig(|_| {}).await;
    let mut ctx = Ctx::new("100", "acme.flowlu.com", "v1-token");
    r.fake.add_user("v1-token", "7", "Ann", "");
    r.fake.add_user("v1-other", "8", "Bob", "");
    assert_eq!(r.open(&ctx).await.status, 200);
    let mut bob = ctx.clone();
    bob.token = "v1-other".into();
    assert_eq!(r.open(&bob).await.status, 200);
    ctx.version = "1.1.0".into();
    ctx.token = "v2-token".into();
    r.fake.add_user("v2-token", "7", "Ann", "");
    assert_eq!(r.open(&ctx).await.status, 200);
    let rows: Vec<(String, String)> = {
        let db = r.app.db();
        let mut stmt = db
            .prepare("SELECT user_id, app_version FROM flowlu_tokens ORDER BY user_id")
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    // Ann's 1.0.0 token is gone; Bob has not opened 1.1.0 yet, so his row stays.
    assert_eq!(
        rows,
        [
            ("7".to_string(), "1.1.0".to_string()),
            ("8".to_string(), "1.0.0".to_string())
        ]
    );
    let version: String = r
        .app
        .db()
        .query_row("SELECT app_version FROM flowlu_integrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(version, "1.1.0");
    assert_eq!(r.fake.count(OAUTH_TOKEN), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_domain_needs_proof_that_it_is_the_same_account() {
    let r = rig(|_| {}).await;
    r.fake.add_user_at("owner", "acme.flowlu.com", "7", "Owner");
    assert_eq!(
        r.open(&Ctx::new("100", "acme.flowlu.com", "owner"))
            .await
            .status,
        200
    );
    // A stranger with a valid token for their own account quotes account 100.
    r.fake
        .add_user_at("stranger", "evil.flowlu.com", "1", "Mallory");
    let resp = r
        .open(&Ctx::new("100", "evil.flowlu.com", "stranger"))
        .await;
    assert_eq!(resp.status, 409, "{}", resp.body);
    let domain: String = r
        .app
        .db()
        .query_row("SELECT domain FROM flowlu_integrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(domain, "acme.flowlu.com");
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_tokens WHERE access_token = 'stranger'"),
        0
    );
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_users WHERE name = 'Mallory'"),
        0
    );
    // The confirmation call went to the old domain.
    let confirm = r.fake.requests_to(USER_GET).pop().unwrap();
    assert_eq!(confirm.header(DOMAIN_HEADER), Some("acme.flowlu.com"));

    // A real rename: the account's token works at both names.
    r.fake.add_user("renamed", "7", "Owner", "");
    let resp = r
        .open(&Ctx::new("100", "acme-new.flowlu.com", "renamed"))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_frame_headers(&resp, "https://acme-new.flowlu.com");
    let domain: String = r
        .app
        .db()
        .query_row("SELECT domain FROM flowlu_integrations", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(domain, "acme-new.flowlu.com");
    assert_eq!(r.count("SELECT count(*) FROM flowlu_integrations"), 1);
    // The admission moved with the account: the old name no longer gets in.
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_admissions WHERE domain = 'acme-new.flowlu.com'"),
        1
    );
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_admissions WHERE domain = 'acme.flowlu.com'"),
        0
    );
}
