//! End to end in-process: a fake PBX replays a recorded call, the appliance tracks it, and
//! the fake Flowlu receives the call events (contract section 4) with the right fields.
//! Also click-to-call through the engine, and the incoming-routing question (FastAGI).

use std::time::Duration;

use appliance::calls::{Call, CallState};
use appliance::engine::ClickToCall;
use appliance::flowlu::store::{self as flowlu_store, CallSettings, IncomingRouting};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fake_flowlu::Reply;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::esl::{EslScript, FakeEsl};
use crate::fake_pbx::{Fake, pbx_config};
use crate::flowlu_support::{Ctx, Rig, rig};
use crate::harness::eventually;

/// A connected account whose PBX is `fake`, with users 17 → 100 and 18 → 101 (Asterisk)
/// or 1000 / 1001 (FreeSWITCH), and `routing` for incoming calls.
pub(crate) async fn setup(kind: &str, fake: &Fake, routing: IncomingRouting) -> (Rig, i64, String) {
    let port = fake.port();
    let kind_owned = kind.to_string();
    let r = rig(move |c| {
        c.pbx = pbx_config(&kind_owned, port);
        c.pbx.context = "from-crm".into();
        c.outbox.retry_schedule = vec!["50ms".into(); 20];
        c.outbox.jitter_percent = 0;
        c.outbox.throttle_floor = "50ms".into();
        c.routing.decision_timeout = "1500ms".into();
    })
    .await;
    r.fake.add_user("tok-1", "17", "Ann", "ann@example.com");
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    let id = r.integration_id("acc-1");
    let (a, b) = if kind == "asterisk" {
        ("100", "101")
    } else {
        ("1000", "1001")
    };
    r.app
        .state
        .db
        .with_conn(|c| {
            flowlu_store::add_user(c, id, "18", "Bob")?;
            flowlu_store::set_extension(c, id, "17", Some(a))?;
            flowlu_store::set_extension(c, id, "18", Some(b))?;
            flowlu_store::save_settings(
                c,
                id,
                &CallSettings {
                    incoming_routing: routing,
                    ..CallSettings::default()
                },
            )
        })
        .unwrap();
    let uuid: String = r
        .app
        .db()
        .query_row(
            "SELECT telephony_uuid FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    eventually(10, "PBX up", async || {
        (r.app.get("/healthz").await.json()["pbx"] == "up").then_some(())
    })
    .await;
    (
        r,
        id,
        format!("/external/telephony/hook/mini_app/acc-1/{uuid}"),
    )
}

/// The events received at the hook until one of `kind` arrives (20 s deadline).
pub(crate) async fn events_until(r: &Rig, hook: &str, kind: &str) -> Vec<Value> {
    eventually(20, &format!("a {kind} event"), async || {
        let got: Vec<Value> = r.fake.requests_to(hook).iter().map(|q| q.json()).collect();
        got.iter().any(|e| e["event"] == kind).then_some(got)
    })
    .await
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_asterisk_incoming_call_becomes_flowlu_events_in_order() {
    let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let (r, id, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    fake.release_all().await;
    let events = events_until(&r, &hook, "call.completed").await;
    assert_eq!(
        kinds(&events),
        [
            "call.init",
            "call.state",
            "call.state",
            "call.connected",
            "call.completed"
        ]
    );
    let call_id = events[0]["call"]["id"].as_str().unwrap();
    let mut ids = std::collections::HashSet::new();
    for e in &events {
        assert_eq!(e["call"]["id"], call_id, "one call");
        assert_eq!(e["call"]["direction"], "incoming");
        assert_eq!(e["call"]["phone"], "79161234567");
        assert_eq!(e["call"]["line"], "74950000000");
        assert!(
            ids.insert(e["event_id"].as_str().unwrap().to_string()),
            "event ids are unique"
        );
        assert!(e["call"].get("crm_call_id").is_none());
    }
    assert_eq!(events[0]["call"]["state"], "ringing");
    assert_eq!(events[1]["call"]["extension"], "100");
    assert_eq!(events[2]["call"]["extension"], "101");
    let connected = &events[3]["call"];
    assert_eq!(connected["state"], "connected");
    assert_eq!(
        (
            connected["extension"].as_str(),
            connected["user_id"].as_str()
        ),
        (Some("100"), Some("17"))
    );
    assert!(connected["answered_at"].as_str().unwrap().ends_with('Z'));
    let done = &events[4]["call"];
    assert_eq!(done["state"], "ended");
    assert_eq!(done["status"], "answered");
    assert_eq!(done["hangup_cause"], "16 Normal Clearing");
    assert!(done["duration"].is_u64() && done["wait"].is_u64());
    // The stored record says the same.
    let stored: Call = r
        .app
        .state
        .db
        .with_conn(|c| {
            Ok::<_, appliance::db::DbError>(appliance::calls::store::find(c, id, call_id)?)
        })
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, CallState::Ended);
    assert_eq!(stored.user_id.as_deref(), Some("17"));
    // Every event was delivered with the account's token, in order. The fake receives the
    // last event before the worker records its 2xx: wait for the record.
    crate::harness::eventually(10, "5 delivered outbox rows", async || {
        let delivered: i64 = r
            .app
            .db()
            .query_row(
                "SELECT count(*) FROM outbox WHERE state = 'delivered'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        (delivered == 5).then_some(())
    })
    .await;
    // And the metrics count it.
    let metrics = r.app.get("/metrics").await.body;
    for line in [
        "appliance_calls_total{status=\"answered\"} 1",
        "appliance_calls_active 0",
        "appliance_outbox_pending 0",
        "appliance_outbox_failed 0",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(
        metrics.lines().any(
            |l| l.starts_with("appliance_outbox_delivery_latency_seconds_count")
                && l.ends_with(" 5")
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeswitch_call_carries_the_pbx_times() {
    let fake = FakeEsl::start(vec![EslScript::new("sip-inbound-answered")]).await;
    let (r, _, hook) = setup("freeswitch", &fake, IncomingRouting::Pbx).await;
    fake.release_all().await;
    let events = events_until(&r, &hook, "call.completed").await;
    let done = &events.last().unwrap()["call"];
    // Event-Date-Timestamp 1795416601565206 (created), 1795416606624572 (1000 answered),
    // 1795416613184489 (ended): 06:50:01.565, 06:50:06.624, 06:50:13.184 UTC.
    assert_eq!(done["started_at"], "2026-11-23T06:50:01.565Z");
    assert_eq!(done["answered_at"], "2026-11-23T06:50:06.624Z");
    assert_eq!(done["ended_at"], "2026-11-23T06:50:13.184Z");
    assert_eq!(
        (done["wait"].as_u64(), done["duration"].as_u64()),
        (Some(5), Some(7))
    );
    assert_eq!(done["extension"], "1000");
    assert_eq!(done["user_id"], "17");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_click_to_call_carries_flowlus_call_id_in_every_event() {
    let fake = FakeAmi::start(vec![Script::new("sip-click-to-call").idle_resync()]).await;
    let (r, id, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    let call = r
        .app
        .state
        .engine
        .click_to_call(ClickToCall {
            integration_id: id,
            user_id: Some("17".into()),
            extension: "100".into(),
            phone: "79990001122".into(),
            line: Some("74950000000".into()),
            crm_call_id: Some("flowlu-991".into()),
            uuid: None,
        })
        .await
        .unwrap();
    let originate = fake.wait_sent("Originate", 1).await.remove(0);
    assert_eq!(originate.get("Channel"), Some("PJSIP/100"));
    assert_eq!(originate.get("Exten"), Some("79990001122"));
    let vars = originate.get_all("Variable");
    assert!(
        vars.contains(&format!("CRM_CALL_ID={}", call.id).as_str()),
        "{vars:?}"
    );
    assert!(vars.contains(&"APPLIANCE_LINE=74950000000"), "{vars:?}");
    fake.release_all().await;
    let events = events_until(&r, &hook, "call.completed").await;
    assert_eq!(
        kinds(&events),
        ["call.init", "call.connected", "call.completed"]
    );
    for e in &events {
        assert_eq!(e["call"]["id"], call.id.as_str());
        assert_eq!(e["call"]["crm_call_id"], "flowlu-991");
        assert_eq!(e["call"]["direction"], "outgoing");
        assert_eq!(e["call"]["user_id"], "17");
    }
    assert_eq!(events[2]["call"]["status"], "answered");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_click_to_call_while_the_pbx_is_down_is_refused() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = rig(|c| {
        c.pbx = pbx_config("asterisk", closed.local_addr().unwrap().port());
    })
    .await;
    let err = r
        .app
        .state
        .engine
        .click_to_call(ClickToCall {
            integration_id: 1,
            user_id: None,
            extension: "100".into(),
            phone: "79990001122".into(),
            line: None,
            crm_call_id: None,
            uuid: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PBX"), "{err}");
}

/// Asks the appliance's FastAGI server, as Asterisk's dialplan would, who takes the call
/// on the recorded trunk channel; returns the commands it sent back.
pub(crate) async fn ask_agi(r: &Rig, uniqueid: &str) -> Vec<String> {
    let addr = eventually(10, "the FastAGI server", async || {
        r.app.state.routing.agi_addr()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let env = format!(
        "agi_network: yes\nagi_request: agi://127.0.0.1/route\nagi_channel: PJSIP/trunk-00000017\n\
         agi_uniqueid: {uniqueid}\nagi_callerid: 79161234567\nagi_calleridname: Customer\n\
         agi_dnid: 74950000000\nagi_context: from-trunk\nagi_extension: 74950000000\n\
         agi_arg_1: {uniqueid}\n\n"
    );
    s.write_all(env.as_bytes()).await.unwrap();
    let mut commands = Vec::new();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the FastAGI server neither answered nor hung up")
            .unwrap();
        if n == 0 {
            return commands;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            commands.push(String::from_utf8(line).unwrap().trim().to_string());
            s.write_all(b"200 result=1\n").await.unwrap();
        }
    }
}

/// Releases the recorded call up to its first ringing agent (the moment the dialplan asks).
pub(crate) async fn ring(fake: &Fake) {
    assert!(fake.release_until("DialBegin").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_crm_routes_an_incoming_call_in_time() {
    let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let (r, _, hook) = setup("asterisk", &fake, IncomingRouting::Crm).await;
    r.fake.queue_reply(
        &hook,
        Reply::json(
            200,
            serde_json::json!({"response": {"route": {"user_id": "18"}}}),
        ),
    );
    ring(&fake).await;
    let commands = ask_agi(&r, "1795416368.27").await;
    assert_eq!(
        commands,
        vec![
            "SET VARIABLE APPLIANCE_ROUTE \"PJSIP/101\"",
            "SET VARIABLE APPLIANCE_ROUTE_EXTEN \"101\"",
        ]
    );
    let init = &r.fake.requests_to(&hook)[0];
    assert_eq!(init.json()["event"], "call.init");
    // The call.init the decision came from is delivered, exactly once.
    fake.release_all().await;
    let events = events_until(&r, &hook, "call.completed").await;
    assert_eq!(
        kinds(&events).iter().filter(|k| **k == "call.init").count(),
        1
    );
}

/// Flowlu may only route to one of the account's employees (what `employees.list` shows
/// it): an unmapped extension by the `[calls]` rules is fine, an outside number or an
/// extension another account has mapped is no decision.
#[tokio::test(flavor = "multi_thread")]
async fn the_crm_routes_only_to_this_accounts_employees() {
    for (choice, expected) in [("102", Some("102")), ("89161234567", None), ("105", None)] {
        let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
        let (r, _, hook) = setup("asterisk", &fake, IncomingRouting::Crm).await;
        r.fake.add_user("tok-2", "31", "Eve", "eve@example.com");
        r.session(&Ctx::new("acc-2", "beta.flowlu.com", "tok-2"))
            .await;
        let other_id = r.integration_id("acc-2");
        r.app
            .state
            .db
            .with_conn(|c| flowlu_store::set_extension(c, other_id, "31", Some("105")))
            .unwrap();
        r.fake.queue_reply(
            &hook,
            Reply::json(200, serde_json::json!({"route": {"extension": choice}})),
        );
        ring(&fake).await;
        let commands = ask_agi(&r, "1795416368.27").await;
        let wanted: Vec<String> = expected
            .map(|ext| {
                vec![
                    format!("SET VARIABLE APPLIANCE_ROUTE \"PJSIP/{ext}\""),
                    format!("SET VARIABLE APPLIANCE_ROUTE_EXTEN \"{ext}\""),
                ]
            })
            .unwrap_or_default();
        assert_eq!(commands, wanted, "Flowlu chose {choice}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_or_failing_crm_leaves_routing_to_the_pbx_and_the_event_is_still_delivered() {
    for reply in [
        Reply::json(200, serde_json::json!({"route": {"extension": "101"}}))
            .delayed(Duration::from_secs(3)),
        Reply::status(500),
    ] {
        let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
        let (r, _, hook) = setup("asterisk", &fake, IncomingRouting::Crm).await;
        r.fake.queue_reply(&hook, reply);
        ring(&fake).await;
        let started = std::time::Instant::now();
        assert!(
            ask_agi(&r, "1795416368.27").await.is_empty(),
            "no decision: nothing set"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "bounded by decision_timeout"
        );
        fake.release_all().await;
        let events = events_until(&r, &hook, "call.completed").await;
        assert_eq!(events[0]["event"], "call.init");
        // Retried after the 500 if need be, but one event: one event_id.
        let inits: std::collections::HashSet<&str> = events
            .iter()
            .filter(|e| e["event"] == "call.init")
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(inits.len(), 1, "{:?}", kinds(&events));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_pbx_routing_the_dialplan_gets_no_decision_at_once() {
    let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let (r, _, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    ring(&fake).await;
    let started = std::time::Instant::now();
    assert!(ask_agi(&r, "1795416368.27").await.is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));
    events_until(&r, &hook, "call.init").await;
}

/// A minimal finished PCM WAV: header sizes filled in, one second of silence.
fn wav() -> Vec<u8> {
    let data = vec![0u8; 16_000];
    let mut w = Vec::new();
    w.extend(b"RIFF");
    w.extend(((36 + data.len()) as u32).to_le_bytes());
    w.extend(b"WAVEfmt ");
    w.extend(16u32.to_le_bytes());
    w.extend(1u16.to_le_bytes()); // PCM
    w.extend(1u16.to_le_bytes()); // mono
    w.extend(8000u32.to_le_bytes());
    w.extend(16000u32.to_le_bytes());
    w.extend(2u16.to_le_bytes());
    w.extend(16u16.to_le_bytes());
    w.extend(b"data");
    w.extend((data.len() as u32).to_le_bytes());
    w.extend(data);
    w
}

/// The recorded incoming call, held until released, whose recording file is in a
/// directory of `[recordings] dirs` (the PBX wrote /work/peers/.../monitor/in-...wav;
/// here its directory is mounted at another path: the file name is found in the
/// configured one). Account acc-1 is connected with recording on and PBX routing. Returns
/// the fake PBX, the directory (keep it), the rig and the settings session.
pub(crate) async fn recorded_call_with_file(
    edit: impl FnOnce(&mut appliance::config::Config),
) -> (Fake, tempfile::TempDir, Rig, String) {
    let fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let recordings = tempfile::tempdir().unwrap();
    std::fs::write(
        recordings.path().join("in-74950000000-1795416368.27.wav"),
        wav(),
    )
    .unwrap();
    let dir = recordings.path().display().to_string();
    let port = fake.port();
    let r = rig(move |c| {
        c.pbx = pbx_config("asterisk", port);
        c.recordings.dirs = vec![dir];
        c.recordings.settle = "100ms".into();
        edit(c);
    })
    .await;
    r.fake.add_user("tok-1", "17", "Ann", "");
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    let saved = r
        .act(
            "calls",
            &s,
            &[("record_calls", "1"), ("incoming_routing", "pbx")],
        )
        .await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    (fake, recordings, r, s)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_call_reports_a_working_recording_url() {
    let (fake, _recordings, r, _) = recorded_call_with_file(|_| {}).await;
    let id = r.integration_id("acc-1");
    let uuid: String = r
        .app
        .db()
        .query_row(
            "SELECT telephony_uuid FROM flowlu_integrations WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .unwrap();
    let hook = format!("/external/telephony/hook/mini_app/acc-1/{uuid}");
    eventually(10, "PBX up", async || {
        (r.app.get("/healthz").await.json()["pbx"] == "up").then_some(())
    })
    .await;
    fake.release_all().await;
    let events = events_until(&r, &hook, "call.recording").await;
    assert_eq!(kinds(&events).last(), Some(&"call.recording"));
    let recording = events.last().unwrap();
    assert_eq!(recording["call"]["id"], events[0]["call"]["id"]);
    let url = recording["call"]["recording_url"].as_str().unwrap();
    let path = url
        .strip_prefix("https://appliance.example:8443")
        .expect("under public_url");
    assert!(path.starts_with("/recordings/") && path.len() > 40, "{url}");
    let served = r.app.request("HEAD", path, &[], None).await;
    assert_eq!(served.status, 200);
    assert_eq!(served.header("content-type"), Some("audio/wav"));
    assert_eq!(served.header("content-length"), Some("16044"));
    let first = r
        .app
        .request("GET", path, &[("range", "bytes=0-3")], None)
        .await;
    assert_eq!((first.status, first.body.as_str()), (206, "RIFF"));
}
