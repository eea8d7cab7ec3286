//! The whole pipeline under load: `cargo bench --bench calls` (BENCH_CALLS=1000 by default).
//!
//! A fake Asterisk (AMI on 127.0.0.1:0) replays the recorded incoming call
//! `tests/fixtures/asterisk/sip-inbound-answered.txt` N times at once with fresh ids (one
//! caller number per call), into the compiled `appliance` binary, whose Flowlu calls go to
//! a local receiver. Phase 1 starts all N calls and waits until every one is connected
//! (N live calls: the binary's RSS is read then); phase 2 hangs them all up and waits for
//! every `call.completed`. Printed: events/s, and p50/p99 latency from the PBX message
//! that causes an event (the first Newchannel for `call.init`, the last Hangup for
//! `call.completed`) to the receiver getting the POST; peak RSS (VmHWM) of the binary.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[path = "calls/floor.rs"]
mod floor;

const UNIQUE: &str = "1795416368.";
const CALLER: &str = "79161234567";
const BRIDGE: &str = "8979480e-36e5-4612-b3e0-864fd347e91a";

/// The recorded call's event messages, split where the call is connected.
fn template() -> (Vec<String>, Vec<String>) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/asterisk/sip-inbound-answered.txt"
    );
    let text = String::from_utf8(std::fs::read(path).unwrap()).unwrap();
    let messages: Vec<String> = text
        .split("\r\n\r\n")
        .filter(|m| m.starts_with("Event: "))
        .filter(|m| !m.contains("ActionID: ")) // list items of the recorded actions
        .map(|m| format!("{m}\r\n\r\n"))
        .filter(|m| m.contains(UNIQUE) || m.contains(BRIDGE) || m.starts_with("Event: Cdr"))
        .collect();
    let split = messages
        .iter()
        .position(|m| m.starts_with("Event: BridgeEnter"))
        .unwrap();
    (messages[..split].to_vec(), messages[split..].to_vec())
}

/// One call's messages with fresh ids.
fn instance(msgs: &[String], i: usize) -> Vec<String> {
    msgs.iter()
        .map(|m| {
            m.replace(UNIQUE, &format!("b{i}."))
                .replace(CALLER, &format!("7916{i:07}"))
                .replace(BRIDGE, &format!("bridge-{i}"))
                .replace("-0000001", &format!("-{i:07x}"))
        })
        .collect()
}

#[derive(Default)]
struct Received {
    /// (call index, event kind) → when it arrived.
    at: HashMap<(usize, String), Instant>,
    total: usize,
}

async fn receiver(log: Arc<Mutex<Received>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let now = Instant::now();
                        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                            let phone = v["call"]["phone"].as_str().unwrap_or("");
                            let kind = v["event"].as_str().unwrap_or("").to_string();
                            if let Some(i) = phone.strip_prefix("7916").and_then(|n| n.parse().ok())
                            {
                                let mut log = log.lock().unwrap();
                                log.total += 1;
                                log.at.entry((i, kind)).or_insert(now);
                            }
                        }
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                            b"{\"response\":{}}",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Answers the appliance's login, filters, keep-alives and resync the way Asterisk 22 does
/// (wording from tests/fixtures/asterisk/actions-responses.txt), then hands the socket
/// over for the replay.
async fn fake_ami(listener: TcpListener) -> tokio::net::tcp::OwnedWriteHalf {
    // `--init` tested the login before we listened: skip connections that go away.
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        if let Some(write) = login(stream).await {
            return write;
        }
    }
}

async fn login(stream: tokio::net::TcpStream) -> Option<tokio::net::tcp::OwnedWriteHalf> {
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(b"Asterisk Call Manager/11.0.0\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    let mut resynced = false;
    while !resynced {
        let mut chunk = [0u8; 4096];
        let n = read.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let action = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let get = |k: &str| {
                action
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{k}: ")))
                    .unwrap_or("")
                    .to_string()
            };
            let id = get("ActionID");
            if std::env::var("BENCH_DEBUG").is_ok() {
                eprintln!("fake AMI got: {action:?}");
            }
            let answer = match get("Action").to_ascii_lowercase().as_str() {
                "challenge" => {
                    format!("Response: Success\r\nActionID: {id}\r\nChallenge: 840302011\r\n\r\n")
                }
                "login" => format!(
                    "Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n"
                ),
                "filter" => format!(
                    "Response: Success\r\nActionID: {id}\r\nMessage: Filter Added Successfully\r\n\r\n"
                ),
                "coreshowchannels" => {
                    resynced = true;
                    format!(
                        "Response: Success\r\nActionID: {id}\r\nEventList: start\r\nMessage: Channels will follow\r\n\r\n\
                         Event: CoreShowChannelsComplete\r\nActionID: {id}\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"
                    )
                }
                _ => format!(
                    "Response: Success\r\nActionID: {id}\r\nPing: Pong\r\nTimestamp: 1795413094.638357\r\n\r\n"
                ),
            };
            write.write_all(answer.as_bytes()).await.ok()?;
        }
    }
    // Keep answering keep-alives during the run.
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = read.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    });
    Some(write)
}

fn seed(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    conn.execute_batch(&format!(
        "INSERT INTO flowlu_integrations (id, platform, account_id, app_id, domain, app_version,
             placement_id, ratelimit, telephony_uuid, webhook_secret, token_user_id, created_at,
             updated_at)
         VALUES (1, 'flowlu.com', 'acc', 'app', 'acme.flowlu.com', '1', 'p', 100000, 'uuid', 's',
                 'u1', {now}, {now});
         INSERT INTO flowlu_users (integration_id, user_id, name, seen, created_at, updated_at)
             VALUES (1, 'u1', 'Ann', 1, {now}, {now});
         INSERT INTO flowlu_tokens (integration_id, user_id, domain, app_version, access_token,
             refresh_token, expires_at, fast_hash, updated_at)
             VALUES (1, 'u1', 'acme.flowlu.com', '1', 't', 'r', {}, 'h', {now});
         INSERT INTO flowlu_settings (integration_id, default_country_code, updated_at)
             VALUES (1, '7', {now});",
        now + 86_400
    ))
    .unwrap();
}

fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// User plus system CPU the process has used so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

fn percentile(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Polls the receiver's log until `done` holds; bounded.
async fn wait_until(log: &Arc<Mutex<Received>>, what: &str, done: impl Fn(&Received) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(&log.lock().unwrap()) {
        assert!(Instant::now() < deadline, "no {what} within 300 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_for(log: &Arc<Mutex<Received>>, calls: std::ops::Range<usize>, kind: &str) {
    wait_until(log, kind, |r| {
        calls
            .clone()
            .all(|i| r.at.contains_key(&(i, kind.to_string())))
    })
    .await;
}

/// Latencies of `kind` for `calls`, from `sent[i - calls.start]`.
fn latencies(
    r: &Received,
    calls: std::ops::Range<usize>,
    kind: &str,
    sent: &[Instant],
) -> Vec<Duration> {
    let base = calls.start;
    calls
        .map(|i| r.at[&(i, kind.to_string())] - sent[i - base])
        .collect()
}

fn spread(v: &[Duration]) -> String {
    format!(
        "p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        ms(percentile(v.to_vec(), 0.5)),
        ms(percentile(v.to_vec(), 0.99)),
        ms(*v.iter().max().unwrap())
    )
}

/// Writes the calls' start (or end) messages to the PBX socket; returns when each went.
async fn replay(
    pbx: &mut tokio::net::tcp::OwnedWriteHalf,
    msgs: &[String],
    calls: std::ops::Range<usize>,
) -> Vec<Instant> {
    let mut sent = Vec::with_capacity(calls.len());
    for i in calls {
        let bytes: String = instance(msgs, i).concat();
        sent.push(Instant::now());
        pbx.write_all(bytes.as_bytes()).await.unwrap();
    }
    sent
}

/// Writes the config with `--init`, points it at the fakes and seeds a connected account.
fn configure(
    bin: &str,
    dir: &std::path::Path,
    flowlu: SocketAddr,
    ami_port: u16,
) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    let status = std::process::Command::new(bin)
        .args([
            "--init",
            "--non-interactive",
            "--plain-http",
            "--listen",
            "127.0.0.1:0",
            "--pbx",
            "asterisk",
            // The fake AMI answers only once the appliance runs.
            "--pbx-optional",
        ])
        .args([
            "--pbx-user",
            "appliance",
            "--pbx-secret",
            "s3cret",
            "--pbx-port",
            &ami_port.to_string(),
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    seed(&dir.join("data/appliance.db"));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "base_url_override = \"\"",
            &format!("base_url_override = \"http://{flowlu}\""),
        )
        .replace(
            "agi_listen = \"127.0.0.1:4573\"",
            "agi_listen = \"127.0.0.1:0\"",
        )
        .replace("max_in_flight = 8", "max_in_flight = 32")
        .replace("level = \"info\"", "level = \"warn\"");
    std::fs::write(&config, text).unwrap();
    config
}

#[tokio::main]
async fn main() {
    // `cargo test --all-targets` runs this too, unoptimized and without `--bench`: then 20
    // calls and short floor loops as a smoke test of the whole pipeline through the
    // binary; the figures it prints mean nothing.
    let measure = std::env::args().any(|a| a == "--bench");
    let n: usize = match std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) if measure => n,
        _ if measure => 1000,
        _ => 20,
    };
    let bin = std::env::var("BENCH_BIN").unwrap_or(env!("CARGO_BIN_EXE_appliance").to_string());
    let (start_msgs, end_msgs) = template();
    let log = Arc::new(Mutex::new(Received::default()));
    let flowlu = receiver(log.clone()).await;
    let ami = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ami_port = ami.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();

    // The floor first, while nothing else of ours runs.
    let loops = if measure { 20_000 } else { 200 };
    let floor_dir = dir.path().to_path_buf();
    let commits = tokio::task::spawn_blocking(move || floor::sqlite_commits(&floor_dir, loops))
        .await
        .unwrap();
    let posts = tokio::task::spawn_blocking(move || floor::keepalive_posts(flowlu, loops))
        .await
        .unwrap();

    let config = configure(&bin, dir.path(), flowlu, ami_port);
    let child = Child(
        std::process::Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .spawn()
            .unwrap(),
    );
    let mut pbx = fake_ami(ami).await;
    // Steady state: let start-up finish (the PBX resync, the numbering-plan metadata the
    // binary loads in the background) before the first call.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = rss(child.id());

    // One call alone (ids after the burst's).
    let one = n..n + 1;
    let sent = replay(&mut pbx, &start_msgs, one.clone()).await;
    wait_for(&log, one.clone(), "call.connected").await;
    let one_init = latencies(&log.lock().unwrap(), one.clone(), "call.init", &sent);
    let sent = replay(&mut pbx, &end_msgs, one.clone()).await;
    wait_for(&log, one.clone(), "call.completed").await;
    let one_done = latencies(&log.lock().unwrap(), one, "call.completed", &sent);

    // The burst: N calls ring and are answered at once, then all hang up.
    let before = log.lock().unwrap().total;
    let (cpu0, first_send) = (cpu(child.id()), Instant::now());
    let started = replay(&mut pbx, &start_msgs, 0..n).await;
    wait_for(&log, 0..n, "call.connected").await;
    let live = rss(child.id());
    let ended = replay(&mut pbx, &end_msgs, 0..n).await;
    wait_for(&log, 0..n, "call.completed").await;
    let (cpu1, last) = (cpu(child.id()), Instant::now());
    let log = log.lock().unwrap();
    let init = latencies(&log, 0..n, "call.init", &started);
    let done = latencies(&log, 0..n, "call.completed", &ended);
    let (_, peak) = rss(child.id());
    drop(child);

    let events = log.total - before;
    let secs = (last - first_send).as_secs_f64();
    let per_second = events as f64 / secs;
    let cpu_us = (cpu1 - cpu0).as_secs_f64() * 1e6 / events as f64;
    // One commit and one POST per event, one after the other on one thread.
    let floor_per_second = 1.0 / (1.0 / commits.per_second + 1.0 / posts.per_second);
    let floor_cpu = commits.cpu_us + posts.cpu_us;
    let pbx_messages = n * (start_msgs.len() + end_msgs.len());
    println!("calls bench: {n} concurrent calls replayed from sip-inbound-answered.txt ({bin})");
    println!(
        "  floor: {:.0} WAL commits/s ({:.1} µs CPU each), {:.0} keep-alive POSTs/s ({:.1} µs \
         CPU each, p50 {:.2} ms, p99 {:.2} ms): {floor_per_second:.0} events/s, {floor_cpu:.1} µs CPU/event",
        commits.per_second,
        commits.cpu_us,
        posts.per_second,
        posts.cpu_us,
        ms(posts.p50),
        ms(posts.p99)
    );
    println!(
        "  one call: call.init {:.1} ms ({:.1}× a POST), call.completed {:.1} ms",
        ms(one_init[0]),
        one_init[0].as_secs_f64() / posts.p50.as_secs_f64(),
        ms(one_done[0])
    );
    println!(
        "  {events} Flowlu events in {secs:.2} s: {per_second:.0} events/s ({:.3} of the floor; \
         {:.0} PBX messages/s in)",
        per_second / floor_per_second,
        pbx_messages as f64 / secs
    );
    println!(
        "  CPU {cpu_us:.0} µs/event ({:.1}× the floor's)",
        cpu_us / floor_cpu
    );
    println!("  call.init latency      {}", spread(&init));
    println!("  call.completed latency {}", spread(&done));
    println!(
        "  RSS: idle {} KiB, with {n} live calls {} KiB, peak {} KiB",
        idle_rss, live.0, peak
    );
}

/// The appliance process, killed when the bench ends (also when it fails).
struct Child(std::process::Child);

impl Child {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
