//! Incoming routing through the whole appliance: the routing servers started by
//! `serve_with` with an installed decider, seen from the PBX side and in `/healthz`.
//!
//! The fake FreeSWITCH plays the outbound event socket (the dialplan's `socket`
//! application), which no fixture recorded: it follows mod_event_socket's code for that
//! mode (the `connect` reply is a CHANNEL_DATA event serialized URL-encoded as the
//! `command/reply` envelope, `+OK` to every command, the disconnect notice after `exit`),
//! with the channel headers recorded from FreeSWITCH 1.10 for an inbound SIP call (the
//! CHANNEL_CREATE event of `tests/fixtures/freeswitch/sip-inbound-answered.txt`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use appliance::config::Config;
use appliance::pbx::esl::codec;
use appliance::routing::{Decider, DecisionFuture, RouteDecision, RouteRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fake_pbx::fixture_path;
use crate::harness::{TestApp, eventually};

/// The CRM's answer: every call to extension 1001.
struct To1001;

impl Decider for To1001 {
    fn decide(&self, _request: RouteRequest) -> DecisionFuture {
        Box::pin(async {
            Some(RouteDecision {
                extension: "1001".into(),
                dial: "PJSIP/1001".into(),
            })
        })
    }
}

fn on_port_zero(c: &mut Config) {
    c.routing.agi_listen = "127.0.0.1:0".into();
    c.routing.esl_listen = "127.0.0.1:0".into();
}

/// Routing on port 0 for a PBX of type `kind` (its own connection goes to a closed port).
fn for_pbx(kind: &str) -> impl FnOnce(&mut Config) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    let kind = kind.to_string();
    move |c: &mut Config| {
        on_port_zero(c);
        c.pbx.kind_name = kind;
        c.pbx.host = "127.0.0.1".into();
        c.pbx.port = port;
        drop(closed);
    }
}

/// The `[routing]` part of `/healthz` for `server` (`agi` or `esl`): state, listen, detail.
async fn routing_health(app: &TestApp, server: &str) -> (String, String, String) {
    let body = app.get("/healthz").await.json();
    let s = &body["routing"][server];
    let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
    (text("state"), text("listen"), text("detail"))
}

fn channel_data() -> Vec<u8> {
    let bytes = std::fs::read(fixture_path("freeswitch", "sip-inbound-answered.txt")).unwrap();
    let create = codec::parse_all(&bytes)
        .unwrap()
        .into_iter()
        .find(|e| {
            codec::event_of(e)
                .unwrap()
                .is_some_and(|ev| ev.name() == "CHANNEL_CREATE")
        })
        .unwrap();
    let mut data = String::from_utf8(create.body)
        .unwrap()
        .trim_end_matches('\n')
        .replace("Event-Name: CHANNEL_CREATE", "Event-Name: CHANNEL_DATA");
    data.push_str(
        "\nvariable_current_application: socket\nContent-Type: command/reply\n\
         Reply-Text: %2BOK%0A\nSocket-Mode: async\nControl: single-channel\n\n",
    );
    data.into_bytes()
}

/// Plays FreeSWITCH on one call; returns the commands received, in order.
async fn freeswitch_call(addr: SocketAddr) -> Vec<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let (mut buf, mut commands) = (Vec::new(), Vec::new());
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the appliance neither went on nor closed")
            .unwrap_or(0);
        if n == 0 {
            return commands;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let command = String::from_utf8(buf.drain(..end + 2).collect()).unwrap();
            let command = command.trim_end().to_string();
            let reply = match command.as_str() {
                "connect" => channel_data(),
                "exit" => {
                    commands.push(command);
                    let bye = "Content-Type: command/reply\nReply-Text: +OK bye\n\n";
                    let _ = s.write_all(bye.as_bytes()).await;
                    return commands;
                }
                _ => b"Content-Type: command/reply\nReply-Text: +OK\n\n".to_vec(),
            };
            commands.push(command);
            s.write_all(&reply).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn freeswitch_gets_the_crms_route_from_the_running_appliance() {
    let app = TestApp::start_with_decider(for_pbx("freeswitch"), Arc::new(To1001)).await;
    let esl = eventually(10, "the outbound socket server listening", async || {
        let (state, listen, _) = routing_health(&app, "esl").await;
        (state == "listening").then_some(listen)
    })
    .await;
    assert_eq!(app.state.routing.esl_addr(), Some(esl.parse().unwrap()));
    let commands = freeswitch_call(esl.parse().unwrap()).await;
    assert_eq!(
        commands,
        vec![
            "connect",
            "resume",
            "sendmsg\ncall-command: execute\nexecute-app-name: set\n\
             execute-app-arg: appliance_route=user/1001",
            "sendmsg\ncall-command: execute\nexecute-app-name: set\n\
             execute-app-arg: appliance_route_exten=1001",
            "exit",
        ]
    );
    let (state, _, _) = routing_health(&app, "agi").await;
    assert_eq!(
        state, "not_started",
        "a FreeSWITCH host never holds the FastAGI port"
    );
    // Shutdown closes the routing ports with the rest.
    app.stop().await.unwrap();
    assert!(TcpStream::connect(esl.as_str()).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_routing_port_in_use_is_reported_and_the_appliance_keeps_serving() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let freeswitch = for_pbx("freeswitch");
    let app = TestApp::start_with_decider(
        |c| {
            freeswitch(c);
            c.routing.esl_listen = busy.clone();
        },
        Arc::new(To1001),
    )
    .await;
    let detail = eventually(10, "the outbound socket server unavailable", async || {
        let (state, listen, detail) = routing_health(&app, "esl").await;
        (state == "unavailable" && listen == busy).then_some(detail)
    })
    .await;
    assert!(detail.contains(&busy), "{detail}");
    assert_eq!(app.get("/healthz").await.json()["status"], "degraded");
    // The settings page and everything else still answer.
    assert_eq!(app.get("/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn each_pbx_type_holds_only_its_own_port_and_lets_go_without_a_pbx() {
    for (kind, own, other) in [("asterisk", "agi", "esl"), ("freeswitch", "esl", "agi")] {
        let app = TestApp::start_with(for_pbx(kind)).await;
        let listen = eventually(10, "its routing server listening", async || {
            let (state, listen, _) = routing_health(&app, own).await;
            (state == "listening").then_some(listen)
        })
        .await;
        assert!(listen.starts_with("127.0.0.1:"), "{listen}");
        assert!(TcpStream::connect(listen.as_str()).await.is_ok());
        assert_eq!(routing_health(&app, other).await.0, "not_started", "{kind}");
        // The PBX removed (as the settings page publishes it): its port is let go too.
        app.state.pbx_settings.send_replace(None);
        eventually(10, "the routing server stopped", async || {
            (routing_health(&app, own).await.0 == "not_started").then_some(())
        })
        .await;
        assert!(TcpStream::connect(listen.as_str()).await.is_err(), "{kind}");
        assert_eq!(routing_health(&app, other).await.0, "not_started", "{kind}");
        app.stop().await.unwrap();
    }
}
