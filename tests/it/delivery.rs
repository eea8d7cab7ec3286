//! Call events through the outbox to the (fake) Flowlu event hook: ordering, retries,
//! throttling, token refresh, holds and failures, over real HTTP.

use std::time::Duration;

use appliance::outbox::{NewEvent, State, enqueue, list};
use serde_json::{Value, json};

use crate::fake_flowlu::Reply;
use crate::flowlu_support::{Ctx, Rig, rig};
use crate::harness::eventually;

/// An appliance with a connected account and a fast retry schedule.
pub(crate) async fn connected() -> (Rig, i64, String) {
    let r = rig(|c| {
        c.outbox.retry_schedule = vec!["20ms".into(); 8];
        c.outbox.jitter_percent = 0;
        c.outbox.throttle_floor = "20ms".into();
        c.outbox.hold_recheck = "1h".into();
        c.flowlu.request_timeout_secs = 1;
    })
    .await;
    r.fake.add_user("tok-1", "u1", "Ann", "ann@example.com");
    let ctx = Ctx::new("acc-1", "acme.flowlu.com", "tok-1");
    let s = r.session(&ctx).await;
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    let id = r.integration_id("acc-1");
    let uuid: String = r
        .app
        .db()
        .query_row(
            "SELECT telephony_uuid FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    let hook = format!("/external/telephony/hook/mini_app/acc-1/{uuid}");
    (r, id, hook)
}

pub(crate) fn add(r: &Rig, id: i64, call: &str, kind: &str, n: usize) {
    let event_id = format!("{call}-{n}");
    r.app
        .state
        .db
        .with_conn(|c| {
            enqueue(
                c,
                &NewEvent {
                    integration_id: id,
                    call_key: call.into(),
                    event_id: event_id.clone(),
                    kind: kind.into(),
                    payload: json!({"event": kind, "event_id": event_id, "call": {"id": call}}),
                },
            )?;
            Ok::<_, appliance::db::DbError>(())
        })
        .unwrap();
    r.app.state.outbox.wake();
}

fn received_ids(r: &Rig, hook: &str) -> Vec<String> {
    r.fake
        .requests_to(hook)
        .iter()
        .map(|req| req.json()["event_id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) fn states(r: &Rig) -> Vec<(String, State)> {
    let mut rows = r
        .app
        .state
        .db
        .with_conn(|c| Ok::<_, appliance::db::DbError>(list(c, None, None, 1000)?))
        .unwrap();
    rows.reverse();
    rows.into_iter()
        .map(|row| (row.event_id, row.state))
        .collect()
}

async fn all_delivered(r: &Rig, n: usize) {
    eventually(20, "every event delivered", async || {
        let s = states(r);
        (s.len() == n && s.iter().all(|(_, st)| *st == State::Delivered)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_the_hook_with_token_and_idempotency_key() {
    let (r, id, hook) = connected().await;
    add(&r, id, "c1", "call.init", 1);
    all_delivered(&r, 1).await;
    let got = r.fake.requests_to(&hook);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(got[0].header("idempotency-key"), Some("c1-1"));
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].json()["event"], "call.init");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_of_500s_429s_and_timeouts_loses_nothing_and_keeps_order() {
    let (r, id, hook) = connected().await;
    // Flowlu misbehaves for a while, in every way the contract names.
    for reply in [
        Reply::status(500),
        Reply::status(502),
        Reply::status(429).header("Retry-After", "0"),
        Reply::json(
            200,
            json!({"error": {"error_code": 13, "error_msg": "internal"}}),
        ),
        Reply::status(200).delayed(Duration::from_millis(1500)), // beyond the 1 s timeout
        Reply::status(503),
    ] {
        r.fake.queue_reply(&hook, reply);
    }
    for call in ["a", "b"] {
        for (n, kind) in ["call.init", "call.connected", "call.completed"]
            .iter()
            .enumerate()
        {
            add(&r, id, call, kind, n + 1);
        }
    }
    all_delivered(&r, 6).await;
    let got = received_ids(&r, &hook);
    for call in ["a", "b"] {
        // Per call: in order, and each id acknowledged once it got through.
        let mine: Vec<&String> = got.iter().filter(|e| e.starts_with(call)).collect();
        let mut firsts: Vec<&String> = Vec::new();
        for e in &mine {
            if firsts.last() != Some(e) {
                firsts.push(e);
            }
        }
        assert_eq!(
            firsts,
            vec![
                &format!("{call}-1"),
                &format!("{call}-2"),
                &format!("{call}-3")
            ],
            "order of {call} in {got:?}"
        );
    }
    assert!(got.len() >= 6 + 5, "the failures were retried: {got:?}");
    // Every attempt is stored, with the answer's status.
    let attempts: i64 = r
        .app
        .db()
        .query_row("SELECT count(*) FROM outbox_attempts", [], |row| row.get(0))
        .unwrap();
    assert!(attempts >= 11, "{attempts}");
    let statuses: Vec<Option<i64>> = {
        let db = r.app.db();
        let mut stmt = db
            .prepare("SELECT status FROM outbox_attempts ORDER BY id")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for expected in [Some(500), Some(502), Some(429), Some(503), None] {
        assert!(statuses.contains(&expected), "{expected:?} in {statuses:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_pauses_the_account_until_retry_after() {
    let (r, id, hook) = connected().await;
    r.fake
        .queue_reply(&hook, Reply::status(429).header("Retry-After", "1"));
    add(&r, id, "a", "call.init", 1);
    eventually(20, "the 429", async || {
        (r.fake.requests_to(&hook).len() == 1).then_some(())
    })
    .await;
    // Other calls of the throttled account wait for Retry-After too, then all go out.
    add(&r, id, "b", "call.init", 1);
    add(&r, id, "b", "call.connected", 2);
    all_delivered(&r, 3).await;
    let got = r.fake.requests_to(&hook);
    let mut ids: Vec<String> = received_ids(&r, &hook);
    assert_eq!(ids[0], "a-1");
    ids.sort();
    // a-1 twice (the 429, then through); b in order (one call's events never overtake).
    assert_eq!(ids, ["a-1", "a-1", "b-1", "b-2"]);
    assert!(
        received_ids(&r, &hook).iter().position(|e| e == "b-1")
            < received_ids(&r, &hook).iter().position(|e| e == "b-2")
    );
    let throttled = got[0].at;
    for q in &got[1..] {
        assert!(
            q.at >= throttled + Duration::from_secs(1),
            "{} sent before Retry-After passed",
            q.json()["event_id"]
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_or_error_code_11_refreshes_the_token_and_retries() {
    let (r, id, hook) = connected().await;
    r.fake.queue_reply(&hook, Reply::status(401));
    add(&r, id, "c1", "call.init", 1);
    all_delivered(&r, 1).await;
    let got = r.fake.requests_to(&hook);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-1"));
    let second = got[1].header("authorization").unwrap().to_string();
    assert!(second.starts_with("Bearer refreshed-"), "{second}");
    assert_eq!(r.fake.count("/oauth/token"), 1);

    r.fake.queue_reply(
        &hook,
        Reply::json(
            200,
            json!({"error": {"error_code": 11, "error_msg": "authorization failed"}}),
        ),
    );
    add(&r, id, "c2", "call.init", 1);
    all_delivered(&r, 2).await;
    assert_eq!(r.fake.count("/oauth/token"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_refresh_holds_events_until_fresh_tokens_arrive() {
    let (r, id, hook) = connected().await;
    r.fake.queue_reply(&hook, Reply::status(401));
    r.fake.set_reply(
        "/oauth/token",
        Reply::json(400, json!({"error": "invalid_grant"})),
    );
    add(&r, id, "c1", "call.init", 1);
    add(&r, id, "c1", "call.completed", 2);
    eventually(20, "the account marked needs reconnect", async || {
        let n: i64 = r
            .app
            .db()
            .query_row(
                "SELECT needs_reconnect FROM flowlu_integrations WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .unwrap();
        (n == 1).then_some(())
    })
    .await;
    // Held, not failed, not dropped.
    assert!(states(&r).iter().all(|(_, s)| *s == State::Pending));
    let before = r.fake.count(&hook);
    // The admin opens the settings in Flowlu again: fresh tokens, and the events go.
    r.fake.clear_reply("/oauth/token");
    r.fake.add_user("tok-2", "u1", "Ann", "ann@example.com");
    let page = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-2")).await;
    assert_eq!(page.status, 200);
    all_delivered(&r, 2).await;
    let after: Vec<Value> = r.fake.requests_to(&hook)[before..]
        .iter()
        .map(|q| q.json())
        .collect();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["event_id"], "c1-1");
    assert_eq!(after[1]["event_id"], "c1-2");
    assert_eq!(
        r.fake
            .requests_to(&hook)
            .last()
            .unwrap()
            .header("authorization"),
        Some("Bearer tok-2")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn other_4xx_fail_and_show_as_failed() {
    let (r, id, hook) = connected().await;
    r.fake.queue_reply(
        &hook,
        Reply::json(
            422,
            json!({"error": {"error_code": 21, "error_msg": "validation"}}),
        ),
    );
    add(&r, id, "c1", "call.init", 1);
    eventually(20, "the event marked failed", async || {
        (states(&r) == vec![("c1-1".to_string(), State::Failed)]).then_some(())
    })
    .await;
    let summary = r
        .app
        .state
        .db
        .with_conn(|c| Ok::<_, appliance::db::DbError>(appliance::outbox::summary(c, Some(id))?))
        .unwrap();
    assert_eq!((summary.pending, summary.failed), (0, 1));
    assert_eq!(r.fake.count(&hook), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_of_an_unconnected_account_wait_for_connect() {
    let r = rig(|c| {
        c.outbox.retry_schedule = vec!["20ms".into()];
        c.outbox.hold_recheck = "1h".into();
    })
    .await;
    r.fake.add_user("tok-1", "u1", "Ann", "ann@example.com");
    let ctx = Ctx::new("acc-9", "acme.flowlu.com", "tok-1");
    let s = r.session(&ctx).await;
    let id = r.integration_id("acc-9");
    add(&r, id, "c1", "call.init", 1);
    eventually(20, "the event held", async || {
        let rows = r
            .app
            .state
            .db
            .with_conn(|c| Ok::<_, appliance::db::DbError>(list(c, None, None, 10)?))
            .unwrap();
        rows[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("not connected"))
            .then_some(())
    })
    .await;
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    all_delivered(&r, 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_events_show_on_the_settings_page_and_can_be_sent_again() {
    let (r, id, hook) = connected().await;
    r.fake.queue_reply(
        &hook,
        Reply::json(
            422,
            json!({"error": {"error_code": 21, "error_msg": "validation"}}),
        ),
    );
    add(&r, id, "c1", "call.completed", 1);
    eventually(20, "the event failed", async || {
        (states(&r) == vec![("c1-1".to_string(), State::Failed)]).then_some(())
    })
    .await;
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    let page = r.open(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1")).await;
    assert!(
        page.body
            .contains("id=\"events-failed\" class=\"state-failed\">1<"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("call.completed"),
        "the failure is listed"
    );
    assert!(page.body.contains("HTTP 422"), "with its reason");
    let after = r.act("events-retry", &s, &[]).await;
    assert_eq!(after.status, 200);
    assert!(after.body.contains("queued again"), "{}", after.body);
    all_delivered(&r, 1).await;
    assert_eq!(r.fake.count(&hook), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn delivered_events_older_than_keep_delivered_are_swept_at_start_up() {
    let (r, id, _hook) = connected().await;
    for (n, call) in ["old", "young", "stuck"].iter().enumerate() {
        add(&r, id, call, "call.init", n);
    }
    all_delivered(&r, 3).await;
    // "old" was delivered 40 days ago, "stuck" failed as long ago.
    let db = r.app.db();
    db.execute(
        "UPDATE outbox SET finished_at = ?1 WHERE call_key IN ('old', 'stuck')",
        [appliance::outbox::now_ms() - 40 * 86_400_000],
    )
    .unwrap();
    db.execute(
        "UPDATE outbox SET state = 'failed' WHERE call_key = 'stuck'",
        [],
    )
    .unwrap();
    let attempts = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT count(*) FROM outbox_attempts", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(attempts(&db), 3);

    let crate::flowlu_support::Rig { app, fake } = r;
    let r = crate::flowlu_support::Rig {
        app: app
            .restart_with(|c| c.outbox.keep_delivered = "30d".into())
            .await,
        fake,
    };
    eventually(20, "the old delivered event swept", async || {
        (states(&r).len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        states(&r),
        vec![
            ("young-1".to_string(), State::Delivered),
            ("stuck-2".to_string(), State::Failed),
        ]
    );
    assert_eq!(attempts(&r.app.db()), 2, "its attempts went with it");
}
