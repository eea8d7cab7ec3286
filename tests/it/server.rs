//! The HTTPS server itself: routes, errors, limits, shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestApp, test_config, tls_connect};

#[tokio::test(flavor = "multi_thread")]
async fn healthz_over_tls_reports_pbx_not_configured() {
    let app = TestApp::start().await;
    let resp = app.get("/healthz").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["pbx"], "not_configured");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_reports_a_configured_but_unreachable_pbx_as_down() {
    // Nothing listens on this port: the PBX is down and the appliance still serves.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let app = TestApp::start_with(|c| {
        c.pbx.kind_name = "asterisk".into();
        c.pbx.port = port;
        c.pbx.user = "appliance".into();
    })
    .await;
    let body = app.get("/healthz").await.json();
    assert_eq!(body["pbx"], "down");
    assert_eq!(body["status"], "degraded");
    let page = app
        .request("GET", "/", &[("accept", "text/html")], None)
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("state-down"), "{}", page.body);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_wrong_methods_get_short_errors() {
    let app = TestApp::start().await;
    let resp = app.get("/no/such/page").await;
    assert_eq!(resp.status, 404);
    assert_eq!(resp.json()["error"]["code"], "not_found");
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));

    let html = app
        .request("GET", "/nope", &[("accept", "text/html,*/*")], None)
        .await;
    assert_eq!(html.status, 404);
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(html.body.contains("404"));

    let resp = app
        .request("POST", "/healthz", &[], Some(b"{}".to_vec()))
        .await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    assert_eq!(resp.json()["error"]["code"], "method_not_allowed");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn static_assets_are_embedded_with_etags() {
    let app = TestApp::start().await;
    let css = app.get("/assets/style.css").await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    let etag = css.header("etag").unwrap().to_string();
    let again = app
        .request(
            "GET",
            "/assets/style.css",
            &[("if-none-match", &etag)],
            None,
        )
        .await;
    assert_eq!(again.status, 304);
    assert_eq!(
        app.get("/assets/icon.svg").await.header("content-type"),
        Some("image/svg+xml")
    );
    assert_eq!(app.get("/assets/../Cargo.toml").await.status, 404);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let app = TestApp::start_with(|c| c.server.header_read_timeout_secs = 1).await;
    let mut conn = tls_connect(&app).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // The server must close the connection on its own; we only bound how long we wait.
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept a half-sent request open");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = TestApp::start_with(|c| c.server.idle_timeout_secs = 1).await;
    let mut conn = tls_connect(&app).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now stay silent: the server closes the connection.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the idle connection was not closed");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app = TestApp::start_with(|c| c.server.max_connections = 1).await;
    // wait_ready's connection may still be closing; wait until one slot is ours.
    let mut first = tls_connect(&app).await;
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(first.read(&mut buf).await.unwrap() > 0);
    // A second client is not served while the first holds the only slot...
    {
        let second = app.get("/healthz");
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), &mut second)
                .await
                .is_err(),
            "a second connection was served beyond max_connections"
        );
        // ...and is served as soon as the first goes away.
        drop(first);
        let resp = tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
    }
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting_and_returns() {
    let app = TestApp::start().await;
    let addr = app.addr;
    app.stop().await.unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_mode_serves_without_tls() {
    let app = TestApp::start_with(|c| {
        c.server.plain_http = true;
        c.server.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    assert!(app.base.starts_with("http://"));
    let resp = app
        .request(
            "GET",
            "/healthz",
            &[("x-forwarded-for", "203.0.113.9")],
            None,
        )
        .await;
    assert_eq!(resp.status, 200);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_files_and_a_newer_database_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = test_config(dir.path());
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let (_, other_key) =
        appliance::tls::write_self_signed(&other, &["localhost".to_string()]).unwrap();
    config.server.tls_key = other_key.display().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = appliance::run(config.clone(), listener, async {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");

    let (config, _) = test_config(dir.path());
    let db = config.database_path();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE meta (key TEXT, value TEXT); PRAGMA user_version = 9999;")
            .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = appliance::run(config, listener, async {})
        .await
        .unwrap_err();
    assert!(e.to_string().contains("newer"), "{e}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "a newer database was modified"
    );
}
