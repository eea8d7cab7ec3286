//! The webhook's call requests against the in-process appliance, the fake Flowlu and the
//! fake AMI replaying the recorded SIP transcripts: `call.make` (and its refusals, and
//! duplicate deliveries) and `call.redirect`; `calls.list` and `call.get` are in
//! `webhook_lists`.

use appliance::calls::CallState;
use serde_json::{Value, json};

use crate::fake_pbx::Fake;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::harness::eventually;
use crate::webhook::{Hook, assert_error, closed_port, hook, map, pbx_for};
use crate::webhook_lists::{at, save_call};

/// An account (user u1 → extension 100) wired to a fake AMI running `script`.
pub(crate) async fn with_ami(
    script: Script,
    edit: impl FnOnce(&mut appliance::config::Config),
) -> (Hook, Fake) {
    let fake = FakeAmi::start(vec![script]).await;
    let port = fake.port();
    let h = hook("100", |c| {
        pbx_for(c, "asterisk", port);
        edit(c);
    })
    .await;
    h.wait_pbx_up().await;
    (h, fake)
}

/// The recorded SIP click-to-call; extension lists are answered as the same server
/// answered them in `sip-actions-registered` (100 and 101 registered, 102 not).
pub(crate) fn click_to_call() -> Script {
    Script::new("sip-click-to-call")
        .idle_resync()
        .canned(
            "PJSIPShowEndpoints",
            "sip-actions-registered",
            "eps-1",
            usize::MAX,
        )
        .canned(
            "PJSIPShowContacts",
            "sip-actions-registered",
            "contacts-1",
            usize::MAX,
        )
}

/// The events the fake Flowlu received for call `id`, in order.
pub(crate) fn events_of(h: &Hook, id: &str) -> Vec<Value> {
    h.r.fake
        .requests_to(&h.events)
        .iter()
        .map(|r| r.json())
        .filter(|e| e["call"]["id"] == id)
        .collect()
}

fn calls(h: &Hook) -> i64 {
    h.r.count("SELECT count(*) FROM calls")
}

#[tokio::test(flavor = "multi_thread")]
async fn call_make_places_the_call_and_flowlus_call_id_travels_with_its_events() {
    let (h, fake) = with_ami(click_to_call(), |_| {}).await;
    let resp = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "+7 (999) 000-11-22", "call_id": "flowlu-77"}),
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let j = resp.json();
    let ours = j["call_id"].as_str().unwrap().to_string();
    assert!(ours.starts_with('c') && ours != "flowlu-77", "{j}");
    assert_eq!(j, json!({"call_id": ours, "status": "queued"}));

    let originate = &fake.wait_sent("Originate", 1).await[0];
    assert_eq!(originate.get("Channel"), Some("PJSIP/100"));
    assert_eq!(originate.get("Context"), Some("from-crm"));
    assert_eq!(originate.get("Exten"), Some("79990001122"));
    assert_eq!(
        originate.get_all("Variable"),
        [format!("CRM_CALL_ID={ours}").as_str()]
    );

    // The recorded call happens: agent answers, customer answers, both hang up.
    assert!(fake.release_all().await);
    let events = eventually(20, "call.completed at Flowlu", async || {
        let events = events_of(&h, &ours);
        events
            .iter()
            .any(|e| e["event"] == "call.completed")
            .then_some(events)
    })
    .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"call.init"), "{kinds:?}");
    assert!(kinds.contains(&"call.connected"), "{kinds:?}");
    for e in &events {
        assert_eq!(e["call"]["crm_call_id"], "flowlu-77", "{e}");
        assert_eq!(e["call"]["phone"], "79990001122", "{e}");
        assert_eq!(e["call"]["user_id"], "u1", "{e}");
    }
    let last = events.last().unwrap();
    assert_eq!(last["call"]["state"], "ended");
    assert_eq!(last["call"]["status"], "answered");

    // call.get by either id: the call object of the events.
    for id in [ours.as_str(), "flowlu-77"] {
        let got = h.call("call.get", json!({"call_id": id})).await;
        assert_eq!(got.status, 200, "{}", got.body);
        let c = got.json();
        assert_eq!(c, last["call"], "call.get {id} matches the last event");
    }
    let list = h
        .call(
            "calls.list",
            json!({"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}),
        )
        .await
        .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], ours.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn call_make_refuses_bad_numbers_unmapped_users_and_busy_agents() {
    let (h, fake) = with_ami(click_to_call(), |_| {}).await;
    for phone in [
        "+7 999 CALL-NOW",
        "12345",
        "+7 999 000 11 22 33 44",
        "*100#",
    ] {
        assert_error(
            &h.call("call.make", json!({"user_id": "u1", "phone": phone}))
                .await,
            422,
            "invalid_phone",
        );
    }
    assert_error(
        &h.call(
            "call.make",
            json!({"user_id": "u404", "phone": "89990001122"}),
        )
        .await,
        404,
        "user_not_mapped",
    );
    assert!(fake.sent_named("Originate").is_empty(), "nothing dialled");
    assert_eq!(calls(&h), 0);

    // The first call rings agent 100; while it does, 100 is busy.
    let first = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "89990001122"}),
        )
        .await;
    assert_eq!(first.status, 202, "{}", first.body);
    fake.wait_sent("Originate", 1).await;
    let busy = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "79990001133"}),
        )
        .await;
    assert_error(&busy, 409, "agent_busy");
    assert_eq!(fake.sent_named("Originate").len(), 1);
    // employees.list agrees: the PBX's (recorded) list says 100 is idle, the engine
    // knows better.
    let employees = h.call("employees.list", json!({})).await.json();
    assert_eq!(
        employees["items"][0],
        json!({"extension": "100", "name": "Ann", "state": "busy", "user_id": "u1"}),
        "{employees}"
    );
    assert_eq!(employees["items"][1]["state"], "online", "{employees}");
    // Another employee is free.
    map(&h.r, h.id, "u2", "Bea", "101");
    let other = h
        .call(
            "call.make",
            json!({"user_id": "u2", "phone": "79990001133"}),
        )
        .await;
    assert_eq!(other.status, 202, "{}", other.body);
    let second = &fake.wait_sent("Originate", 2).await[1];
    assert_eq!(second.get("Channel"), Some("PJSIP/101"));
}

#[tokio::test(flavor = "multi_thread")]
async fn busy_agents_may_be_called_when_configured_and_the_line_is_passed_on() {
    let (h, fake) = with_ami(click_to_call(), |c| c.webhook.refuse_busy_agents = false).await;
    h.r.app
        .state
        .db
        .with_conn(|c| {
            let mut s = appliance::flowlu::store::settings(c, h.id)?;
            s.default_line = "74950000001".into();
            appliance::flowlu::store::save_settings(c, h.id, &s)
        })
        .unwrap();
    for data in [
        json!({"user_id": "u1", "phone": "89990001122"}),
        json!({"user_id": "u1", "phone": "89990001133", "line": "+7 (495) 000-00-02"}),
    ] {
        let r = h.call("call.make", data).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let sent = fake.wait_sent("Originate", 2).await;
    let ids: Vec<String> =
        h.r.app
            .db()
            .prepare("SELECT id FROM calls ORDER BY started_at, rowid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(sent[0].get("Exten"), Some("79990001122"));
    assert_eq!(
        sent[0].get_all("Variable"),
        [
            format!("CRM_CALL_ID={}", ids[0]).as_str(),
            "APPLIANCE_LINE=74950000001"
        ]
    );
    assert_eq!(sent[1].get("Exten"), Some("79990001133"));
    assert_eq!(
        sent[1].get_all("Variable"),
        [
            format!("CRM_CALL_ID={}", ids[1]).as_str(),
            "APPLIANCE_LINE=+74950000002"
        ]
    );
    let line: String =
        h.r.app
            .db()
            .query_row("SELECT line FROM calls WHERE id = ?1", [&ids[1]], |r| {
                r.get(0)
            })
            .unwrap();
    assert_eq!(line, "+74950000002");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pbx_that_is_down_is_a_503_and_nothing_is_recorded() {
    let port = closed_port();
    let h = hook("100", |c| pbx_for(c, "asterisk", port)).await;
    let resp = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "89990001122", "call_id": "f-1"}),
        )
        .await;
    assert_error(&resp, 503, "pbx_unavailable");
    assert_eq!(calls(&h), 0);
    // Nothing happened, so the same request may be tried again (no stored answer).
    assert_eq!(h.r.count("SELECT count(*) FROM webhook_requests"), 0);

    // A ringing call cannot be redirected while the PBX is away.
    save_call(&h, h.id, "c-ringing", Some("f-ringing"), 1_000, |c| {
        c.state = CallState::Ringing;
        c.status = None;
    });
    assert_error(
        &h.call(
            "call.redirect",
            json!({"call_id": "f-ringing", "extension": "101"}),
        )
        .await,
        503,
        "pbx_unavailable",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_request_delivered_twice_places_one_call() {
    let (h, fake) = with_ami(click_to_call(), |c| c.webhook.refuse_busy_agents = false).await;
    let data = json!({"user_id": "u1", "phone": "89990001122", "call_id": "f-1"});
    let first = h
        .call_with("call.make", data.clone(), &[("x-request-id", "req-1")])
        .await;
    assert_eq!(first.status, 202, "{}", first.body);
    // Again with the same X-Request-Id, and with another one but the same call_id.
    for rid in ["req-1", "req-2"] {
        let again = h
            .call_with("call.make", data.clone(), &[("x-request-id", rid)])
            .await;
        assert_eq!((again.status, &again.body), (first.status, &first.body));
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
    }
    // The same X-Request-Id for a different request is refused, not replayed.
    assert_error(
        &h.call_with(
            "call.make",
            json!({"user_id": "u1", "phone": "89990009999"}),
            &[("x-request-id", "req-1")],
        )
        .await,
        409,
        "request_id_reused",
    );
    // Without a call_id, the X-Request-Id alone identifies the request.
    let data2 = json!({"user_id": "u1", "phone": "89990001133"});
    let a = h
        .call_with("call.make", data2.clone(), &[("x-request-id", "req-3")])
        .await;
    let b = h
        .call_with("call.make", data2, &[("x-request-id", "req-3")])
        .await;
    assert_eq!(a.status, 202);
    assert_eq!((a.status, &a.body), (b.status, &b.body));
    assert_eq!(fake.wait_sent("Originate", 2).await.len(), 2);

    // Ten identical deliveries at the same moment: one call.
    let data3 = json!({"user_id": "u1", "phone": "89990001144", "call_id": "f-race"});
    let answers = futures_join(
        (0..10)
            .map(|n| {
                let rid = format!("race-{}", n % 2); // two request ids, one call_id
                let (h, data) = (&h, data3.clone());
                async move {
                    h.call_with("call.make", data, &[("x-request-id", &rid)])
                        .await
                }
            })
            .collect(),
    )
    .await;
    for a in &answers {
        assert_eq!((a.status, &a.body), (answers[0].status, &answers[0].body));
    }
    let replayed = answers
        .iter()
        .filter(|a| a.header("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 9, "one acted, nine were answered from it");
    assert_eq!(answers[0].status, 202, "{}", answers[0].body);
    let originates = fake.sent_named("Originate");
    assert_eq!(originates.len(), 3, "exactly one more Originate");
    assert_eq!(originates[2].get("Exten"), Some("79990001144"));
    assert_eq!(
        h.r.count("SELECT count(*) FROM calls WHERE crm_call_id = 'f-race'"),
        1
    );
}

/// Runs futures concurrently on this task and returns their outputs in order.
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(Option::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn call_redirect_sends_a_ringing_call_to_another_employee() {
    let (h, fake) = with_ami(Script::new("sip-redirect-ringing"), |_| {}).await;
    map(&h.r, h.id, "u2", "Bea", "101");
    // The carrier's call rings 100 and 101.
    assert!(
        fake.release_until("Device: PJSIP/100\r\nState: RINGING")
            .await
    );
    let ours: String = eventually(10, "the incoming call, ringing", async || {
        h.r.app
            .db()
            .query_row(
                "SELECT id FROM calls WHERE direction = 'incoming' AND state = 'ringing'",
                [],
                |r| r.get(0),
            )
            .ok()
    })
    .await;
    assert_error(
        &h.call("call.redirect", json!({"call_id": ours, "user_id": "u404"}))
            .await,
        404,
        "user_not_mapped",
    );
    let resp = h
        .call_with(
            "call.redirect",
            json!({"call_id": ours, "user_id": "u2"}),
            &[("x-request-id", "redir-1")],
        )
        .await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(
        resp.json(),
        json!({"call_id": ours, "status": "redirecting", "extension": "101"})
    );
    let redirect = &fake.wait_sent("Redirect", 1).await[0];
    assert_eq!(redirect.get("Channel"), Some("PJSIP/trunk-00000026"));
    assert_eq!(redirect.get("Context"), Some("agents-sip"));
    assert_eq!(redirect.get("Exten"), Some("101"));
    // Delivered again: the same answer, no second Redirect.
    let again = h
        .call_with(
            "call.redirect",
            json!({"call_id": ours, "user_id": "u2"}),
            &[("x-request-id", "redir-1")],
        )
        .await;
    assert_eq!((again.status, &again.body), (resp.status, &resp.body));
    assert_eq!(fake.sent_named("Redirect").len(), 1);

    // The call lands on 101 and ends; then there is nothing to redirect.
    fake.release_all().await;
    eventually(10, "the call ended", async || {
        let c = h.call("call.get", json!({"call_id": ours})).await.json();
        (c["state"] == "ended").then_some(c)
    })
    .await;
    assert_error(
        &h.call(
            "call.redirect",
            json!({"call_id": ours, "extension": "100"}),
        )
        .await,
        409,
        "call_not_ringing",
    );
    // A call the PBX has no customer leg for (only in the table) cannot be moved either.
    save_call(&h, h.id, "c-stale", None, at(0), |c| {
        c.state = CallState::Ringing;
        c.status = None;
    });
    assert_error(
        &h.call(
            "call.redirect",
            json!({"call_id": "c-stale", "extension": "101"}),
        )
        .await,
        409,
        "call_not_ringing",
    );
}

/// A webhook body with a key given twice (`phone` in `data`, or `type`) is a 400: it
/// dials nothing and stores nothing, not even an idempotency claim. The same request
/// without the duplicate places the call.
#[tokio::test(flavor = "multi_thread")]
async fn a_json_key_given_twice_is_a_400_and_places_no_call() {
    let (h, fake) = with_ami(click_to_call(), |_| {}).await;
    h.wait_pbx_up().await;
    let json_ct = [
        ("content-type", "application/json"),
        ("x-request-id", "dup-1"),
    ];
    for body in [
        r#"{"type": "call.make", "data": {"user_id": "u1", "phone": "+79990001122", "phone": "+79990009999"}}"#,
        r#"{"type": "health.check", "type": "call.make", "data": {"user_id": "u1", "phone": "+79990001122"}}"#,
    ] {
        let resp = h
            .post_raw(&h.path, &json_ct, body.as_bytes().to_vec())
            .await;
        assert_error(&resp, 400, "invalid_json");
        assert!(resp.body.contains("given twice"), "{}", resp.body);
    }
    assert_eq!(calls(&h), 0);
    assert_eq!(h.r.count("SELECT count(*) FROM webhook_requests"), 0);
    assert!(fake.sent_named("Originate").is_empty(), "nothing dialled");
    let ok = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "+79990001122"}),
        )
        .await;
    assert_eq!(ok.status, 202, "{}", ok.body);
}
