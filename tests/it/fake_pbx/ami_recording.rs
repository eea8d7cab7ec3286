//! The AMI recordings as the fake replays them: transcripts split into connections and
//! messages, the `.sent` files mapping recorded ActionIDs to action names, the library of
//! recorded answers, and the [`Script`] a test writes for one connection.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use super::{fixture_path, replace_all};

/// One recorded message with what the fake needs to know about it.
#[derive(Clone, Debug)]
pub(super) struct Recorded {
    pub(super) bytes: Vec<u8>,
    pub(super) action_id: Option<String>,
    pub(super) response: bool,
    pub(super) event: Option<String>,
    pub(super) list_start: bool,
    pub(super) list_complete: bool,
}

/// One recorded connection: its banner line and messages.
#[derive(Clone, Debug)]
pub(super) struct Connection {
    pub(super) banner: Vec<u8>,
    pub(super) messages: Vec<Recorded>,
}

#[derive(Clone, Debug)]
pub(super) struct Transcript {
    pub(super) connections: Vec<Connection>,
    /// Recorded ActionID → Action name, from `X.txt.sent`.
    pub(super) actions: HashMap<String, String>,
    /// The call ids the recording's client sent (`Variable: CRM_CALL_ID=...`), in order:
    /// the server echoes them in its events, so a replay echoes the client's instead.
    pub(super) call_ids: Vec<String>,
}

pub(super) fn headers(block: &str) -> Vec<(String, String)> {
    block
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once(':') {
            Some((k, v)) => (k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

pub(super) fn get<'a>(h: &'a [(String, String)], key: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// `tests/fixtures/asterisk/<name>.txt`, or `tests/fixtures/<name>.txt` for a name with a
/// folder (`independent/cacofonisk-ast13/simple__ab_dnd`).
fn transcript_path(name: &str, ext: &str) -> std::path::PathBuf {
    match name.rsplit_once('/') {
        Some((dir, file)) => fixture_path(dir, &format!("{file}.{ext}")),
        None => fixture_path("asterisk", &format!("{name}.{ext}")),
    }
}

pub(super) fn load(name: &str) -> Transcript {
    let text = std::fs::read(transcript_path(name, "txt"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    let sent = std::fs::read_to_string(transcript_path(name, "txt.sent")).unwrap();
    let mut actions = HashMap::new();
    let mut call_ids = Vec::new();
    for block in sent.split("\r\n\r\n") {
        let h = headers(block);
        if let (Some(action), Some(id)) = (get(&h, "Action"), get(&h, "ActionID")) {
            actions.insert(id.to_string(), action.to_string());
        }
        call_ids.extend(call_ids_in(&h));
    }
    let mut connections: Vec<Connection> = Vec::new();
    let mut rest = &text[..];
    while !rest.is_empty() {
        if rest.starts_with(b"Asterisk Call Manager/") {
            let nl = rest.iter().position(|&b| b == b'\n').unwrap() + 1;
            connections.push(Connection {
                banner: rest[..nl].to_vec(),
                messages: Vec::new(),
            });
            rest = &rest[nl..];
            continue;
        }
        let end = rest
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("every message ends with an empty line")
            + 4;
        let block = String::from_utf8_lossy(&rest[..end]).into_owned();
        let h = headers(&block);
        let event = get(&h, "Event").map(str::to_string);
        let list = get(&h, "EventList").map(str::to_ascii_lowercase);
        connections
            .last_mut()
            .expect("a banner first")
            .messages
            .push(Recorded {
                bytes: rest[..end].to_vec(),
                action_id: get(&h, "ActionID").map(str::to_string),
                response: event.is_none(),
                list_start: event.is_none() && list.as_deref() == Some("start"),
                list_complete: event.is_some() && list.as_deref() == Some("complete"),
                event,
            });
        rest = &rest[end..];
    }
    Transcript {
        connections,
        actions,
        call_ids,
    }
}

/// The `CRM_CALL_ID` values among an action's `Variable` headers.
pub(super) fn call_ids_in(h: &[(String, String)]) -> Vec<String> {
    h.iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Variable"))
        .flat_map(|(_, v)| v.split(','))
        .filter_map(|v| v.trim().strip_prefix("CRM_CALL_ID="))
        .map(str::to_string)
        .collect()
}

pub(super) const ALL: &[&str] = &[
    "actions-responses",
    "agent-busy",
    "agent-noanswer",
    "agent101-ok",
    "customer-busy",
    "originate-mid-call-coreshowchannels",
    "sip-actions-registered",
    "sip-agent-to-agent",
    "sip-click-to-call-noanswer",
    "sip-click-to-call-unavailable",
    "sip-click-to-call",
    "sip-inbound-answered",
    "sip-inbound-missed",
    "sip-redirect-ringing",
    "sip-register-unregister",
];

/// The AMI transcripts under `tests/fixtures/independent/*/`, as `independent/<set>/<name>`
/// (recordings of PBXs other people set up; never used to answer other transcripts'
/// actions).
pub fn independent() -> Vec<String> {
    let root = fixture_path("independent", "");
    let mut names = Vec::new();
    for set in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for file in std::fs::read_dir(set.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = file.file_name().to_string_lossy().into_owned();
            let set = set.file_name().to_string_lossy().into_owned();
            if let Some(name) = file.strip_suffix(".txt") {
                names.push(format!("independent/{set}/{name}"));
            }
        }
    }
    names.sort();
    names
}

pub(super) fn library() -> &'static HashMap<String, Transcript> {
    static LIBRARY: OnceLock<HashMap<String, Transcript>> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        ALL.iter()
            .map(|n| n.to_string())
            .chain(independent())
            .map(|n| {
                let t = load(&n);
                (n, t)
            })
            .collect()
    })
}

/// The recorded answer (response, then list items and completion) to `action_id` in
/// `fixture`, rewritten to `client_id`.
pub(super) fn canned(fixture: &str, action_id: &str, client_id: &str) -> Vec<u8> {
    let t = &library()[fixture];
    let mut out = Vec::new();
    for c in &t.connections {
        for m in &c.messages {
            if m.action_id.as_deref() == Some(action_id)
                && m.event.as_deref() != Some("OriginateResponse")
            {
                out.extend(rewrite(&m.bytes, action_id, client_id));
            }
        }
    }
    assert!(!out.is_empty(), "{fixture} has no answer to {action_id}");
    out
}

/// The ActionID header only: `ActionID: old\r\n` → `ActionID: new\r\n`.
pub(super) fn rewrite(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    replace_all(
        bytes,
        &format!("ActionID: {from}\r\n"),
        &format!("ActionID: {to}\r\n"),
    )
}

/// How one connection behaves.
#[derive(Clone, Debug)]
pub struct Script {
    pub(super) fixture: String,
    pub(super) connection: usize,
    pub(super) user: String,
    pub(super) secret: String,
    pub(super) refuse_login: bool,
    pub(super) no_challenge: bool,
    pub(super) refuse_filters: bool,
    /// Action name → (fixture, recorded ActionID, how many times).
    pub(super) canned: Vec<(String, String, String, usize)>,
    pub(super) hoist: HashSet<String>,
    pub(super) interleave: HashSet<String>,
    pub(super) deaf: bool,
    /// Actions (lowercase) never answered.
    pub(super) silent: HashSet<String>,
    /// Action name → how many recorded events go out before its first answer.
    pub(super) early: Vec<(String, usize)>,
    /// Text replaced in everything sent (e.g. the caller's number as another PBX
    /// writes it).
    pub(super) rewrites: Vec<(String, String)>,
    /// Sent instead of the recorded banner line (another PBX version).
    pub(super) banner: Option<Vec<u8>>,
}

impl Script {
    /// Replays `tests/fixtures/asterisk/<fixture>.txt` (or `tests/fixtures/<fixture>.txt`
    /// for an [`independent`] one), first recorded connection.
    pub fn new(fixture: &str) -> Script {
        assert!(library().contains_key(fixture), "no fixture {fixture}");
        Script {
            fixture: fixture.to_string(),
            connection: 0,
            user: "appliance".into(),
            secret: "s3cret".into(),
            refuse_login: false,
            no_challenge: false,
            refuse_filters: false,
            canned: Vec::new(),
            hoist: HashSet::new(),
            interleave: HashSet::new(),
            deaf: false,
            silent: HashSet::new(),
            early: Vec::new(),
            rewrites: Vec::new(),
            banner: None,
        }
    }

    /// Sends `to` wherever the recording has `from`.
    pub fn rewrite(mut self, from: &str, to: &str) -> Script {
        self.rewrites.push((from.into(), to.into()));
        self
    }

    /// Greets with `line` (without its line end; CRLF is added) instead of the recorded
    /// banner line; everything after it is the recording's.
    pub fn banner(mut self, line: &str) -> Script {
        self.banner = Some(format!("{line}\r\n").into_bytes());
        self
    }

    /// After the first `CoreShowChannels` (the resync) answers nothing more, keeping the
    /// connection open: a hung PBX.
    pub fn deaf(mut self) -> Script {
        self.deaf = true;
        self
    }

    /// Never answers `action` (the connection stays open and answers the rest): a PBX
    /// whose module for it hangs.
    pub fn silent(mut self, action: &str) -> Script {
        self.silent.insert(action.to_ascii_lowercase());
        self
    }

    /// Plays the `n`th (0-based) recorded connection of the transcript.
    pub fn connection(mut self, n: usize) -> Script {
        self.connection = n;
        self
    }

    /// Refuses every login with the recorded `Authentication failed`, then hangs up.
    pub fn refuse_login(mut self) -> Script {
        self.refuse_login = true;
        self
    }

    /// Answers `Challenge` with the recorded "Invalid/unknown command" error (a manager
    /// that only knows plaintext logins).
    pub fn without_challenge(mut self) -> Script {
        self.no_challenge = true;
        self
    }

    /// Answers `Filter` with the recorded "Invalid/unknown command" error.
    pub fn refuse_filters(mut self) -> Script {
        self.refuse_filters = true;
        self
    }

    /// Answers the first `times` `action`s from `fixture`'s recorded answer to
    /// `action_id` instead of from this transcript.
    pub fn canned(mut self, action: &str, fixture: &str, action_id: &str, times: usize) -> Script {
        self.canned
            .push((action.into(), fixture.into(), action_id.into(), times));
        self
    }

    /// The resync taken at connect finds the PBX idle (the recorded idle
    /// `CoreShowChannels`); later ones come from the transcript.
    pub fn idle_resync(self) -> Script {
        self.canned("CoreShowChannels", "actions-responses", "csc-idle", 1)
    }

    /// Sends the list items and events carrying `action`'s ActionID (an
    /// `OriginateResponse`) before its response.
    pub fn hoist(mut self, action: &str) -> Script {
        self.hoist.insert(action.to_ascii_lowercase());
        self
    }

    /// Before its first answer to `action`, sends the next `events` recorded events: a
    /// call that starts while the PBX is still answering (the live-channel list taken at
    /// login, before that call existed).
    pub fn events_first(mut self, action: &str, events: usize) -> Script {
        self.early.push((action.to_ascii_lowercase(), events));
        self
    }

    /// Sends one later transcript event between every two items of `action`'s list.
    pub fn interleave(mut self, action: &str) -> Script {
        self.interleave.insert(action.to_ascii_lowercase());
        self
    }
}
