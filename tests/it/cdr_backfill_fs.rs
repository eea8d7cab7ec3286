//! Back-fill from FreeSWITCH's own call records (issue 14), end to end: `mod_xml_cdr`
//! files and `mod_cdr_csv` lines made from the `CHANNEL_HANGUP_COMPLETE` events of the
//! recorded scenarios, the appliance stopped or its event socket cut, and the fake Flowlu
//! receiving what was missed, once.

use std::path::{Path, PathBuf};

use appliance::cdr::Row;
use appliance::cdr::fixtures::{freeswitch_csv_line, freeswitch_rows, shift_freeswitch, xml_file};
use appliance::flowlu::store::IncomingRouting;
use serde_json::Value;

use crate::call_events::setup;
use crate::cdr_backfill::{
    Configure, by_call, corrected_after_cut, restart, restart_sends_nothing, runs,
    seen_and_tracked, start_after_outage,
};
use crate::fake_pbx::Fake;
use crate::fake_pbx::esl::{EslScript, FakeEsl};
use crate::fake_receiver::Receiver;
use crate::flowlu_support::Ctx;
use crate::harness::eventually;

fn rows(scenario: &str) -> Vec<Row> {
    let path = format!(
        "{}/tests/fixtures/freeswitch/{scenario}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    freeswitch_rows(&std::fs::read_to_string(path).unwrap())
}

fn utc_ms(text: &str) -> i64 {
    appliance::cdr::local_ms(text, &appliance::cdr::time_zone("UTC").unwrap()).unwrap()
}

/// How FreeSWITCH writes its records, and the `[cdr]` that reads them.
#[derive(Clone, Copy, Debug)]
enum Backend {
    /// `mod_xml_cdr` with `log-b-leg = true`: one `<uuid>.cdr.xml` per leg.
    Xml,
    /// `mod_cdr_csv` as shipped: `legs = a`, the `example` template, Master.csv.
    Csv,
}

impl Backend {
    fn path(self, dir: &Path) -> PathBuf {
        match self {
            Backend::Xml => dir.join("xml_cdr"),
            Backend::Csv => dir.join("cdr-csv").join("Master.csv"),
        }
    }

    /// Writes the legs of one call as the module does when they hang up.
    fn write(self, dir: &Path, legs: &[Row], shift_secs: i64) {
        use std::io::Write;
        let path = self.path(dir);
        std::fs::create_dir_all(match self {
            Backend::Xml => path.as_path(),
            Backend::Csv => path.parent().unwrap(),
        })
        .unwrap();
        for leg in legs {
            let mut leg = leg.clone();
            shift_freeswitch(&mut leg, shift_secs);
            match self {
                Backend::Xml => std::fs::write(
                    path.join(format!("{}.cdr.xml", leg.get(&["uuid"]))),
                    xml_file(&leg),
                )
                .unwrap(),
                // legs = a: only the legs that called in.
                Backend::Csv if leg.get(&["direction"]) != "inbound" => {}
                Backend::Csv => {
                    let columns = appliance::cdr::freeswitch::csv_layout(15).unwrap();
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .unwrap()
                        .write_all(freeswitch_csv_line(&leg, &columns).as_bytes())
                        .unwrap();
                }
            }
        }
    }

    fn configure(self, dir: &Path) -> Configure {
        let path = self.path(dir);
        std::sync::Arc::new(move |c: &mut appliance::Config| {
            c.cdr.source = match self {
                Backend::Xml => "freeswitch-xml",
                Backend::Csv => "freeswitch-csv",
            }
            .into();
            c.cdr.path = path.display().to_string();
            c.cdr.timezone = "UTC".into();
            c.cdr.max_gap = "36500d".into();
        })
    }
}

/// The appliance last saw FreeSWITCH before three recorded calls and tracked the
/// internal one itself; the calls happen while it is stopped. At start Flowlu receives
/// the two others, once, and a second restart sends nothing.
async fn reported_once_at_start(backend: Backend) {
    let fake: Fake = FakeEsl::start(vec![EslScript::new("sip-inbound-answered")]).await;
    let (r, id, hook) = setup("freeswitch", &fake, IncomingRouting::Pbx).await;
    let dir = tempfile::tempdir().unwrap();
    let internal = rows("sip-agent-to-agent");
    let tracked = internal[0].get(&["call_uuid", "uuid"]);
    let started = utc_ms("2026-11-23 06:48:00");
    let tracked = (id, tracked, ("1000", "1001"), started);
    seen_and_tracked(&r, utc_ms("2026-11-23 06:40:00"), Some(tracked));
    // While it is stopped, FreeSWITCH writes each leg's record as it hangs up.
    for scenario in [
        "sip-inbound-answered",
        "sip-agent-to-agent",
        "sip-inbound-missed",
    ] {
        backend.write(dir.path(), &rows(scenario), 0);
    }
    let source = backend.configure(dir.path());
    let (r, events) = start_after_outage(r, &source, &hook, 2).await;
    let calls = by_call(&events, "id");
    assert_eq!(calls.len(), 2, "not the tracked internal call: {events:#?}");
    let done: Vec<&Value> = calls
        .values()
        .map(|evs| &evs.last().unwrap()["call"])
        .collect();
    assert!(
        done.iter().all(|c| c["direction"] == "incoming"
            && c["phone"] == "79161234567"
            && c["backfilled"] == true),
        "{done:#?}"
    );
    let answered = done
        .iter()
        .find(|c| c["status"] == "answered")
        .expect("the answered call");
    // start_uepoch to the millisecond (as live tracking has it), or the CSV's stamp.
    let started = match backend {
        Backend::Xml => "2026-11-23T06:50:01.565Z",
        Backend::Csv => "2026-11-23T06:50:01Z",
    };
    assert_eq!(answered["started_at"], started);
    assert_eq!(answered["duration"], 7, "{answered}");
    let kinds: Vec<&str> = calls[answered["id"].as_str().unwrap()]
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["call.init", "call.connected", "call.completed"]);
    let missed = done
        .iter()
        .find(|c| c["status"] != "answered")
        .expect("the missed call");
    assert_eq!(missed["status"], "missed");
    assert_eq!(missed["duration"], 0);
    if let Backend::Xml = backend {
        // Both legs are logged: the employee who talked, the line dialled.
        assert_eq!(answered["extension"], "1000");
        assert_eq!(answered["user_id"], "17");
        assert_eq!(answered["line"], "74950000000");
        assert_eq!(answered["wait"], 5);
    }
    restart_sends_nothing(r, &source, &hook, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_xml_cdr_calls_made_while_stopped_are_reported_once_at_start() {
    reported_once_at_start(Backend::Xml).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_cdr_csv_calls_made_while_stopped_are_reported_once_at_start() {
    reported_once_at_start(Backend::Csv).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_freeswitch_call_open_when_the_event_socket_was_cut_gets_its_real_talk_time() {
    let fake: Fake = FakeEsl::start(vec![EslScript::new("sip-inbound-answered")]).await;
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Xml;
    std::fs::create_dir_all(backend.path(dir.path())).unwrap();
    let (r, _id, hook) = setup("freeswitch", &fake, IncomingRouting::Pbx).await;
    // The appliance saw the PBX just now.
    seen_and_tracked(&r, appliance::outbox::now_ms(), None);
    let source = backend.configure(dir.path());
    let with_callbacks: Configure = std::sync::Arc::new(move |c: &mut appliance::Config| {
        source(c);
        c.callbacks.allow_http_loopback = true;
    });
    let r = restart(r, &with_callbacks).await;
    // The account sends finished calls to a result callback too.
    let receiver = Receiver::start().await;
    let s = r
        .session(&Ctx::new("acc-1", "acme.flowlu.com", "tok-1"))
        .await;
    crate::callbacks::add_callback(&r, &s, &receiver.url, None).await;
    assert_eq!(
        r.act("callbacks", &s, &[("enabled", "1")]).await.status,
        200
    );
    // After the start's resync (the PBX is up), its back-fill.
    eventually(20, "the start's back-fill", async || {
        (runs(&r) >= 1).then_some(())
    })
    .await;
    let before = runs(&r);
    // The call is answered and bridged, then the event socket drops before it ends.
    assert!(fake.release_until("Event-Name: CHANNEL_BRIDGE").await);
    let legs = rows("sip-inbound-answered");
    let fixed = corrected_after_cut(&r, &fake, &hook, before, 7, || {
        // The call ends while the socket is down, and FreeSWITCH writes its legs' records.
        let ended = appliance::outbox::now_ms() - 1000;
        let shift = (ended - 1_795_416_613_184) / 1000;
        backend.write(dir.path(), &legs, shift);
    })
    .await;
    let call_id = fixed["id"].as_str().unwrap().to_string();
    // The result callback ends up with the corrected record too: its blind
    // call.completed rewritten before it went out, or followed by call.corrected.
    let got = eventually(20, "the corrected record at the callback", async || {
        let got: Vec<Value> = receiver
            .received()
            .iter()
            .map(|g| g.json())
            .filter(|b| b["call"]["id"] == call_id.as_str())
            .collect();
        got.last()
            .is_some_and(|b| b["call"]["duration"] == 7)
            .then_some(got)
    })
    .await;
    let last = &got.last().unwrap()["call"];
    assert_eq!(last["ended_at"], fixed["ended_at"], "{got:#?}");
    assert_eq!(last["backfilled"], true);
    let first = &got[0];
    match got.len() {
        1 => assert_eq!(first["event"], "call.completed", "rewritten: {got:#?}"),
        2 => {
            assert_eq!(first["event"], "call.completed");
            assert_ne!(first["call"]["duration"], 7, "the blind close first");
            assert_eq!(got[1]["event"], "call.corrected");
        }
        _ => panic!("one completion and at most one correction: {got:#?}"),
    }
}
