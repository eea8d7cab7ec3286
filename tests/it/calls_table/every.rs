//! Every transcript under `tests/fixtures/` (ours and the independent sets) replayed
//! byte-exactly through the fake PBX, the adapters and the call tracker, each reported
//! call compared with the `expected.json` beside the transcript.
//!
//! The expectations are never printed by the code under test: for our own recordings they
//! come from what happened on the server (the fixtures README), for an independent set
//! from its own source (its README says how). Each `expected.json` maps a transcript file
//! to `calls` (each with `direction`, `status`, `extension` — a string, or a list of
//! extensions any of which is right, or null when not checked — and optionally `phone`,
//! `line`, `transfer_target` and `queue`, the queue or ring group's name), `optional_calls` (calls that may or may not be reported;
//! null fields match anything), `aliases` (short numbers that name the same phone as a SIP
//! peer) and, for a click-to-call, the `click` the test starts. An independent set's
//! `[calls]` settings are the TOML block in its README.
//!
//! The scorecard (scenarios right / total per set, and per field) is printed; the test
//! fails naming every scenario and field that is wrong, except those listed in
//! `tests/fixtures/known-wrong.txt` (one `set/transcript field` a line), which must stay
//! wrong for as long as they are listed: a fix removes its line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use appliance::calls::tracker::{Emit, Tracker};
use appliance::calls::{Call, CallState, Direction};
use appliance::config::{CallsConfig, Config};
use appliance::pbx::{Event, OriginateRequest, PbxEvent};
use serde_json::Value;

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::fake_pbx::esl::{EslScript, FakeEsl};
use crate::fake_pbx::{Fake, PbxUnderTest, pbx_config};

const FIELDS: &[&str] = &[
    "calls",
    "direction",
    "status",
    "extension",
    "phone",
    "line",
    "transfer_target",
    "queue",
];

/// One reported call: its last record and every Flowlu event it emitted.
#[derive(Debug)]
struct Reported {
    call: Call,
    emits: Vec<Emit>,
}

struct Set {
    /// `asterisk`, `freeswitch`, `independent/cacofonisk-ast13`.
    dir: String,
    pbx: &'static str,
    calls: CallsConfig,
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The `[calls]` settings in the TOML block of a set's README, over the defaults.
fn settings_of(readme: &str) -> CallsConfig {
    let mut calls = Config::defaults().calls;
    let Some((_, rest)) = readme.split_once("```toml") else {
        return calls;
    };
    let block = rest.split("```").next().unwrap_or("");
    let table: toml::Table = toml::from_str(block).expect("the README's [calls] block parses");
    let mut merged = toml::Value::try_from(&calls).unwrap();
    if let (Some(m), Some(toml::Value::Table(over))) = (merged.as_table_mut(), table.get("calls")) {
        for (k, v) in over {
            assert!(m.contains_key(k), "README names an unknown [calls] key {k}");
            m.insert(k.clone(), v.clone());
        }
    }
    calls = merged.try_into().expect("valid [calls] settings");
    calls
}

fn sets() -> Vec<Set> {
    let mut sets = vec![
        Set {
            dir: "asterisk".into(),
            pbx: "asterisk",
            calls: Config::defaults().calls,
        },
        Set {
            dir: "freeswitch".into(),
            pbx: "freeswitch",
            calls: Config::defaults().calls,
        },
    ];
    let mut independent: Vec<_> = std::fs::read_dir(fixtures().join("independent"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    independent.sort();
    for name in independent {
        let dir = format!("independent/{name}");
        let readme = std::fs::read_to_string(fixtures().join(&dir).join("README.md")).unwrap();
        sets.push(Set {
            pbx: if readme.contains("Asterisk") {
                "asterisk"
            } else {
                "freeswitch"
            },
            calls: settings_of(&readme),
            dir,
        });
    }
    sets
}

/// Replays one transcript and returns every call the tracker reported, in the order they
/// were first reported.
async fn replay(set: &Set, transcript: &str, click: Option<&Value>) -> Vec<Reported> {
    let name = transcript.strip_suffix(".txt").unwrap();
    let fake: Fake = match (set.pbx, set.dir.as_str()) {
        ("asterisk", "asterisk") => FakeAmi::start(vec![Script::new(name).idle_resync()]).await,
        ("asterisk", dir) => {
            FakeAmi::start(vec![Script::new(&format!("{dir}/{name}")).idle_resync()]).await
        }
        _ => FakeEsl::start(vec![EslScript::new(name)]).await,
    };
    let mut config = pbx_config(set.pbx, fake.port());
    config.context = "from-crm".into();
    let text = |c: &Value, k: &str| c[k].as_str().unwrap().to_string();
    if let Some(c) = click {
        config.agent_channel = text(c, "channel");
    }
    let mut put = PbxUnderTest::start(config);
    let mut tracker = Tracker::new(&set.calls);
    let mut order: Vec<String> = Vec::new();
    let mut seen: HashMap<String, Reported> = HashMap::new();
    let mut record = |updates: Vec<appliance::calls::tracker::Update>| {
        for u in updates {
            let r = seen.entry(u.call.id.clone()).or_insert_with(|| {
                order.push(u.call.id.clone());
                Reported {
                    call: u.call.clone(),
                    emits: Vec::new(),
                }
            });
            r.call = u.call;
            r.emits.extend(u.emit);
        }
    };
    for e in put.wait_up().await {
        record(tracker.handle(&PbxEvent::now(e)));
    }
    if let Some(c) = click {
        let mut call = Call::new(Direction::Outgoing, appliance::outbox::now_ms());
        call.id = text(c, "call_id");
        call.integration_id = Some(1);
        call.crm_call_id = Some("flowlu-7".into());
        call.phone = text(c, "customer");
        call.extension = Some(text(c, "agent"));
        record(vec![tracker.adopt(call, None)]);
        put.handle
            .originate(&OriginateRequest {
                call_id: text(c, "call_id"),
                agent: text(c, "agent"),
                customer: text(c, "customer"),
                caller_id_name: "CRM".into(),
                caller_id_number: text(c, "customer"),
                ring: None,
                line: None,
            })
            .await
            .unwrap();
    }
    fake.release_all().await;
    // A request answered after the whole recording: once it is, every recorded event has
    // been read and queued.
    let handle = put.handle.clone();
    let mut barrier = std::pin::pin!(async move { handle.channels().await });
    loop {
        let event = tokio::select! {
            biased;
            e = put.events.recv() => e,
            _ = &mut barrier => break,
        };
        match event {
            Some(e) if !matches!(e.event, Event::Disconnected { .. }) => record(tracker.handle(&e)),
            _ => break,
        }
    }
    while let Ok(e) = put.events.try_recv() {
        if !matches!(e.event, Event::Disconnected { .. }) {
            record(tracker.handle(&e));
        }
    }
    put.stop().await;
    order
        .into_iter()
        .filter_map(|id| seen.remove(&id))
        .collect()
}

/// The field's expected value matches what was reported (`aliases` map short numbers
/// to peer names).
fn matches(expected: &Value, got: Option<&str>, aliases: &HashMap<String, String>) -> bool {
    let same = |want: &str| {
        let want_alias = aliases.get(want).map(String::as_str);
        got == Some(want) || (want_alias.is_some() && got == want_alias)
    };
    match expected {
        Value::Null => true,
        Value::String(want) => same(want),
        Value::Array(any) => any.iter().any(|w| w.as_str().is_some_and(same)),
        _ => false,
    }
}

/// The fields of one reported call that differ from `expected`, by name.
fn wrong_fields(
    expected: &Value,
    r: &Reported,
    aliases: &HashMap<String, String>,
) -> Vec<&'static str> {
    let c = &r.call;
    let status = c.status.map(|s| s.as_str());
    let transferred = r
        .emits
        .iter()
        .position(|e| *e == Emit::Connected)
        .is_some_and(|at| r.emits[at..].contains(&Emit::State));
    let mut wrong = Vec::new();
    let checks: [(&'static str, Option<&str>); 6] = [
        ("direction", Some(c.direction.as_str())),
        ("status", status),
        ("extension", c.extension.as_deref()),
        ("phone", Some(c.phone.as_str())),
        ("line", Some(c.line.as_str())),
        ("queue", c.queue.as_deref()),
    ];
    for (field, got) in checks {
        let want = expected.get(field).unwrap_or(&Value::Null);
        if !matches(want, got, aliases) {
            wrong.push(field);
        }
    }
    let target = expected.get("transfer_target").unwrap_or(&Value::Null);
    let landed = transferred && matches(target, c.extension.as_deref(), aliases);
    if !target.is_null() && !landed {
        wrong.push("transfer_target");
    }
    if c.state != CallState::Ended || r.emits.last() != Some(&Emit::Completed) {
        wrong.push("status");
    }
    wrong.dedup();
    wrong
}

/// Pairs expected and reported calls (each expected call with the unpaired reported one
/// it matches best) and returns the wrong fields, as `field` or `call N field`.
fn compare(exp: &Value, reported: &[Reported]) -> (BTreeSet<String>, usize) {
    let aliases: HashMap<String, String> = exp["aliases"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let calls = exp["calls"].as_array().cloned().unwrap_or_default();
    let optional = exp["optional_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut free: Vec<usize> = (0..reported.len()).collect();
    let mut wrong = BTreeSet::new();
    for (n, want) in calls.iter().enumerate() {
        let best = free
            .iter()
            .enumerate()
            .min_by_key(|(_, i)| wrong_fields(want, &reported[**i], &aliases).len())
            .map(|(at, i)| (at, *i));
        let label = |f: &str| {
            if calls.len() > 1 {
                format!("call {} {f}", n + 1)
            } else {
                f.to_string()
            }
        };
        match best {
            Some((at, i)) => {
                free.remove(at);
                for f in wrong_fields(want, &reported[i], &aliases) {
                    wrong.insert(label(f));
                }
            }
            None => {
                wrong.insert(label("calls"));
            }
        }
    }
    // Left-over reported calls must be optional ones.
    let mut extra = 0;
    for i in free {
        let ok = optional.iter().any(|want| {
            let status_ok = match &want["status"] {
                Value::Array(any) => any
                    .iter()
                    .any(|s| s.as_str() == reported[i].call.status.map(|s| s.as_str())),
                _ => true,
            };
            let mut w = want.clone();
            w["status"] = Value::Null;
            status_ok && wrong_fields(&w, &reported[i], &aliases).is_empty()
        });
        if !ok {
            extra += 1;
        }
    }
    if extra > 0 {
        wrong.insert("calls".into());
    }
    (wrong, calls.len())
}

/// The label of a missing expected call `n` (of `calls`).
fn label_calls(n: usize, calls: usize) -> String {
    if calls > 1 {
        format!("call {} calls", n + 1)
    } else {
        "calls".into()
    }
}

fn known_wrong() -> BTreeSet<String> {
    std::fs::read_to_string(fixtures().join("known-wrong.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_recorded_call_matches_its_expected_record() {
    let known = known_wrong();
    let mut found = BTreeSet::new();
    let mut card = String::new();
    for set in sets() {
        let dir = fixtures().join(&set.dir);
        let expected: BTreeMap<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap_or_else(|e| panic!("{}/expected.json: {e}", set.dir));
        let mut transcripts: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".txt"))
            .collect();
        transcripts.sort();
        let listed: Vec<&String> = expected.keys().collect();
        assert_eq!(
            listed,
            transcripts.iter().collect::<Vec<_>>(),
            "{}: expected.json lists exactly the transcripts",
            set.dir
        );
        let (mut right, mut per_field) = (0, BTreeMap::<&str, (usize, usize)>::new());
        for t in &transcripts {
            let exp = &expected[t];
            let reported = replay(&set, t, exp.get("click").filter(|c| !c.is_null())).await;
            let (wrong, calls) = compare(exp, &reported);
            if wrong.is_empty() {
                right += 1;
            }
            for f in FIELDS {
                // A field counts where it is checked: every scenario's number of calls,
                // each expected call's non-null fields.
                let checked: Vec<usize> = match *f {
                    "calls" => vec![0],
                    f => (0..calls)
                        .filter(|&n| !exp["calls"][n][f].is_null())
                        .collect(),
                };
                let label = |n: usize| match (*f, calls > 1) {
                    ("calls", _) | (_, false) => f.to_string(),
                    (_, true) => format!("call {} {f}", n + 1),
                };
                let bad = checked
                    .iter()
                    .filter(|&&n| {
                        wrong.contains(&label(n)) || wrong.contains(&label_calls(n, calls))
                    })
                    .count();
                let e = per_field.entry(f).or_default();
                e.0 += checked.len() - bad;
                e.1 += checked.len();
            }
            for w in wrong {
                found.insert(format!("{}/{t} {w}", set.dir));
            }
            if !compare(exp, &reported).0.is_empty() {
                let got: Vec<String> = reported
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {} ext={:?} phone={} line={}",
                            r.call.direction.as_str(),
                            r.call.status.map_or("-", |s| s.as_str()),
                            r.call.extension,
                            r.call.phone,
                            r.call.line
                        )
                    })
                    .collect();
                eprintln!("{}/{t}: reported {got:?}", set.dir);
            }
        }
        card.push_str(&format!(
            "{}: {right}/{} scenarios right;",
            set.dir,
            transcripts.len()
        ));
        for (f, (ok, total)) in per_field {
            card.push_str(&format!(" {f} {ok}/{total}"));
        }
        card.push('\n');
    }
    eprintln!("{card}");
    let new: Vec<&String> = found.difference(&known).collect();
    let fixed: Vec<&String> = known.difference(&found).collect();
    assert!(
        new.is_empty() && fixed.is_empty(),
        "{card}\nwrong and not in known-wrong.txt:\n{}\nlisted in known-wrong.txt but right now (remove them):\n{}",
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        fixed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
