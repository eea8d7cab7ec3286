//! The Asterisk adapter against the fake AMI replaying the recorded transcripts.

use std::time::Duration;

use appliance::config::PbxConfig;
use appliance::pbx::{
    Channel, ChannelState, DialStatus, Event, LineState, LinkState, Origin, OriginateOutcome,
    OriginateRequest, PbxError,
};

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::{Fake, PbxUnderTest, pbx_config};

fn config(fake: &Fake) -> PbxConfig {
    let mut c = pbx_config("asterisk", fake.port());
    c.context = "from-crm".into();
    c.transfer_context = "agents-sip".into();
    c
}

fn click(call_id: &str, agent: &str, customer: &str) -> OriginateRequest {
    OriginateRequest {
        call_id: call_id.into(),
        agent: agent.into(),
        customer: customer.into(),
        caller_id_name: "CRM".into(),
        caller_id_number: customer.into(),
        ring: None,
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
    assert_eq!(login.get("Events"), Some("call,cdr,system,dialplan"));
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
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(wanted)),
            "{wanted} filter missing: {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.contains("Newexten")));
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
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let login = &fake.sent_named("Login")[0];
    assert_eq!(login.get("Secret"), Some("s3cret"));
    assert_eq!(login.get("Key"), None);
    // One refused Filter, then no more: a half whitelist would hide events.
    assert_eq!(fake.sent_named("Filter").len(), 1);
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
async fn lists_pjsip_extensions_with_live_state() {
    let fake = FakeAmi::start(vec![Script::new("sip-actions-registered")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let extensions = pbx.handle.extensions().await.unwrap();
    let view: Vec<_> = extensions
        .iter()
        .map(|e| (e.ext.as_str(), e.state, e.contacts.clone()))
        .collect();
    assert_eq!(
        view,
        vec![
            (
                "100",
                LineState::Online,
                vec!["sip:100-0x558eba1db4a0@127.0.0.1:5071".to_string()]
            ),
            (
                "101",
                LineState::Online,
                vec!["sip:101-0x5632ec79c4a0@127.0.0.1:5073".to_string()]
            ),
            ("102", LineState::Offline, vec![]),
            (
                "trunk",
                LineState::Online,
                vec!["sip:trunk-0x55f4cdcbfb50@127.0.0.1:5075".to_string()]
            ),
        ]
    );
    let asked: Vec<_> = fake.sent().into_iter().map(|s| s.name).collect();
    assert!(asked.ends_with(&[
        "PJSIPShowEndpoints".to_string(),
        "PJSIPShowContacts".to_string()
    ]));
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pjsip_it_falls_back_to_sippeers() {
    // Recorded on a server with neither SIP module: both lists answer an error.
    let fake = FakeAmi::start(vec![Script::new("actions-responses")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let err = pbx.handle.extensions().await.unwrap_err();
    assert!(
        matches!(&err, PbxError::Refused(m) if m.contains("SIPpeers")),
        "{err:?}"
    );
    let asked: Vec<_> = fake.sent().into_iter().map(|s| s.name).collect();
    assert!(
        asked.ends_with(&["PJSIPShowEndpoints".to_string(), "SIPpeers".to_string()]),
        "{asked:?}"
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_interleaved_with_live_events_keeps_both() {
    let fake = FakeAmi::start(vec![
        Script::new("agent101-ok")
            .idle_resync()
            .interleave("CoreShowChannels"),
    ])
    .await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let channels = pbx.handle.channels().await.unwrap();
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
    fake.release_all().await;
    // The live events sent between the items were not taken for items and still arrive.
    let events = pbx
        .until(|e| matches!(e, Event::HungUp { channel, .. } if channel == "1795413228.15"))
        .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ChannelCreated(c) if c.id == "1795413228.12"))
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn click_to_call_is_accepted_at_once_and_reports_the_answer_and_the_call() {
    let fake = FakeAmi::start(vec![Script::new("sip-click-to-call").idle_resync()]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let accepted = pbx
        .handle
        .originate(&click("crm-43", "100", "79990001122"))
        .await
        .unwrap();
    let originate = &fake.sent_named("Originate")[0];
    assert_eq!(originate.get("Channel"), Some("PJSIP/100"));
    assert_eq!(originate.get("Context"), Some("from-crm"));
    assert_eq!(originate.get("Exten"), Some("79990001122"));
    assert_eq!(originate.get("Priority"), Some("1"));
    assert_eq!(originate.get("CallerID"), Some("\"CRM\" <79990001122>"));
    assert_eq!(originate.get("Timeout"), Some("30000"));
    assert_eq!(originate.get("Async"), Some("true"));
    assert_eq!(originate.get("ChannelId"), Some(accepted.channel.as_str()));
    assert_eq!(
        originate.get("OtherChannelId"),
        None,
        "only Local channels have two halves"
    );
    assert_eq!(originate.get_all("Variable"), ["CRM_CALL_ID=crm-43"]);
    assert_eq!(originate.get("ActionID"), Some(accepted.reference.as_str()));

    assert!(fake.release_all().await);
    let agent = "1795416477.37";
    let events = pbx
        .until(|e| matches!(e, Event::HungUp { channel, .. } if channel == agent))
        .await;
    // Written from the transcript: the agent's phone rings, answers; the PBX reports the
    // originate; recording starts; the customer leg is dialled, answers; both bridge.
    let expected = [
        Event::ChannelCreated(Channel {
            id: agent.into(),
            call: agent.into(),
            name: "PJSIP/100-00000021".into(),
            caller_number: "100".into(),
            caller_name: "Agent 100".into(),
            exten: "s".into(),
            context: "agents-sip".into(),
            origin: Origin::Outbound,
            state: ChannelState::Down,
            local: false,
            endpoint: Some("100".into()),
            peer: None,
            call_id: None,
        }),
        Event::CallTagged {
            channel: agent.into(),
            call_id: "crm-43".into(),
        },
        Event::DialBegin {
            caller: None,
            callee: agent.into(),
            dial_string: "100".into(),
        },
        Event::Ringing {
            channel: agent.into(),
        },
        Event::DeviceState {
            device: "PJSIP/100".into(),
            state: LineState::Ringing,
        },
        Event::Answered {
            channel: agent.into(),
        },
        Event::OriginateResult {
            call_id: "crm-43".into(),
            outcome: OriginateOutcome::Answered,
            channel: Some(agent.into()),
            detail: "Success (Reason: 4)".into(),
        },
        Event::DialEnd {
            caller: None,
            callee: agent.into(),
            status: DialStatus::Answer,
        },
        Event::DeviceState {
            device: "PJSIP/100".into(),
            state: LineState::InCall,
        },
        Event::RecordingStarted {
            channel: agent.into(),
            path:
                "/work/peers/asterisk/var/spool/asterisk/monitor/crm-79990001122-1795416477.37.wav"
                    .into(),
        },
    ];
    assert_eq!(&events[..expected.len()], &expected[..], "{events:#?}");
    let rest = &events[expected.len()..];
    let pos = |want: Event| {
        rest.iter()
            .position(|e| *e == want)
            .unwrap_or_else(|| panic!("{want:?} in {rest:#?}"))
    };
    let dial = pos(Event::DialBegin {
        caller: Some(agent.into()),
        callee: "1795416477.38".into(),
        dial_string: "79990001122@pstn-sim".into(),
    });
    let answer = pos(Event::DialEnd {
        caller: Some(agent.into()),
        callee: "1795416477.38".into(),
        status: DialStatus::Answer,
    });
    let bridged = pos(Event::Bridged {
        channel: agent.into(),
        bridge: "36b50e0b-1168-4118-93d8-ba5130e15c3f".into(),
        peer: None,
    });
    assert!(dial < answer && answer < bridged);
    assert_eq!(
        rest.last(),
        Some(&Event::HungUp {
            channel: agent.into(),
            cause: 16,
            cause_text: "Normal Clearing".into()
        })
    );
    pbx.stop().await;
}

async fn originate_outcome(
    fixture: &str,
    agent: &str,
    channel: &str,
    script: impl FnOnce(Script) -> Script,
) -> Event {
    let fake = FakeAmi::start(vec![script(Script::new(fixture).idle_resync())]).await;
    let mut c = config(&fake);
    c.agent_channel = channel.into();
    let mut pbx = PbxUnderTest::start(c);
    pbx.wait_up().await;
    pbx.handle
        .originate(&click("crm-42", agent, "79990001122"))
        .await
        .unwrap();
    fake.release_all().await;
    let events = pbx
        .until(|e| matches!(e, Event::OriginateResult { .. }))
        .await;
    pbx.stop().await;
    events.last().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_originate_failure_reason_is_reported() {
    let result = |outcome, channel: Option<&str>, detail: &str| Event::OriginateResult {
        call_id: "crm-42".into(),
        outcome,
        channel: channel.map(str::to_string),
        detail: detail.into(),
    };
    assert_eq!(
        originate_outcome("agent-busy", "102", "Local/{ext}@agents", |s| s).await,
        result(OriginateOutcome::Busy, None, "Failure (Reason: 5)")
    );
    assert_eq!(
        originate_outcome("agent-noanswer", "103", "Local/{ext}@agents", |s| s).await,
        result(OriginateOutcome::NoAnswer, None, "Failure (Reason: 3)")
    );
    assert_eq!(
        originate_outcome("sip-click-to-call-noanswer", "101", "PJSIP/{ext}", |s| s).await,
        result(OriginateOutcome::NoAnswer, None, "Failure (Reason: 3)")
    );
    assert_eq!(
        originate_outcome("sip-click-to-call-unavailable", "102", "PJSIP/{ext}", |s| s).await,
        result(OriginateOutcome::Unavailable, None, "Failure (Reason: 0)")
    );
    // The OriginateResponse may overtake the action's own response.
    assert_eq!(
        originate_outcome("agent-busy", "102", "Local/{ext}@agents", |s| s
            .hoist("Originate"))
        .await,
        result(OriginateOutcome::Busy, None, "Failure (Reason: 5)")
    );
    assert_eq!(
        originate_outcome("customer-busy", "100", "Local/{ext}@agents", |s| s).await,
        result(
            OriginateOutcome::Answered,
            Some("1795413315.18"),
            "Success (Reason: 4)"
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn local_agent_channels_get_both_channel_ids() {
    let fake = FakeAmi::start(vec![Script::new("customer-busy").idle_resync()]).await;
    let mut c = config(&fake);
    c.agent_channel = "Local/{ext}@agents".into();
    let mut pbx = PbxUnderTest::start(c);
    pbx.wait_up().await;
    let accepted = pbx
        .handle
        .originate(&click("crm-42", "100", "79990000486"))
        .await
        .unwrap();
    let sent = &fake.sent_named("Originate")[0];
    assert_eq!(sent.get("Channel"), Some("Local/100@agents"));
    assert_eq!(sent.get("ChannelId"), Some(accepted.channel.as_str()));
    assert!(
        sent.get("OtherChannelId")
            .is_some_and(|id| id != accepted.channel)
    );
    fake.release_all().await;
    let events = pbx
        .until(|e| {
            matches!(
                e,
                Event::DialEnd {
                    status: DialStatus::Busy,
                    ..
                }
            )
        })
        .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::RecordingStarted { .. }))
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_a_ringing_call_by_channel_name() {
    let fake = FakeAmi::start(vec![Script::new("sip-redirect-ringing")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    // Unknown channels are refused without asking the PBX.
    assert_eq!(
        pbx.handle.redirect("1795416508.99", "101").await,
        Err(PbxError::NoSuchChannel)
    );
    assert!(
        fake.release_until("Device: PJSIP/100\r\nState: RINGING")
            .await
    );
    pbx.until(|e| matches!(e, Event::DeviceState { device, state: LineState::Ringing } if device == "PJSIP/100"))
        .await;
    pbx.handle.redirect("1795416508.44", "101").await.unwrap();
    let redirect = &fake.sent_named("Redirect")[0];
    assert_eq!(redirect.get("Channel"), Some("PJSIP/trunk-00000026"));
    assert_eq!(redirect.get("Context"), Some("agents-sip"));
    assert_eq!(redirect.get("Exten"), Some("101"));
    assert_eq!(redirect.get("Priority"), Some("1"));
    fake.release_all().await;
    let events = pbx
        .until(|e| matches!(e, Event::Bridged { channel, .. } if channel == "1795416508.44"))
        .await;
    let cancelled: Vec<_> = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::DialEnd {
                    status: DialStatus::Cancel,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(cancelled.len(), 2, "both ringing phones stop");
    assert!(events.contains(&Event::DialEnd {
        caller: Some("1795416508.44".into()),
        callee: "1795416511.47".into(),
        status: DialStatus::Answer,
    }));
    pbx.stop().await;
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
