//! A fake Asterisk AMI on 127.0.0.1:0 that replays the recorded Asterisk 22 transcript
//! (tests/fixtures/asterisk/actions-responses.txt): the banner, then the recorded answer
//! to Login (accepted for the right user and secret, "Authentication failed" otherwise)
//! and to Logoff, with the client's ActionID written in. It records the actions it got.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TRANSCRIPT: &[u8] = include_bytes!("../fixtures/asterisk/actions-responses.txt");

pub struct FakeAmi {
    pub port: u16,
    /// Every action block received, as text.
    pub received: Arc<Mutex<Vec<String>>>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
}

/// The recorded block (ending in a blank line) that contains `marker`.
fn recorded_block(marker: &str) -> String {
    let text = String::from_utf8_lossy(TRANSCRIPT);
    text.split("\r\n\r\n")
        .find(|block| block.contains(marker))
        .map(|block| format!("{}\r\n\r\n", block.trim_start_matches(['\r', '\n'])))
        .unwrap_or_else(|| panic!("the transcript has no block with {marker:?}"))
}

fn banner() -> String {
    let text = String::from_utf8_lossy(TRANSCRIPT);
    let end = text.find("\r\n").expect("banner line") + 2;
    text[..end].to_string()
}

fn with_action_id(block: &str, action_id: Option<&str>) -> String {
    block
        .split("\r\n")
        .map(|line| match (line.strip_prefix("ActionID: "), action_id) {
            (Some(_), Some(id)) => format!("ActionID: {id}"),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn header<'a>(block: &'a str, name: &str) -> Option<&'a str> {
    block.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

impl FakeAmi {
    /// Accepts `user`/`secret`; serves connections until the test ends.
    pub async fn start(user: &str, secret: &str) -> FakeAmi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (user, secret) = (user.to_string(), secret.to_string());
        let log = received.clone();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (user, secret, log) = (user.clone(), secret.clone(), log.clone());
                tokio::spawn(async move {
                    if stream.write_all(banner().as_bytes()).await.is_err() {
                        return;
                    }
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let block: Vec<u8> = buf.drain(..end + 4).collect();
                            let block = String::from_utf8_lossy(&block).to_string();
                            log.lock().unwrap().push(block.clone());
                            let id = header(&block, "ActionID");
                            let reply = match header(&block, "Action").map(str::to_ascii_lowercase)
                            {
                                Some(a) if a == "login" => {
                                    let ok = header(&block, "Username") == Some(user.as_str())
                                        && header(&block, "Secret") == Some(secret.as_str());
                                    let recorded = if ok {
                                        recorded_block("Message: Authentication accepted")
                                    } else {
                                        recorded_block("Message: Authentication failed")
                                    };
                                    Some((with_action_id(&recorded, id), !ok))
                                }
                                Some(a) if a == "logoff" => Some((
                                    with_action_id(&recorded_block("Response: Goodbye"), id),
                                    true,
                                )),
                                _ => None,
                            };
                            if let Some((reply, close)) = reply
                                && (stream.write_all(reply.as_bytes()).await.is_err() || close)
                            {
                                return;
                            }
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        FakeAmi {
            port,
            received,
            connections,
        }
    }
}
