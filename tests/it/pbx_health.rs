//! The whole appliance with a PBX that comes and goes: `/healthz` follows it.

use appliance::config::Config;

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::pbx_config;
use crate::harness::{TestApp, eventually};

async fn pbx_state(app: &TestApp) -> (String, String) {
    let body = app.get("/healthz").await.json();
    (
        body["pbx"].as_str().unwrap().to_string(),
        body["pbx_detail"]["detail"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_follows_the_pbx_down_up_down() {
    // A port nobody listens on yet.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let app = TestApp::start_with(|c: &mut Config| c.pbx = pbx_config("asterisk", port)).await;

    let detail = eventually(10, "pbx down", async || {
        let (state, detail) = pbx_state(&app).await;
        (state == "down" && detail.contains("cannot connect")).then_some(detail)
    })
    .await;
    assert!(!detail.contains("s3cret"));
    assert_eq!(app.get("/healthz").await.json()["status"], "degraded");

    let fake = FakeAmi::start_on(
        &format!("127.0.0.1:{port}"),
        vec![Script::new("sip-register-unregister").idle_resync()],
    )
    .await;
    eventually(10, "pbx up", async || {
        (pbx_state(&app).await.0 == "up").then_some(())
    })
    .await;
    let body = app.get("/healthz").await.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["pbx_detail"]["type"], "asterisk");

    fake.close().await;
    let (_, detail) = eventually(10, "pbx down again", async || {
        let (state, detail) = pbx_state(&app).await;
        (state == "down").then_some((state, detail))
    })
    .await;
    assert!(
        detail.contains("disconnected") || detail.contains("cannot connect"),
        "{detail}"
    );
    app.stop().await.unwrap();
    // The supervisor stopped with the server and logged off on its way out.
    assert!(fake.sent_named("Login").len() == 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_login_shows_as_auth_failed() {
    let fake = FakeAmi::start(vec![Script::new("agent-busy").refuse_login()]).await;
    let app =
        TestApp::start_with(|c: &mut Config| c.pbx = pbx_config("asterisk", fake.port())).await;
    let detail = eventually(10, "auth_failed", async || {
        let (state, detail) = pbx_state(&app).await;
        (state == "auth_failed").then_some(detail)
    })
    .await;
    assert!(detail.contains("Authentication failed"), "{detail}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asterisk_11_is_refused_as_unsupported_and_reports_no_call() {
    // The recorded busy call, with only its banner line changed to the one Asterisk 11
    // sends (AMI 1.3): the appliance must not log in or track anything from it.
    let fake = FakeAmi::start(vec![
        Script::new("agent-busy").banner("Asterisk Call Manager/1.3"),
    ])
    .await;
    let app =
        TestApp::start_with(|c: &mut Config| c.pbx = pbx_config("asterisk", fake.port())).await;
    let detail = eventually(10, "unsupported_version", async || {
        let (state, detail) = pbx_state(&app).await;
        (state == "unsupported_version").then_some(detail)
    })
    .await;
    assert!(detail.contains("AMI 1.3"), "{detail}");
    assert!(detail.contains("Asterisk 12 or newer"), "{detail}");
    assert_eq!(app.get("/healthz").await.json()["status"], "degraded");
    // Retried like any failure (an upgraded PBX then just works), never logged in to.
    fake.wait_connections(2).await;
    assert!(fake.sent_named("Login").is_empty(), "{:?}", fake.sent());
    assert!(!String::from_utf8_lossy(&fake.received()).contains("s3cret"));
    let calls: i64 = app
        .db()
        .query_row("SELECT count(*) FROM calls", [], |r| r.get(0))
        .unwrap();
    assert_eq!(calls, 0, "no call from an unsupported PBX");
    app.stop().await.unwrap();
}
