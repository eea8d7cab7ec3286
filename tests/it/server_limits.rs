//! One client cannot starve the rest (issue 12): idle sockets held open by one address
//! do not stop `/healthz` answering another.
//!
//! The server runs in plain-HTTP mode with long timeouts here: over TLS the 10 s
//! handshake timeout frees a starved server after a while on its own, and a generous
//! deadline could not tell. The fight for slots is the same accept loop either way.

use std::net::SocketAddr;
use std::time::Duration;

use appliance::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::harness::{TestApp, eventually};

fn long_timeouts(c: &mut Config) {
    c.server.plain_http = true;
    c.server.idle_timeout_secs = 600;
    c.server.header_read_timeout_secs = 600;
    // Loopback is exempt by default (a local proxy); here 127.0.0.1 is the attacker.
    c.server.per_client_exempt = vec![];
}

/// `count` connections from 127.0.0.1 that never send a byte.
async fn idle_sockets(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            held.push(s);
        }
    }
    held
}

/// `GET /healthz` from 127.0.0.2 (another client, on Linux loopback): the status line,
/// or `None` when not answered within a few seconds.
async fn healthz_from_another_client(addr: SocketAddr) -> Option<String> {
    let attempt = async {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind("127.0.0.2:0".parse().unwrap()).ok()?;
        let mut conn = socket.connect(addr).await.ok()?;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.lines().next().map(str::to_string)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
}

/// Polls (generously) until `/healthz` answers 127.0.0.2 while `held` stay open.
async fn answered_while(app: TestApp, held: Vec<TcpStream>) {
    let status = eventually(60, "/healthz from 127.0.0.2", async || {
        healthz_from_another_client(app.addr).await
    })
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    drop(held);
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn six_hundred_idle_sockets_from_one_address_do_not_stop_healthz_for_another() {
    let app = TestApp::start_with(long_timeouts).await;
    assert_eq!(app.config.server.max_connections, 512);
    let held = idle_sockets(app.addr, 600).await;
    assert!(held.len() >= 512, "{} connected", held.len());
    answered_while(app, held).await;
}

/// With every slot taken by connections that never sent a request, and no per-client cap
/// in the way, the oldest of them is closed to let a new client in.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_closes_the_oldest_idle_connection_for_a_new_client() {
    let app = TestApp::start_with(|c| {
        long_timeouts(c);
        c.server.max_connections = 16;
        c.server.max_connections_per_client = 0;
    })
    .await;
    let held = idle_sockets(app.addr, 16).await;
    assert_eq!(held.len(), 16);
    answered_while(app, held).await;
}
