use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::routing::{DecisionFuture, RouteDecision, RouteRequest};

/// Sends every call to extension 101 at once, counting the questions.
#[derive(Default)]
struct To101(AtomicUsize);

impl Decider for Arc<To101> {
    fn decide(&self, _request: RouteRequest) -> DecisionFuture {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Some(RouteDecision {
                extension: "101".into(),
                dial: "PJSIP/101".into(),
            })
        })
    }
}

fn settings(agi: &str, esl: &str) -> RoutingSettings {
    RoutingSettings {
        agi_listen: agi.parse().unwrap(),
        esl_listen: esl.parse().unwrap(),
        limit: Duration::from_millis(500),
        freeswitch_dial: "user/{ext}".into(),
        esl_io_timeout: Duration::from_secs(2),
        rebind_every: Duration::from_millis(50),
    }
}

/// Waits (at most 10 s) until `status` satisfies `ok`, and returns it.
async fn until(status: &RoutingStatus, ok: impl Fn(&RoutingHealth) -> bool) -> RoutingHealth {
    let mut rx = status.tx.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| ok(h)))
        .await
        .unwrap_or_else(|_| panic!("status never got there: {:?}", status.get()))
        .unwrap()
        .clone()
}

fn port_of(status: &ServerStatus) -> SocketAddr {
    status.listen.as_deref().unwrap().parse().unwrap()
}

/// One FastAGI question; returns what the server sent back.
async fn ask_agi(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"agi_uniqueid: 1.2\nagi_channel: PJSIP/trunk-1\n\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        s.write_all(b"200 result=1\n").await.unwrap();
    }
    String::from_utf8(got).unwrap()
}

/// One outbound-socket question, with minimal channel data; returns what the server sent.
async fn ask_esl(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut got = String::new();
    let mut answered = 0;
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return got;
        }
        got.push_str(std::str::from_utf8(&chunk[..n]).unwrap());
        let complete: Vec<String> = got.split("\n\n").map(str::to_string).collect();
        // The last piece is whatever follows the last complete command.
        for command in &complete[answered..complete.len() - 1] {
            let reply: &[u8] = match command.as_str() {
                "exit" => return got,
                "connect" => {
                    b"Event-Name: CHANNEL_DATA\nUnique-ID: u-1\nChannel-Name: sofia/external/x\n\
                      Content-Type: command/reply\nReply-Text: %2BOK%0A\n\n"
                }
                _ => b"Content-Type: command/reply\nReply-Text: +OK\n\n",
            };
            s.write_all(reply).await.unwrap();
        }
        answered = complete.len() - 1;
    }
}

#[tokio::test]
async fn only_the_server_of_the_pbx_in_force_serves_until_shutdown() {
    let status = RoutingStatus::default();
    assert_eq!(status.get().agi.state, ServerState::NotStarted);
    let decider = Arc::new(To101::default());
    let (pbx, kind) = watch::channel(Some(PbxType::Asterisk));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_all(
        settings("127.0.0.1:0", "127.0.0.1:0"),
        Arc::new(decider.clone()),
        status.clone(),
        kind,
        async {
            let _ = stopped.await;
        },
    ));
    let health = until(&status, |h| h.agi.state == ServerState::Listening).await;
    let agi = port_of(&health.agi);
    assert_ne!(agi.port(), 0, "the bound port is reported");
    assert_eq!(health.esl.state, ServerState::NotStarted, "{health:?}");
    assert_eq!((status.agi_addr(), status.esl_addr()), (Some(agi), None));
    assert!(
        ask_agi(agi)
            .await
            .contains("SET VARIABLE APPLIANCE_ROUTE \"PJSIP/101\"")
    );

    // The settings page switches to FreeSWITCH: the FastAGI port is let go, the outbound
    // socket comes up.
    pbx.send(Some(PbxType::Freeswitch)).unwrap();
    let health = until(&status, |h| {
        h.esl.state == ServerState::Listening && h.agi.state == ServerState::NotStarted
    })
    .await;
    assert!(TcpStream::connect(agi).await.is_err(), "FastAGI let go");
    let esl = port_of(&health.esl);
    assert!(
        ask_esl(esl)
            .await
            .contains("execute-app-arg: appliance_route=user/101\n")
    );
    assert_eq!(decider.0.load(Ordering::SeqCst), 2);

    // No PBX at all: neither listens.
    pbx.send(None).unwrap();
    until(&status, |h| {
        h.esl.state == ServerState::NotStarted && h.agi.state == ServerState::NotStarted
    })
    .await;
    assert!(
        TcpStream::connect(esl).await.is_err(),
        "no longer listening"
    );

    pbx.send(Some(PbxType::Freeswitch)).unwrap();
    until(&status, |h| h.esl.state == ServerState::Listening).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve_all returns after shutdown")
        .unwrap();
    assert_eq!(status.get().esl.state, ServerState::NotStarted);
    assert_eq!(status.esl_addr(), None);
}

#[tokio::test]
async fn a_port_in_use_is_reported_and_retried() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let esl_addr = taken.local_addr().unwrap();
    let status = RoutingStatus::default();
    let decider = Arc::new(To101::default());
    let (_pbx, kind) = watch::channel(Some(PbxType::Freeswitch));
    tokio::spawn(serve_all(
        settings("127.0.0.1:0", &esl_addr.to_string()),
        Arc::new(decider.clone()),
        status.clone(),
        kind,
        std::future::pending(),
    ));
    let health = until(&status, |h| h.esl.state == ServerState::Unavailable).await;
    let detail = health.esl.detail.clone().unwrap();
    assert_eq!(status.esl_addr(), None, "not listening");
    assert!(detail.contains(&esl_addr.to_string()), "{detail}");
    assert!(health.degraded(Some(PbxType::Freeswitch)));
    assert!(health.degraded(None));
    assert!(
        !health.degraded(Some(PbxType::Asterisk)),
        "Asterisk does not use it"
    );
    // Once the port is free, the server comes up by itself.
    drop(taken);
    let health = until(&status, |h| h.esl.state == ServerState::Listening).await;
    assert_eq!(port_of(&health.esl), esl_addr);
    assert!(
        ask_esl(esl_addr)
            .await
            .contains("appliance_route_exten=101")
    );
}

#[test]
fn the_freeswitch_dial_string_comes_from_agent_channel_unless_asterisk_is_configured() {
    let mut config = Config::defaults();
    assert_eq!(
        RoutingSettings::from_config(&config).freeswitch_dial,
        "user/{ext}"
    );
    config.pbx.agent_channel = "sofia/internal/{ext}%${domain}".into();
    assert_eq!(
        RoutingSettings::from_config(&config).freeswitch_dial,
        "sofia/internal/{ext}%${domain}"
    );
    config.pbx.kind_name = "asterisk".into();
    config.pbx.agent_channel = "PJSIP/{ext}".into();
    let settings = RoutingSettings::from_config(&config);
    assert_eq!(settings.freeswitch_dial, "user/{ext}");
    assert_eq!(settings.esl_listen.to_string(), "127.0.0.1:8084");
    assert_eq!(settings.agi_listen.to_string(), "127.0.0.1:4573");
    assert_eq!(settings.limit, Duration::from_millis(1500));
}
