//! Starting an appliance in-process with TLS on 127.0.0.1:0, and a client that trusts it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance::config::Config;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The Flowlu accounts every test appliance admits, in this order. Any other account
/// (e.g. stranger.flowlu.com) is refused unless a test admits it.
pub const ADMITTED: &[&str] = &[
    "acme.flowlu.com",
    "alpha.flowlu.com",
    "beta.flowlu.com",
    "a.flowlu.com",
    "b.flowlu.com",
    "x.flowlu.com",
    "test.flowlu.com",
];

pub struct TestApp {
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>` (or `http://` with plain_http).
    pub base: String,
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub cert_pem: String,
    /// The running appliance's shared state (database, config, Flowlu client), for tests
    /// that call library functions against the same instance.
    pub state: appliance::app::State,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), appliance::app::RunError>>>,
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A config for tests: TLS with a fresh self-signed certificate, data in `dir`.
pub fn test_config(dir: &std::path::Path) -> (Config, String) {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (cert, key) = appliance::tls::write_self_signed(
        &tls_dir,
        &["127.0.0.1".to_string(), "localhost".to_string()],
    )
    .unwrap();
    let mut config = Config::defaults();
    config.server.listen = "127.0.0.1:0".into();
    config.routing.agi_listen = "127.0.0.1:0".into();
    config.routing.esl_listen = "127.0.0.1:0".into();
    config.server.tls_cert = cert.display().to_string();
    config.server.tls_key = key.display().to_string();
    config.storage.data_dir = dir.join("data").display().to_string();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let pem = std::fs::read_to_string(&cert).unwrap();
    (config, pem)
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    /// Starts an appliance after `edit` adjusts the test config.
    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, cert_pem) = test_config(dir.path());
        edit(&mut config);
        Self::start_config(dir, config, cert_pem).await
    }

    /// Starts an appliance whose routing servers ask `decider` (installed between
    /// `prepare` and `serve_with`, as the call engine does).
    pub async fn start_with_decider(
        edit: impl FnOnce(&mut Config),
        decider: Arc<dyn appliance::routing::Decider>,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let (mut config, cert_pem) = test_config(dir.path());
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listeners = appliance::app::Listeners {
            main: listener,
            acme_http: None,
        };
        Self::start_inner(dir, config, cert_pem, listeners, true, Some(decider)).await
    }

    pub async fn start_config(dir: tempfile::TempDir, config: Config, cert_pem: String) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listeners = appliance::app::Listeners {
            main: listener,
            acme_http: None,
        };
        Self::start_listeners(dir, config, cert_pem, listeners, true).await
    }

    /// Starts on listeners the test bound itself (e.g. the ACME http-01 one). Without
    /// `check_ready`, returns at once (for tests where the served certificate changes).
    pub async fn start_listeners(
        dir: tempfile::TempDir,
        config: Config,
        cert_pem: String,
        listeners: appliance::app::Listeners,
        check_ready: bool,
    ) -> TestApp {
        Self::start_inner(dir, config, cert_pem, listeners, check_ready, None).await
    }

    async fn start_inner(
        dir: tempfile::TempDir,
        config: Config,
        cert_pem: String,
        listeners: appliance::app::Listeners,
        check_ready: bool,
        decider: Option<Arc<dyn appliance::routing::Decider>>,
    ) -> TestApp {
        let addr = listeners.main.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let (state, tls) = appliance::app::prepare(config.clone())
            .await
            .unwrap_or_else(|e| panic!("the appliance did not start: {e}"));
        *state.routing_decider.lock().unwrap() = decider;
        // The operator admitted the test accounts (`appliance accounts admit`), earliest
        // first: acme.flowlu.com owns a PBX from the config file.
        state
            .db
            .run(|c| {
                for domain in ADMITTED {
                    appliance::flowlu::admission::admit(c, domain, "cli")?;
                }
                Ok::<_, appliance::db::DbError>(())
            })
            .await
            .unwrap();
        let serve_state = state.clone();
        let handle = tokio::spawn(async move {
            appliance::app::serve_with(serve_state, listeners, tls, async {
                let _ = rx.await;
            })
            .await;
            Ok(())
        });
        let scheme = if config.server.plain_http {
            "http"
        } else {
            "https"
        };
        let app = TestApp {
            addr,
            base: format!("{scheme}://{addr}"),
            dir,
            config,
            cert_pem,
            state,
            shutdown: Some(tx),
            handle: Some(handle),
        };
        if check_ready {
            app.wait_ready().await;
        }
        app
    }

    /// True once the in-process appliance has returned (start-up failure or shutdown).
    pub fn exited(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Polls `/healthz` until the server answers (start-up opens the database first).
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(h) = &self.handle {
                assert!(!h.is_finished(), "the appliance exited during start-up");
            }
            if self.try_get("/healthz").await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "appliance did not start in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.storage.data_dir)
    }

    /// A blocking HTTP client that trusts this appliance's certificate and does not
    /// treat 4xx/5xx as errors.
    pub fn agent(&self) -> ureq::Agent {
        let cert = ureq::tls::Certificate::from_pem(self.cert_pem.as_bytes())
            .unwrap()
            .to_owned();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .new_agent()
    }

    async fn try_get(&self, path: &str) -> Result<Resp, ureq::Error> {
        self.try_request("GET", path, &[], None).await
    }

    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, ureq::Error> {
        let agent = self.agent();
        let mut builder = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder.body(body.unwrap_or_default()).unwrap();
        tokio::task::spawn_blocking(move || {
            let mut resp = agent.run(request)?;
            let status = resp.status().as_u16();
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let body = resp.body_mut().read_to_string()?;
            Ok(Resp {
                status,
                headers,
                body,
            })
        })
        .await
        .unwrap()
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], None).await
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), appliance::app::RunError> {
        self.shutdown.take().unwrap().send(()).ok();
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("appliance did not stop within 15 s")
            .unwrap()
    }

    /// Stops the appliance and starts a new one on the same data directory, after `edit`
    /// adjusts the config (a new port; the certificate is kept).
    pub async fn restart_with(mut self, edit: impl FnOnce(&mut Config)) -> TestApp {
        self.shutdown.take().unwrap().send(()).ok();
        let handle = self.handle.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), handle)
            .await
            .expect("appliance did not stop within 15 s")
            .unwrap()
            .unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let mut config = self.config.clone();
        edit(&mut config);
        let cert_pem = self.cert_pem.clone();
        drop(self);
        Self::start_config(dir, config, cert_pem).await
    }

    /// Admits one more Flowlu account, as `appliance accounts admit` does.
    pub fn admit(&self, domain: &str) {
        appliance::flowlu::admission::admit(&self.db(), domain, "cli").unwrap();
    }

    /// Makes `domain` the PBX owner, as `appliance accounts pbx-owner` does.
    pub fn set_pbx_owner(&self, domain: &str) {
        assert!(appliance::flowlu::admission::set_pbx_owner(&mut self.db(), domain).unwrap());
    }

    /// A read-write connection to this appliance's database (WAL: safe alongside it).
    pub fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.data_dir().join("appliance.db")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn
    }
}

/// `GET path` over a fresh connection from `from` with extra header lines; returns the
/// status code and the body (the server closes after answering).
pub async fn get_from(
    app: &TestApp,
    from: std::net::IpAddr,
    path: &str,
    headers: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect_from(app, from).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Polls `check` every 10 ms until it returns `Some`, failing after `secs` seconds.
pub async fn eventually<T>(secs: u64, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A TLS client connection to `app`, for tests that speak raw HTTP.
pub async fn tls_connect(app: &TestApp) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_from(app, "127.0.0.1".parse().unwrap()).await
}

/// [`tls_connect`] from the local address `from` (e.g. 127.0.0.2: loopback, but not in
/// a `trusted_networks` of 127.0.0.1/32).
pub async fn tls_connect_from(
    app: &TestApp,
    from: std::net::IpAddr,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(app.cert_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(appliance::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(app.addr).await.unwrap();
    connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}
