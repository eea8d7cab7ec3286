//! The HTTP(S) server: accepting connections, TLS, limits, graceful shutdown, and the
//! per-request wrapper (client address, security headers, access log) around [`router`].
//!
//! Handlers live in their own files and never see a raw connection. Everything here is
//! protocol plumbing; what a route does belongs to its handler.

mod assets;
pub mod c2c;
mod conns;
mod entity_hooks;
mod error;
mod form;
mod forwarded;
mod health;
mod io;
mod metrics;
mod pages;
mod range;
mod recordings;
mod respond;
mod router;
pub mod settings;
pub mod trust;
pub mod webhook;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::app::State;

pub use crate::redact::{RedactingLog, redact_path, redact_text, redact_url};
pub use error::HttpError;
pub use forwarded::TrustedProxies;
pub use pages::Pages;
pub use respond::{Body, Response, read_body};

/// What a handler knows about the client beyond the request itself.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The TCP peer (a reverse proxy, when there is one).
    pub peer: SocketAddr,
    /// The client's address: the peer, or from X-Forwarded-For when the peer is trusted.
    pub client_ip: IpAddr,
    /// "https" or "http" as the client sees it.
    pub scheme: &'static str,
}

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish for
/// `server.shutdown_grace_secs` before returning.
pub async fn serve(
    listener: TcpListener,
    state: State,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let server = &state.config.server;
    let limit = Arc::new(Semaphore::new(server.max_connections as usize));
    let graceful = GracefulShutdown::new();
    let proxies = Arc::new(TrustedProxies::from_config(server));
    let conns = conns::Conns::new(
        server.max_connections as usize,
        server.max_connections_per_client as usize,
        server
            .per_client_exempt
            .iter()
            .chain(server.trusted_proxies.iter().filter(|_| server.plain_http))
            .filter_map(|s| crate::config::parse_net(s))
            .collect(),
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // One client's share taken: closed at once, so it waits in no queue of ours.
        let Some(guard) = conns.admit(peer.ip()) else {
            log::debug!("{peer}: too many connections from this address; closed");
            continue;
        };
        // Every slot taken: make room by closing the oldest connection that has not sent
        // a request yet; when all are serving, wait (further clients queue in the kernel).
        let permit = match limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if conns.close_oldest_unproven(&guard) {
                    log::debug!("all connections taken: closed the oldest idle one for {peer}");
                }
                tokio::select! {
                    permit = limit.clone().acquire_owned() => permit.expect("semaphore never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let tls = tls.clone();
        let proxies = proxies.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let deadline = guard.under_pressure.then_some(conns::PRESSURE_TIMEOUT);
            let slot = guard.slot.clone();
            tokio::select! {
                () = connection(stream, peer, state, tls, proxies, watcher, slot.clone()) => {}
                () = slot.closing(deadline) => {
                    log::debug!("{peer}: no request in time while connections were short; closed");
                }
            }
            drop(guard);
        });
    }
    drop(listener);
    let grace = Duration::from_secs(state.config.server.shutdown_grace_secs);
    log::info!(
        "shutting down: waiting up to {}s for {} open connection(s)",
        grace.as_secs(),
        graceful.count()
    );
    tokio::select! {
        () = graceful.shutdown() => log::info!("all connections closed"),
        () = tokio::time::sleep(grace) => log::warn!("grace period over; closing remaining connections"),
    }
}

/// One accepted connection: the TLS handshake (or none), then HTTP until it ends.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: State,
    tls: Option<TlsAcceptor>,
    proxies: Arc<TrustedProxies>,
    watcher: Watcher,
    slot: Arc<conns::Slot>,
) {
    let idle = Duration::from_secs(state.config.server.idle_timeout_secs);
    match tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(mut tls_stream)) => {
                    if tls_stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                        // An ACME tls-alpn-01 validation: the handshake was the answer.
                        use tokio::io::AsyncWriteExt;
                        let _ = tls_stream.shutdown().await;
                        log::info!("ACME tls-alpn-01 validation from {peer}");
                        return;
                    }
                    let io = io::IdleTimeout::new(tls_stream, idle);
                    serve_connection(io, state, peer, "https", proxies, watcher, slot).await;
                }
                Ok(Err(e)) => log::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => log::debug!("TLS handshake with {peer} timed out"),
            }
        }
        None => {
            let io = io::IdleTimeout::new(stream, idle);
            serve_connection(io, state, peer, "http", proxies, watcher, slot).await;
        }
    }
}

async fn serve_connection<IO>(
    io: IO,
    state: State,
    peer: SocketAddr,
    scheme: &'static str,
    proxies: Arc<TrustedProxies>,
    watcher: Watcher,
    slot: Arc<conns::Slot>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_secs(state.config.server.header_read_timeout_secs);
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        // A request arrived: this connection is in use, never closed to make room.
        slot.prove();
        let state = state.clone();
        let (client_ip, scheme) = proxies.client(peer, scheme, req.headers());
        let ctx = Ctx {
            peer,
            client_ip,
            scheme,
        };
        async move { Ok::<_, Infallible>(handle(state, ctx, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        log::debug!("connection from {peer} ended: {e}");
    }
}

/// Runs the router and adds what every response carries: security headers and one
/// access-log line with secrets removed from the path.
async fn handle(state: State, ctx: Ctx, req: hyper::Request<Incoming>) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // Any method name is accepted by the parser: one could be a pasted secret.
    let logged_method = if crate::redact::looks_secret(method.as_str()) {
        "***"
    } else {
        method.as_str()
    };
    let logged_path = redact_path(req.uri().path(), req.uri().query());
    let mut response = router::route(&state, &ctx, req).await;
    let route = response
        .extensions()
        .get::<router::RouteName>()
        .map_or("unknown", |r| r.0);
    state
        .metrics
        .http_request(route, response.status().as_u16());
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'",
        ));
    headers
        .entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    log::info!(
        target: "appliance::access",
        "{} {} {} {} {}ms",
        ctx.client_ip,
        logged_method,
        logged_path,
        response.status().as_u16(),
        started.elapsed().as_millis()
    );
    response
}
