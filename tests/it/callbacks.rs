//! Result callbacks end to end: a real call replayed by the fake AMI reaches a port-0
//! receiver signed (verified by Python's hmac), retries on 500 and on timeout with one
//! delivery id, gives up after the configured attempts, the test button, secret rotation,
//! the auth header, and URL validation on the settings page.

use std::time::Duration;

use serde_json::json;

use crate::fake_receiver::{Answer, Receiver, python_verifies};
use crate::flowlu_support::{Ctx, Rig, notice_of, rig};
use crate::harness::eventually;
use crate::webhook::assert_error;
use crate::webhook_calls::{click_to_call, with_ami};

/// The signing secret the notice reveals once (after adding or rotating).
fn revealed_secret(page: &str) -> String {
    let notice = notice_of(page).unwrap_or_else(|| panic!("no notice in {page}"));
    notice
        .split_whitespace()
        .find(|w| w.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("no secret in the notice {notice:?}"))
        .to_string()
}

/// Adds a callback for `url` on the settings page; returns its secret.
pub(crate) async fn add_callback(
    r: &Rig,
    session: &str,
    url: &str,
    auth: Option<(&str, &str)>,
) -> String {
    let (name, value) = auth.unwrap_or(("", ""));
    let page = r
        .act(
            "callback-add",
            session,
            &[("url", url), ("auth_header", name), ("auth_value", value)],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    revealed_secret(&page.body)
}

fn callback_id(r: &Rig) -> String {
    r.count("SELECT max(id) FROM callbacks").to_string()
}

/// A settings session on a rig whose callbacks retry after 50 ms (twice) and time out
/// after 300 ms.
async fn quick_rig() -> (Rig, String) {
    let r = rig(|c| {
        c.callbacks.allow_http_loopback = true;
        c.callbacks.retry_schedule = vec!["50ms".into(), "50ms".into()];
        c.callbacks.timeout = "300ms".into();
    })
    .await;
    r.fake.add_user("tok-1", "u1", "Ann", "ann@example.com");
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    (r, s)
}

fn delivery_state(r: &Rig, delivery_id: &str) -> (String, i64) {
    r.app
        .db()
        .query_row(
            "SELECT state, attempts FROM callback_deliveries WHERE delivery_id = ?1",
            [delivery_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_completed_call_reaches_the_receiver_signed_with_the_callers_uuid() {
    let receiver = Receiver::start().await;
    let (h, fake) = with_ami(click_to_call(), |c| c.callbacks.allow_http_loopback = true).await;
    let s =
        h.r.session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
            .await;
    let secret = add_callback(
        &h.r,
        &s,
        &receiver.url,
        Some(("Authorization", "Bearer rcv-token-1")),
    )
    .await;
    // Off by default: switched on per integration.
    let page =
        h.r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
            .await;
    assert!(
        page.body
            .contains("id=\"callbacks_enabled\" name=\"enabled\" value=\"1\">")
    );
    let on = h.r.act("callbacks", &s, &[("enabled", "1")]).await;
    assert_eq!(on.status, 200, "{}", on.body);

    // A uuid outside the safe charset is refused before anything is placed.
    let bad = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "79990001122", "uuid": "no spaces/slashes"}),
        )
        .await;
    assert_error(&bad, 422, "invalid_field");
    assert!(bad.body.contains("uuid"), "{}", bad.body);

    let resp = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "+7 (999) 000-11-22", "call_id": "flowlu-77",
                   "uuid": "order-42"}),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let ours = resp.json()["call_id"].as_str().unwrap().to_string();
    let stored: Option<String> =
        h.r.app
            .db()
            .query_row(
                "SELECT client_uuid FROM calls WHERE id = ?1",
                [&ours],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(stored.as_deref(), Some("order-42"));
    assert_eq!(
        h.r.count("SELECT count(*) FROM callback_deliveries"),
        0,
        "nothing is queued before the call ends"
    );
    fake.wait_sent("Originate", 1).await;
    assert!(fake.release_all().await);

    let got = receiver.wait_for(1).await.remove(0);
    assert_eq!(got.path, "/hook");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("authorization"), Some("Bearer rcv-token-1"));
    assert_eq!(got.header("x-appliance-event"), Some("call.completed"));
    let delivery = got.header("x-appliance-delivery").unwrap().to_string();
    assert!(delivery.starts_with("dl_"), "{delivery}");
    let signature = got.header("x-appliance-signature").unwrap();
    assert!(
        signature.starts_with("t=") && signature.contains(",v1="),
        "{signature}"
    );
    assert!(
        python_verifies(&secret, signature, &got.body),
        "Python verifies it"
    );
    assert!(!python_verifies("whsec_wrong", signature, &got.body));

    let body = got.json();
    assert_eq!(body["event"], "call.completed");
    assert_eq!(body["test"], false);
    assert!(body["id"].as_str().unwrap().starts_with("ev_"));
    let call = &body["call"];
    assert_eq!(call["id"], ours.as_str());
    assert_eq!(call["crm_call_id"], "flowlu-77");
    assert_eq!(call["uuid"], "order-42");
    assert_eq!(call["status"], "answered");
    assert_eq!(call["direction"], "outgoing");
    assert_eq!(call["phone"], "79990001122");
    assert_eq!(call["agent"], json!({"extension": "100", "user_id": "u1"}));
    assert!(call["duration"].is_u64() && call["wait"].is_u64(), "{call}");
    for key in ["started_at", "answered_at", "ended_at"] {
        assert!(call[key].as_str().unwrap().ends_with('Z'), "{key}: {call}");
    }
    assert!(call.get("recording_url").is_some() && call["recording_url"].is_null());

    // Queued with call.completed (one delivery, for the one callback), then delivered.
    let done = eventually(10, "the delivery marked delivered", async || {
        let state = delivery_state(&h.r, &delivery);
        (state.0 == "delivered").then_some(state)
    })
    .await;
    assert_eq!(done.1, 1);
    assert_eq!(
        h.r.count("SELECT count(*) FROM callback_deliveries WHERE kind = 'call.completed'"),
        1
    );
    // The delivery log shows it; the secret and the auth value only masked.
    let page =
        h.r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
            .await;
    assert!(page.body.contains(&delivery), "the log lists the delivery");
    assert!(page.body.contains("call.completed"));
    assert!(
        !page.body.contains(&secret),
        "the secret is shown only once"
    );
    assert!(page.body.contains(&format!("{}…", &secret[..10])));
    assert!(
        !page.body.contains("rcv-token-1"),
        "the auth value is masked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_on_500_and_on_timeout_with_one_delivery_id_then_gives_up() {
    let receiver = Receiver::start().await;
    let (r, s) = quick_rig().await;
    let secret = add_callback(&r, &s, &receiver.url, None).await;
    let id = callback_id(&r);

    // 500, then no answer within the 300 ms timeout, then 200.
    receiver.then([
        Answer::Status(500),
        Answer::Stall(Duration::from_secs(2)),
        Answer::Status(200),
    ]);
    let page = r.act("callback-test", &s, &[("callback", &id)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let notice = notice_of(&page.body).unwrap();
    assert!(notice.contains("HTTP 500"), "{notice}");
    let got = receiver.wait_for(3).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|g| g.header("x-appliance-delivery").unwrap())
        .collect();
    assert!(
        ids.iter().all(|d| *d == ids[0]),
        "same delivery id: {ids:?}"
    );
    for g in &got {
        assert!(python_verifies(
            &secret,
            g.header("x-appliance-signature").unwrap(),
            &g.body
        ));
        assert_eq!(g.json()["event"], "test");
    }
    let first = ids[0].to_string();
    let state = eventually(10, "delivered after two retries", async || {
        let state = delivery_state(&r, &first);
        (state.0 == "delivered").then_some(state)
    })
    .await;
    assert_eq!(state.1, 3);
    let log: Vec<(Option<i64>, Option<String>)> = {
        let db = r.app.db();
        let mut stmt = db
            .prepare(
                "SELECT a.status, a.error FROM callback_attempts a
                 JOIN callback_deliveries d ON d.id = a.delivery_row
                 WHERE d.delivery_id = ?1 ORDER BY a.attempt",
            )
            .unwrap();
        stmt.query_map([&first], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(log[0], (Some(500), None));
    assert_eq!(log[1].0, None);
    assert!(
        log[1].1.as_deref().unwrap().contains("timed out"),
        "{log:?}"
    );
    assert_eq!(log[2], (Some(200), None));

    // Always 500: 3 attempts (the first and 2 retries), then failed, and no more.
    receiver.then([
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(500),
    ]);
    let page = r.act("callback-test", &s, &[("callback", &id)]).await;
    let notice = notice_of(&page.body).unwrap();
    let second = notice
        .split([' ', ')', ','])
        .find(|w| w.starts_with("dl_"))
        .unwrap_or_else(|| panic!("no delivery id in {notice:?}"))
        .to_string();
    assert_ne!(second, first);
    let state = eventually(10, "failed after the schedule", async || {
        let state = delivery_state(&r, &second);
        (state.0 == "failed").then_some(state)
    })
    .await;
    assert_eq!(state.1, 3);
    let to_second = |got: Vec<crate::fake_receiver::Got>| {
        got.iter()
            .filter(|g| g.header("x-appliance-delivery") == Some(second.as_str()))
            .count()
    };
    assert_eq!(to_second(receiver.received()), 3);
    // The worker has nothing left for it: a drain step makes no attempt.
    assert_eq!(r.app.state.callbacks.step().await, 0);
    assert_eq!(to_second(receiver.received()), 3);
    let page = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1")).await;
    assert!(
        page.body
            .contains("<td class=\"delivery-state\">failed</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("timed out after 300ms"));
}

#[tokio::test(flavor = "multi_thread")]
async fn test_button_rotation_deletion_and_url_checks() {
    let receiver = Receiver::start().await;
    let (r, s) = quick_rig().await;
    // Only https:// (the loopback escape hatch covers loopback http only).
    for (url, why) in [
        ("http://hooks.example.com/calls", "https://"),
        ("ftp://hooks.example.com/calls", "https://"),
        ("https://user:pw@hooks.example.com/", "user name"),
        ("hooks.example.com/calls", "not a URL"),
    ] {
        let page = r
            .act(
                "callback-add",
                &s,
                &[("url", url), ("auth_header", ""), ("auth_value", "")],
            )
            .await;
        assert_eq!(page.status, 422, "{url}");
        let notice = notice_of(&page.body).unwrap().replace("&#x2f;", "/");
        assert!(notice.contains(why), "{url}: {notice}");
    }
    let page = r
        .act(
            "callback-add",
            &s,
            &[
                ("url", "https://hooks.example.com/"),
                ("auth_header", "X-Key"),
                ("auth_value", ""),
            ],
        )
        .await;
    assert_eq!(page.status, 422);
    assert_eq!(
        r.count("SELECT count(*) FROM callbacks"),
        0,
        "nothing stored"
    );

    let old = add_callback(&r, &s, &receiver.url, Some(("X-Api-Key", "k-123"))).await;
    let id = callback_id(&r);
    let page = r.act("callback-test", &s, &[("callback", &id)]).await;
    assert_eq!(page.status, 200);
    assert!(
        notice_of(&page.body).unwrap().contains("HTTP 200"),
        "{}",
        page.body
    );
    let got = receiver.wait_for(1).await.remove(0);
    assert_eq!(got.header("x-api-key"), Some("k-123"));
    assert_eq!(got.json()["test"], true);
    let sig = got.header("x-appliance-signature").unwrap();
    assert!(python_verifies(&old, sig, &got.body));

    let page = r.act("callback-rotate", &s, &[("callback", &id)]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let new = revealed_secret(&page.body);
    assert_ne!(new, old);
    r.act("callback-test", &s, &[("callback", &id)]).await;
    let got = receiver.wait_for(2).await.remove(1);
    let sig = got.header("x-appliance-signature").unwrap();
    assert!(
        python_verifies(&new, sig, &got.body),
        "signed with the new secret"
    );
    assert!(
        !python_verifies(&old, sig, &got.body),
        "the old secret no longer verifies"
    );

    // Another account's or a made-up callback id is not found; delete removes ours.
    let page = r.act("callback-test", &s, &[("callback", "999")]).await;
    assert_eq!(page.status, 404);
    let page = r.act("callback-delete", &s, &[("callback", &id)]).await;
    assert_eq!(page.status, 200);
    assert_eq!(r.count("SELECT count(*) FROM callbacks"), 0);
    assert_eq!(r.count("SELECT count(*) FROM callback_deliveries"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_delivery_survives_a_restart() {
    let receiver = Receiver::start().await;
    let r = rig(|c| {
        c.callbacks.allow_http_loopback = true;
        c.callbacks.retry_schedule = vec!["3s".into()];
    })
    .await;
    r.fake.add_user("tok-1", "u1", "Ann", "ann@example.com");
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    let secret = add_callback(&r, &s, &receiver.url, None).await;
    let id = callback_id(&r);
    receiver.then([Answer::Status(503)]);
    r.act("callback-test", &s, &[("callback", &id)]).await;
    let first = receiver.wait_for(1).await.remove(0);
    let delivery = first.header("x-appliance-delivery").unwrap().to_string();

    let Rig { app, fake } = r;
    let app = app.restart_with(|_| {}).await;
    let restarted_at = appliance::outbox::now_ms();
    let r = Rig { app, fake };
    let again = receiver.wait_for(2).await.remove(1);
    assert_eq!(
        again.header("x-appliance-delivery"),
        Some(delivery.as_str())
    );
    assert_eq!(again.body, first.body, "the same body byte for byte");
    assert!(python_verifies(
        &secret,
        again.header("x-appliance-signature").unwrap(),
        &again.body
    ));
    let state = eventually(10, "delivered after the restart", async || {
        let state = delivery_state(&r, &delivery);
        (state.0 == "delivered").then_some(state)
    })
    .await;
    assert_eq!(state.1, 2);
    let second_started: i64 = r
        .app
        .db()
        .query_row("SELECT max(started_at) FROM callback_attempts", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert!(
        second_started >= restarted_at - 1000,
        "sent by the new process"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_call_is_followed_by_call_recording_with_its_url() {
    let receiver = Receiver::start().await;
    let (fake, _recordings, r, s) =
        crate::call_events::recorded_call_with_file(|c| c.callbacks.allow_http_loopback = true)
            .await;
    let secret = add_callback(&r, &s, &receiver.url, None).await;
    assert_eq!(
        r.act("callbacks", &s, &[("enabled", "1")]).await.status,
        200
    );
    eventually(10, "PBX up", async || {
        (r.app.get("/healthz").await.json()["pbx"] == "up").then_some(())
    })
    .await;
    fake.release_all().await;

    let got = receiver.wait_for(2).await;
    let (completed, recording) = (got[0].json(), got[1].json());
    assert_eq!(completed["event"], "call.completed");
    assert_eq!(recording["event"], "call.recording");
    assert_eq!(completed["call"]["id"], recording["call"]["id"]);
    assert_ne!(completed["id"], recording["id"]);
    assert_ne!(
        got[0].header("x-appliance-delivery"),
        got[1].header("x-appliance-delivery")
    );
    assert_eq!(completed["call"]["direction"], "incoming");
    assert_eq!(completed["call"]["recorded"], true);
    assert!(completed["call"]["recording_url"].is_null());
    assert!(completed["call"]["uuid"].is_null());
    let url = recording["call"]["recording_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://appliance.example:8443/recordings/"),
        "{url}"
    );
    for g in &got {
        assert!(python_verifies(
            &secret,
            g.header("x-appliance-signature").unwrap(),
            &g.body
        ));
    }
}
