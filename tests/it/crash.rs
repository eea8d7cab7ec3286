//! The compiled binary is killed with SIGKILL while it delivers a backlog of call events,
//! then started again: the receiver ends up with every event id (at least once, and
//! counted by id: exactly once each).

use std::collections::HashSet;
use std::time::Duration;

use appliance::db::Db;
use appliance::outbox::{NewEvent, enqueue};

use crate::fake_flowlu::{FakeFlowlu, Reply};
use crate::harness::eventually;
use crate::smoke::{init, start};

const EVENTS: usize = 300;
const HOOK: &str = "/external/telephony/hook/mini_app/acc-1/uuid-1";

/// A connected account with a valid token, written straight into the database, and a
/// backlog of events for 30 calls.
fn seed(db: &Db) -> Vec<String> {
    let now = appliance::flowlu::store::now();
    db.with_conn(|c| {
        c.execute(
            "INSERT INTO flowlu_integrations (id, platform, account_id, app_id, domain, app_version,
                 placement_id, ratelimit, telephony_uuid, webhook_secret, token_user_id,
                 created_at, updated_at)
             VALUES (1, 'flowlu.com', 'acc-1', 'app', 'acme.flowlu.com', '1', 'p', 1000,
                     'uuid-1', 's', 'u1', ?1, ?1)",
            [now],
        )?;
        c.execute(
            "INSERT INTO flowlu_users (integration_id, user_id, name, seen, created_at, updated_at)
             VALUES (1, 'u1', 'Ann', 1, ?1, ?1)",
            [now],
        )?;
        c.execute(
            "INSERT INTO flowlu_tokens (integration_id, user_id, domain, app_version, access_token,
                 refresh_token, expires_at, fast_hash, updated_at)
             VALUES (1, 'u1', 'acme.flowlu.com', '1', 'tok-1', 'r-1', ?1, 'h', ?2)",
            [now + 86_400, now],
        )?;
        let mut ids = Vec::new();
        for n in 0..EVENTS {
            let event_id = format!("ev-{n:04}");
            enqueue(
                c,
                &NewEvent {
                    integration_id: 1,
                    call_key: format!("call-{}", n % 30),
                    event_id: event_id.clone(),
                    kind: "call.state".into(),
                    payload: serde_json::json!({"event": "call.state", "event_id": event_id}),
                },
            )?;
            ids.push(event_id);
        }
        Ok::<_, appliance::db::DbError>(ids)
    })
    .unwrap()
}

fn kill9(child: &mut std::process::Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_backlog_loses_no_event() {
    let fake = FakeFlowlu::start().await;
    // Slow enough that the backlog is still going when the process is killed.
    fake.set_reply(
        HOOK,
        Reply::json(200, serde_json::json!({"response": {}})).delayed(Duration::from_millis(40)),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "base_url_override = \"\"",
        &format!("base_url_override = \"{}\"", fake.base),
    );
    text = text.replace(
        "agi_listen = \"127.0.0.1:4573\"",
        "agi_listen = \"127.0.0.1:0\"",
    );
    std::fs::write(&config, text).unwrap();
    let ids = seed(&Db::open(&dir.path().join("data/appliance.db")).unwrap());

    let (mut child, _) = start(&config);
    eventually(60, "a part of the backlog delivered", async || {
        (fake.count(HOOK) >= EVENTS / 4).then_some(())
    })
    .await;
    kill9(&mut child);
    let at_kill = fake.count(HOOK);
    assert!(at_kill < EVENTS, "the kill came too late to test anything");

    let (mut child, _) = start(&config);
    let received = eventually(120, "every event delivered after the restart", async || {
        let got: HashSet<String> = fake
            .requests_to(HOOK)
            .iter()
            .map(|r| r.json()["event_id"].as_str().unwrap().to_string())
            .collect();
        (got.len() == EVENTS).then_some(got)
    })
    .await;
    let expected: HashSet<String> = ids.into_iter().collect();
    assert_eq!(received, expected);
    // And the database agrees: nothing left to send.
    eventually(30, "the last acknowledgements stored", async || {
        let pending: i64 = rusqlite::Connection::open(dir.path().join("data/appliance.db"))
            .unwrap()
            .query_row(
                "SELECT count(*) FROM outbox WHERE state != 'delivered'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (pending == 0).then_some(())
    })
    .await;
    let status = crate::smoke::terminate(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}
