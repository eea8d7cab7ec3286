//! Answering ACME challenges while an order is pending: key authorizations for http-01
//! (served by [`serve_http01`] on `[acme] http_listen`) and validation certificates for
//! tls-alpn-01 (served by the main listener's certificate resolver, see `tls.rs`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::AcmeError;
use crate::tls::AlpnChallengeCerts;

const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending challenge answers, shared by the issuer and the responders.
pub struct Challenges {
    http: RwLock<HashMap<String, String>>,
    alpn: Arc<AlpnChallengeCerts>,
}

impl Challenges {
    /// `alpn` is the map the TLS resolver consults (`ReloadableCert::alpn_challenges`).
    pub fn new(alpn: Arc<AlpnChallengeCerts>) -> Challenges {
        Challenges {
            http: RwLock::default(),
            alpn,
        }
    }

    pub fn set_http01(&self, token: &str, key_authorization: &str) {
        self.http
            .write()
            .expect("challenge lock")
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn http01(&self, token: &str) -> Option<String> {
        self.http
            .read()
            .expect("challenge lock")
            .get(token)
            .cloned()
    }

    /// Publishes the RFC 8737 validation certificate for `domain`.
    pub fn set_tls_alpn01(&self, domain: &str, digest: &[u8]) -> Result<(), AcmeError> {
        let generate = |e: rcgen::Error| AcmeError::Setup(format!("tls-alpn-01 certificate: {e}"));
        let key = rcgen::KeyPair::generate().map_err(generate)?;
        let mut params =
            rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(generate)?;
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(digest));
        let cert = params.self_signed(&key).map_err(generate)?;
        let der_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = crate::tls::provider()
            .key_provider
            .load_private_key(der_key)
            .map_err(|e| AcmeError::Setup(format!("tls-alpn-01 key: {e}")))?;
        let certified = CertifiedKey::new(vec![CertificateDer::from(cert.der().to_vec())], signing);
        self.alpn
            .write()
            .expect("alpn lock")
            .insert(domain.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }

    /// Forgets every pending answer (after the order completed or failed).
    pub fn clear(&self) {
        self.http.write().expect("challenge lock").clear();
        self.alpn.write().expect("alpn lock").clear();
    }
}

/// Serves `GET /.well-known/acme-challenge/<token>` on `listener` until `stop` turns true.
/// Everything else is 404: this listener exists only for the CA's validation requests.
pub async fn serve_http01(
    listener: TcpListener,
    challenges: Arc<Challenges>,
    mut stop: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        log::info!("ACME http-01 responder listening on {addr}");
    }
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                log::warn!("ACME http-01 responder: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let challenges = challenges.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = answer(&challenges, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            log::debug!("ACME http-01 responder served {peer}");
        });
    }
}

fn answer(challenges: &Challenges, req: &Request<Incoming>) -> Response<Full<bytes::Bytes>> {
    let found = req
        .uri()
        .path()
        .strip_prefix(HTTP01_PREFIX)
        .filter(|_| req.method() == hyper::Method::GET || req.method() == hyper::Method::HEAD)
        .and_then(|token| challenges.http01(token));
    let (status, body) = match found {
        Some(key_authorization) => (StatusCode::OK, key_authorization),
        None => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    log::info!(
        target: "appliance::access",
        "acme-http01 {} {} {}",
        req.method(),
        if status == StatusCode::OK { "challenge" } else { "other" },
        status.as_u16()
    );
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "text/plain")
        .body(Full::new(bytes::Bytes::from(body)))
        .expect("static response parts")
}
