//! The FreeSWITCH adapter against the fake event socket replaying the recorded transcripts.

use std::time::Duration;

use appliance::config::PbxConfig;
use appliance::pbx::{
    DialStatus, Event, LineState, LinkState, OriginateOutcome, OriginateRequest, PbxError,
    Transfer, TransferKind,
};

use crate::fake_pbx::esl::{EslScript, FakeEsl};
use crate::fake_pbx::{Fake, PbxUnderTest, pbx_config};

fn config(fake: &Fake) -> PbxConfig {
    let mut c = pbx_config("freeswitch", fake.port());
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
        caller_id_number: "100".into(),
        ring: None,
        line: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticates_subscribes_to_what_it_uses_and_resyncs() {
    let fake = FakeEsl::start(vec![EslScript::new("agent-busy")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    let events = pbx.wait_up().await;
    assert!(matches!(&events[0], Event::Connected { .. }));
    assert_eq!(events.last(), Some(&Event::Resync { channels: vec![] }));
    let sent: Vec<String> = fake.sent().into_iter().map(|s| s.name).collect();
    assert_eq!(sent[0], "auth ClueCon");
    assert!(
        sent[1].starts_with("event plain CHANNEL_CREATE "),
        "{}",
        sent[1]
    );
    for wanted in [
        "CHANNEL_ANSWER",
        "CHANNEL_BRIDGE",
        "CHANNEL_HANGUP_COMPLETE",
        "BACKGROUND_JOB",
        "RECORD_START",
        "HEARTBEAT",
        "CUSTOM sofia::register sofia::unregister sofia::expire",
    ] {
        assert!(
            sent[1].contains(wanted),
            "{wanted} missing from {}",
            sent[1]
        );
    }
    assert!(!sent[1].contains("ALL"));
    // The PBX's own endpoint lists before the resync (the recorded directory of the SIP
    // server: users 1000, 1001, 1002).
    assert_eq!(
        sent[2..5],
        [
            "api list_users",
            "api sofia status",
            "api show channels as json"
        ]
    );
    let listed = events.iter().find_map(|e| match e {
        Event::Endpoints(list) => Some(list.clone()),
        _ => None,
    });
    let listed = listed.expect("an endpoint list before the resync");
    assert_eq!(
        listed
            .employees
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["1000", "1001", "1002"]
    );
    pbx.stop().await;
    assert_eq!(
        fake.wait_sent("exit", 1).await.len(),
        1,
        "a clean shutdown says exit"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_auth_failed_and_retried_slowly() {
    let fake = FakeEsl::start(vec![EslScript::new("agent-busy").refuse_auth()]).await;
    let pbx = PbxUnderTest::start(config(&fake));
    let detail = pbx.wait_state(LinkState::AuthFailed).await.unwrap();
    assert!(detail.contains("-ERR invalid"), "{detail}");
    assert!(!detail.contains("ClueCon"));
    fake.wait_connections(2).await;
    let at = fake.accepted_at();
    assert!(
        at[1] - at[0] >= Duration::from_millis(400),
        "{:?}",
        at[1] - at[0]
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn click_to_call_uses_bgapi_and_reports_the_background_job() {
    let fake = FakeEsl::start(vec![EslScript::new(
        "originate-plain-mid-call-show-channels",
    )])
    .await;
    let mut c = config(&fake);
    c.agent_channel = "loopback/{ext}/agents".into();
    let mut pbx = PbxUnderTest::start(c);
    pbx.wait_up().await;
    let accepted = pbx
        .handle
        .originate(&click("crm-42", "100", "79990001122"))
        .await
        .unwrap();
    let bgapi = &fake.sent_named("bgapi originate")[0];
    assert_eq!(
        bgapi.name,
        format!(
            "bgapi originate {{origination_uuid={},crm_call_id=crm-42,originate_timeout=30,ignore_early_media=true,origination_caller_id_number=100,origination_caller_id_name='CRM'}}loopback/100/agents 79990001122 XML from-crm",
            accepted.channel
        )
    );
    assert_eq!(bgapi.get("Job-UUID"), Some(accepted.reference.as_str()));

    fake.release_all().await;
    let a = "18ebf15d-9f85-4dbe-9930-3ef17129f2ea";
    let events = pbx
        .until(|e| matches!(e, Event::HungUp { channel, .. } if channel == "7b1a7148-a50a-4459-af1f-9176abd06da0"))
        .await;
    let result = Event::OriginateResult {
        call_id: "crm-42".into(),
        outcome: OriginateOutcome::Answered,
        channel: Some(a.into()),
        detail: format!("+OK {a}"),
    };
    let at = |want: &Event| {
        events
            .iter()
            .position(|e| e == want)
            .unwrap_or_else(|| panic!("{want:?}: {events:#?}"))
    };
    let answered = at(&Event::Answered { channel: a.into() });
    let job = at(&result);
    let recording = at(&Event::RecordingStarted {
        channel: a.into(),
        path: format!(
            "/work/peers/freeswitch/var/lib/freeswitch/recordings/crm-79990001122-{a}.wav"
        ),
    });
    let bridged = at(&Event::Bridged {
        channel: a.into(),
        bridge: a.into(),
        peer: Some("7b1a7148-a50a-4459-af1f-9176abd06da0".into()),
    });
    assert!(answered < job && job < recording && recording < bridged);
    pbx.stop().await;
}

async fn outcome(fixture: &str, agent: &str, channel: &str) -> Event {
    let fake = FakeEsl::start(vec![EslScript::new(fixture)]).await;
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
    let failed = |outcome, detail: &str| Event::OriginateResult {
        call_id: "crm-42".into(),
        outcome,
        channel: None,
        detail: detail.into(),
    };
    assert_eq!(
        outcome("agent-busy", "102", "loopback/{ext}/agents").await,
        failed(OriginateOutcome::Busy, "-ERR USER_BUSY")
    );
    assert_eq!(
        outcome("sip-click-to-call-noanswer", "1001", "user/{ext}").await,
        failed(OriginateOutcome::NoAnswer, "-ERR NO_ANSWER")
    );
    // The same call with JSON events.
    assert_eq!(
        outcome("json-ok", "100", "loopback/{ext}/agents").await,
        Event::OriginateResult {
            call_id: "crm-42".into(),
            outcome: OriginateOutcome::Answered,
            channel: Some("c044438d-520c-4ab1-ba94-7a69b0d83ba0".into()),
            detail: "+OK c044438d-520c-4ab1-ba94-7a69b0d83ba0".into(),
        }
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_is_uuid_transfer_and_the_call_keeps_its_identity() {
    let fake = FakeEsl::start(vec![EslScript::new("sip-uuid-transfer")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let customer = "7d6c21f6-179a-40a5-880d-cec95344ae9e";
    pbx.handle.redirect(customer, "1001").await.unwrap();
    assert_eq!(
        fake.sent_named("api uuid_transfer")[0].name,
        format!("api uuid_transfer {customer} 1001 XML agents-sip")
    );
    fake.release_all().await;
    let events = pbx
        .until(|e| matches!(e, Event::HungUp { channel, .. } if channel == customer))
        .await;
    let transfer = Event::Transferred(Transfer {
        kind: TransferKind::Blind,
        success: true,
        transferer: None,
        transferee: Some(customer.into()),
        second_transferer: None,
        target: None,
        exten: Some("1001".into()),
        context: Some("agents-sip".into()),
        bridge: None,
        orig_bridge: None,
        second_bridge: None,
    });
    assert!(events.contains(&transfer), "{events:#?}");
    let new_leg = events
        .iter()
        .find_map(|e| match e {
            Event::ChannelCreated(c) if c.id == "e164ba20-eb77-4950-9bfd-65e7959ae06c" => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(new_leg.call, customer);
    assert!(events.contains(&Event::DialEnd {
        caller: Some(customer.into()),
        callee: "e164ba20-eb77-4950-9bfd-65e7959ae06c".into(),
        status: DialStatus::Answer,
    }));
    // The channel is gone now: FreeSWITCH's recorded answer for a missing channel.
    let fake2 = FakeEsl::start(vec![EslScript::new("api-responses")]).await;
    pbx.settings
        .send_replace(appliance::pbx::ConnectionSettings::from_config(&config(
            &fake2,
        )));
    pbx.wait_up().await;
    assert_eq!(
        pbx.handle.hangup(customer).await,
        Err(PbxError::NoSuchChannel)
    );
    assert_eq!(
        fake2.sent_named("api uuid_kill")[0].name,
        format!("api uuid_kill {customer}")
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_directory_users_with_registration_state() {
    let fake = FakeEsl::start(vec![EslScript::new("sip-actions-registered")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    let extensions = pbx.handle.extensions().await.unwrap();
    let view: Vec<_> = extensions
        .iter()
        .map(|e| (e.ext.as_str(), e.name.as_deref(), e.state, e.contacts.len()))
        .collect();
    assert_eq!(
        view,
        vec![
            ("1000", Some("Agent 1000"), LineState::Online, 1),
            ("1001", Some("Agent 1001"), LineState::Online, 1),
            ("1002", Some("Agent 1002"), LineState::Offline, 0),
        ]
    );
    assert_eq!(
        extensions[0].contacts,
        ["sofia/internal/sip:1000-0x56123746b4a0@127.0.0.1:5101"]
    );
    let asked: Vec<String> = fake.sent().into_iter().map(|s| s.name).collect();
    assert!(asked.iter().any(|c| c == "api list_users"));
    assert!(asked.iter().any(|c| c == "api show registrations as json"));
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn registrations_come_through_as_events() {
    let fake = FakeEsl::start(vec![EslScript::new("sip-register-unregister")]).await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    fake.release_all().await;
    let events = pbx
        .until(|e| matches!(e, Event::Registration { online: true, .. }))
        .await;
    assert_eq!(
        events,
        vec![
            Event::Registration {
                extension: "1001".into(),
                online: false,
                contact: Some("\"\" <sip:1001-0x55a85cd614a0@127.0.0.1:5103>".into()),
            },
            Event::Registration {
                extension: "1001".into(),
                online: true,
                contact: Some("\"\" <sip:1001-0x564532e4c4a0@127.0.0.1:5103>".into()),
            },
        ]
    );
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_socket_mid_call_reconnects_and_resyncs() {
    let fake = FakeEsl::start(vec![
        EslScript::new("sip-inbound-answered"),
        EslScript::new("api-responses"),
    ])
    .await;
    let mut pbx = PbxUnderTest::start(config(&fake));
    pbx.wait_up().await;
    assert!(fake.release_until("Event-Name: CHANNEL_BRIDGE").await);
    let agent = "99d89d99-1b5b-409d-9d4e-d6875b5f3dcd";
    // One CHANNEL_BRIDGE, two normalized events: the customer's leg, then the agent's.
    let bridged = pbx
        .until(|e| matches!(e, Event::Bridged { channel, .. } if channel == agent))
        .await;
    assert!(bridged.iter().any(|e| matches!(e, Event::Bridged { channel, .. } if channel == "dccfb9ad-c57f-4297-868f-bf615353679b")));
    assert!(fake.kill().await);
    let events = pbx.wait_up().await;
    assert!(
        matches!(&events[0], Event::Disconnected { .. }),
        "{events:#?}"
    );
    assert!(matches!(&events[1], Event::Connected { .. }));
    // The call ended while we were away: the snapshot no longer has it.
    assert_eq!(events.last(), Some(&Event::Resync { channels: vec![] }));
    pbx.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_log_in_and_report_each_failure() {
    use appliance::pbx::{ConnectionSettings, ProbeResult, probe};
    let timeout = Duration::from_secs(5);
    let esl = FakeEsl::start(vec![EslScript::new("api-responses")]).await;
    let settings = ConnectionSettings::from_config(&config(&esl)).unwrap();
    let ok = probe(&settings, timeout).await;
    assert!(
        matches!(&ok, ProbeResult::Ok(d) if d.contains("event socket")),
        "{ok:?}"
    );
    assert_eq!(esl.wait_sent("exit", 1).await.len(), 1);
    let wrong = ConnectionSettings {
        secret: appliance::secret::Secret::new("wrong"),
        ..settings.clone()
    };
    assert!(matches!(
        probe(&wrong, timeout).await,
        ProbeResult::AuthFailed(_)
    ));

    let ami = crate::fake_pbx::ami::FakeAmi::start(vec![crate::fake_pbx::ami::Script::new(
        "actions-responses",
    )])
    .await;
    let settings = ConnectionSettings::from_config(&pbx_config("asterisk", ami.port())).unwrap();
    let ok = probe(&settings, timeout).await;
    assert!(
        matches!(&ok, ProbeResult::Ok(d) if d.contains("AMI 11.0.0")),
        "{ok:?}"
    );
    let login = &ami.sent_named("Login")[0];
    assert_eq!(login.get("Events"), Some("off"));
    let refused = ConnectionSettings {
        secret: appliance::secret::Secret::new("nope"),
        ..settings.clone()
    };
    let result = probe(&refused, timeout).await;
    assert!(
        matches!(&result, ProbeResult::AuthFailed(d) if d.contains("Authentication failed") && !d.contains("nope")),
        "{result:?}"
    );
    // Wrong protocol: an AMI client at an event socket.
    let confused = ConnectionSettings {
        port: esl.port(),
        ..settings.clone()
    };
    assert!(
        matches!(probe(&confused, timeout).await, ProbeResult::Down(d) if d.contains("not an Asterisk"))
    );
    ami.close().await;
    assert!(
        matches!(probe(&settings, timeout).await, ProbeResult::Down(d) if d.contains("cannot connect"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_switch_is_detected_by_the_keepalive() {
    let fake = FakeEsl::start(vec![EslScript::new("agent-busy").deaf()]).await;
    let mut c = config(&fake);
    c.keepalive_ms = 100;
    let mut pbx = PbxUnderTest::start(c);
    pbx.wait_up().await;
    let events = pbx.until(|e| matches!(e, Event::Disconnected { .. })).await;
    let Some(Event::Disconnected { reason }) = events.last() else {
        panic!()
    };
    assert!(reason.contains("no answer to api status"), "{reason}");
    assert!(!fake.sent_named("api status").is_empty());
    pbx.wait_up().await;
    assert!(fake.connections() >= 2);
    pbx.stop().await;
}
