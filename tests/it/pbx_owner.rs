//! Issue 12, written as the attack on the PBX connection: an admitted account that does
//! not own the PBX tries to see and move it, the owner's form tries to send the saved
//! secret to a new address, a manager that refuses the MD5 challenge waits for the
//! secret in clear text, and an outsider reads `/healthz`.

use std::net::IpAddr;

use appliance::secret::Secret;

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::flowlu_support::{Ctx, Rig, notice_of, rig};
use crate::harness::{eventually, get_from};

const CONFIG_SECRET: &str = "config-secret-9f3";
const TYPED_SECRET: &str = "typed-secret-4c1";

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// An appliance whose config file names an Asterisk on a closed loopback port.
async fn with_config_pbx(edit: impl FnOnce(&mut appliance::Config)) -> (Rig, u16) {
    let port = closed_port();
    let r = rig(|c| {
        c.pbx.kind_name = "asterisk".into();
        c.pbx.host = "127.0.0.1".into();
        c.pbx.port = port;
        c.pbx.user = "config-ami-user".into();
        c.pbx.secret = Secret::new(CONFIG_SECRET);
        c.pbx.reconnect_min_ms = 20;
        c.pbx.auth_retry_ms = 200;
        edit(c);
    })
    .await;
    (r, port)
}

fn pbx_form<'a>(port: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("pbx_type", "asterisk"),
        ("pbx_host", "127.0.0.1"),
        ("pbx_port", port),
        ("pbx_user", "appliance"),
        ("pbx_secret", secret),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_owner_never_sees_nor_changes_the_config_pbx() {
    let (r, port) = with_config_pbx(|_| {}).await;
    // acme.flowlu.com was admitted first (harness) and owns the PBX; beta is admitted too.
    r.fake.add_user("tok-b", "9", "Bea", "");
    let page = r.open(&Ctx::new("200", "beta.flowlu.com", "tok-b")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"pbx-readonly\""));
    for hidden in [
        format!(":{port}"),
        format!("value=\"{port}\""),
        "config-ami-user".to_string(),
        "127.0.0.1".to_string(),
        CONFIG_SECRET.to_string(),
    ] {
        assert!(
            !page.body.contains(&hidden),
            "{hidden} shown to a non-owner"
        );
    }
    let session = crate::flowlu_support::session_of(&page.body);

    // Its PBX form (save or test) is refused and moves nothing, not even a connection.
    let fake = FakeAmi::start(vec![Script::new("agent-busy").without_challenge()]).await;
    let fake_port = fake.port().to_string();
    for action in ["pbx", "pbx-test"] {
        let resp = r.act(action, &session, &pbx_form(&fake_port, "")).await;
        assert_eq!(resp.status, 403, "{action}: {}", resp.body);
        assert!(
            notice_of(&resp.body)
                .unwrap()
                .contains("another Flowlu account")
        );
        assert!(!resp.body.contains("config-ami-user"));
    }
    assert_eq!(r.count("SELECT count(*) FROM pbx_settings"), 0);
    let current = r.app.state.pbx_settings.borrow().clone().unwrap();
    assert_eq!((current.host.as_str(), current.port), ("127.0.0.1", port));
    assert_eq!(fake.connections(), 0);
    // The owner sees it.
    r.fake.add_user("tok-a", "7", "Ann", "");
    let owner = r.open(&Ctx::new("100", "acme.flowlu.com", "tok-a")).await;
    assert!(
        owner.body.contains(&format!("value=\"{port}\"")),
        "{}",
        owner.body
    );
    assert!(owner.body.contains("value=\"config-ami-user\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_secret_never_follows_a_new_address() {
    let (r, port) = with_config_pbx(|_| {}).await;
    r.fake.add_user("tok-a", "7", "Ann", "");
    let session = r
        .session(&Ctx::new("100", "acme.flowlu.com", "tok-a"))
        .await;
    // A manager that refuses the challenge, recording every byte it gets.
    let fake = FakeAmi::start(vec![Script::new("agent-busy").without_challenge()]).await;
    let new_port = fake.port().to_string();

    // The owner's own form, empty secret, new port: refused before any connection.
    for action in ["pbx-test", "pbx"] {
        let resp = r.act(action, &session, &pbx_form(&new_port, "")).await;
        assert_eq!(resp.status, 422, "{action}: {}", resp.body);
        let notice = notice_of(&resp.body).unwrap();
        assert!(notice.contains("enter the secret again"), "{notice}");
    }
    assert_eq!(fake.connections(), 0);
    assert_eq!(r.count("SELECT count(*) FROM pbx_settings"), 0);
    assert_eq!(
        r.app.state.pbx_settings.borrow().clone().unwrap().port,
        port
    );

    // Typed again, the test reaches the manager, which refuses the challenge: reported
    // as such, and the typed secret is not sent in clear text either.
    let resp = r
        .act("pbx-test", &session, &pbx_form(&new_port, TYPED_SECRET))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let notice = notice_of(&resp.body).unwrap();
    assert!(
        notice.starts_with("The PBX refuses the MD5 challenge"),
        "{notice}"
    );
    assert_eq!(fake.connections(), 1);

    // Saved: the supervisor connects, gets no further than the challenge, and says so.
    let mut anyway = pbx_form(&new_port, TYPED_SECRET);
    anyway.push(("save_anyway", "1"));
    let saved = r.act("pbx", &session, &anyway).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    let health = eventually(10, "challenge_refused on /healthz", async || {
        let h = r.app.get("/healthz").await.json();
        (h["pbx"] == "challenge_refused").then_some(h)
    })
    .await;
    assert!(
        health["pbx_detail"]["detail"]
            .as_str()
            .unwrap()
            .contains("allow_plain_login"),
        "{health}"
    );
    let page = r
        .act("calls", &session, &[("incoming_routing", "pbx")])
        .await;
    assert!(
        page.body.contains("refuses the MD5 challenge"),
        "{}",
        page.body
    );

    let received = String::from_utf8_lossy(&fake.received()).into_owned();
    assert!(received.contains("Action: Challenge"), "{received}");
    for secret in [CONFIG_SECRET, TYPED_SECRET] {
        assert!(!received.contains(secret), "{secret} sent: {received}");
    }
    assert!(fake.sent_named("Login").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_tells_outsiders_only_status_and_version() {
    let (r, port) = with_config_pbx(|c| {
        c.server.trusted_networks = vec!["127.0.0.1/32".into()];
        c.metrics.token = Secret::new("metrics-token-5d2");
    })
    .await;
    let inside: IpAddr = "127.0.0.1".parse().unwrap();
    let outside: IpAddr = "127.0.0.2".parse().unwrap();

    let (status, body) = get_from(&r.app, outside, "/healthz", "").await;
    assert_eq!(status, 200, "{body}");
    let public: serde_json::Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&String> = public.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["status", "version"], "{body}");
    assert_eq!(public["status"], "degraded");
    let (_, page) = get_from(&r.app, outside, "/", "").await;
    assert!(
        page.contains("degraded") && page.contains(appliance::VERSION),
        "{page}"
    );
    for hidden in [format!("{port}"), "Flowlu accounts".to_string()] {
        assert!(
            !page.contains(&hidden),
            "{hidden} on the public page: {page}"
        );
    }
    // A proxied request from a trusted address is not trusted either.
    let (_, body) = get_from(
        &r.app,
        inside,
        "/healthz",
        "X-Forwarded-For: 203.0.113.9\r\n",
    )
    .await;
    assert!(!body.contains("pbx_detail"), "{body}");

    // The trusted network and the metrics token see the detail.
    let (_, body) = get_from(&r.app, inside, "/healthz", "").await;
    assert!(body.contains("pbx_detail"), "{body}");
    let bearer = "Authorization: Bearer metrics-token-5d2\r\n";
    let (_, body) = get_from(&r.app, outside, "/healthz", bearer).await;
    let full: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(full["flowlu"]["integrations"], 0, "{body}");
    assert!(full["pbx_detail"]["detail"].is_string(), "{body}");
    let wrong = "Authorization: Bearer nope\r\n";
    let (_, body) = get_from(&r.app, outside, "/healthz", wrong).await;
    assert!(!body.contains("pbx_detail"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_answers_name_the_pbx_address_to_its_owner_only() {
    let port = closed_port();
    let h = crate::webhook::hook("101", |c| crate::webhook::pbx_for(c, "asterisk", port)).await;
    let addr = format!("127.0.0.1:{port}");
    // acme (the connected account, admitted first) owns the PBX: it is told where it is.
    eventually(10, "the PBX address in health.check", async || {
        let j = h.call("health.check", serde_json::json!({})).await.json();
        j.to_string().contains(&addr).then_some(())
    })
    .await;
    // The operator hands the PBX to another account: acme's answers lose the address.
    h.r.app.set_pbx_owner("beta.flowlu.com");
    for kind in ["health.check", "employees.list"] {
        let j = h.call(kind, serde_json::json!({})).await.json();
        assert!(!j.to_string().contains(&addr), "{kind}: {j}");
        assert!(!j.to_string().contains("\"detail\""), "{kind}: {j}");
    }
}
