//! The Asterisk adapter against the fake AMI replaying the recorded transcripts.

use std::time::Duration;

use appliance::config::PbxConfig;
use appliance::pbx::{ChannelState, Event, LinkState, OriginateRequest, PbxError};

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::{Fake, PbxUnderTest, pbx_config};

/// The test `[pbx]` for `fake`, with the recordings' dialplan contexts.
pub(crate) fn config(fake: &Fake) -> PbxConfig {
    let mut c = pbx_config("asterisk", fake.port());
    c.context = "from-crm".into();
    c.transfer_context = "agents-sip".into();
    c
}

/// A click-to-call as the recordings made it.
pub(crate) fn click(call_id: &str, agent: &str, customer: &str) -> OriginateRequest {
    OriginateRequest {
        call_id: call_id.into(),
        agent: agent.into(),
        customer: customer.into(),
        caller_id_name: "CRM".into(),
        caller_id_number: customer.into(),
        ring: None,
        line: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_in_with_md5_filters_events_and_resyncs() {
    let fake = FakeAmi::start(vec![Script::new("sip-click-to-call").idle_resync()]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    let events = pbx.wait_up().await;
    assert!(
        matches!(&events[0], Event::Connected { server, .. } if server == &fake.addr.to_string())
    );
    assert_eq!(events.last(), Some(&Event::Resync { channels: vec![] }));

    let sent = fake.sent();
    assert_eq!(sent[0].name, "Challenge");
    assert_eq!(sent[0].get("AuthType"), Some("MD5"));
    let login = &sent[1];
    assert_eq!(login.name, "Login");
    assert_eq!(login.get("Username"), Some("appliance"));
    assert_eq!(login.get("AuthType"), Some("MD5"));
    assert_eq!(login.get("Key").map(str::len), Some(32));
    assert_eq!(
        login.get("Secret"),
        None,
        "the secret never crosses the wire with MD5"
    );
    assert_eq!(login.get("Events"), Some("call,cdr,system,dialplan,agent"));
    let filters: Vec<_> = sent.iter().filter(|s| s.name == "Filter").collect();
    assert_eq!(
        filters[0].get("MatchCriteria"),
        Some("action(include),name(VarSet),header(Variable),method(regex)")
    );
    assert_eq!(
        filters[0].get("Filter"),
        Some("^(CRM_CALL_ID|MIXMONITOR_FILENAME)$")
    );
    let names: Vec<_> = filters[1..]
        .iter()
        .filter_map(|f| f.get("MatchCriteria"))
        .collect();
    for wanted in [
        "name(Newchannel)",
        "name(Hangup)",
        "name(DialEnd)",
        "name(OriginateResponse)",
        "name(Cdr)",
        "name(QueueCallerJoin)",
        "name(AgentCalled)",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(wanted)),
            "{wanted} filter missing: {names:?}"
        );
    }
    // Newexten only in FreePBX's ring-group context: never the dialplan flood.
    let newexten: Vec<_> = filters
        .iter()
        .filter(|f| {
            f.get("MatchCriteria")
                .is_some_and(|m| m.contains("Newexten"))
        })
        .collect();
    assert_eq!(newexten.len(), 1);
    assert_eq!(
        newexten[0].get("MatchCriteria"),
        Some("action(include),name(Newexten),header(Context),method(exact)")
    );
    assert_eq!(newexten[0].get("Filter"), Some("ext-group"));
    assert_eq!(sent.last().unwrap().name, "CoreShowChannels");
    assert_eq!(fake.connections(), 1);
    pbx.stop().await;
    let logoff = fake.wait_sent("Logoff", 1).await;
    assert_eq!(logoff.len(), 1, "a clean shutdown logs off");
}

#[tokio::test(flavor = "multi_thread")]
async fn falls_back_to_a_plaintext_login_and_works_without_session_filters() {
    let fake = FakeAmi::start(vec![
        Script::new("agent-busy")
            .without_challenge()
            .refuse_filters()
            .idle_resync(),
    ])
    .await;
    // Only because the operator allowed it: the secret travels in clear text.
    let mut config = config(&fake);
    config.allow_plain_login = true;
    let mut pbx = PbxUnderTest::start(config);
    pbx.wait_up().await;
    let login = &fake.sent_named("Login")[0];
    assert_eq!(login.get("Secret"), Some("s3cret"));
    assert_eq!(login.get("Key"), None);
    // One refused Filter, then no more: a half whitelist would hide events.
    assert_eq!(fake.sent_named("Filter").len(), 1);
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_refusing_the_challenge_never_gets_the_secret_by_default() {
    let fake = FakeAmi::start(vec![Script::new("agent-busy").without_challenge()]).await;
    let pbx = PbxUnderTest::start(config(&fake));
    let detail = pbx.wait_state(LinkState::ChallengeRefused).await.unwrap();
    assert!(detail.contains("allow_plain_login"), "{detail}");
    // Retried (slowly), and never once was the secret sent or a Login tried.
    fake.wait_connections(2).await;
    assert!(fake.sent_named("Login").is_empty(), "{:?}", fake.sent());
    let received = String::from_utf8_lossy(&fake.received()).into_owned();
    assert!(received.contains("Action: Challenge"), "{received}");
    assert!(!received.contains("s3cret"), "{received}");
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_login_is_auth_failed_and_retried_slowly() {
    let fake = FakeAmi::start(vec![Script::new("agent-busy").refuse_login()]).await;
    let pbx = PbxUnderTest::start(config(&fake));
    let detail = pbx.wait_state(LinkState::AuthFailed).await.unwrap();
    assert!(detail.contains("Authentication failed"), "{detail}");
    assert!(!detail.contains("s3cret"));
    fake.wait_connections(2).await;
    let at = fake.accepted_at();
    // auth_retry_ms = 400 in the test config, reconnect_min_ms = 20.
    assert!(
        at[1] - at[0] >= Duration::from_millis(400),
        "retried after {:?}",
        at[1] - at[0]
    );
    assert_eq!(pbx.status.get().state, LinkState::AuthFailed);
    let err = pbx
        .handle
        .originate(&click("crm-1", "100", "79990001122"))
        .await;
    assert!(
        matches!(err, Err(PbxError::Unavailable(ref why)) if why.contains("auth_failed")),
        "{err:?}"
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnects_with_backoff_after_a_drop_and_resyncs() {
    // First connection: a call in progress (its recorded CoreShowChannels is the resync).
    // Second: the PBX is idle again, so the call ended while we were away.
    let fake = FakeAmi::start(vec![
        Script::new("agent101-ok"),
        Script::new("actions-responses"),
    ])
    .await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    let events = pbx.wait_up().await;
    // Events recorded before the snapshot come first, in order, then the snapshot.
    let created: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::ChannelCreated(c) => Some(c.id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        created,
        [
            "1795413228.12",
            "1795413228.13",
            "1795413228.14",
            "1795413228.15"
        ]
    );
    let Some(Event::Resync { channels }) = events.last() else {
        panic!("{events:#?}")
    };
    let ids: Vec<&str> = channels.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "1795413228.12",
            "1795413228.13",
            "1795413228.14",
            "1795413228.15"
        ]
    );
    assert!(
        channels
            .iter()
            .all(|c| c.call == "1795413228.12" && c.state == ChannelState::Up)
    );
    assert!(channels.iter().all(|c| c.local));

    assert!(fake.kill().await);
    let events = pbx.until(|e| matches!(e, Event::Resync { .. })).await;
    assert!(
        matches!(&events[0], Event::Disconnected { reason } if reason.contains("closed")),
        "{events:#?}"
    );
    assert!(matches!(events[1], Event::Connected { .. }));
    assert_eq!(events.last(), Some(&Event::Resync { channels: vec![] }));
    pbx.wait_state(LinkState::Up).await;
    assert_eq!(fake.connections(), 2);
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reconnect_delays_grow_while_the_pbx_keeps_failing() {
    // A port that accepts and hangs up at once: every attempt fails as "down".
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = accepts.clone();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            log.lock().unwrap().push(std::time::Instant::now());
            drop(stream);
        }
    });
    let mut c = pbx_config("asterisk", port);
    c.reconnect_min_ms = 20;
    c.reconnect_max_ms = 160;
    let pbx = PbxUnderTest::start(c);
    let detail = crate::harness::eventually(10, "a failed attempt", async || {
        pbx.status
            .get()
            .detail
            .filter(|d| d.contains("closed the connection"))
    })
    .await;
    assert_eq!(pbx.status.get().state, LinkState::Down, "{detail}");
    crate::harness::eventually(10, "6 attempts", async || {
        (accepts.lock().unwrap().len() >= 6).then_some(())
    })
    .await;
    let at = accepts.lock().unwrap().clone();
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    // Attempt n waits at least half of min·2^(n-1), capped at 160 ms.
    for (n, (gap, floor)) in gaps.iter().zip([10u64, 20, 40, 80, 80]).enumerate() {
        assert!(
            *gap >= Duration::from_millis(floor),
            "gap {n}: {gap:?} < {floor} ms ({gaps:?})"
        );
    }
    pbx.stop().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_fail_fast_while_not_configured_and_follow_settings_changes() {
    let first = FakeAmi::start(vec![Script::new("agent-busy").idle_resync()]).await;
    let second = FakeAmi::start(vec![Script::new("actions-responses")]).await;
    let mut c = config(&first);
    c.kind_name = String::new();
    let mut pbx = PbxUnderTest::start(c);
    pbx.wait_state(LinkState::NotConfigured).await;
    let started = std::time::Instant::now();
    let err = pbx.handle.extensions().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err, PbxError::Unavailable("not_configured".into()));

    let settings = |fake: &Fake| appliance::pbx::ConnectionSettings::from_config(&config(fake));
    pbx.settings.send_replace(settings(&first));
    pbx.wait_up().await;
    assert_eq!(first.connections(), 1);

    pbx.settings.send_replace(settings(&second));
    let events = pbx.wait_up().await;
    assert!(
        matches!(&events[0], Event::Disconnected { reason } if reason.contains("settings changed")),
        "{events:#?}"
    );
    assert!(
        matches!(&events[1], Event::Connected { server, .. } if server == &second.addr.to_string())
    );
    assert_eq!(
        first.sent_named("Logoff").len(),
        1,
        "the old connection logged off"
    );
    assert_eq!(second.connections(), 1);

    pbx.settings.send_replace(None);
    pbx.wait_state(LinkState::NotConfigured).await;
    assert!(matches!(pbx.next().await.event, Event::Disconnected { .. }));
    assert!(matches!(
        pbx.handle.channels().await,
        Err(PbxError::Unavailable(_))
    ));
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_pbx_is_detected_by_the_keepalive() {
    let fake = FakeAmi::start(vec![Script::new("agent-busy").idle_resync().deaf()]).await;
    let mut c = config(&fake);
    c.keepalive_ms = 100;
    let mut pbx = PbxUnderTest::start(c);
    pbx.wait_up().await;
    let events = pbx.until(|e| matches!(e, Event::Disconnected { .. })).await;
    let Some(Event::Disconnected { reason }) = events.last() else {
        panic!()
    };
    assert!(reason.contains("no answer to Ping"), "{reason}");
    assert!(!fake.sent_named("Ping").is_empty());
    // And it comes back.
    pbx.wait_up().await;
    assert!(fake.connections() >= 2);
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn asks_for_the_endpoint_lists_before_the_resync_and_copes_without_them() {
    // Both asked; SIPpeers refused (no chan_sip: the recorded error), the recorded PJSIP
    // list passed on as it is.
    let fake = FakeAmi::start(vec![
        Script::new("sip-inbound-answered")
            .canned("PJSIPShowEndpoints", "sip-actions-registered", "eps-1", 1)
            .idle_resync(),
    ])
    .await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    let events = pbx.wait_up().await;
    let listed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Endpoints(list) => Some(list.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(listed.len(), 1, "{events:?}");
    let names = |s: &std::collections::BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>();
    assert_eq!(names(&listed[0].employees), ["100", "101", "102"]);
    assert_eq!(names(&listed[0].trunks), ["trunk"]);
    assert_eq!(listed[0].sources, ["PJSIPShowEndpoints"]);
    let sent: Vec<String> = fake.sent().into_iter().map(|s| s.name).collect();
    let at = |name: &str| sent.iter().position(|s| s == name).unwrap();
    assert!(at("PJSIPShowEndpoints") < at("CoreShowChannels"));
    assert!(at("SIPpeers") < at("CoreShowChannels"));
    pbx.stop().await;

    // Neither answered in time (PJSIP hangs, chan_sip refused): no list, and the
    // connection still comes up and resyncs once the wait is over.
    let fake = FakeAmi::start(vec![
        Script::new("sip-inbound-answered")
            .silent("PJSIPShowEndpoints")
            .idle_resync(),
    ])
    .await;
    let mut c = config(&fake);
    c.timeout_ms = 300;
    let mut pbx = PbxUnderTest::start(c);
    let events = pbx.wait_up().await;
    assert!(
        !events.iter().any(|e| matches!(e, Event::Endpoints(_))),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(Event::Resync { .. })));
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_lists_are_asked_again_and_passed_on_when_they_change() {
    // At login PJSIP is not loaded yet (the recorded error); later it answers the
    // recorded list twice, then errors again.
    let fake = FakeAmi::start(vec![
        Script::new("sip-inbound-answered")
            .canned("PJSIPShowEndpoints", "actions-responses", "pjsip-1", 1)
            .canned("PJSIPShowEndpoints", "sip-actions-registered", "eps-1", 2)
            .idle_resync(),
    ])
    .await;
    let mut c = config(&fake);
    c.endpoints_refresh_ms = 200;
    let mut pbx = PbxUnderTest::start(c);
    let events = pbx.wait_up().await;
    assert!(!events.iter().any(|e| matches!(e, Event::Endpoints(_))));
    let seen = pbx.until(|e| matches!(e, Event::Endpoints(_))).await;
    let Some(Event::Endpoints(list)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(list.employees.len(), 3);
    assert!(list.trunks.contains("trunk"));
    // The same list again, then none: nothing more is passed on.
    fake.wait_sent("PJSIPShowEndpoints", 4).await;
    while let Ok(e) = pbx.events.try_recv() {
        assert!(!matches!(e.event, Event::Endpoints(_)), "{e:?}");
    }
    pbx.stop().await;
}
