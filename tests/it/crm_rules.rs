//! The contact cache at work (issue 8 parts 3 and 4), end to end with the fake PBX
//! replaying recorded calls and the fake Flowlu: routing to the responsible manager when
//! Flowlu's routing answer does not come in time, a follow-up task for a missed call, and
//! a contact (and lead) for an unknown number, created once across retries.

use std::time::Duration;

use appliance::flowlu::crm::Account;
use appliance::flowlu::crm::store::{self as crm, Rules};
use appliance::flowlu::store::{self as flowlu_store, IncomingRouting};
use serde_json::json;

use crate::call_events::{ask_agi, ring, setup};
use crate::fake_flowlu::Reply;
use crate::fake_pbx::Fake;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::flowlu_support::Rig;
use crate::harness::eventually;

const ACCOUNT_LIST: &str = "/api/v1/module/crm/account/list";
const ACCOUNT_CREATE: &str = "/api/v1/module/crm/account/create";
const LEAD_CREATE: &str = "/api/v1/module/crm/lead/create";
const TASK_CREATE: &str = "/api/v1/module/task/tasks/create";
/// The caller in every recorded incoming call.
const CALLER: &str = "79161234567";

/// The recorded Asterisk call `fixture` (held until released) for an account with
/// `routing` and the call-handling `rules`: the fake PBX, the rig, the account id and its
/// event hook.
async fn recorded_call(
    fixture: &str,
    routing: IncomingRouting,
    rules: Rules,
) -> (Fake, Rig, i64, String) {
    let fake = FakeAmi::start(vec![Script::new(fixture).idle_resync()]).await;
    let (r, id, hook) = setup("asterisk", &fake, routing).await;
    r.app
        .state
        .db
        .with_conn(|c| crm::save_rules(c, id, &rules))
        .unwrap();
    (fake, r, id, hook)
}

/// Puts the caller in the cache as a contact whose responsible manager is `manager`.
fn cache_caller(r: &Rig, id: i64, manager: &str) {
    let account = Account {
        id: "4242".into(),
        name: "Customer".into(),
        manager_id: Some(manager.into()),
        phones: vec![format!("+{CALLER}")],
        version: Some(1),
        retired: false,
    };
    r.app
        .state
        .db
        .with_conn(|c| crm::store_account(c, id, &account, "7"))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_flowlus_choice_in_time_the_responsible_manager_gets_the_call() {
    for (reply, fallback_on) in [
        (
            Reply::json(200, json!({"route": {"extension": "100"}}))
                .delayed(Duration::from_secs(3)),
            true,
        ),
        (Reply::status(500), true),
        // Answered at once, but without an employee.
        (Reply::json(200, json!({"response": {}})), true),
        (
            Reply::json(200, json!({"route": {"extension": "100"}}))
                .delayed(Duration::from_secs(3)),
            false,
        ),
    ] {
        let (fake, r, id, hook) = recorded_call(
            "sip-inbound-answered",
            IncomingRouting::Crm,
            Rules {
                fallback_routing: fallback_on,
                ..Rules::default()
            },
        )
        .await;
        // User 19 (Cy, extension 102, not in this call) is the caller's responsible manager.
        add_manager(&r, id, "19", "102");
        cache_caller(&r, id, "19");
        r.fake.queue_reply(&hook, reply);
        ring(&fake).await;
        let started = std::time::Instant::now();
        let commands = ask_agi(&r, "1795416368.27").await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "within the deadline"
        );
        if fallback_on {
            assert_eq!(
                commands,
                vec![
                    "SET VARIABLE APPLIANCE_ROUTE \"PJSIP/102\"",
                    "SET VARIABLE APPLIANCE_ROUTE_EXTEN \"102\"",
                ]
            );
        } else {
            assert!(commands.is_empty(), "off: the PBX routes ({commands:?})");
        }
    }
}

fn add_manager(r: &Rig, id: i64, user: &str, extension: &str) {
    r.app
        .state
        .db
        .with_conn(|c| {
            flowlu_store::add_user(c, id, user, "Cy")?;
            flowlu_store::set_extension(c, id, user, Some(extension))
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_manager_or_an_unknown_caller_is_left_to_the_pbx() {
    // The manager's extension (101) is already ringing in this very call: busy.
    let (fake, r, id, hook) = recorded_call(
        "sip-inbound-answered",
        IncomingRouting::Crm,
        Rules {
            fallback_routing: true,
            ..Rules::default()
        },
    )
    .await;
    cache_caller(&r, id, "18");
    r.fake.queue_reply(&hook, Reply::status(503));
    ring(&fake).await;
    assert!(ask_agi(&r, "1795416368.27").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_caller_with_no_flowlu_answer_is_left_to_the_pbx() {
    let (fake, r, _, hook) = recorded_call(
        "sip-inbound-answered",
        IncomingRouting::Crm,
        Rules {
            fallback_routing: true,
            ..Rules::default()
        },
    )
    .await;
    r.fake.queue_reply(&hook, Reply::status(503));
    ring(&fake).await;
    assert!(ask_agi(&r, "1795416368.27").await.is_empty());
}

/// `YYYY-MM-DD HH:MM:SS` UTC of unix ms.
fn utc_text(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .unwrap()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missed_call_becomes_a_task_for_the_responsible_manager() {
    let (fake, r, id, _) = recorded_call(
        "sip-inbound-missed",
        IncomingRouting::Pbx,
        Rules {
            missed_task: true,
            task_due_minutes: 30,
            default_user_id: "99".into(),
            create_contact: true,
            ..Rules::default()
        },
    )
    .await;
    cache_caller(&r, id, "17");
    // The first attempt fails: the task is retried, and created once.
    r.fake.queue_reply(TASK_CREATE, Reply::status(502));
    r.fake.set_reply(
        TASK_CREATE,
        Reply::json(200, json!({"response": {"id": 3131}})),
    );
    fake.release_all().await;
    let task = eventually(20, "the task created", async || {
        let got = r.fake.requests_to(TASK_CREATE);
        (got.len() == 2).then(|| got[1].clone())
    })
    .await;
    let form = task.form();
    assert_eq!(form["responsible_id"], "17", "{form:?}");
    let ended: i64 = r
        .app
        .db()
        .query_row(
            "SELECT ended_at FROM calls WHERE status = 'missed'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(form["deadline"], utc_text(ended + 30 * 60_000));
    assert!(form["name"].contains("+79161234567"), "{form:?}");
    assert!(task.header("authorization").unwrap().starts_with("Bearer "));
    // A known caller: no contact is created.
    assert_eq!(r.fake.count(ACCOUNT_CREATE), 0);
    eventually(10, "the task row delivered", async || {
        let n = r.count(
            "SELECT count(*) FROM outbox WHERE kind = 'crm.task.create' AND state = 'delivered'",
        );
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(
        r.count("SELECT count(*) FROM crm_created WHERE entity = 'task'"),
        1
    );
    assert_eq!(r.fake.count(TASK_CREATE), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_number_gets_one_contact_and_lead_even_when_flowlu_fails_first() {
    let (fake, r, id, _) = recorded_call(
        "sip-inbound-answered",
        IncomingRouting::Pbx,
        Rules {
            create_contact: true,
            create_lead: true,
            default_user_id: "18".into(),
            ..Rules::default()
        },
    )
    .await;
    // Flowlu creates the contact but answers 500 (the answer is lost to us); on the
    // retry it lists the contact it made.
    r.fake.queue_reply(
        ACCOUNT_LIST,
        Reply::json(200, json!({"response": {"items": []}})),
    );
    r.fake.set_reply(
        ACCOUNT_LIST,
        Reply::json(
            200,
            json!({"response": {"total": 1, "items": [{"id": 9001, "owner_id": 18,
                   "phone": "+79161234567"}]}}),
        ),
    );
    r.fake.set_reply(ACCOUNT_CREATE, Reply::status(500));
    r.fake.set_reply(
        LEAD_CREATE,
        Reply::json(200, json!({"response": {"id": 77}})),
    );
    fake.release_all().await;
    let lead = eventually(20, "the lead created", async || {
        r.fake.requests_to(LEAD_CREATE).first().cloned()
    })
    .await;
    let creates = r.fake.requests_to(ACCOUNT_CREATE);
    assert_eq!(creates.len(), 1, "created once");
    let contact = creates[0].form();
    assert_eq!(contact["type"], "2");
    assert_eq!(contact["phone"], "+79161234567");
    assert_eq!(contact["owner_id"], "18");
    let list = &r.fake.requests_to(ACCOUNT_LIST)[0];
    assert_eq!(list.method, "GET");
    assert!(
        list.query
            .as_deref()
            .unwrap()
            .contains("filter%5Bphone%5D=%2B79161234567")
    );
    let lead = lead.form();
    assert_eq!(lead["contact_id"], "9001", "{lead:?}");
    assert_eq!(lead["contact_phone"], "+79161234567");
    assert_eq!(lead["assignee_id"], "18");
    // The number is known now: the next call from it is no longer "unknown".
    let known = r
        .app
        .state
        .db
        .with_conn(|c| crm::lookup(c, id, CALLER))
        .unwrap()
        .unwrap();
    assert_eq!(known.contact_id, "9001");
    assert_eq!(known.manager_id.as_deref(), Some("18"));
    eventually(10, "both rows delivered", async || {
        let n =
            r.count("SELECT count(*) FROM outbox WHERE kind LIKE 'crm.%' AND state = 'delivered'");
        (n == 2).then_some(())
    })
    .await;
    assert_eq!(r.fake.count(LEAD_CREATE), 1);
    assert_eq!(r.fake.count(ACCOUNT_CREATE), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_contact_created_after_a_plain_failure_is_created_once_and_cached() {
    let (fake, r, id, _) = recorded_call(
        "sip-inbound-answered",
        IncomingRouting::Pbx,
        Rules {
            create_contact: true,
            ..Rules::default()
        },
    )
    .await;
    r.fake.queue_reply(ACCOUNT_CREATE, Reply::status(500));
    r.fake.set_reply(
        ACCOUNT_CREATE,
        Reply::json(200, json!({"response": {"id": 9100}})),
    );
    fake.release_all().await;
    eventually(20, "the contact row delivered", async || {
        let n = r.count(
            "SELECT count(*) FROM outbox WHERE kind = 'crm.contact.create' AND state = 'delivered'",
        );
        (n == 1).then_some(())
    })
    .await;
    assert_eq!(r.fake.count(ACCOUNT_CREATE), 2, "one failure, one success");
    assert_eq!(r.count("SELECT count(*) FROM crm_created"), 1);
    let known = r
        .app
        .state
        .db
        .with_conn(|c| crm::lookup(c, id, CALLER))
        .unwrap()
        .unwrap();
    assert_eq!(
        (known.contact_id.as_str(), known.manager_id),
        ("9100", None)
    );
    assert_eq!(r.fake.count(LEAD_CREATE), 0, "no lead unless asked");
}

/// Waits until the one contact row was delivered.
async fn contact_delivered(r: &Rig) {
    eventually(20, "the contact row delivered", async || {
        let n = r.count(
            "SELECT count(*) FROM outbox WHERE kind = 'crm.contact.create' AND state = 'delivered'",
        );
        (n == 1).then_some(())
    })
    .await;
}

/// The cached contact of `number`.
fn cached(r: &Rig, id: i64, number: &str) -> Option<crm::Known> {
    r.app
        .state
        .db
        .with_conn(|c| crm::lookup(c, id, number))
        .unwrap()
}

/// A recorded call from an unknown caller with contact creation on, Flowlu listing
/// `items` for any `account/list` and creating account 9200; returns once the contact
/// row was delivered.
async fn contact_call(items: serde_json::Value) -> (Rig, i64) {
    let (fake, r, id, _) = recorded_call(
        "sip-inbound-answered",
        IncomingRouting::Pbx,
        Rules {
            create_contact: true,
            ..Rules::default()
        },
    )
    .await;
    r.fake.set_reply(
        ACCOUNT_LIST,
        Reply::json(200, json!({"response": {"total": 3, "items": items}})),
    );
    r.fake.set_reply(
        ACCOUNT_CREATE,
        Reply::json(200, json!({"response": {"id": 9200}})),
    );
    fake.release_all().await;
    contact_delivered(&r).await;
    (r, id)
}

/// Flowlu ignores a filter it does not support: `account/list?filter[phone]=` then lists
/// every account. An account that does not have the caller's number never becomes the
/// caller's contact (nor is cached as such); the contact is created instead.
#[tokio::test(flavor = "multi_thread")]
async fn a_listed_account_without_the_callers_number_is_not_taken_as_the_contact() {
    let (r, id) = contact_call(json!([
        {"id": 1, "owner_id": 18, "phone": "+74950000000"},
        {"id": 2, "phone": "", "phone2": "+79161234568"},
        {"id": 3}
    ]))
    .await;
    assert_eq!(r.fake.count(ACCOUNT_LIST), 1);
    assert_eq!(r.fake.count(ACCOUNT_CREATE), 1, "no listed account matched");
    let known = cached(&r, id, CALLER).unwrap();
    assert_eq!(known.contact_id, "9200");
    for other in ["74950000000", "79161234568"] {
        let found = cached(&r, id, other);
        assert!(found.is_none(), "{other} cached: {found:?}");
    }
    assert_eq!(
        r.count("SELECT count(*) FROM crm_created WHERE entity_id IN ('1', '2', '3')"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listed_account_that_has_the_callers_number_is_the_contact() {
    let (r, id) = contact_call(json!([
        {"id": 1, "owner_id": 18, "phone": "+74950000000"},
        {"id": 2, "owner_id": 19, "phone": "+74950000001",
         "phone3": "+7 (916) 123-45-67"},
        {"id": 3, "phone": "+79161234560"}
    ]))
    .await;
    assert_eq!(r.fake.count(ACCOUNT_CREATE), 0, "found, not created");
    let known = cached(&r, id, CALLER).unwrap();
    assert_eq!(
        (known.contact_id.as_str(), known.manager_id.as_deref()),
        ("2", Some("19"))
    );
}
