//! Codec throughput over the recorded transcripts, repeated: `cargo bench --bench codec`.
//!
//! For each protocol it measures two passes over the same bytes: decoding only
//! (`check` + `parse`, and for ESL the event body) and decoding plus mapping to normalized
//! events, which is what a live connection does. Prints messages/s, events/s (PBX events
//! in, whatever they are) and MB/s; the best of five runs. Plain `harness = false` main:
//! no extra dependency.

use std::time::{Duration, Instant};

use appliance::pbx::ami::{codec as ami, events as ami_events};
use appliance::pbx::esl::{codec as esl, events as esl_events};

const TARGET_BYTES: usize = 64 * 1024 * 1024;
const RUNS: usize = 5;

fn fixtures(dir: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut names: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    let mut all = Vec::new();
    for name in names {
        all.extend(std::fs::read(name).unwrap());
    }
    all
}

fn repeat(one: &[u8]) -> Vec<u8> {
    let times = TARGET_BYTES.div_ceil(one.len());
    one.repeat(times)
}

struct Count {
    messages: u64,
    events: u64,
    normalized: u64,
}

fn best(name: &str, bytes: usize, mut pass: impl FnMut() -> Count) {
    let mut fastest = Duration::MAX;
    let mut count = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let c = pass();
        fastest = fastest.min(started.elapsed());
        count = Some(c);
    }
    let c = count.unwrap();
    let secs = fastest.as_secs_f64();
    println!(
        "{name:<34} {:>7.1} MB/s {:>10.0} messages/s {:>10.0} events/s  ({} events -> {} normalized, {:.0} ms)",
        bytes as f64 / secs / 1e6,
        c.messages as f64 / secs,
        c.events as f64 / secs,
        c.events,
        c.normalized,
        secs * 1e3,
    );
}

/// Walks `buf` as a connection would: banner lines skipped, `check` then `parse`.
fn ami_pass(buf: &[u8], map: bool) -> Count {
    let mut c = Count {
        messages: 0,
        events: 0,
        normalized: 0,
    };
    let mut out = Vec::with_capacity(8);
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.starts_with(ami::BANNER_PREFIX.as_bytes()) {
            let (n, _) = ami::check_banner(rest).unwrap().unwrap();
            rest = &rest[n..];
            continue;
        }
        let Some(n) = ami::check(rest).unwrap() else {
            break;
        };
        let msg = ami::parse(&rest[..n]);
        rest = &rest[n..];
        c.messages += 1;
        if msg.event().is_some() {
            c.events += 1;
            if map && msg.action_id().is_none() {
                ami_events::map(&msg, &mut out);
                c.normalized += out.len() as u64;
                out.clear();
            }
        }
    }
    c
}

fn esl_pass(buf: &[u8], map: bool) -> Count {
    let mut c = Count {
        messages: 0,
        events: 0,
        normalized: 0,
    };
    let mut mapper = esl_events::Mapper::new();
    let mut out = Vec::with_capacity(8);
    let mut rest = buf;
    while let Some(n) = esl::check(rest).unwrap() {
        let env = esl::parse(&rest[..n]).unwrap();
        rest = &rest[n..];
        c.messages += 1;
        if let Some(event) = esl::event_of(&env).unwrap() {
            c.events += 1;
            if map {
                mapper.map(&event, &mut out);
                c.normalized += out.len() as u64;
                out.clear();
            }
        }
    }
    c
}

fn main() {
    // `cargo test --all-targets` runs this too, unoptimized and without `--bench`: one
    // pass over the transcripts as a smoke test, no measurement.
    if !std::env::args().any(|a| a == "--bench") {
        let ami = ami_pass(&fixtures("asterisk"), true);
        let esl = esl_pass(&fixtures("freeswitch"), true);
        assert!(ami.normalized > 0 && esl.normalized > 0);
        println!("codec bench: smoke pass ok (run `cargo bench --bench codec` to measure)");
        return;
    }
    let ami_buf = repeat(&fixtures("asterisk"));
    let esl_buf = repeat(&fixtures("freeswitch"));
    println!(
        "AMI: {} MB of the 15 Asterisk transcripts repeated; ESL: {} MB of the 17 FreeSWITCH transcripts repeated",
        ami_buf.len() / 1_000_000,
        esl_buf.len() / 1_000_000
    );
    best("AMI decode", ami_buf.len(), || ami_pass(&ami_buf, false));
    best("AMI decode + normalize", ami_buf.len(), || {
        ami_pass(&ami_buf, true)
    });
    best("ESL decode (plain + json bodies)", esl_buf.len(), || {
        esl_pass(&esl_buf, false)
    });
    best("ESL decode + normalize", esl_buf.len(), || {
        esl_pass(&esl_buf, true)
    });
}
