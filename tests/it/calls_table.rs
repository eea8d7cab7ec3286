//! The call tracker over every recorded call scenario, through the real adapters and the
//! fake PBXs replaying the transcripts. Each expected record is written by hand from what
//! happened on the real server (the fixtures README and the recorded events; FreeSWITCH
//! times from its `Event-Date-Timestamp` headers), not printed by the code under test.

use appliance::calls::tracker::{Emit, Tracker};
use appliance::calls::{Call, CallState, CallStatus, Direction};
use appliance::config::{CallsConfig, Config};
use appliance::pbx::{Event, OriginateRequest};

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::esl::{EslScript, FakeEsl};
use crate::fake_pbx::{Fake, PbxUnderTest, pbx_config};

struct Click {
    call_id: &'static str,
    agent: &'static str,
    customer: &'static str,
    /// `[pbx] agent_channel` as the recording was made.
    channel: &'static str,
}

struct Expect {
    direction: Direction,
    status: CallStatus,
    phone: &'static str,
    line: &'static str,
    extension: Option<&'static str>,
    /// The end of the recording's path, when the call was recorded.
    recording: Option<&'static str>,
    /// Part of the hang-up cause.
    cause: &'static str,
    /// (wait, duration) in seconds, where the PBX stamped its events (FreeSWITCH).
    times: Option<(i64, i64)>,
    /// A call.state follows call.connected (a transfer landed).
    state_after_connect: bool,
}

async fn run(pbx: &str, fixture: &str, click: Option<Click>) -> (Call, Vec<Emit>) {
    let fake: Fake = if pbx == "asterisk" {
        FakeAmi::start(vec![Script::new(fixture).idle_resync()]).await
    } else {
        FakeEsl::start(vec![EslScript::new(fixture)]).await
    };
    let (call, emits, _) = run_on(pbx, fake, click, &Config::defaults().calls).await;
    (call, emits)
}

/// Like [`run`] on a fake already started, under `calls`; also returns how many other
/// calls were reported meanwhile.
async fn run_on(
    pbx: &str,
    fake: Fake,
    click: Option<Click>,
    calls: &CallsConfig,
) -> (Call, Vec<Emit>, usize) {
    let mut others = std::collections::HashSet::new();
    let mut config = pbx_config(pbx, fake.port());
    config.context = "from-crm".into();
    if let Some(c) = &click {
        config.agent_channel = c.channel.into();
    }
    let mut put = PbxUnderTest::start(config);
    let mut tracker = Tracker::new(calls);
    // What the tracker reports while the connection comes up (a call may start then).
    let mut early = Vec::new();
    for e in put.wait_up().await {
        early.extend(tracker.handle(&appliance::pbx::PbxEvent::now(e)));
    }
    let mut emits = Vec::new();
    let mut target = None;
    if let Some(c) = &click {
        let call = Call {
            id: c.call_id.into(),
            integration_id: Some(1),
            crm_call_id: Some("flowlu-7".into()),
            pbx_call: String::new(),
            direction: Direction::Outgoing,
            phone: c.customer.into(),
            line: String::new(),
            extension: Some(c.agent.into()),
            user_id: Some("u7".into()),
            state: CallState::Ringing,
            status: None,
            started_at: appliance::outbox::now_ms(),
            answered_at: None,
            ended_at: None,
            duration: None,
            wait: None,
            hangup_cause: None,
            recording_path: None,
            backfilled: false,
            queue: None,
        };
        emits.extend(tracker.adopt(call, None).emit);
        target = Some(c.call_id.to_string());
        put.handle
            .originate(&OriginateRequest {
                call_id: c.call_id.into(),
                agent: c.agent.into(),
                customer: c.customer.into(),
                caller_id_name: "CRM".into(),
                caller_id_number: c.customer.into(),
                ring: None,
                line: None,
            })
            .await
            .unwrap();
    }
    fake.release_all().await;
    loop {
        let updates = if early.is_empty() {
            let event = put.next().await;
            if matches!(event.event, Event::Disconnected { .. }) {
                panic!("the fake hung up before the call completed");
            }
            tracker.handle(&event)
        } else {
            std::mem::take(&mut early)
        };
        for update in updates {
            let mine = target.get_or_insert_with(|| update.call.id.clone());
            if &update.call.id != mine {
                others.insert(update.call.id.clone());
                continue;
            }
            emits.extend(&update.emit);
            if update.emit.contains(&Emit::Completed) {
                put.stop().await;
                return (update.call, emits, others.len());
            }
        }
    }
}

fn check(name: &str, (call, emits): (Call, Vec<Emit>), e: Expect) {
    assert_eq!(call.direction, e.direction, "{name}: direction");
    assert_eq!(call.state, CallState::Ended, "{name}");
    assert_eq!(call.status, Some(e.status), "{name}: status ({call:?})");
    assert_eq!(call.phone, e.phone, "{name}: phone");
    assert_eq!(call.line, e.line, "{name}: line");
    assert_eq!(call.extension.as_deref(), e.extension, "{name}: extension");
    match e.recording {
        Some(end) => assert!(
            call.recording_path
                .as_deref()
                .is_some_and(|p| p.ends_with(end)),
            "{name}: recording {:?}",
            call.recording_path
        ),
        None => assert_eq!(call.recording_path, None, "{name}"),
    }
    let cause = call.hangup_cause.clone().unwrap_or_default();
    assert!(cause.contains(e.cause), "{name}: cause {cause:?}");
    if let Some((wait, duration)) = e.times {
        assert_eq!(
            (call.wait, call.duration),
            (Some(wait), Some(duration)),
            "{name}: times"
        );
    } else {
        assert!(call.wait.is_some() && call.duration.is_some(), "{name}");
    }
    assert_eq!(emits.first(), Some(&Emit::Init), "{name}: {emits:?}");
    assert_eq!(emits.last(), Some(&Emit::Completed), "{name}: {emits:?}");
    let connected = emits.iter().filter(|e| **e == Emit::Connected).count();
    let answered = e.status == CallStatus::Answered;
    assert_eq!(connected, usize::from(answered), "{name}: {emits:?}");
    if e.state_after_connect {
        let at = emits.iter().position(|e| *e == Emit::Connected).unwrap();
        assert!(emits[at..].contains(&Emit::State), "{name}: {emits:?}");
    }
    assert_eq!(answered, call.answered_at.is_some(), "{name}");
}

const fn expect(direction: Direction, status: CallStatus, phone: &'static str) -> Expect {
    Expect {
        direction,
        status,
        phone,
        line: "",
        extension: None,
        recording: None,
        cause: "",
        times: None,
        state_after_connect: false,
    }
}

fn click(
    call_id: &'static str,
    agent: &'static str,
    customer: &'static str,
    channel: &'static str,
) -> Option<Click> {
    Some(Click {
        call_id,
        agent,
        customer,
        channel,
    })
}

const LOCAL: &str = "Local/{ext}@agents";
const PJSIP: &str = "PJSIP/{ext}";
const LOOPBACK: &str = "loopback/{ext}/agents";
const USER: &str = "user/{ext}";

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_inbound_answered_ring_group() {
    // DID 74950000000 rings 100 and 101; 100 answers; the customer hangs up.
    let r = run("asterisk", "sip-inbound-answered", None).await;
    check("ast inbound answered", r, ast_inbound_answered());
}

/// `sip-inbound-answered`: 100 took the customer's call to the DID.
fn ast_inbound_answered() -> Expect {
    Expect {
        line: "74950000000",
        extension: Some("100"),
        recording: Some("monitor/in-74950000000-1795416368.27.wav"),
        cause: "16 Normal Clearing",
        ..expect(Direction::Incoming, CallStatus::Answered, "79161234567")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_inbound_missed() {
    // Nobody answers within 20 s; the caller is hung up on.
    let r = run("asterisk", "sip-inbound-missed", None).await;
    check(
        "ast inbound missed",
        r,
        Expect {
            line: "74950000000",
            extension: Some("101"),
            recording: Some("in-74950000000-1795416387.30.wav"),
            cause: "16",
            ..expect(Direction::Incoming, CallStatus::Missed, "79161234567")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_redirect_of_a_ringing_call_lands_on_101() {
    let r = run("asterisk", "sip-redirect-ringing", None).await;
    check(
        "ast redirect",
        r,
        Expect {
            line: "74950000000",
            extension: Some("101"),
            recording: Some("in-74950000000-1795416508.44.wav"),
            cause: "16 Normal Clearing",
            ..expect(Direction::Incoming, CallStatus::Answered, "79161234567")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_agent_to_agent_is_internal() {
    let r = run("asterisk", "sip-agent-to-agent", None).await;
    check(
        "ast internal",
        r,
        Expect {
            extension: Some("100"),
            cause: "16 Normal Clearing",
            ..expect(Direction::Internal, CallStatus::Answered, "101")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_click_to_call_answered_local_and_pjsip() {
    let r = run(
        "asterisk",
        "originate-mid-call-coreshowchannels",
        click("crm-42", "100", "79990001122", LOCAL),
    )
    .await;
    check(
        "ast click local",
        r,
        Expect {
            extension: Some("100"),
            recording: Some("crm-79990001122-1795413094.4.wav"),
            cause: "16 Normal Clearing",
            ..expect(Direction::Outgoing, CallStatus::Answered, "79990001122")
        },
    );
    let r = run(
        "asterisk",
        "agent101-ok",
        click("crm-42", "101", "79161234567", LOCAL),
    )
    .await;
    check(
        "ast click 101",
        r,
        Expect {
            extension: Some("101"),
            recording: Some(".wav"),
            cause: "16 Normal Clearing",
            ..expect(Direction::Outgoing, CallStatus::Answered, "79161234567")
        },
    );
    let r = run(
        "asterisk",
        "sip-click-to-call",
        click("crm-43", "100", "79990001122", PJSIP),
    )
    .await;
    check(
        "ast click pjsip",
        r,
        Expect {
            extension: Some("100"),
            recording: Some("crm-79990001122-1795416477.37.wav"),
            cause: "16 Normal Clearing",
            ..expect(Direction::Outgoing, CallStatus::Answered, "79990001122")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn asterisk_click_to_call_failures() {
    // The agent's phone is busy (OriginateResponse reason 5).
    let r = run(
        "asterisk",
        "agent-busy",
        click("crm-42", "102", "79990001122", LOCAL),
    )
    .await;
    check(
        "ast agent busy",
        r,
        Expect {
            extension: Some("102"),
            cause: "is busy",
            ..expect(Direction::Outgoing, CallStatus::Failed, "79990001122")
        },
    );
    // The agent never answers (reason 3 after 30 s).
    let r = run(
        "asterisk",
        "agent-noanswer",
        click("crm-42", "103", "79990001122", LOCAL),
    )
    .await;
    check(
        "ast agent no answer",
        r,
        Expect {
            extension: Some("103"),
            cause: "did not answer",
            ..expect(Direction::Outgoing, CallStatus::Failed, "79990001122")
        },
    );
    let r = run(
        "asterisk",
        "sip-click-to-call-noanswer",
        click("crm-45", "101", "79990001122", PJSIP),
    )
    .await;
    check(
        "ast pjsip no answer",
        r,
        Expect {
            extension: Some("101"),
            cause: "did not answer",
            ..expect(Direction::Outgoing, CallStatus::Failed, "79990001122")
        },
    );
    // 102 is not registered: no channel at all, only the OriginateResponse failure.
    let r = run(
        "asterisk",
        "sip-click-to-call-unavailable",
        click("crm-45", "102", "79990001122", PJSIP),
    )
    .await;
    check(
        "ast unavailable",
        r,
        Expect {
            extension: Some("102"),
            cause: "unreachable",
            ..expect(Direction::Outgoing, CallStatus::Failed, "79990001122")
        },
    );
    // The agent answers, the customer is busy.
    let r = run(
        "asterisk",
        "customer-busy",
        click("crm-42", "100", "79990000486", LOCAL),
    )
    .await;
    check(
        "ast customer busy",
        r,
        Expect {
            extension: Some("100"),
            recording: Some("crm-79990000486-1795413315.18.wav"),
            cause: "17",
            ..expect(Direction::Outgoing, CallStatus::Busy, "79990000486")
        },
    );
}

mod endpoints;
mod every;
mod freeswitch;
mod loopback_order;
mod resync_race;
