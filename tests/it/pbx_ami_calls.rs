//! The Asterisk adapter's commands against the fake AMI: click-to-call and its outcomes,
//! redirect, extension and channel lists.

use appliance::pbx::{
    Channel, ChannelState, DialStatus, Event, LineState, Origin, OriginateOutcome, PbxError,
};

use crate::fake_pbx::PbxUnderTest;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::pbx_ami::{click, config};

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
            tentative: true,
        }),
        Event::CallTagged {
            channel: agent.into(),
            call_id: "crm-43".into(),
        },
        Event::DialBegin {
            caller: None,
            callee: agent.into(),
            dial_string: "100".into(),
            exten: String::new(),
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
        exten: "79990001122".into(),
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
async fn a_slow_consumer_loses_nothing() {
    // The same recorded call read at leisure through a queue of 4096 and of 1: the
    // connection waits for the consumer instead of dropping anything.
    let mut runs = Vec::new();
    for queue in [appliance::pbx::EVENT_QUEUE, 1] {
        let fake = FakeAmi::start(vec![Script::new("agent101-ok").idle_resync()]).await;
        let mut pbx = PbxUnderTest::start_with_queue(config(&fake), queue);
        pbx.wait_up().await;
        pbx.handle
            .originate(&click("crm-42", "101", "79161234567"))
            .await
            .unwrap();
        // Everything is on the wire before anyone reads an event.
        assert!(fake.release_all().await);
        let mut events = Vec::new();
        loop {
            let event = pbx.next().await.event;
            let last =
                matches!(&event, Event::HungUp { channel, .. } if channel == "1795413228.13");
            events.push(event);
            if last {
                break;
            }
        }
        pbx.stop().await;
        runs.push(events);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].len() >= 30, "{:#?}", runs[0]);
    assert!(runs[1].iter().any(|e| matches!(
        e,
        Event::OriginateResult {
            outcome: OriginateOutcome::Answered,
            ..
        }
    )));
}
