//! The server against a fake FreeSWITCH outbound socket.
//!
//! No recording of the outbound mode exists in the fixtures, so the fake follows
//! mod_event_socket's code for that mode: it connects, waits for `connect`, answers with
//! the channel data serialized the way its `connect` handler does (a `CHANNEL_DATA` event
//! URL-encoded as the `command/reply` envelope itself, its reply headers last), answers
//! every later command with `Content-Type: command/reply` / `Reply-Text: +OK` (`+OK bye`
//! for `exit`), and on hang-up or after `exit` sends the `text/disconnect-notice` of its
//! `send_disconnect` and closes. The channel's headers are the real ones recorded from
//! FreeSWITCH 1.10 for an inbound SIP call (the CHANNEL_CREATE event of
//! `tests/fixtures/freeswitch/sip-inbound-answered.txt`), plus the variables the `socket`
//! application itself sets.

use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::routing::DecisionFuture;

const UUID: &str = "dccfb9ad-c57f-4297-868f-bf615353679b";
const OK: &[u8] = b"Content-Type: command/reply\nReply-Text: +OK\n\n";

/// What mod_event_socket's `send_disconnect` writes when the session ends.
fn disconnect_notice() -> String {
    let message = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n";
    format!(
        "Content-Type: text/disconnect-notice\nControlled-Session-UUID: {UUID}\n\
         Content-Disposition: disconnect\nContent-Length: {}\n\n{message}",
        message.len()
    )
}

/// The reply to `connect` for the recorded inbound call to 74950000000.
fn channel_data() -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/freeswitch/sip-inbound-answered.txt");
    let create = codec::parse_all(&std::fs::read(path).unwrap())
        .unwrap()
        .into_iter()
        .find(|e| {
            codec::event_of(e)
                .unwrap()
                .is_some_and(|ev| ev.name() == "CHANNEL_CREATE")
        })
        .unwrap();
    let headers = String::from_utf8(create.body).unwrap();
    let mut data = headers
        .trim_end_matches('\n')
        .replace("Event-Name: CHANNEL_CREATE", "Event-Name: CHANNEL_DATA");
    data.push_str(
        "\nvariable_socket_resume: true\n\
         variable_current_application_data: 127.0.0.1%3A8084%20async\n\
         variable_current_application: socket\n\
         variable_socket_host: 127.0.0.1\n\
         Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\n\
         Control: single-channel\n\n",
    );
    data.into_bytes()
}

struct Fixed {
    delay: Duration,
    answer: Option<RouteDecision>,
    seen: Mutex<Vec<RouteRequest>>,
}

impl Decider for Arc<Fixed> {
    fn decide(&self, request: RouteRequest) -> DecisionFuture {
        self.seen.lock().unwrap().push(request);
        let (delay, answer) = (self.delay, self.answer.clone());
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer
        })
    }
}

fn options() -> Options {
    Options {
        limit: Duration::from_millis(300),
        dial_template: "user/{ext}".into(),
        io_timeout: Duration::from_secs(2),
    }
}

async fn server_with(
    delay: Duration,
    answer: Option<RouteDecision>,
    options: Options,
) -> (std::net::SocketAddr, Arc<Fixed>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fixed = Arc::new(Fixed {
        delay,
        answer,
        seen: Mutex::new(Vec::new()),
    });
    let decider: Arc<dyn Decider> = Arc::new(fixed.clone());
    tokio::spawn(serve(listener, decider, options, std::future::pending()));
    (addr, fixed)
}

async fn server(
    delay: Duration,
    answer: Option<RouteDecision>,
) -> (std::net::SocketAddr, Arc<Fixed>) {
    server_with(delay, answer, options()).await
}

fn route(extension: &str) -> Option<RouteDecision> {
    Some(RouteDecision {
        extension: extension.into(),
        dial: "PJSIP/ignored".into(),
    })
}

/// How the fake channel ends while the server waits for the CRM.
#[derive(Clone, Copy, PartialEq)]
enum Hangup {
    /// It does not: the conversation runs to `exit`.
    No,
    /// What FreeSWITCH does on hang-up: the disconnect notice, then close.
    NoticeAndClose,
    /// The socket closes without a notice.
    Close,
    /// The notice, with the socket left open (the server must not wait for the close).
    NoticeOnly,
}

/// Plays FreeSWITCH: connects, answers `connect` with `first_reply`, `+OK` to the rest,
/// and returns the commands received (each without its final empty line) once the server
/// closes the socket. Panics if the server neither closes nor goes on within 10 s.
async fn freeswitch(addr: std::net::SocketAddr, first_reply: &[u8], hangup: Hangup) -> Vec<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut commands = Vec::new();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the server neither went on nor closed")
            .unwrap_or(0);
        if n == 0 {
            return commands;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let command = String::from_utf8(buf.drain(..end + 2).collect()).unwrap();
            let command = command.trim_end().to_string();
            let first = command.lines().next().unwrap_or("").to_string();
            commands.push(command);
            // A server that closed after its last command may make these writes fail.
            let _ = match first.as_str() {
                "connect" => s.write_all(first_reply).await,
                "resume" => {
                    let _ = s.write_all(OK).await;
                    match hangup {
                        Hangup::No => Ok(()),
                        Hangup::NoticeAndClose | Hangup::NoticeOnly => {
                            s.write_all(disconnect_notice().as_bytes()).await
                        }
                        Hangup::Close => s.shutdown().await,
                    }
                }
                "exit" => {
                    let bye = b"Content-Type: command/reply\nReply-Text: +OK bye\n\n";
                    let _ = s.write_all(bye).await;
                    let _ = s.write_all(disconnect_notice().as_bytes()).await;
                    return commands;
                }
                _ => s.write_all(OK).await,
            };
            if hangup == Hangup::NoticeAndClose && first == "resume" {
                let _ = s.shutdown().await;
            }
        }
    }
}

fn sendmsg_set(arg: &str) -> String {
    format!("sendmsg\ncall-command: execute\nexecute-app-name: set\nexecute-app-arg: {arg}")
}

#[tokio::test]
async fn a_timely_decision_sets_both_variables() {
    let (addr, fixed) = server(Duration::ZERO, route("1001")).await;
    let commands = freeswitch(addr, &channel_data(), Hangup::No).await;
    assert_eq!(
        commands,
        vec![
            "connect".to_string(),
            "resume".to_string(),
            sendmsg_set("appliance_route=user/1001"),
            sendmsg_set("appliance_route_exten=1001"),
            "exit".to_string(),
        ]
    );
    assert_eq!(
        fixed.seen.lock().unwrap().clone(),
        vec![RouteRequest {
            channel_id: UUID.into(),
            group_id: Some(UUID.into()),
            channel: "sofia/external/79161234567@127.0.0.1".into(),
            caller: "79161234567".into(),
            caller_name: "Customer".into(),
            called: "74950000000".into(),
            context: "public".into(),
        }]
    );
}

#[tokio::test]
async fn the_dial_string_follows_the_agent_channel_template() {
    let options = Options {
        dial_template: "{ignore_early_media=true}user/{ext}@${domain_name}".into(),
        ..options()
    };
    let (addr, _) = server_with(Duration::ZERO, route("102"), options).await;
    let commands = freeswitch(addr, &channel_data(), Hangup::No).await;
    assert_eq!(
        commands[2],
        sendmsg_set("appliance_route={ignore_early_media=true}user/102@${domain_name}")
    );
}

#[tokio::test]
async fn a_late_or_missing_decision_sets_nothing() {
    let bare = vec!["connect", "resume", "exit"];
    // The decider would answer after 30 s; the limit is 300 ms, the fake waits 10 s.
    let (addr, fixed) = server(Duration::from_secs(30), route("1001")).await;
    assert_eq!(freeswitch(addr, &channel_data(), Hangup::No).await, bare);
    assert_eq!(fixed.seen.lock().unwrap().len(), 1, "the CRM was asked");
    let (addr, _) = server(Duration::ZERO, None).await;
    assert_eq!(freeswitch(addr, &channel_data(), Hangup::No).await, bare);
}

#[tokio::test]
async fn an_extension_that_is_not_dialable_sets_nothing() {
    // `set` would expand this (an API call) if it reached the dialplan.
    for bad in ["${system touch /tmp/x}", "", "10 01", "1001\nexit"] {
        let (addr, _) = server(Duration::ZERO, route(bad)).await;
        assert_eq!(
            freeswitch(addr, &channel_data(), Hangup::No).await,
            vec!["connect", "resume", "exit"],
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn a_hangup_while_waiting_ends_the_conversation() {
    for hangup in [Hangup::NoticeAndClose, Hangup::Close, Hangup::NoticeOnly] {
        // The CRM would answer in 30 s, within the limit but long after the fake's 10 s
        // patience: only noticing the hang-up ends the conversation in time.
        let options = Options {
            limit: Duration::from_secs(30),
            ..options()
        };
        let (addr, _) = server_with(Duration::from_secs(30), route("1001"), options).await;
        assert_eq!(
            freeswitch(addr, &channel_data(), hangup).await,
            vec!["connect", "resume"],
            "nothing may be sent to a channel that hung up"
        );
    }
}

#[tokio::test]
async fn garbage_and_oversized_input_is_closed_without_asking_anyone() {
    let (addr, fixed) = server(Duration::ZERO, route("1001")).await;
    let big = vec![b'x'; 300 * 1024];
    let mut endless_body = b"Content-Type: command/reply\nContent-Length: 10000000\n\n".to_vec();
    endless_body.extend_from_slice(&big);
    let no_uuid = String::from_utf8(channel_data())
        .unwrap()
        .lines()
        .filter(|l| !l.contains(UUID))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP answer",
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n".to_vec(),
        ),
        ("an event instead of the reply", {
            let mut e = b"Content-Type: text/event-plain\nContent-Length: 3\n\nabc".to_vec();
            e.extend_from_slice(OK);
            e
        }),
        ("a header block without end", big.clone()),
        ("a body larger than we buffer", endless_body),
        ("a bad length", b"Content-Length: lots\n\n".to_vec()),
        ("channel data without Unique-ID", no_uuid.into_bytes()),
    ];
    for (what, input) in inputs {
        assert_eq!(
            freeswitch(addr, &input, Hangup::No).await,
            vec!["connect"],
            "{what}"
        );
    }
    assert!(fixed.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_peer_that_never_answers_is_dropped() {
    let options = Options {
        io_timeout: Duration::from_millis(200),
        ..options()
    };
    let (addr, fixed) = server_with(Duration::ZERO, route("1001"), options).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("dropped after io_timeout")
        .unwrap();
    assert_eq!(rest, b"connect\n\n");
    assert!(fixed.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_command_stops_the_conversation() {
    let (addr, _) = server(Duration::ZERO, route("1001")).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut got = vec![0u8; 9];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"connect\n\n");
    s.write_all(&channel_data()).await.unwrap();
    s.write_all(b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8(rest).unwrap(), "resume\n\n");
}

#[test]
fn variables_come_from_the_template_and_the_extension() {
    let decision = route("1001").unwrap();
    assert_eq!(
        route_variables(&decision, "user/{ext}").unwrap(),
        [
            ("appliance_route", "user/1001".to_string()),
            ("appliance_route_exten", "1001".to_string()),
        ]
    );
    for ok in ["+74950000000", "*97", "1001.a_b-c#"] {
        assert!(
            route_variables(&route(ok).unwrap(), "user/{ext}").is_ok(),
            "{ok}"
        );
    }
    let long = "1".repeat(MAX_EXTENSION + 1);
    for bad in ["$${x}", "a b", "1001@evil", long.as_str()] {
        assert!(
            route_variables(&route(bad).unwrap(), "user/{ext}").is_err(),
            "{bad}"
        );
    }
}
