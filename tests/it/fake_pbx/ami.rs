//! A fake Asterisk manager interface replaying `tests/fixtures/asterisk/X.txt`.
//!
//! ```ignore
//! let fake = FakeAmi::start(vec![Script::new("agent-busy").idle_resync()]).await;
//! // point [pbx] at fake.port(), user "appliance", secret "s3cret"
//! fake.wait_sent("Originate", 1).await;   // the response went out with its events so far
//! fake.release_all().await;                 // the rest of the call
//! fake.kill().await;                        // drop the connection mid-call
//! ```
//!
//! Each accepted connection plays the next [`Script`] (the last one repeats). What is
//! invented, because no recording has it: the `Challenge` answer (a random nonce; the
//! MD5 key is then checked against the script's secret), and the `Filter` acknowledgement
//! (`Message: Filter Added Successfully`, Asterisk's own text). Everything else is bytes
//! from a recording with only the `ActionID` changed, and the `CRM_CALL_ID` value the
//! recording's client set replaced by the one this client's Originate set (the server
//! echoes what it is given, like an ActionID).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub use super::ami_recording::Script;
use super::ami_recording::{ALL, Recorded, canned, get, headers, library, rewrite};
use super::replace_all;
use super::{Control, ControlMsg, Fake, Sent, Shared};

/// A fake AMI server on 127.0.0.1:0.
pub struct FakeAmi;

impl FakeAmi {
    pub async fn start(scripts: Vec<Script>) -> Fake {
        Self::start_on("127.0.0.1:0", scripts).await
    }

    /// Like [`start`](Self::start) on a chosen address (a port the appliance already
    /// tries to reach).
    pub async fn start_on(addr: &str, scripts: Vec<Script>) -> Fake {
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
            let mut scripts: VecDeque<Script> = scripts.into();
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
    script: Script,
    number: usize,
    shared: Arc<Mutex<Shared>>,
    messages: Vec<Recorded>,
    actions: HashMap<String, String>,
    cursor: usize,
    /// Recorded ActionID → the client's, for actions the client sent.
    ids: HashMap<String, String>,
    /// Recorded call id → the client's (from its Originate), echoed in events.
    call_ids: Vec<(String, String)>,
    recorded_call_ids: Vec<String>,
    challenge: Option<String>,
    canned_used: HashMap<usize, usize>,
    out: Vec<u8>,
    close: bool,
    resynced: bool,
}

impl Session {
    fn new(script: Script, number: usize, shared: Arc<Mutex<Shared>>) -> Session {
        let t = &library()[&script.fixture];
        let c = &t.connections[script.connection];
        Session {
            out: script.banner.clone().unwrap_or_else(|| c.banner.clone()),
            messages: c.messages.clone(),
            actions: t.actions.clone(),
            call_ids: Vec::new(),
            recorded_call_ids: t.call_ids.clone(),
            script,
            number,
            shared,
            cursor: 0,
            ids: HashMap::new(),
            challenge: None,
            canned_used: HashMap::new(),
            close: false,
            resynced: false,
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
                    self.shared.lock().unwrap().received.extend_from_slice(&chunk[..n]);
                    while let Some(end) = inbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let block = String::from_utf8_lossy(&inbuf[..end + 4]).into_owned();
                        inbuf.drain(..end + 4);
                        let h = headers(&block);
                        let name = get(&h, "Action").unwrap_or("").to_string();
                        self.shared.lock().unwrap().sent.push(Sent {
                            connection: self.number,
                            name: name.clone(),
                            headers: h.clone(),
                        });
                        self.answer(&name, &h);
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

    /// Whether recorded message `m` may go out: responses and list items of recorded
    /// actions the client never sent may not (broadcast events such as
    /// `OriginateResponse` may).
    fn allowed(&self, m: &Recorded) -> bool {
        match &m.action_id {
            Some(id) if m.event.as_deref() != Some("OriginateResponse") => {
                self.ids.contains_key(id)
            }
            _ => true,
        }
    }

    fn push_recorded(&mut self, i: usize) {
        let m = &self.messages[i];
        if !self.allowed(m) {
            return;
        }
        let mut bytes = match m
            .action_id
            .as_ref()
            .and_then(|id| self.ids.get(id).map(|c| (id, c)))
        {
            Some((from, to)) => rewrite(&m.bytes, from, to),
            None => m.bytes.clone(),
        };
        for (from, to) in self.call_ids.iter().chain(&self.script.rewrites) {
            bytes = replace_all(&bytes, from, to);
        }
        self.out.extend(bytes);
    }

    /// Sends messages from the cursor up to (not including) `end`.
    fn send_range(&mut self, end: usize) {
        while self.cursor < end.min(self.messages.len()) {
            let i = self.cursor;
            self.cursor += 1;
            self.push_recorded(i);
        }
    }

    fn recorded_error(&self, client_id: &str) -> Vec<u8> {
        canned("actions-responses", "pjsip-1", client_id)
    }

    fn answer(&mut self, name: &str, h: &[(String, String)]) {
        let id = get(h, "ActionID").unwrap_or("").to_string();
        let lname = name.to_ascii_lowercase();
        if (self.script.deaf && self.resynced) || self.script.silent.contains(&lname) {
            return;
        }
        if lname == "coreshowchannels" {
            self.resynced = true;
        }
        if lname == "originate" {
            for client in super::ami_recording::call_ids_in(h) {
                let k = self.call_ids.len();
                if let Some(recorded) = self.recorded_call_ids.get(k) {
                    self.call_ids.push((recorded.clone(), client));
                }
            }
        }
        match lname.as_str() {
            "challenge" => {
                if self.script.no_challenge {
                    self.out.extend(self.recorded_error(&id));
                } else {
                    let nonce = format!("{:09}", rand::random::<u32>() % 1_000_000_000);
                    self.out.extend(
                        format!(
                            "Response: Success\r\nActionID: {id}\r\nChallenge: {nonce}\r\n\r\n"
                        )
                        .into_bytes(),
                    );
                    self.challenge = Some(nonce);
                }
                return;
            }
            "login" if self.script.refuse_login || !self.credentials_ok(h) => {
                self.out
                    .extend(canned("actions-responses", "badlogin-1", &id));
                self.close = true;
                return;
            }
            "logoff" => {
                // The recorded goodbye at once: what the transcript holds after this
                // point has not happened yet.
                self.answer_from_library(name, &id);
                self.close = true;
                return;
            }
            "filter" => {
                if self.script.refuse_filters {
                    self.out.extend(self.recorded_error(&id));
                } else {
                    self.out.extend(
                        format!("Response: Success\r\nActionID: {id}\r\nMessage: Filter Added Successfully\r\n\r\n")
                            .into_bytes(),
                    );
                }
                return;
            }
            _ => {}
        }
        if let Some(at) = self.script.early.iter().position(|(a, _)| *a == lname) {
            let (_, mut events) = self.script.early.remove(at);
            while events > 0 && self.cursor < self.messages.len() {
                let i = self.cursor;
                self.cursor += 1;
                if self.messages[i].action_id.is_none() && !self.messages[i].response {
                    events -= 1;
                }
                self.push_recorded(i);
            }
        }
        for (n, (action, fixture, recorded, times)) in self.script.canned.iter().enumerate() {
            let used = self.canned_used.entry(n).or_insert(0);
            if action.eq_ignore_ascii_case(name) && *used < *times {
                *used += 1;
                let bytes = canned(fixture, recorded, &id);
                self.out.extend(bytes);
                return;
            }
        }
        // The next recorded response to an action of this name, from the cursor on.
        let found = (self.cursor..self.messages.len()).find(|&i| {
            let m = &self.messages[i];
            m.response
                && m.action_id
                    .as_ref()
                    .and_then(|r| self.actions.get(r))
                    .is_some_and(|a| a.eq_ignore_ascii_case(name))
                && !self.ids.contains_key(m.action_id.as_ref().unwrap())
        });
        let Some(at) = found else {
            self.answer_from_library(name, &id);
            return;
        };
        let recorded = self.messages[at].action_id.clone().unwrap();
        self.ids.insert(recorded.clone(), id.clone());
        let end = if self.messages[at].list_start {
            (at..self.messages.len())
                .find(|&i| {
                    self.messages[i].list_complete
                        && self.messages[i].action_id.as_deref() == Some(recorded.as_str())
                })
                .expect("a recorded list has its completion")
        } else {
            at
        };
        if self.script.hoist.contains(&lname) {
            // The action's own events and items first, then everything else in order.
            let own: Vec<usize> = (at + 1..self.messages.len())
                .filter(|&i| self.messages[i].action_id.as_deref() == Some(recorded.as_str()))
                .collect();
            self.send_range(at);
            for &i in &own {
                self.push_recorded(i);
            }
            self.push_recorded(at);
            self.messages = self
                .messages
                .iter()
                .enumerate()
                .filter(|(i, _)| !own.contains(i))
                .map(|(_, m)| m.clone())
                .collect();
            self.cursor = at + 1;
            return;
        }
        if self.script.interleave.contains(&lname) && end > at {
            self.send_range(at + 1);
            // Live events after the list, one after each item.
            let mut later: VecDeque<usize> = (end + 1..self.messages.len())
                .filter(|&i| self.messages[i].action_id.is_none())
                .take(end - at)
                .collect();
            let taken: Vec<usize> = later.iter().copied().collect();
            for i in at + 1..=end {
                self.push_recorded(i);
                if let Some(j) = later.pop_front() {
                    self.push_recorded(j);
                }
            }
            self.messages = self
                .messages
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken.contains(i))
                .map(|(_, m)| m.clone())
                .collect();
            self.cursor = end + 1;
            return;
        }
        self.send_range(end + 1);
    }

    /// An action the transcript holds no (more) answer for: this transcript's own
    /// recording of it if any, else the recorded one in actions-responses or
    /// sip-actions-registered or any other recording, else the recorded
    /// "Invalid/unknown command" error.
    fn answer_from_library(&mut self, name: &str, client_id: &str) {
        let fixture = self.script.fixture.clone();
        let preferred = [
            fixture.as_str(),
            "actions-responses",
            "sip-actions-registered",
        ];
        for fixture in preferred.into_iter().chain(ALL.iter().copied()) {
            let t = &library()[fixture];
            let recorded = t.connections.iter().flat_map(|c| &c.messages).find(|m| {
                m.response
                    && m.action_id
                        .as_ref()
                        .and_then(|r| t.actions.get(r))
                        .is_some_and(|a| a.eq_ignore_ascii_case(name))
            });
            if let Some(m) = recorded {
                let recorded_id = m.action_id.clone().unwrap();
                self.out.extend(canned(fixture, &recorded_id, client_id));
                if name.eq_ignore_ascii_case("logoff") {
                    self.close = true;
                }
                return;
            }
        }
        self.out.extend(self.recorded_error(client_id));
    }

    fn credentials_ok(&self, h: &[(String, String)]) -> bool {
        if get(h, "Username") != Some(self.script.user.as_str()) {
            return false;
        }
        match (get(h, "AuthType"), get(h, "Key"), get(h, "Secret")) {
            (Some(t), Some(key), _) if t.eq_ignore_ascii_case("md5") => {
                let Some(nonce) = &self.challenge else {
                    return false;
                };
                let mut md5 = Md5::new();
                md5.update(nonce.as_bytes());
                md5.update(self.script.secret.as_bytes());
                hex::encode(md5.finalize()) == key
            }
            (_, _, Some(secret)) => secret == self.script.secret,
            _ => false,
        }
    }
}
