//! The webhook's read requests against the in-process appliance and the fake Flowlu:
//! `calls.list` and `call.get` over stored calls (filters, paging, the limit cap, and
//! another account's calls staying invisible, to `call.redirect` too).

use appliance::calls::{Call, CallState, CallStatus, Direction};
use serde_json::{Value, json};

use crate::webhook::{Hook, assert_error, hook};

pub(crate) fn save_call(
    h: &Hook,
    integration: i64,
    id: &str,
    crm: Option<&str>,
    started: i64,
    edit: impl FnOnce(&mut Call),
) {
    let mut call = Call {
        id: id.into(),
        integration_id: Some(integration),
        crm_call_id: crm.map(str::to_string),
        pbx_call: format!("pbx-{id}"),
        phone: "79161234567".into(),
        line: "74950000000".into(),
        extension: Some("100".into()),
        user_id: Some("u1".into()),
        state: CallState::Ended,
        status: Some(CallStatus::Answered),
        answered_at: Some(started + 5_000),
        ended_at: Some(started + 11_000),
        duration: Some(6),
        wait: Some(5),
        hangup_cause: Some("16 Normal Clearing".into()),
        ..Call::new(Direction::Incoming, started)
    };
    edit(&mut call);
    h.r.app
        .state
        .db
        .with_conn(|c| {
            appliance::calls::store::save(c, &call, 0)?;
            Ok::<_, appliance::db::DbError>(())
        })
        .unwrap();
}

/// 2026-01-01T00:00:00Z plus `minutes`, in unix ms.
pub(crate) fn at(minutes: i64) -> i64 {
    1_767_225_600_000 + minutes * 60_000
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_list_and_call_get_filter_page_and_stay_within_the_account() {
    let h = hook("100", |_| {}).await;
    h.r.fake.add_user("tok-2", "u9", "Bea", "");
    h.r.session(&crate::flowlu_support::Ctx::new(
        "acc-2",
        "beta.flowlu.com",
        "tok-2",
    ))
    .await;
    let other = h.r.integration_id("acc-2");
    save_call(&h, h.id, "a1", Some("f-a1"), at(0), |_| {});
    save_call(&h, h.id, "a2", None, at(10), |c| {
        c.direction = Direction::Outgoing;
        c.status = Some(CallStatus::NoAnswer);
        c.answered_at = None;
    });
    save_call(&h, h.id, "a3", None, at(20), |c| {
        c.user_id = Some("u2".into());
        c.status = Some(CallStatus::Missed);
        c.queue = Some("support".into());
    });
    save_call(&h, h.id, "a4", None, at(30), |_| {});
    save_call(&h, h.id, "a5", None, at(24 * 60), |_| {}); // next day
    save_call(&h, other, "b1", Some("f-b1"), at(5), |_| {});

    let list = |extra: Value| {
        let mut data = json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"});
        data.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let h = &h;
        async move {
            let r = h.call("calls.list", data).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let j = r.json();
            let ids: Vec<String> = j["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string())
                .collect();
            (ids, j)
        }
    };
    let (ids, j) = list(json!({})).await;
    assert_eq!(
        ids,
        ["a4", "a3", "a2", "a1"],
        "newest first, one day, no b1"
    );
    assert_eq!(
        (j["total"].clone(), j["page"].clone()),
        (json!(4), json!(1))
    );
    assert_eq!(j["items"][3]["crm_call_id"], "f-a1");
    assert_eq!(
        j["items"][1]["queue"], "support",
        "the queue it went through"
    );
    assert!(j["items"][0].get("queue").is_none(), "none: left out");
    assert_eq!(j["items"][3]["started_at"], "2026-01-01T00:00:00Z");
    let (ids, j) = list(json!({"limit": 2, "page": "2"})).await;
    assert_eq!(ids, ["a2", "a1"]);
    assert_eq!(
        (j["total"].clone(), j["page"].clone()),
        (json!(4), json!(2))
    );
    let (ids, j) = list(json!({"limit": 2, "page": 3})).await;
    assert!(ids.is_empty());
    assert_eq!(j["total"], 4);
    let (_, j) = list(json!({"limit": 100000})).await;
    assert_eq!(j["limit"], 500, "capped");
    assert_eq!(list(json!({"user_id": "u2"})).await.0, ["a3"]);
    assert_eq!(list(json!({"direction": "outgoing"})).await.0, ["a2"]);
    assert_eq!(list(json!({"status": "missed"})).await.0, ["a3"]);
    assert_eq!(
        list(json!({"status": "answered", "direction": "incoming", "user_id": "u1"}))
            .await
            .0,
        ["a4", "a1"]
    );
    let (ids, _) = list(json!({"from": "2026-01-01T00:20:00Z"})).await;
    assert_eq!(ids, ["a4", "a3"], "from is inclusive");

    let got = h.call("call.get", json!({"call_id": "f-a1"})).await.json();
    assert_eq!(got["id"], "a1");
    assert_eq!(got["duration"], 6);
    let missed = h.call("call.get", json!({"call_id": "a3"})).await.json();
    assert_eq!(missed["queue"], "support");
    assert_eq!(
        h.call("call.get", json!({"call_id": "a1"})).await.json(),
        got
    );
    // The other account's call, by either id: not found, like a call that never was.
    for id in ["b1", "f-b1", "nope"] {
        assert_error(
            &h.call("call.get", json!({"call_id": id})).await,
            404,
            "not_found",
        );
        assert_error(
            &h.call("call.redirect", json!({"call_id": id, "extension": "101"}))
                .await,
            404,
            "not_found",
        );
    }
    // Ended calls cannot be redirected.
    assert_error(
        &h.call(
            "call.redirect",
            json!({"call_id": "a1", "extension": "101"}),
        )
        .await,
        409,
        "call_not_ringing",
    );
}
