//! AMI reading cost per message against the machine's floor: `cargo bench --bench ami`.
//!
//! Decodes the recorded `sip-inbound-answered.txt` transcript over and over (200,000
//! messages, the buffer small enough to stay in cache, as a live read buffer does) through
//! the path the AMI actor takes for each message: `check_from`, `parse`, the `ActionID`
//! and `Event` lookups of its dispatch, and `events::map` for events. In the same run it
//! measures the floor for the same bytes, a loop that only finds the `\r\n\r\n` message
//! ends with a byte search, and prints messages/s, ns/message and the ratio to that floor,
//! so figures from different machines compare. Best of five runs. Plain `harness = false`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use appliance::pbx::ami::{codec, events};

const MESSAGES: usize = 200_000;
const RUNS: usize = 5;

/// The transcript after its banner line: only messages, each ended by an empty line.
fn transcript() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk/sip-inbound-answered.txt");
    let bytes = std::fs::read(path).unwrap();
    let (n, _) = codec::check_banner(&bytes).unwrap().unwrap();
    bytes[n..].to_vec()
}

/// What the actor does per message (`map`: with the event mapping); returns how many
/// messages and normalized events.
fn decode(buf: &[u8], messages: usize, map: bool) -> (usize, usize) {
    let mut out = Vec::with_capacity(8);
    let (mut done, mut normalized, mut at) = (0, 0, 0);
    while done < messages {
        if at == buf.len() {
            at = 0;
        }
        let n = codec::check_from(&buf[at..], 0).unwrap().unwrap();
        let msg = codec::parse(&buf[at..at + n]);
        at += n;
        done += 1;
        if black_box(msg.action_id()).is_none() && msg.event().is_some() && map {
            events::map(&msg, &mut out);
            normalized += out.len();
            out.clear();
        }
        black_box(&msg);
    }
    (done, normalized)
}

/// The floor: the same bytes, only the message ends found.
fn floor(buf: &[u8], messages: usize) -> (usize, usize) {
    let end = memchr::memmem::Finder::new(b"\r\n\r\n");
    let (mut done, mut at) = (0, 0);
    while done < messages {
        if at == buf.len() {
            at = 0;
        }
        let n = end.find(&buf[at..]).unwrap() + 4;
        black_box(&buf[at..at + n]);
        at += n;
        done += 1;
    }
    (done, 0)
}

/// One measured pass: messages done and normalized events.
type Pass<'a> = &'a dyn Fn() -> (usize, usize);

fn main() {
    let buf = transcript();
    // `cargo test --all-targets` runs this too, unoptimized and without `--bench`: one
    // pass over the transcript as a smoke test, no measurement.
    if !std::env::args().any(|a| a == "--bench") {
        let (messages, normalized) = decode(&buf, 114, true);
        assert!(normalized > 0 && floor(&buf, messages).0 == messages);
        println!("ami bench: smoke pass ok (run `cargo bench --bench ami` to measure)");
        return;
    }
    // The passes take turns, so a neighbour's load hits them alike; best of each.
    let passes: [(&str, Pass); 3] = [
        ("floor (find \\r\\n\\r\\n)", &|| floor(&buf, MESSAGES)),
        ("check_from + parse + lookups", &|| {
            decode(&buf, MESSAGES, false)
        }),
        ("... + events::map", &|| decode(&buf, MESSAGES, true)),
    ];
    let mut fastest = [Duration::MAX; 3];
    let mut normalized = 0;
    for _ in 0..RUNS {
        for (i, (_, pass)) in passes.iter().enumerate() {
            let started = Instant::now();
            normalized = normalized.max(pass().1);
            fastest[i] = fastest[i].min(started.elapsed());
        }
    }
    println!(
        "AMI: sip-inbound-answered.txt ({} bytes), {MESSAGES} messages -> {normalized} normalized events, best of {RUNS}",
        buf.len()
    );
    let ns = |t: Duration| t.as_nanos() as f64 / MESSAGES as f64;
    for (i, (name, _)) in passes.iter().enumerate() {
        println!(
            "{name:<30} {:>10.0} messages/s {:>8.1} ns/message  ({:.1}x the floor)",
            MESSAGES as f64 / fastest[i].as_secs_f64(),
            ns(fastest[i]),
            ns(fastest[i]) / ns(fastest[0])
        );
    }
}
