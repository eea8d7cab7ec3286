use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::routing::DecisionFuture;

/// The environment Asterisk 22 sends for `AGI(agi://127.0.0.1:4573/route,${CHANNEL(linkedid)})`
/// on an incoming PJSIP call.
const ENV: &str = "agi_network: yes\n\
agi_network_script: route\n\
agi_request: agi://127.0.0.1:4573/route\n\
agi_channel: PJSIP/trunk-00000017\n\
agi_language: en\n\
agi_type: PJSIP\n\
agi_uniqueid: 1795416368.27\n\
agi_version: 22.10.1\n\
agi_callerid: 79161234567\n\
agi_calleridname: Customer\n\
agi_callingpres: 0\n\
agi_callingani2: 0\n\
agi_callington: 0\n\
agi_callingtns: 0\n\
agi_dnid: 74950000000\n\
agi_rdnis: unknown\n\
agi_context: from-trunk\n\
agi_extension: 74950000000\n\
agi_priority: 1\n\
agi_enhanced: 0.0\n\
agi_accountcode: \n\
agi_threadid: 140712345678912\n\
agi_arg_1: 1795416368.27\n\
\n";

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

async fn server(
    delay: Duration,
    answer: Option<RouteDecision>,
) -> (std::net::SocketAddr, Arc<Fixed>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fixed = Arc::new(Fixed {
        delay,
        answer,
        seen: Mutex::new(Vec::new()),
    });
    let decider: Arc<dyn Decider> = Arc::new(fixed.clone());
    tokio::spawn(serve(
        listener,
        decider,
        Duration::from_millis(300),
        std::future::pending(),
    ));
    (addr, fixed)
}

fn route_101() -> Option<RouteDecision> {
    Some(RouteDecision {
        extension: "101".into(),
        dial: "PJSIP/101".into(),
    })
}

/// Plays Asterisk: sends the environment, answers `200 result=1` to every command, and
/// returns the commands received when the server closes the connection.
async fn asterisk(addr: std::net::SocketAddr, env: &str) -> Vec<String> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(env.as_bytes()).await.unwrap();
    let mut commands = Vec::new();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the AGI server neither answered nor closed")
            .unwrap();
        if n == 0 {
            return commands;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line = String::from_utf8(buf.drain(..=end).collect()).unwrap();
            commands.push(line.trim_end().to_string());
            s.write_all(b"200 result=1\n").await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_timely_decision_sets_the_route_variables() {
    let (addr, fixed) = server(Duration::ZERO, route_101()).await;
    let commands = asterisk(addr, ENV).await;
    assert_eq!(
        commands,
        vec![
            "SET VARIABLE APPLIANCE_ROUTE \"PJSIP/101\"",
            "SET VARIABLE APPLIANCE_ROUTE_EXTEN \"101\"",
        ]
    );
    let seen = fixed.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![RouteRequest {
            channel_id: "1795416368.27".into(),
            group_id: Some("1795416368.27".into()),
            channel: "PJSIP/trunk-00000017".into(),
            caller: "79161234567".into(),
            caller_name: "Customer".into(),
            called: "74950000000".into(),
            context: "from-trunk".into(),
        }]
    );
}

#[tokio::test]
async fn a_late_or_missing_decision_leaves_the_dialplan_alone() {
    let (addr, _) = server(Duration::from_secs(5), route_101()).await;
    assert!(
        asterisk(addr, ENV).await.is_empty(),
        "too late: nothing set"
    );
    let (addr, _) = server(Duration::ZERO, None).await;
    assert!(
        asterisk(addr, ENV).await.is_empty(),
        "no decision: nothing set"
    );
}

#[tokio::test]
async fn bad_input_is_closed_without_asking_anyone() {
    let (addr, fixed) = server(Duration::ZERO, route_101()).await;
    assert!(asterisk(addr, "agi_channel: x\n\n").await.is_empty());
    // A client that never finishes the environment is dropped, not waited on forever.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"agi_uniqueid: 1.2\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok());
    assert!(fixed.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_hangup_while_waiting_ends_the_question() {
    let (addr, _) = server(Duration::from_millis(200), route_101()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(ENV.as_bytes()).await.unwrap();
    s.write_all(b"HANGUP\n").await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "nothing may be sent to a dead channel");
}

#[test]
fn values_cannot_break_out_of_quotes() {
    assert_eq!(quote("PJSIP/1\"01\n\\x"), "PJSIP/1_01_x");
}
