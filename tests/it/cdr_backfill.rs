//! Back-fill from the PBX's own call records (issue 14), end to end: Master.csv lines
//! made from the recorded scenarios' `Event: Cdr` blocks, the appliance restarting or
//! its PBX link cut, and the fake Flowlu receiving what was missed, once.

use std::path::Path;

use appliance::calls::{Call, CallState, CallStatus, Direction, store};
use appliance::cdr::Row;
use appliance::cdr::fixtures::{asterisk_columns, asterisk_csv_line, asterisk_rows};
use appliance::flowlu::store::IncomingRouting;
use serde_json::Value;

use crate::call_events::setup;
use crate::fake_pbx::Fake;
use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::flowlu_support::Rig;
use crate::harness::eventually;

pub(crate) fn fixture_rows(name: &str) -> Vec<Row> {
    let path = format!(
        "{}/tests/fixtures/asterisk/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    asterisk_rows(&std::fs::read_to_string(path).unwrap())
}

/// Appends `rows` to Master.csv (newcdrcolumns layout), times moved by `shift_secs`.
pub(crate) fn append_csv(path: &Path, rows: &[Row], shift_secs: i64) {
    use std::io::Write;
    let utc = appliance::cdr::time_zone("UTC").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for row in rows {
        let mut row = row.clone();
        for col in ["start", "answer", "end"] {
            if let Some(ms) = appliance::cdr::local_ms(row.get(&[col]), &utc) {
                let t = jiff::Timestamp::from_millisecond(ms + shift_secs * 1000).unwrap();
                row.0
                    .insert(col.into(), t.strftime("%Y-%m-%d %H:%M:%S").to_string());
            }
        }
        f.write_all(asterisk_csv_line(&row, &asterisk_columns(true)).as_bytes())
            .unwrap();
    }
}

pub(crate) fn fixture_ms(text: &str) -> i64 {
    appliance::cdr::local_ms(text, &appliance::cdr::time_zone("UTC").unwrap()).unwrap()
}

pub(crate) fn cdr_config(c: &mut appliance::Config, csv: &Path) {
    c.cdr.source = "asterisk-csv".into();
    c.cdr.path = csv.display().to_string();
    c.cdr.timezone = "UTC".into();
    c.cdr.max_gap = "36500d".into();
}

/// A tracked call: (integration, `pbx_call`, (extension, colleague), started at).
pub(crate) type Tracked<'a> = (i64, &'a str, (&'a str, &'a str), i64);

/// The appliance last saw the PBX at `seen`, and had tracked `tracked` (an internal call
/// from an extension to a colleague) itself.
pub(crate) fn seen_and_tracked(r: &Rig, seen: i64, tracked: Option<Tracked>) {
    let tracked = tracked.map(|(integration, pbx_call, (ext, to), started)| Call {
        integration_id: Some(integration),
        pbx_call: pbx_call.to_string(),
        phone: to.into(),
        extension: Some(ext.into()),
        state: CallState::Ended,
        status: Some(CallStatus::Answered),
        ..Call::new(Direction::Internal, started)
    });
    r.app
        .state
        .db
        .with_conn(|c| {
            appliance::cdr::store::set_seen(c, seen).map_err(appliance::db::DbError::from)?;
            match &tracked {
                Some(call) => store::save(c, call, 0).map_err(appliance::db::DbError::from),
                None => Ok(()),
            }
        })
        .unwrap();
}

/// How a test points `[cdr]` at its source.
pub(crate) type Configure = std::sync::Arc<dyn Fn(&mut appliance::Config) + Send + Sync>;

fn csv_source(csv: &Path) -> Configure {
    let csv = csv.to_path_buf();
    std::sync::Arc::new(move |c| cdr_config(c, &csv))
}

pub(crate) async fn restart(r: Rig, source: &Configure) -> Rig {
    let Rig { app, fake } = r;
    let source = source.clone();
    let app = app.restart_with(move |c| source(c)).await;
    Rig { app, fake }
}

pub(crate) fn runs(r: &Rig) -> i64 {
    r.count("SELECT count(*) FROM cdr_runs WHERE finished_at IS NOT NULL")
}

/// The events Flowlu received, by the call's `key` (`phone`, `id`).
pub(crate) fn by_call(
    events: &[Value],
    key: &str,
) -> std::collections::BTreeMap<String, Vec<Value>> {
    let mut out = std::collections::BTreeMap::<String, Vec<Value>>::new();
    for e in events {
        out.entry(e["call"][key].as_str().unwrap_or("").to_string())
            .or_default()
            .push(e.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_made_while_the_appliance_was_stopped_are_reported_once_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Master.csv");
    let write = |rows: &[Row]| append_csv(&csv, rows, 0);
    reported_once_at_start(write, csv_source(&csv)).await;
}

/// The appliance last saw the PBX before three recorded calls and tracked one of them
/// itself; `write` puts each call's rows into the source while it is stopped. At start
/// Flowlu receives the two others, once, and a second restart sends nothing.
pub(crate) async fn reported_once_at_start(write: impl Fn(&[Row]), source: Configure) {
    let fake: Fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let (r, id, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    // The appliance last saw the PBX shortly before the recorded calls, and it had
    // tracked the internal one itself.
    let agent_rows = fixture_rows("sip-agent-to-agent");
    let tracked = agent_rows[0].get(&["linkedid"]);
    let started = fixture_ms("2026-11-23 06:48:50");
    let tracked = (id, tracked, ("100", "101"), started);
    seen_and_tracked(&r, fixture_ms("2026-11-23 06:45:00"), Some(tracked));
    // While it is stopped, the PBX writes its records.
    for scenario in [
        "sip-inbound-answered",
        "sip-agent-to-agent",
        "sip-click-to-call",
    ] {
        write(&fixture_rows(scenario));
    }
    let (r, events) = start_after_outage(r, &source, &hook, 2).await;
    let calls = by_call(&events, "phone");
    assert_eq!(
        calls.keys().collect::<Vec<_>>(),
        ["79161234567", "79990001122"],
        "the two missed calls, not the tracked internal one: {events:#?}"
    );
    let incoming = &calls["79161234567"];
    let kinds: Vec<&str> = incoming
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["call.init", "call.connected", "call.completed"]);
    let last = &incoming[2]["call"];
    assert_eq!(last["direction"], "incoming");
    assert_eq!(last["line"], "74950000000");
    assert_eq!(last["extension"], "100");
    assert_eq!(last["user_id"], "17");
    assert_eq!(last["status"], "answered");
    assert_eq!(
        (last["duration"].as_i64(), last["wait"].as_i64()),
        (Some(6), Some(5))
    );
    assert_eq!(last["started_at"], "2026-11-23T06:46:08Z");
    assert_eq!(last["backfilled"], true);
    let outgoing = &calls["79990001122"].last().unwrap()["call"];
    assert_eq!(outgoing["direction"], "outgoing");
    assert_eq!(outgoing["extension"], "100");
    let health = r.app.get("/healthz").await.json();
    assert_eq!(health["backfill"]["reported"], 2, "{health}");
    assert_eq!(health["backfill"]["found"], 3);
    let metrics = r.app.state.metrics.render(&r.app.state.pbx.get());
    assert!(
        metrics.contains("appliance_calls_backfilled_total 2"),
        "{metrics}"
    );
    restart_sends_nothing(r, &source, &hook, 2).await;
}

/// Starts the stopped appliance over `source`; returns the events Flowlu got once
/// `completed` calls were completed and the start's back-fill was recorded.
pub(crate) async fn start_after_outage(
    r: Rig,
    source: &Configure,
    hook: &str,
    completed: usize,
) -> (Rig, Vec<Value>) {
    let r = restart(r, source).await;
    let events = eventually(20, "the missed calls completed", async || {
        let got: Vec<Value> = r.fake.requests_to(hook).iter().map(|q| q.json()).collect();
        (got.iter()
            .filter(|e| e["event"] == "call.completed")
            .count()
            >= completed)
            .then_some(got)
    })
    .await;
    eventually(10, "the back-fill run recorded", async || {
        (runs(&r) == 1).then_some(())
    })
    .await;
    (r, events)
}

/// Restarted again over the same records: nothing is sent twice, `backfilled` calls
/// stay stored.
pub(crate) async fn restart_sends_nothing(r: Rig, source: &Configure, hook: &str, backfilled: i64) {
    let sent = r.fake.requests_to(hook).len();
    let r = restart(r, source).await;
    eventually(20, "the second back-fill", async || {
        (runs(&r) == 2).then_some(())
    })
    .await;
    let again = r.count("SELECT reported FROM cdr_runs ORDER BY id DESC LIMIT 1");
    assert_eq!(again, 0);
    assert_eq!(r.fake.requests_to(hook).len(), sent);
    assert_eq!(
        r.count("SELECT count(*) FROM calls WHERE backfilled = 1"),
        backfilled
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_open_when_the_pbx_link_was_cut_gets_its_real_talk_time() {
    let fake: Fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Master.csv");
    std::fs::write(&csv, "").unwrap();
    let (r, _id, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    // The appliance saw the PBX just now.
    seen_and_tracked(&r, appliance::outbox::now_ms(), None);
    let r = restart(r, &csv_source(&csv)).await;
    eventually(10, "PBX up", async || {
        (r.app.get("/healthz").await.json()["pbx"] == "up").then_some(())
    })
    .await;
    eventually(20, "the start's back-fill", async || {
        (runs(&r) >= 1).then_some(())
    })
    .await;
    let before = runs(&r);
    // The call is answered, then the link drops before it ends.
    fake.release_until("Event: BridgeEnter").await;
    corrected_after_cut(&r, &fake, &hook, before, 6, || {
        // The call ends while the link is down, and the PBX writes its record.
        let ended = appliance::outbox::now_ms() - 1000;
        let shift = (ended - fixture_ms("2026-11-23 06:46:19")) / 1000;
        append_csv(&csv, &fixture_rows("sip-inbound-answered"), shift);
    })
    .await;
}

/// The link-cut check for either PBX: once the call is connected, `write` puts its
/// record into the source and the link drops; after the reconnect's back-fill (run
/// number `before + 1`) Flowlu gets the blind close, then the same call corrected with
/// `duration` seconds of talk. Returns the corrected call.
pub(crate) async fn corrected_after_cut(
    r: &Rig,
    fake: &Fake,
    hook: &str,
    before: i64,
    duration: i64,
    write: impl FnOnce(),
) -> Value {
    let started = eventually(20, "the call connected", async || {
        r.fake
            .requests_to(hook)
            .iter()
            .map(|q| q.json())
            .find(|e| e["event"] == "call.connected")
    })
    .await;
    let call_id = started["call"]["id"].as_str().unwrap().to_string();
    write();
    assert!(fake.kill().await);
    eventually(20, "the reconnect's back-fill", async || {
        (runs(r) > before).then_some(())
    })
    .await;
    let events: Vec<Value> = eventually(20, "the correction", async || {
        let got: Vec<Value> = r.fake.requests_to(hook).iter().map(|q| q.json()).collect();
        got.iter()
            .rposition(|e| e["event"] == "call.completed")
            .is_some_and(|done| got[done + 1..].iter().any(|e| e["event"] == "call.state"))
            .then_some(got)
    })
    .await;
    let completed = events
        .iter()
        .rfind(|e| e["event"] == "call.completed")
        .unwrap();
    assert!(
        completed["call"]["hangup_cause"]
            .as_str()
            .unwrap()
            .contains("PBX connection was down"),
        "closed blindly at the outage first: {completed}"
    );
    let fixed = events.last().unwrap()["call"].clone();
    assert_eq!(
        fixed["id"],
        call_id.as_str(),
        "the same call, not a new one"
    );
    assert_eq!(
        fixed["duration"], duration,
        "the real talk time from the CDR"
    );
    assert_eq!(fixed["status"], "answered");
    assert_eq!(fixed["backfilled"], true);
    assert_eq!(
        r.count("SELECT count(*) FROM calls"),
        1,
        "never reported as a second call"
    );
    fixed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_history_import_run_twice_sends_nothing_the_second_time() {
    let fake: Fake = FakeAmi::start(vec![Script::new("sip-inbound-answered").idle_resync()]).await;
    let (r, _id, hook) = setup("asterisk", &fake, IncomingRouting::Pbx).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Master.csv");
    // Last week's calls, as if the PBX had made them an hour ago.
    let shift =
        (appliance::outbox::now_ms() - 3_600_000 - fixture_ms("2026-11-23 06:46:08")) / 1000;
    for scenario in [
        "sip-inbound-answered",
        "sip-inbound-missed",
        "sip-agent-to-agent",
    ] {
        append_csv(&csv, &fixture_rows(scenario), shift);
    }
    let mut config = r.app.state.config.as_ref().clone();
    cdr_config(&mut config, &csv);
    let import = |dry_run: bool| {
        r.app.state.db.with_conn(|c| {
            appliance::cdr::import::run(
                c,
                &config,
                86_400_000,
                appliance::outbox::now_ms(),
                dry_run,
            )
        })
    };
    let (dry, _) = import(true).unwrap();
    assert_eq!((dry.found, dry.new.len()), (3, 3));
    assert!(
        r.fake.requests_to(&hook).is_empty(),
        "a dry run sends nothing"
    );
    let (first, _) = import(false).unwrap();
    assert_eq!(first.new.len(), 3);
    let ids: Vec<String> = first.new.iter().map(|c| c.id.clone()).collect();
    r.app.state.outbox.wake();
    eventually(20, "all imported calls delivered", async || {
        let (done, all) = r
            .app
            .state
            .db
            .with_conn(|c| {
                appliance::cdr::import::progress(c, &ids).map_err(appliance::db::DbError::from)
            })
            .unwrap();
        (all > 0 && done == all).then_some(())
    })
    .await;
    let sent = r.fake.requests_to(&hook);
    assert_eq!(
        sent.iter()
            .filter(|q| q.json()["event"] == "call.completed")
            .count(),
        3
    );
    let (second, _) = import(false).unwrap();
    assert_eq!((second.found, second.new.len()), (3, 0), "nothing twice");
    assert_eq!(r.count("SELECT count(*) FROM outbox"), sent.len() as i64);
    assert_eq!(
        r.count("SELECT count(*) FROM cdr_runs WHERE kind = 'import'"),
        2
    );
}
