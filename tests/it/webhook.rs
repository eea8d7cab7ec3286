//! The Flowlu webhook (`POST /hooks/flowlu/<id>/<secret>`): authentication, request
//! errors, `health.check` and `employees.list`, against an in-process appliance with a
//! connected account (fake Flowlu) and fake PBXs replaying the recorded transcripts.
//! The call requests are in `webhook_calls.rs`.

#![allow(dead_code)]

use appliance::config::Config;
use serde_json::{Value, json};

use crate::fake_flowlu::Reply;
use crate::fake_pbx::esl::{EslScript, FakeEsl};
use crate::fake_pbx::{Fake, pbx_config};
use crate::flowlu_support::{Ctx, Rig, rig};
use crate::harness::{Resp, eventually};

/// An appliance with one connected account ("acc-1", user u1 "Ann" mapped to `ext`,
/// default country 7), optionally wired to a fake PBX.
pub struct Hook {
    pub r: Rig,
    pub id: i64,
    /// `/hooks/flowlu/<id>/<secret>`
    pub path: String,
    pub secret: String,
    /// Where the account's call events arrive at the fake Flowlu.
    pub events: String,
}

pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `[pbx]` for a fake (`kind` asterisk or freeswitch), dialling as the recordings did.
pub fn pbx_for(c: &mut Config, kind: &str, port: u16) {
    c.pbx = pbx_config(kind, port);
    c.pbx.context = "from-crm".into();
    c.pbx.transfer_context = "agents-sip".into();
}

pub async fn hook(ext: &str, edit: impl FnOnce(&mut Config)) -> Hook {
    let r = rig(|c| {
        c.outbox.retry_schedule = vec!["20ms".into(); 3];
        c.outbox.jitter_percent = 0;
        c.outbox.throttle_floor = "20ms".into();
        c.flowlu.request_timeout_secs = 2;
        edit(c);
    })
    .await;
    r.fake.add_user("tok-1", "u1", "Ann", "ann@example.com");
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    let id = r.integration_id("acc-1");
    let (secret, uuid): (String, String) = r
        .app
        .db()
        .query_row(
            "SELECT webhook_secret, telephony_uuid FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    map(&r, id, "u1", "Ann", ext);
    r.app
        .state
        .db
        .with_conn(|c| {
            let mut s = appliance::flowlu::store::settings(c, id)?;
            s.default_country_code = "7".into();
            appliance::flowlu::store::save_settings(c, id, &s)
        })
        .unwrap();
    Hook {
        path: format!("/hooks/flowlu/{id}/{secret}"),
        events: format!("/external/telephony/hook/mini_app/acc-1/{uuid}"),
        r,
        id,
        secret,
    }
}

/// Adds Flowlu user `user` to the account and maps it to `ext`.
pub fn map(r: &Rig, id: i64, user: &str, name: &str, ext: &str) {
    r.app
        .state
        .db
        .with_conn(|c| {
            appliance::flowlu::store::add_user(c, id, user, name)?;
            appliance::flowlu::store::set_extension(c, id, user, Some(ext))
        })
        .unwrap();
}

impl Hook {
    pub async fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Resp {
        self.r.app.request("POST", path, headers, Some(body)).await
    }

    /// POSTs `{"type": kind, "data": data}` as JSON, with extra headers.
    pub async fn call_with(&self, kind: &str, data: Value, headers: &[(&str, &str)]) -> Resp {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let body = json!({"type": kind, "data": data}).to_string().into_bytes();
        self.post_raw(&self.path, &all, body).await
    }

    pub async fn call(&self, kind: &str, data: Value) -> Resp {
        self.call_with(kind, data, &[]).await
    }

    pub async fn wait_pbx_up(&self) {
        eventually(10, "the PBX connection", async || {
            self.r.app.state.pbx_handle.is_up().then_some(())
        })
        .await;
    }
}

/// Asserts a JSON error answer.
pub fn assert_error(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json = resp.json();
    assert_eq!(json["error"]["code"], code, "{}", resp.body);
    assert!(
        json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_secrets_and_integrations_are_the_same_404_as_an_unknown_path() {
    let h = hook("100", |_| {}).await;
    // A second account: its id with the first one's secret must not work either way.
    h.r.fake.add_user("tok-2", "u9", "Bea", "");
    let s2 =
        h.r.session(&Ctx::new("acc-2", "beta.flowlu.com", "tok-2"))
            .await;
    assert_eq!(h.r.act("connect", &s2, &[]).await.status, 200);
    let other = h.r.integration_id("acc-2");
    let body = json!({"type": "health.check"}).to_string().into_bytes();
    let json_headers = [("content-type", "application/json")];
    let unknown = h
        .post_raw("/no/such/path", &json_headers, body.clone())
        .await;
    assert_eq!(unknown.status, 404);
    let html_headers = [
        ("content-type", "application/json"),
        ("accept", "text/html"),
    ];
    let unknown_html = h
        .post_raw("/no/such/path", &html_headers, body.clone())
        .await;
    let mut wrong = h.secret.clone().into_bytes();
    wrong[0] = if wrong[0] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap();
    for path in [
        format!("/hooks/flowlu/{}/{wrong}", h.id),
        format!("/hooks/flowlu/{}/{}", h.id, &h.secret[1..]),
        format!("/hooks/flowlu/{}/{}x", h.id, h.secret),
        format!("/hooks/flowlu/{other}/{}", h.secret),
        format!("/hooks/flowlu/999/{}", h.secret),
        format!("/hooks/flowlu/0{}/{}", h.id, h.secret),
        format!("/hooks/flowlu/+{}/{}", h.id, h.secret),
        format!("/hooks/flowlu/{}/", h.id),
        format!("/hooks/flowlu/{}", h.id),
    ] {
        let got = h.post_raw(&path, &json_headers, body.clone()).await;
        assert_eq!(
            (got.status, &got.body),
            (unknown.status, &unknown.body),
            "{path}"
        );
        let got = h.post_raw(&path, &html_headers, body.clone()).await;
        assert_eq!(
            (got.status, &got.body),
            (unknown_html.status, &unknown_html.body),
            "{path}"
        );
        // Not even the method is told apart before the secret matches.
        let got = h.r.app.request("GET", &path, &[], None).await;
        assert_eq!(got.status, 404, "GET {path}");
    }
    let get = h.r.app.request("GET", &h.path, &[], None).await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    // The right secret works, and the other account's own URL serves the other account.
    assert_eq!(h.call("health.check", json!({})).await.status, 200);
    let secret2: String =
        h.r.app
            .db()
            .query_row(
                "SELECT webhook_secret FROM flowlu_integrations WHERE id = ?1",
                [other],
                |row| row.get(0),
            )
            .unwrap();
    let resp = h
        .post_raw(
            &format!("/hooks/flowlu/{other}/{secret2}"),
            &json_headers,
            body,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // Requests are counted under the route's name, never the path with its secret; the
    // ones that did not authenticate count as unknown paths.
    let metrics = h.r.app.get("/metrics").await.body;
    assert!(
        metrics.contains("route=\"webhook\",status=\"200\""),
        "{metrics}"
    );
    assert!(
        !metrics.contains("route=\"webhook\",status=\"404\""),
        "{metrics}"
    );
    assert!(!metrics.contains(&h.secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_json_errors() {
    let h = hook("100", |c| c.server.max_body_bytes = 4096).await;
    let json_ct = [("content-type", "application/json")];
    assert_error(
        &h.post_raw(&h.path, &json_ct, b"{\"type\": \"health.check\"".to_vec())
            .await,
        400,
        "invalid_json",
    );
    assert_error(
        &h.post_raw(&h.path, &json_ct, vec![0xff, 0xfe]).await,
        400,
        "invalid_json",
    );
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        assert_error(
            &h.post_raw(
                &h.path,
                &[("content-type", ct)],
                b"{\"type\": \"health.check\"}".to_vec(),
            )
            .await,
            415,
            "unsupported_media_type",
        );
    }
    // JSON with a charset, or without any Content-Type, is read.
    for headers in [
        &[("content-type", "application/json; charset=utf-8")][..],
        &[][..],
    ] {
        let ok = h
            .post_raw(&h.path, headers, b"{\"type\": \"health.check\"}".to_vec())
            .await;
        assert_eq!(ok.status, 200, "{headers:?}: {}", ok.body);
    }
    assert_error(
        &h.call("call.hangup", json!({"call_id": "x"})).await,
        400,
        "unknown_type",
    );
    let big = json!({"type": "health.check", "data": {"pad": "x".repeat(5000)}});
    assert_error(
        &h.post_raw(&h.path, &json_ct, big.to_string().into_bytes())
            .await,
        413,
        "body_too_large",
    );
    for (kind, data) in [
        ("call.make", json!({"phone": "+79990001122"})),
        ("call.make", json!({"user_id": "u1"})),
        (
            "call.make",
            json!({"user_id": {"id": 1}, "phone": "+79990001122"}),
        ),
        ("call.get", json!({})),
        ("call.redirect", json!({"call_id": "c1"})),
        ("calls.list", json!({"from": "2026-01-01T00:00:00Z"})),
        (
            "calls.list",
            json!({"from": "monday", "to": "2026-01-01T00:00:00Z"}),
        ),
    ] {
        assert_error(&h.call(kind, data.clone()).await, 422, "invalid_field");
    }
    assert_error(
        &h.post_raw(&h.path, &json_ct, b"[1, 2]".to_vec()).await,
        422,
        "invalid_field",
    );
    assert_error(
        &h.call_with(
            "health.check",
            json!({}),
            &[("x-request-id", &"r".repeat(300))],
        )
        .await,
        422,
        "invalid_field",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_reports_pbx_outbox_token_and_version() {
    let h = hook("100", |_| {}).await;
    // Two events Flowlu refuses for good (failed), one waiting far in the future (pending).
    h.r.fake.set_reply(&h.events, Reply::status(400));
    for call in ["h1", "h2"] {
        h.r.app
            .state
            .db
            .with_conn(|c| {
                appliance::outbox::enqueue(
                    c,
                    &appliance::outbox::NewEvent {
                        integration_id: h.id,
                        call_key: call.into(),
                        event_id: format!("{call}-1"),
                        kind: "call.init".into(),
                        payload: json!({"event": "call.init", "call": {"id": call}}),
                    },
                )?;
                Ok::<_, appliance::db::DbError>(())
            })
            .unwrap();
    }
    h.r.app.state.outbox.wake();
    eventually(10, "two failed events", async || {
        (h.r.count("SELECT count(*) FROM outbox WHERE state = 'failed'") == 2).then_some(())
    })
    .await;
    h.r.app
        .db()
        .execute(
            "INSERT INTO outbox (integration_id, call_key, event_id, kind, payload,
                 next_attempt_at, created_at)
             VALUES (?1, 'h3', 'h3-1', 'call.init', '{}', 32503680000000, 0)",
            [h.id],
        )
        .unwrap();
    let resp = h.call("health.check", json!(null)).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let j = resp.json();
    assert_eq!(j["status"], "degraded", "no PBX configured: {j}");
    assert_eq!(j["pbx"]["state"], "not_configured");
    assert_eq!(j["outbox"], json!({"pending": 1, "failed": 2}));
    assert_eq!(j["token"]["state"], "ok");
    assert!(j["token"]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(j["channel"]["connected"], true);
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert!(!resp.body.contains("tok-1"), "no token in the answer");

    h.r.app
        .state
        .db
        .with_conn(|c| appliance::flowlu::store::mark_needs_reconnect(c, h.id, "refused"))
        .unwrap();
    let j = h.call("health.check", json!({})).await.json();
    assert_eq!(j["token"], json!({"state": "needs_reconnect"}));
    assert_eq!(j["status"], "degraded");
}

/// Employees of the Asterisk SIP recording: 100 and 101 registered, 102 not, and the
/// `trunk` endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn employees_list_merges_live_asterisk_lines_with_the_mapping() {
    use crate::fake_pbx::ami::{FakeAmi, Script};
    let fake = FakeAmi::start(vec![Script::new("sip-actions-registered")]).await;
    let port = fake.port();
    let h = hook("100", |c| pbx_for(c, "asterisk", port)).await;
    map(&h.r, h.id, "u2", "Bea", "102");
    map(&h.r, h.id, "u3", "Cy", "105");
    // Another account maps 101: this account does not see it.
    h.r.fake.add_user("tok-2", "u9", "Dee", "");
    h.r.session(&Ctx::new("acc-2", "beta.flowlu.com", "tok-2"))
        .await;
    let other = h.r.integration_id("acc-2");
    map(&h.r, other, "u9", "Dee", "101");
    h.wait_pbx_up().await;

    let resp = h.call("employees.list", json!({})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let j = resp.json();
    assert_eq!(
        j["items"],
        json!([
            {"extension": "100", "name": "Ann", "state": "online", "user_id": "u1"},
            {"extension": "102", "name": "Bea", "state": "offline", "user_id": "u2"},
            {"extension": "105", "name": "Cy", "state": "offline", "user_id": "u3"},
        ])
    );
    assert_eq!(
        (&j["pbx"]["state"], &j["pbx"]["type"], &j["pbx"]["live"]),
        (&json!("up"), &json!("asterisk"), &json!(true))
    );
    let asked: Vec<String> = fake.sent().into_iter().map(|s| s.name).collect();
    assert!(
        asked.contains(&"PJSIPShowEndpoints".to_string()),
        "{asked:?}"
    );
    assert_eq!(
        h.call("health.check", json!({})).await.json()["status"],
        "ok"
    );

    // The other account sees 101 as its employee, and neither 100 nor 102 as anyone's.
    let secret2: String =
        h.r.app
            .db()
            .query_row(
                "SELECT webhook_secret FROM flowlu_integrations WHERE id = ?1",
                [other],
                |row| row.get(0),
            )
            .unwrap();
    let theirs = h
        .post_raw(
            &format!("/hooks/flowlu/{other}/{secret2}"),
            &[("content-type", "application/json")],
            json!({"type": "employees.list"}).to_string().into_bytes(),
        )
        .await
        .json();
    assert_eq!(
        theirs["items"],
        json!([{"extension": "101", "name": "Dee", "state": "online", "user_id": "u9"}])
    );

    // PBX gone: answered from the mapping, every line offline, and said so.
    fake.close().await;
    eventually(10, "the PBX down", async || {
        (!h.r.app.state.pbx_handle.is_up()).then_some(())
    })
    .await;
    let resp = h.call("employees.list", json!({})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let j = resp.json();
    assert_eq!(
        j["items"],
        json!([
            {"extension": "100", "name": "Ann", "state": "offline", "user_id": "u1"},
            {"extension": "102", "name": "Bea", "state": "offline", "user_id": "u2"},
            {"extension": "105", "name": "Cy", "state": "offline", "user_id": "u3"},
        ])
    );
    assert_eq!(j["pbx"]["state"], "down");
    assert_eq!(j["pbx"]["live"], false);
    assert_eq!(
        h.call("health.check", json!({})).await.json()["status"],
        "degraded"
    );
}

/// The FreeSWITCH SIP recording: users 1000 and 1001 registered, 1002 not.
#[tokio::test(flavor = "multi_thread")]
async fn employees_list_on_freeswitch() {
    let fake: Fake = FakeEsl::start(vec![EslScript::new("sip-actions-registered")]).await;
    let port = fake.port();
    let h = hook("1000", |c| pbx_for(c, "freeswitch", port)).await;
    h.wait_pbx_up().await;
    let resp = h.call("employees.list", json!({})).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let j = resp.json();
    assert_eq!(
        j["items"],
        json!([
            {"extension": "1000", "name": "Ann", "state": "online", "user_id": "u1"},
            {"extension": "1001", "name": "Agent 1001", "state": "online", "user_id": null},
            {"extension": "1002", "name": "Agent 1002", "state": "offline", "user_id": null},
        ])
    );
    assert_eq!(
        (&j["pbx"]["state"], &j["pbx"]["type"], &j["pbx"]["live"]),
        (&json!("up"), &json!("freeswitch"), &json!(true))
    );
    let asked: Vec<String> = fake.sent().into_iter().map(|s| s.name).collect();
    assert!(asked.iter().any(|c| c == "api list_users"), "{asked:?}");
}
