//! The settings page's POST/redirect/GET and the language of its error pages.

use std::sync::Arc;
use std::time::Duration;

use crate::flowlu_support::{Ctx, Rig, rig, session_of, urlencode};

/// POSTs a settings form without following the redirect: (status, Location, Referrer-Policy).
async fn post_raw(r: &Rig, action: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
    let cert = ureq::tls::Certificate::from_pem(r.app.cert_pem.as_bytes())
        .unwrap()
        .to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(15)))
        .build()
        .new_agent();
    let owned: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let url = format!("{}/integration/settings/{action}", r.app.base);
    let body = urlencode(&owned);
    tokio::task::spawn_blocking(move || {
        let resp = agent
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .send(&body[..])
            .unwrap();
        let h = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (resp.status().as_u16(), h("location"), h("referrer-policy"))
    })
    .await
    .unwrap()
}

fn default_line(r: &Rig) -> String {
    r.app
        .db()
        .query_row("SELECT default_line FROM flowlu_settings", [], |row| {
            row.get(0)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_redirects_and_reloading_the_page_does_not_send_it_again() {
    let r = rig(|_| {}).await;
    r.fake.add_user("tok", "7", "Ann", "ann@example.com");
    let session = r.session(&Ctx::new("100", "acme.flowlu.com", "tok")).await;
    let calls = |line: &'static str| {
        [
            ("default_line", line),
            ("default_country_code", "7"),
            ("incoming_routing", "pbx"),
        ]
    };
    let mut fields = vec![("session", session.as_str()), ("lang", "ru")];
    fields.extend(calls("+100"));
    let (status, location, referrer) = post_raw(&r, "calls", &fields).await;
    assert_eq!(status, 303);
    assert_eq!(referrer, "no-referrer");
    let token = location
        .strip_prefix("/integration/settings?token=")
        .unwrap_or_else(|| panic!("{location}"));
    assert_eq!(token.len(), 43);
    assert!(
        !location.contains(&session),
        "the session stays out of URLs"
    );
    assert_eq!(default_line(&r), "+100");

    let page = r.app.get(&location).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"notice\""), "{}", page.body);
    assert!(page.body.contains("Сохранено"), "the notice, in Russian");
    assert!(
        page.body
            .contains("<details class=\"card\" id=\"calls\" open>")
    );
    assert_eq!(
        session_of(&page.body),
        session,
        "the page carries the session on"
    );

    // Another save changes the line; reloading the first page shows it and sends nothing.
    let mut fields = vec![("session", session.as_str())];
    fields.extend(calls("+200"));
    assert_eq!(post_raw(&r, "calls", &fields).await.0, 303);
    let reload = r.app.get(&location).await;
    assert_eq!(reload.status, 200);
    assert!(
        !reload.body.contains("id=\"notice\""),
        "the notice was shown once"
    );
    assert!(reload.body.contains("value=\"+200\""), "{}", reload.body);
    assert_eq!(default_line(&r), "+200");

    // A refused form: the redirect's page has the status and the notice in its section.
    let mut fields = vec![("session", session.as_str())];
    fields.extend(calls("no spaces allowed"));
    let refused = r.act("calls", &session, &fields[1..]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    let calls_section = &refused.body[refused.body.find("id=\"calls\"").unwrap()..];
    let calls_section = &calls_section[..calls_section.find("</details>").unwrap()];
    assert!(calls_section.contains("id=\"notice\""), "{calls_section}");
    assert_eq!(default_line(&r), "+200");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_speak_the_request_language() {
    let r = rig(|_| {}).await;
    // 403: a form without a valid session, Russian from its lang field.
    let page = r
        .post_form(
            "/integration/settings/calls",
            &[("session", "v1.forged"), ("lang", "ru")],
        )
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("<html lang=\"ru\">"), "{}", page.body);
    assert!(page.body.contains("403 Доступ запрещён"), "{}", page.body);
    assert!(page.body.contains("Сессия этой страницы"), "{}", page.body);
    // The same in English keeps the precise message.
    let page = r
        .post_form("/integration/settings/calls", &[("session", "v1.forged")])
        .await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("403 Not allowed"), "{}", page.body);
    assert!(page.body.contains("does not carry a valid session"));
    // 422: a refused Flowlu domain, in the context's language.
    let mut ctx = Ctx::new("100", "acme.evil.com", "tok");
    ctx.language = "ru".into();
    let page = r.open(&ctx).await;
    assert_eq!(page.status, 422, "{}", page.body);
    assert!(page.body.contains("<html lang=\"ru\">"), "{}", page.body);
    assert!(page.body.contains("не разрешён"), "{}", page.body);
    // 401: Flowlu does not know the token (the fake refuses unknown tokens).
    let mut ctx = Ctx::new("100", "acme.flowlu.com", "unknown-token");
    ctx.language = "ru".into();
    let page = r.open(&ctx).await;
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains("401 Вход не выполнен"), "{}", page.body);
    // Before the request says anything: Accept-Language.
    let page = unreadable_in_russian(&r).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("Неверный запрос"), "{}", page.body);
}

/// An iframe POST the appliance cannot read (a JSON array) from a Russian browser.
pub(crate) async fn unreadable_in_russian(r: &Rig) -> crate::harness::Resp {
    r.app
        .request(
            "POST",
            "/integration/settings",
            &[
                ("content-type", "application/json"),
                ("accept-language", "ru-RU,ru;q=0.9"),
            ],
            Some(b"[]".to_vec()),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_claim_form_redirects_and_reloading_does_not_send_the_code_again() {
    let r = rig(|_| {}).await;
    let code = appliance::flowlu::admission::new_claim_code(&r.app.db()).unwrap();
    r.fake.add_user_at("tok-9", "newco.flowlu.com", "9", "Nina");
    let mut ctx = Ctx::new("900", "newco.flowlu.com", "tok-9");
    ctx.language = "ru".into();
    let refused = r.open(&ctx).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let pending = crate::flowlu_support::hidden_field(&refused.body, "pending");

    // A wrong code: 303 to a GET that shows the refusal once, with the form again.
    let fields = [
        ("pending", pending.as_str()),
        ("claim_code", "AAAA-BBBB"),
        ("lang", "ru"),
    ];
    let (status, location, referrer) = post_raw(&r, "claim", &fields).await;
    assert_eq!(status, 303);
    assert_eq!(referrer, "no-referrer");
    assert!(
        location.starts_with("/integration/settings?token="),
        "{location}"
    );
    assert!(
        !location.contains(&pending),
        "the claim note stays out of URLs"
    );
    let page = r.app.get(&location).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(
        crate::flowlu_support::notice_of(&page.body).as_deref(),
        Some("Код подтверждения неверен.")
    );
    assert!(page.body.contains("id=\"claim_code\""), "{}", page.body);
    let reload = r.app.get(&location).await;
    assert_eq!(reload.status, 200);
    assert!(!reload.body.contains("id=\"notice\""), "shown once");

    // The right code admits the account; reloading that page admits nothing again.
    let fields = [
        ("pending", pending.as_str()),
        ("claim_code", code.as_str()),
        ("lang", "ru"),
    ];
    let (status, location, _) = post_raw(&r, "claim", &fields).await;
    assert_eq!(status, 303);
    let page = r.app.get(&location).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Аккаунт допущен"), "{}", page.body);
    assert!(!page.body.contains("id=\"claim_code\""));
    let reload = r.app.get(&location).await;
    assert_eq!(reload.status, 200);
    assert_eq!(
        r.count("SELECT count(*) FROM flowlu_admissions WHERE domain = 'newco.flowlu.com'"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_page_says_when_flowlu_may_not_frame_the_settings() {
    let r = rig(|c| c.flowlu.frame_ancestors = vec!["https://apps.example.org".into()]).await;
    r.fake.add_user("tok", "7", "Ann", "ann@example.com");
    let index = |lang: &'static str| {
        let r = &r;
        async move {
            r.app
                .request(
                    "GET",
                    "/",
                    &[("accept", "text/html"), ("accept-language", lang)],
                    None,
                )
                .await
        }
    };
    let page = index("en").await;
    assert!(
        page.body.contains("id=\"framing-unknown\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("frame_ancestors = [\"https:&#x2f;&#x2f;apps.example.org\"]"),
        "{}",
        page.body
    );
    let open_from = |origin: &'static str| {
        let r = &r;
        async move {
            let body = Ctx::new("100", "acme.flowlu.com", "tok").json().to_string();
            r.app
                .request(
                    "POST",
                    "/integration/settings",
                    &[
                        ("content-type", "application/json"),
                        ("origin", origin),
                        ("sec-fetch-dest", "iframe"),
                    ],
                    Some(body.into_bytes()),
                )
                .await
        }
    };
    // Flowlu opened the settings from a page the CSP does not name: the browser refuses
    // to show it, and the operator page says what to set.
    assert_eq!(open_from("https://app.flowlu.com").await.status, 200);
    let page = index("en").await;
    let line = &page.body[page
        .body
        .find("id=\"framing-refused\"")
        .unwrap_or_else(|| panic!("{}", page.body))..];
    let line = &line[..line.find("</p>").unwrap()];
    assert!(line.contains("https:&#x2f;&#x2f;app.flowlu.com"), "{line}");
    assert!(line.contains("[flowlu] frame_ancestors"), "{line}");
    assert!(line.contains("acme.flowlu.com"), "{line}");
    let ru = index("ru").await;
    assert!(ru.body.contains("<html lang=\"ru\">"));
    assert!(ru.body.contains("нельзя показать во Flowlu"), "{}", ru.body);
    // From the account's own origin (or an extra one) it can be framed.
    for allowed in ["https://acme.flowlu.com", "https://apps.example.org"] {
        assert_eq!(open_from(allowed).await.status, 200);
        let page = index("en").await;
        assert!(page.body.contains("id=\"framing-ok\""), "{}", page.body);
        assert!(!page.body.contains("framing-refused"));
    }
}
