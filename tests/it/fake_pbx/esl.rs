//! A fake FreeSWITCH inbound event socket replaying `tests/fixtures/freeswitch/X.txt`.
//!
//! ```ignore
//! let fake = FakeEsl::start(vec![EslScript::new("agent-busy")]).await;
//! // point [pbx] at fake.port(), type freeswitch, secret "ClueCon"
//! fake.wait_sent("bgapi originate", 1).await;
//! fake.release_all().await;   // the call's events and the BACKGROUND_JOB
//! ```
//!
//! FreeSWITCH answers commands in order, so the n-th reply of a transcript belongs to the
//! n-th command of `X.txt.sent`. A client command is matched to the next recorded reply of
//! a command with the same key (`auth`, `event`, `exit`, `api <command line>`; for
//! `originate` and `uuid_*` only the command name, since their arguments carry ids). The
//! only rewrite is the `Job-UUID` of a matched `bgapi`, in its reply and in the
//! `BACKGROUND_JOB` event (the outer `Content-Length` is recomputed). A script may send
//! two recorded events in each other's place (`swap_events`), bytes unchanged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{Control, ControlMsg, Fake, Sent, Shared, fixture_path, replace_all};

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    AuthRequest,
    /// The reply to command number n of the `.sent` file.
    Reply(usize),
    /// `text/disconnect-notice` following reply n.
    Notice(usize),
    Event,
}

#[derive(Clone, Debug)]
struct Recorded {
    bytes: Vec<u8>,
    kind: Kind,
}

#[derive(Clone, Debug)]
struct Command {
    key: String,
    job: Option<String>,
    /// The `crm_call_id=` the recording's client put on an originate.
    call_id: Option<String>,
}

/// The `crm_call_id` value in an originate's `{...}` variables.
fn call_id_in(line: &str) -> Option<String> {
    let vars = line.split_once('{')?.1.split_once('}')?.0;
    vars.split(',')
        .find_map(|v| v.trim().strip_prefix("crm_call_id="))
        .map(str::to_string)
}

#[derive(Clone, Debug)]
struct Transcript {
    connections: Vec<Vec<Recorded>>,
    commands: Vec<Command>,
}

/// The matching key of a command line (see the module documentation).
pub fn key_of(line: &str) -> String {
    let line = line.trim();
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    match verb {
        "auth" | "event" | "exit" => verb.to_string(),
        "api" | "bgapi" => {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name == "originate" || name.starts_with("uuid_") {
                format!("{verb} {name}")
            } else {
                format!("{verb} {}", rest.trim())
            }
        }
        _ => line.to_string(),
    }
}

/// Splits a byte stream into envelopes (headers, empty line, Content-Length body).
fn envelopes(mut rest: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("a header block")
            + 2;
        let head = String::from_utf8_lossy(&rest[..end]);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        out.push(rest[..end + len].to_vec());
        rest = &rest[end + len..];
    }
    out
}

fn content_type(env: &[u8]) -> String {
    let end = env
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(env.len());
    String::from_utf8_lossy(&env[..end])
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string()
}

fn load(name: &str) -> Transcript {
    let text = std::fs::read(fixture_path("freeswitch", &format!("{name}.txt")))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let sent =
        std::fs::read_to_string(fixture_path("freeswitch", &format!("{name}.txt.sent"))).unwrap();
    let commands = sent
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut lines = block.lines();
            let line = lines.next().unwrap_or("");
            let job = lines
                .find_map(|l| l.strip_prefix("Job-UUID: "))
                .map(str::to_string);
            Command {
                key: key_of(line),
                job,
                call_id: call_id_in(line),
            }
        })
        .collect();
    let mut connections: Vec<Vec<Recorded>> = Vec::new();
    let mut replies = 0;
    for env in envelopes(&text) {
        let kind = match content_type(&env).as_str() {
            "auth/request" => {
                connections.push(Vec::new());
                Kind::AuthRequest
            }
            "command/reply" | "api/response" => {
                replies += 1;
                Kind::Reply(replies - 1)
            }
            "text/disconnect-notice" | "text/rude-rejection" => {
                Kind::Notice(replies.saturating_sub(1))
            }
            _ => Kind::Event,
        };
        connections
            .last_mut()
            .expect("auth/request opens a connection")
            .push(Recorded { bytes: env, kind });
    }
    Transcript {
        connections,
        commands,
    }
}

const ALL: &[&str] = &[
    "agent-busy",
    "api-blocking-ok",
    "api-responses",
    "customer-busy",
    "json-ok",
    "originate-plain-mid-call-show-channels",
    "sip-actions-registered",
    "sip-agent-to-agent",
    "sip-click-to-call-bridge",
    "sip-click-to-call-json",
    "sip-click-to-call-noanswer",
    "sip-click-to-call",
    "sip-inbound-answered-json",
    "sip-inbound-answered",
    "sip-inbound-missed",
    "sip-register-unregister",
    "sip-uuid-transfer",
];

fn library() -> &'static HashMap<String, Transcript> {
    static LIBRARY: OnceLock<HashMap<String, Transcript>> = OnceLock::new();
    LIBRARY.get_or_init(|| ALL.iter().map(|n| (n.to_string(), load(n))).collect())
}

/// Replaces `from` with `to` and fixes the outer Content-Length.
fn rewrite(env: &[u8], from: &str, to: &str) -> Vec<u8> {
    let end = env.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    let body = replace_all(&env[end..], from, to);
    let head = String::from_utf8_lossy(&replace_all(&env[..end], from, to)).into_owned();
    let head: String = head
        .split_inclusive('\n')
        .map(|l| {
            if l.starts_with("Content-Length: ") {
                format!("Content-Length: {}\n", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    let mut out = head.into_bytes();
    out.extend(body);
    out
}

/// How one connection behaves.
#[derive(Clone, Debug)]
pub struct EslScript {
    fixture: String,
    connection: usize,
    password: String,
    refuse_auth: bool,
    /// Command key → (fixture, reply number, times).
    canned: Vec<(String, String, usize, usize)>,
    deaf: bool,
    /// Recorded events sent in each other's place (see [`EslScript::swap_events`]).
    swaps: Vec<(Vec<String>, Vec<String>)>,
}

impl EslScript {
    /// Replays `tests/fixtures/freeswitch/<fixture>.txt`, first recorded connection.
    pub fn new(fixture: &str) -> EslScript {
        assert!(library().contains_key(fixture), "no fixture {fixture}");
        EslScript {
            fixture: fixture.to_string(),
            connection: 0,
            password: "ClueCon".into(),
            refuse_auth: false,
            canned: Vec::new(),
            deaf: false,
            swaps: Vec::new(),
        }
    }

    /// Sends the first recorded event containing every string of `a` in the place of the
    /// first containing every string of `b`, and that one in its place: the same bytes
    /// in another order FreeSWITCH also sends (a loopback pair's two `CHANNEL_CREATE`s).
    pub fn swap_events(mut self, a: &[&str], b: &[&str]) -> EslScript {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.swaps.push((owned(a), owned(b)));
        self
    }

    /// After the first `api show channels as json` (the resync) answers nothing more,
    /// keeping the socket open: a hung switch.
    pub fn deaf(mut self) -> EslScript {
        self.deaf = true;
        self
    }

    /// Refuses the password with the recorded `-ERR invalid`, then disconnects.
    pub fn refuse_auth(mut self) -> EslScript {
        self.refuse_auth = true;
        self
    }

    /// Answers every command with key `key` with the recorded `-ERR sofia Command not
    /// found!` (api-responses' `sofia status`, no mod_sofia loaded): a switch that
    /// refuses it.
    pub fn refuse(mut self, key: &str) -> EslScript {
        let t = &library()["api-responses"];
        let reply = t.commands.iter().position(|c| c.key == "api sofia status");
        let reply = reply.expect("api-responses asked sofia status");
        self.canned
            .push((key.into(), "api-responses".into(), reply, usize::MAX));
        self
    }

    /// Answers the first `times` commands with key `key` (see [`key_of`]) with the first
    /// recorded reply to such a command in `fixture`.
    pub fn canned(mut self, key: &str, fixture: &str, times: usize) -> EslScript {
        let t = &library()[fixture];
        let reply = t
            .commands
            .iter()
            .position(|c| c.key == key)
            .unwrap_or_else(|| panic!("{fixture} never sent {key}"));
        self.canned.push((key.into(), fixture.into(), reply, times));
        self
    }
}

fn recorded_reply(fixture: &str, reply: usize) -> Vec<u8> {
    let t = &library()[fixture];
    let mut out = Vec::new();
    for m in t.connections.iter().flatten() {
        if m.kind == Kind::Reply(reply) || m.kind == Kind::Notice(reply) {
            out.extend_from_slice(&m.bytes);
        }
    }
    out
}

/// A fake event socket on 127.0.0.1:0.
pub struct FakeEsl;

impl FakeEsl {
    pub async fn start(scripts: Vec<EslScript>) -> Fake {
        Self::start_on("127.0.0.1:0", scripts).await
    }

    /// Like [`start`](Self::start) on a chosen address (a port the appliance already
    /// tries to reach).
    pub async fn start_on(addr: &str, scripts: Vec<EslScript>) -> Fake {
        assert!(!scripts.is_empty());
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let fake = Fake {
            addr,
            shared: shared.clone(),
        };
        let accept = shared.clone();
        let acceptor = tokio::spawn(async move {
            let shared = accept;
            let mut scripts: VecDeque<EslScript> = scripts.into();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = if scripts.len() > 1 {
                    scripts.pop_front().unwrap()
                } else {
                    scripts[0].clone()
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let number = {
                    let mut s = shared.lock().unwrap();
                    s.connections += 1;
                    s.accepted.push(std::time::Instant::now());
                    s.current = Some(tx);
                    s.connections
                };
                tokio::spawn(Session::new(script, number, shared.clone()).run(stream, rx));
            }
        });
        fake.shared.lock().unwrap().acceptor = Some(acceptor);
        fake
    }
}

struct Session {
    script: EslScript,
    number: usize,
    shared: Arc<Mutex<Shared>>,
    messages: Vec<Recorded>,
    commands: Vec<Command>,
    cursor: usize,
    requested: HashSet<usize>,
    /// Recorded Job-UUID → the client's, and recorded call id → the client's (the server
    /// echoes both).
    jobs: HashMap<String, String>,
    canned_used: HashMap<usize, usize>,
    out: Vec<u8>,
    close: bool,
    resynced: bool,
}

impl Session {
    fn new(script: EslScript, number: usize, shared: Arc<Mutex<Shared>>) -> Session {
        let t = &library()[&script.fixture];
        let mut messages = t.connections[script.connection].clone();
        for (a, b) in &script.swaps {
            let find = |want: &[String]| {
                messages
                    .iter()
                    .position(|m| {
                        let text = String::from_utf8_lossy(&m.bytes);
                        m.kind == Kind::Event && want.iter().all(|w| text.contains(w.as_str()))
                    })
                    .unwrap_or_else(|| panic!("{}: no event with {want:?}", script.fixture))
            };
            let (i, j) = (find(a), find(b));
            messages.swap(i, j);
        }
        let mut session = Session {
            messages,
            commands: t.commands.clone(),
            script,
            number,
            shared,
            cursor: 0,
            requested: HashSet::new(),
            jobs: HashMap::new(),
            canned_used: HashMap::new(),
            out: Vec::new(),
            close: false,
            resynced: false,
        };
        // The greeting: everything up to and including auth/request.
        session.send_range(1);
        session
    }

    fn allowed(&self, m: &Recorded) -> bool {
        match m.kind {
            Kind::Reply(n) | Kind::Notice(n) => self.requested.contains(&n),
            Kind::AuthRequest | Kind::Event => true,
        }
    }

    fn push_recorded(&mut self, i: usize) {
        let m = &self.messages[i];
        if !self.allowed(m) {
            return;
        }
        let mut bytes = m.bytes.clone();
        for (from, to) in &self.jobs {
            if String::from_utf8_lossy(&bytes).contains(from.as_str()) {
                bytes = rewrite(&bytes, from, to);
            }
        }
        self.out.extend(bytes);
    }

    fn send_range(&mut self, end: usize) {
        while self.cursor < end.min(self.messages.len()) {
            let i = self.cursor;
            self.cursor += 1;
            self.push_recorded(i);
        }
    }

    async fn run(
        mut self,
        mut stream: TcpStream,
        mut control: mpsc::UnboundedReceiver<ControlMsg>,
    ) {
        let mut inbuf = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            if !self.out.is_empty() {
                let bytes = std::mem::take(&mut self.out);
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            if self.close {
                let _ = stream.shutdown().await;
                return;
            }
            tokio::select! {
                read = stream.read(&mut chunk) => {
                    let n = match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    inbuf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = inbuf.windows(2).position(|w| w == b"\n\n") {
                        let block = String::from_utf8_lossy(&inbuf[..end]).into_owned();
                        inbuf.drain(..end + 2);
                        let mut lines = block.lines();
                        let line = lines.next().unwrap_or("").to_string();
                        let headers: Vec<(String, String)> = lines
                            .filter_map(|l| l.split_once(": "))
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect();
                        self.shared.lock().unwrap().sent.push(Sent {
                            connection: self.number,
                            name: line.clone(),
                            headers: headers.clone(),
                        });
                        self.answer(&line, &headers);
                    }
                }
                msg = control.recv() => {
                    let Some(ControlMsg { kind, done }) = msg else { return };
                    let ok = match kind {
                        Control::ReleaseAll => {
                            let end = self.messages.len();
                            self.send_range(end);
                            true
                        }
                        Control::ReleaseUntil(text) => {
                            let found = (self.cursor..self.messages.len()).find(|&i| {
                                String::from_utf8_lossy(&self.messages[i].bytes).contains(&text)
                            });
                            if let Some(i) = found {
                                self.send_range(i + 1);
                            }
                            found.is_some()
                        }
                        Control::Kill => {
                            drop(stream);
                            let _ = done.send(true);
                            return;
                        }
                    };
                    if !self.out.is_empty() {
                        let bytes = std::mem::take(&mut self.out);
                        let _ = stream.write_all(&bytes).await;
                    }
                    let _ = done.send(ok);
                }
            }
        }
    }

    fn answer(&mut self, line: &str, headers: &[(String, String)]) {
        let key = key_of(line);
        if self.script.deaf && self.resynced {
            return;
        }
        if key == "api show channels as json" {
            self.resynced = true;
        }
        if key == "auth" {
            let password = line.trim().strip_prefix("auth").unwrap_or("").trim();
            if self.script.refuse_auth || password != self.script.password {
                // api-responses' second connection: "-ERR invalid" and the notice.
                let t = &library()["api-responses"];
                let n = t.commands.iter().rposition(|c| c.key == "auth").unwrap();
                self.out.extend(recorded_reply("api-responses", n));
                self.close = true;
                return;
            }
        }
        if key == "exit" {
            // "+OK bye" and the notice at once: the rest of the transcript has not
            // happened yet.
            self.answer_from_library(&key);
            self.close = true;
            return;
        }
        for (n, (k, fixture, reply, times)) in self.script.canned.iter().enumerate() {
            let used = self.canned_used.entry(n).or_insert(0);
            if *k == key && *used < *times {
                *used += 1;
                let bytes = recorded_reply(fixture, *reply);
                self.out.extend(bytes);
                return;
            }
        }
        let found = (self.cursor..self.messages.len()).find(|&i| match self.messages[i].kind {
            Kind::Reply(n) => self.commands[n].key == key && !self.requested.contains(&n),
            _ => false,
        });
        let Some(at) = found else {
            self.answer_from_library(&key);
            return;
        };
        let Kind::Reply(n) = self.messages[at].kind else {
            unreachable!()
        };
        self.requested.insert(n);
        if let (Some(recorded), Some(client)) = (self.commands[n].call_id.clone(), call_id_in(line))
        {
            self.jobs.insert(recorded, client);
        }
        if let (Some(recorded), Some((_, client))) = (
            self.commands[n].job.clone(),
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Job-UUID")),
        ) {
            self.jobs.insert(recorded, client.clone());
        }
        self.send_range(at + 1);
    }

    /// A command the transcript holds no (more) reply for: this transcript's own reply to
    /// such a command, else api-responses', else sip-actions-registered', else any
    /// recording's, else the recorded "command not found" (`api`: `-ERR sofia Command not
    /// found!`).
    fn answer_from_library(&mut self, key: &str) {
        let preferred = [
            self.script.fixture.as_str(),
            "api-responses",
            "sip-actions-registered",
        ];
        for fixture in preferred.into_iter().chain(ALL.iter().copied()) {
            let t = &library()[fixture];
            if let Some(n) = t.commands.iter().position(|c| c.key == key) {
                self.out.extend(recorded_reply(fixture, n));
                if key == "exit" {
                    self.close = true;
                }
                return;
            }
        }
        let t = &library()["api-responses"];
        let fallback = if key.starts_with("api ") {
            "api sofia status"
        } else {
            "bogus_command"
        };
        let n = t.commands.iter().position(|c| c.key == fallback).unwrap();
        self.out.extend(recorded_reply("api-responses", n));
    }
}
