//! Issue 8, parts 1 and 5: the click-to-call URL (`GET /c2c`) against the in-process
//! appliance, the fake Flowlu and the fake AMI replaying the recorded click-to-call; and
//! one customer number however it is spelled (call.make, /c2c, the PBX's caller ID,
//! calls.list filters).

use serde_json::json;

use crate::call_events::events_until;
use crate::fake_pbx::ami::Script;
use crate::flowlu_support::Ctx;
use crate::harness::{Resp, eventually};
use crate::webhook::{Hook, assert_error, hook, map, pbx_for};
use crate::webhook_calls::{click_to_call, events_of, with_ami};

async fn session(h: &Hook) -> String {
    h.r.session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await
}

/// Turns the URL on (or off) from the settings page; returns the key in force.
async fn set_enabled(h: &Hook, on: bool) -> String {
    let s = session(h).await;
    let resp =
        h.r.act("c2c", &s, &[("enabled", if on { "on" } else { "off" })])
            .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    key_of(h)
}

fn key_of(h: &Hook) -> String {
    h.r.app
        .db()
        .query_row(
            "SELECT key FROM c2c_settings WHERE integration_id = ?1",
            [h.id],
            |r| r.get(0),
        )
        .unwrap()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn c2c(h: &Hook, query: &str) -> Resp {
    h.r.app.get(&format!("/c2c?{query}")).await
}

fn url(agent: &str, to: &str, key: &str) -> String {
    format!("agent={}&to={}&key={}", enc(agent), enc(to), enc(key))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_url_places_the_call_as_call_make_does() {
    let (h, fake) = with_ami(click_to_call(), |_| {}).await;
    // Off by default: even a well-formed request is refused, and nothing is stored.
    assert_error(
        &c2c(&h, &url("u1", "89990001122", "x")).await,
        403,
        "forbidden",
    );
    assert_eq!(h.r.count("SELECT count(*) FROM c2c_settings"), 0);

    // The settings page turns it on and shows the URL with the key.
    let s = session(&h).await;
    let page = h.r.act("c2c", &s, &[("enabled", "on")]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let key = key_of(&h);
    assert_eq!(key.len(), 32);
    assert!(
        page.body.contains(&format!(
            "c2c?agent={{USER_ID}}&amp;to={{PHONE}}&amp;key={key}"
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"c2c-rotate\""));

    let resp = c2c(
        &h,
        &format!(
            "{}&from={}&uuid=crm-deal:42",
            url("u1", "+7 (999) 000-11-22", &key),
            enc("+7 495 000-00-02")
        ),
    )
    .await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
    let ours = resp.json()["call_id"].as_str().unwrap().to_string();
    assert_eq!(resp.json(), json!({"call_id": ours, "status": "queued"}));
    // The caller's own `uuid` is stored with the call (for result callbacks).
    assert_eq!(
        h.r.count(&format!(
            "SELECT count(*) FROM calls WHERE id = '{ours}' AND client_uuid = 'crm-deal:42'"
        )),
        1
    );
    let originate = &fake.wait_sent("Originate", 1).await[0];
    assert_eq!(originate.get("Channel"), Some("PJSIP/100"));
    assert_eq!(originate.get("Exten"), Some("79990001122"));
    assert!(
        originate
            .get_all("Variable")
            .contains(&"APPLIANCE_LINE=+74950000002"),
        "{originate:?}"
    );

    // The call is the engine's like any other: events reach Flowlu with the number.
    assert!(fake.release_all().await);
    let events = eventually(20, "call.completed at Flowlu", async || {
        let events = events_of(&h, &ours);
        events
            .iter()
            .any(|e| e["event"] == "call.completed")
            .then_some(events)
    })
    .await;
    for e in &events {
        assert_eq!(e["call"]["phone"], "79990001122", "{e}");
        assert_eq!(e["call"]["user_id"], "u1", "{e}");
    }

    // The key never reaches the log: the access log masks it (checked in redact's unit
    // test); here, no row or event carries it.
    let dump: String =
        h.r.fake
            .requests_to(&h.events)
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
    assert!(!dump.contains(&key));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_rotated_and_disabled_keys_are_the_same_403() {
    let (h, fake) = with_ami(click_to_call(), |c| c.webhook.refuse_busy_agents = false).await;
    let key = set_enabled(&h, true).await;
    let forbidden = |r: &Resp| {
        assert_error(r, 403, "forbidden");
        assert!(!r.body.contains("disabled") && !r.body.contains("rotated"));
    };
    let first = c2c(&h, &url("u1", "89990001122", "wrong")).await;
    forbidden(&first);
    forbidden(&c2c(&h, "agent=u1&to=89990001122").await);
    forbidden(&c2c(&h, &url("u1", "89990001122", &key[..31])).await);
    // A bad query with a bad key tells nothing about the query.
    forbidden(&c2c(&h, "key=nope").await);
    assert!(fake.sent_named("Originate").is_empty());

    // Rotating: the old key stops working at once, the new one works.
    let s = session(&h).await;
    assert_eq!(h.r.act("c2c-rotate", &s, &[]).await.status, 200);
    let new = key_of(&h);
    assert_ne!(new, key);
    let old = c2c(&h, &url("u1", "89990001122", &key)).await;
    forbidden(&old);
    assert_eq!(old.body, first.body, "an old key looks like any wrong key");
    assert_eq!(c2c(&h, &url("u1", "89990001122", &new)).await.status, 202);

    // Off: the key is refused like a wrong one; on again, the same key works.
    assert_eq!(set_enabled(&h, false).await, new);
    let off = c2c(&h, &url("u1", "89990001133", &new)).await;
    forbidden(&off);
    assert_eq!(off.body, first.body);
    assert_eq!(set_enabled(&h, true).await, new);
    assert_eq!(c2c(&h, &url("u1", "89990001133", &new)).await.status, 202);
    assert_eq!(fake.wait_sent("Originate", 2).await.len(), 2);

    // HEAD must never place a call; other methods neither.
    let head =
        h.r.app
            .request(
                "HEAD",
                &format!("/c2c?{}", url("u1", "89990001144", &new)),
                &[],
                None,
            )
            .await;
    assert_eq!(head.status, 405);
    let post =
        h.r.app
            .request(
                "POST",
                &format!("/c2c?{}", url("u1", "89990001144", &new)),
                &[],
                None,
            )
            .await;
    assert_eq!(post.status, 405);
    assert_eq!(fake.sent_named("Originate").len(), 2);

    // The settings forms are CSRF-protected like the others: no valid session, no change.
    let forged = h.r.act("c2c-rotate", "forged", &[]).await;
    assert_eq!(forged.status, 403);
    assert_eq!(key_of(&h), new);

    // Disconnected from Flowlu (as the webhook): refused like a wrong key.
    let s = session(&h).await;
    assert_eq!(h.r.act("disconnect", &s, &[]).await.status, 200);
    let gone = c2c(&h, &url("u1", "89990001155", &new)).await;
    forbidden(&gone);
    assert_eq!(fake.sent_named("Originate").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_rate_limited_per_key() {
    let (h, _fake) = with_ami(click_to_call(), |c| {
        c.webhook.refuse_busy_agents = false;
        c.c2c.rate_per_minute = 1;
        c.c2c.burst = 2;
    })
    .await;
    let key = set_enabled(&h, true).await;
    // Refused requests count too (a bad number is still a request).
    assert_error(&c2c(&h, &url("u1", "12", &key)).await, 422, "invalid_phone");
    assert_eq!(c2c(&h, &url("u1", "89990001122", &key)).await.status, 202);
    let limited = c2c(&h, &url("u1", "89990001133", &key)).await;
    assert_error(&limited, 429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // A wrong key is not limited (it is refused), and does not use up the bucket of
    // the right one.
    assert_error(
        &c2c(&h, &url("u1", "89990001133", "x")).await,
        403,
        "forbidden",
    );
    // Rotation gives a fresh bucket.
    let s = session(&h).await;
    assert_eq!(h.r.act("c2c-rotate", &s, &[]).await.status, 200);
    assert_eq!(
        c2c(&h, &url("u1", "89990001133", &key_of(&h))).await.status,
        202
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_call_makes_refusals() {
    let (h, fake) = with_ami(click_to_call(), |_| {}).await;
    let key = set_enabled(&h, true).await;
    for to in [
        "+7 999 CALL-NOW",
        "12345",
        "+7 999 000 11 22 33 44",
        "*100#",
    ] {
        assert_error(&c2c(&h, &url("u1", to, &key)).await, 422, "invalid_phone");
    }
    assert_error(
        &c2c(&h, &url("u404", "89990001122", &key)).await,
        404,
        "user_not_mapped",
    );
    assert_error(
        &c2c(&h, &format!("agent=u1&key={key}")).await,
        422,
        "invalid_field",
    );
    assert_error(
        &c2c(&h, &format!("{}&to=1", url("u1", "89990001122", &key))).await,
        422,
        "invalid_field",
    );
    assert!(fake.sent_named("Originate").is_empty(), "nothing dialled");
    assert_eq!(h.r.count("SELECT count(*) FROM calls"), 0);

    // The extension works as the agent too; then the agent is busy (409).
    let first = c2c(&h, &url("100", "89990001122", &key)).await;
    assert_eq!(first.status, 202, "{}", first.body);
    fake.wait_sent("Originate", 1).await;
    assert_error(
        &c2c(&h, &url("u1", "89990001133", &key)).await,
        409,
        "agent_busy",
    );
    // A value that is one user's id and another's extension is refused, not guessed.
    map(&h.r, h.id, "101", "Bea", "102");
    map(&h.r, h.id, "u3", "Cid", "101");
    assert_error(
        &c2c(&h, &url("101", "89990001133", &key)).await,
        422,
        "ambiguous_agent",
    );
    assert_eq!(fake.sent_named("Originate").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn pbx_down_is_503() {
    let port = crate::webhook::closed_port();
    let h = hook("100", |c| pbx_for(c, "asterisk", port)).await;
    let key = set_enabled(&h, true).await;
    assert_error(
        &c2c(&h, &url("u1", "89990001122", &key)).await,
        503,
        "pbx_unavailable",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn browsers_get_a_page_and_request_id_makes_reopening_safe() {
    let (h, fake) = with_ami(click_to_call(), |c| c.webhook.refuse_busy_agents = false).await;
    let key = set_enabled(&h, true).await;
    let q = format!("{}&request_id=crm-link-1", url("u1", "89990001122", &key));
    let html = [("accept", "text/html,application/xhtml+xml")];
    let page =
        h.r.app
            .request("GET", &format!("/c2c?{q}"), &html, None)
            .await;
    assert_eq!(page.status, 202, "{}", page.body);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    let id: String =
        h.r.app
            .db()
            .query_row("SELECT id FROM calls", [], |r| r.get(0))
            .unwrap();
    assert!(page.body.contains(&id), "{}", page.body);
    assert!(
        !page.body.contains(&key),
        "the page does not repeat the key"
    );
    // Reopened (reload, a second click): the same answer, no second call.
    let again = c2c(&h, &q).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json()["call_id"], id.as_str());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Without request_id every open is a new call.
    assert_eq!(c2c(&h, &url("u1", "89990001122", &key)).await.status, 202);
    assert_eq!(fake.wait_sent("Originate", 2).await.len(), 2);
    assert_eq!(h.r.count("SELECT count(*) FROM calls"), 2);
    // An error as a page, with its status.
    let bad =
        h.r.app
            .request(
                "GET",
                &format!("/c2c?{}", url("u1", "12", &key)),
                &html,
                None,
            )
            .await;
    assert_eq!(bad.status, 422);
    assert!(bad.header("content-type").unwrap().starts_with("text/html"));
    assert!(bad.body.contains("invalid_phone"), "{}", bad.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_spellings_of_a_number_are_one_customer() {
    let (h, fake) = with_ami(click_to_call(), |c| c.webhook.refuse_busy_agents = false).await;
    let key = set_enabled(&h, true).await;
    // call.make and /c2c with the three spellings (and `+` unencoded, as people paste).
    let r = h
        .call(
            "call.make",
            json!({"user_id": "u1", "phone": "+7 (999) 000-11-22"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(c2c(&h, &url("u1", "89990001122", &key)).await.status, 202);
    assert_eq!(
        c2c(&h, &format!("agent=u1&to=+79990001122&key={key}"))
            .await
            .status,
        202
    );
    assert_eq!(c2c(&h, &url("u1", "79990001122", &key)).await.status, 202);
    let sent = fake.wait_sent("Originate", 4).await;
    for o in &sent {
        assert_eq!(o.get("Exten"), Some("79990001122"), "{o:?}");
    }
    let phones: Vec<String> =
        h.r.app
            .db()
            .prepare("SELECT DISTINCT phone FROM calls")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(phones, ["79990001122"]);
    // calls.list finds all four by any spelling, and nothing for another number.
    for spelling in ["+7 (999) 000-11-22", "89990001122", "79990001122"] {
        let list = h
            .call(
                "calls.list",
                json!({"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z",
                       "phone": spelling}),
            )
            .await;
        assert_eq!(list.status, 200, "{}", list.body);
        assert_eq!(list.json()["total"], 4, "{spelling}: {}", list.body);
    }
    let none = h
        .call(
            "calls.list",
            json!({"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z",
                   "phone": "89990001133"}),
        )
        .await;
    assert_eq!(none.json()["total"], 0);
    assert_error(
        &h.call(
            "calls.list",
            json!({"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z",
                   "phone": "call me"}),
        )
        .await,
        422,
        "invalid_phone",
    );
}

/// The PBX's caller ID of an incoming call, as a trunk writes it nationally, becomes
/// the account's one spelling in the call row and in every Flowlu event.
#[tokio::test(flavor = "multi_thread")]
async fn incoming_caller_ids_are_normalized_with_the_accounts_country() {
    let script = Script::new("sip-inbound-answered")
        .idle_resync()
        .rewrite("79161234567", "89161234567");
    let (h, fake) = with_ami(script, |_| {}).await;
    map(&h.r, h.id, "u2", "Bea", "101");
    fake.release_all().await;
    let events = events_until(&h.r, &h.events, "call.completed").await;
    for e in &events {
        assert_eq!(e["call"]["direction"], "incoming", "{e}");
        assert_eq!(e["call"]["phone"], "79161234567", "{e}");
    }
    let stored: String =
        h.r.app
            .db()
            .query_row("SELECT phone FROM calls", [], |r| r.get(0))
            .unwrap();
    assert_eq!(stored, "79161234567");
    let list = h
        .call(
            "calls.list",
            json!({"from": "2020-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z",
                   "phone": "8 (916) 123-45-67"}),
        )
        .await;
    assert_eq!(list.json()["total"], 1, "{}", list.body);
}

/// `systemctl reload` (here its entry point, `appliance::reload::reload`, on a rewritten
/// file): a live section ([c2c]) applies at once, a restart-only one ([pbx]) is reported
/// and kept, and a broken file changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_applies_the_new_rate_limit_and_refuses_a_broken_file() {
    use appliance::config::LoadOptions;

    let (h, _fake) = with_ami(click_to_call(), |c| {
        c.c2c.rate_per_minute = 1;
        c.c2c.burst = 1;
    })
    .await;
    let key = set_enabled(&h, true).await;
    let bad_number = url("u1", "12", &key);
    assert_error(&c2c(&h, &bad_number).await, 422, "invalid_phone");
    let limited = c2c(&h, &bad_number).await;
    assert_error(&limited, 429, "rate_limited");
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 50, "one request a minute: {retry}");

    // Config A was the above; the file now says 6000 a minute, and another PBX host.
    let path = h.r.app.dir.path().join("reloaded.toml");
    let mut b = h.r.app.config.clone();
    b.c2c.rate_per_minute = 6000;
    b.pbx.host = "192.0.2.9".into();
    std::fs::write(&path, toml::to_string(&b).unwrap()).unwrap();
    let options = LoadOptions {
        path: Some(path.clone()),
        env: Vec::new(),
        flags: Vec::new(),
    };
    let state = &h.r.app.state;
    let targets = appliance::reload::Targets {
        live: &state.live,
        outbox: &state.outbox,
        set_log_level: |_| true,
    };
    let outcome = appliance::reload::reload(&targets, &options);
    assert_eq!(
        outcome.refused,
        None,
        "{}",
        std::fs::read_to_string(&path).unwrap()
    );
    assert_eq!(outcome.applied, vec!["c2c.rate_per_minute".to_string()]);
    assert_eq!(outcome.need_restart, vec!["pbx.host".to_string()]);
    assert_eq!(state.current().pbx.host, h.r.app.config.pbx.host, "kept");
    // The bucket now refills at 100 a second: the limiter lets the next one through.
    eventually(10, "the new rate in force", async || {
        (c2c(&h, &bad_number).await.status == 422).then_some(())
    })
    .await;

    // An invalid file: logged, nothing changes.
    b.c2c.rate_per_minute = 0;
    b.c2c.burst = 7;
    std::fs::write(&path, toml::to_string(&b).unwrap()).unwrap();
    let outcome = appliance::reload::reload(&targets, &options);
    let why = outcome.refused.unwrap();
    assert!(why.contains("c2c.rate_per_minute"), "{why}");
    assert!(outcome.applied.is_empty());
    assert_eq!(state.current().c2c.rate_per_minute, 6000);
    assert_eq!(state.current().c2c.burst, 1);
    std::fs::write(&path, "[c2c\n").unwrap();
    assert!(
        appliance::reload::reload(&targets, &options)
            .refused
            .is_some()
    );
}
