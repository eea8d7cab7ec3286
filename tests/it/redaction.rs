//! No log line of a run shows a secret, however the path or query spells it (issue 12):
//! the webhook and entity-hook secrets, a recording token and a click-to-call key, sent
//! in every dodging spelling we know over raw HTTP, with every line of the run captured.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::crm_entities::hooks_on;
use crate::harness::tls_connect;
use crate::log_capture::Capture;
use crate::webhook::hook;

fn percent_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Sends `head` (request line and headers) byte for byte and reads the whole answer.
async fn raw(app: &crate::harness::TestApp, head: &str) -> String {
    let mut conn = tls_connect(app).await;
    conn.write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn no_log_line_shows_a_secret_however_the_request_spells_it() {
    let capture = Capture::start();
    let h = hook("100", |_| {}).await;
    let (id, entity_path, _) = hooks_on(&h.r, &[]).await;
    let entity = entity_path.rsplit('/').next().unwrap().to_string();
    // Made the way the appliance makes them (recording tokens, click-to-call keys).
    let recording = appliance::secret::random_token(32);
    let c2c_key = appliance::secret::random_token(24);
    let secrets = [
        h.secret.clone(),
        entity.clone(),
        recording.clone(),
        c2c_key.clone(),
    ];

    // The real requests, answered.
    let ok = h.call("health.check", json!({})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let s = &h.secret;
    let mut paths = Vec::new();
    for (prefix, secret) in [
        (format!("/hooks/flowlu/{id}"), s.as_str()),
        (format!("/hooks/flowlu-entities/{id}"), entity.as_str()),
        ("/recordings".to_string(), recording.as_str()),
    ] {
        let upper = prefix.to_uppercase();
        let doubled = prefix.replacen('/', "//", 2);
        let enc = percent_all(secret);
        paths.extend([
            format!("{prefix}/{secret}"),
            format!("{prefix}//{secret}"),
            format!("{prefix}/x/{secret}"),
            format!("{doubled}/{secret}"),
            format!("{upper}/{secret}"),
            format!("{prefix}/{secret}/"),
            format!("{prefix}/{secret}.json"),
            format!("{prefix};{secret}"),
            format!("/.{prefix}/{secret}"),
            format!("{prefix}/{enc}"),
            format!("{prefix}/{}", enc.replace('%', "%25")),
            format!("{prefix}/{secret}?x=1"),
            format!("/healthz?{secret}"),
            format!("/healthz?x={secret}"),
            format!("/healthz?{secret}=1"),
        ]);
    }
    let k = &c2c_key;
    for query in [
        format!("key={k}"),
        format!("KEY={k}"),
        format!("key+={k}"),
        format!("key%3D{k}"),
        format!("k%65y={k}"),
        format!("k%2565y={k}"),
        format!("agent=1;key={k}"),
        format!("agent=1&key={k}&to=79161234567"),
    ] {
        paths.push(format!("/c2c?{query}"));
    }
    let mut answered = 0;
    for path in &paths {
        for method in ["GET", "POST"] {
            let answer = raw(&h.r.app, &format!("{method} {path} HTTP/1.1")).await;
            answered += usize::from(answer.starts_with("HTTP/1.1 "));
        }
    }
    // The secret as a method, too.
    raw(&h.r.app, &format!("{s} /healthz HTTP/1.1")).await;
    assert!(answered >= paths.len(), "most requests were answered");

    let lines = capture.lines();
    let access: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("appliance::access"))
        .collect();
    assert!(
        access
            .iter()
            .any(|l| l.contains(&format!("/HOOKS/FLOWLU/{id}/***"))),
        "the capture holds the access log: {access:#?}"
    );
    assert!(access.len() >= paths.len() * 2, "{}", access.len());
    for line in &lines {
        for secret in &secrets {
            assert!(!line.contains(secret.as_str()), "a secret in: {line}");
            assert!(!line.contains(&percent_all(secret)), "a secret in: {line}");
        }
    }
}
