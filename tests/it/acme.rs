//! ACME against Debian's `pebble` test CA on loopback, with `pebble-challtestsrv` as its
//! DNS (every name resolves to 127.0.0.1): the running service obtains a certificate via
//! tls-alpn-01 and via http-01 and swaps it in without a restart; `renew_if_due` renews
//! when due, leaves a good certificate alone, and keeps the old one when validation fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use appliance::acme::{self, Challenges, Renewal};
use appliance::config::Config;
use tokio::net::TcpListener;

use crate::harness::{TestApp, eventually, test_config};

const DOMAIN: &str = "pbx.example.com";

/// A port nothing listens on right now (pebble and its DNS bind their own; a clash is
/// detected by waiting for them to answer, and retried).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Pebble {
    children: Vec<Child>,
    directory: String,
    /// Pebble's own HTTPS certificate: what the ACME client must trust.
    ca_file: PathBuf,
    management: String,
    _dir: tempfile::TempDir,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn agent_trusting(pem: &[u8]) -> ureq::Agent {
    crate::smoke::agent_trusting(pem)
}

impl Pebble {
    /// Starts pebble validating http-01 on `http_port` and tls-alpn-01 on `tls_port`.
    /// `None` when pebble is not installed outside CI (in CI that is a failure).
    fn start(http_port: u16, tls_port: u16) -> Option<Pebble> {
        if Command::new("pebble").arg("-h").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "pebble is not installed (Debian package `pebble`; .ci/run installs it)"
            );
            eprintln!("SKIPPED: pebble is not installed (apt-get install pebble)");
            return None;
        }
        for _attempt in 0..5 {
            if let Some(p) = Self::try_start(http_port, tls_port) {
                return Some(p);
            }
        }
        panic!("pebble did not start after 5 attempts");
    }

    fn try_start(http_port: u16, tls_port: u16) -> Option<Pebble> {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _key) = appliance::tls::write_self_signed(
            dir.path(),
            &["127.0.0.1".into(), "localhost".into()],
        )
        .unwrap();
        let (listen, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": cert,
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
        let dns_server = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("dns.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv");
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble");
        let mut started = Pebble {
            children: vec![dns_server, pebble],
            directory: format!("https://127.0.0.1:{listen}/dir"),
            ca_file: cert.clone(),
            management: format!("https://127.0.0.1:{mgmt}"),
            _dir: dir,
        };
        // Ready when the directory answers; gone (port clash) when a child exited.
        let agent = agent_trusting(&std::fs::read(&cert).unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if started
                .children
                .iter_mut()
                .any(|c| c.try_wait().unwrap().is_some())
            {
                return None;
            }
            if let Ok(resp) = agent.get(&started.directory).call()
                && resp.status() == 200
            {
                return Some(started);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pebble did not answer in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The root CA pebble issues from (PEM).
    fn root_pem(&self) -> Vec<u8> {
        let agent = agent_trusting(&std::fs::read(&self.ca_file).unwrap());
        let mut resp = agent
            .get(format!("{}/roots/0", self.management))
            .call()
            .unwrap();
        resp.body_mut().read_to_vec().unwrap()
    }

    fn configure(&self, config: &mut Config, challenge: &str) {
        config.acme.enabled = true;
        config.acme.directory_url = self.directory.clone();
        config.acme.ca_file = self.ca_file.display().to_string();
        config.acme.domain = DOMAIN.into();
        config.acme.email = "ops@example.com".into();
        config.acme.challenge = challenge.into();
    }
}

/// Completes a TLS handshake with `addr` as `DOMAIN`, trusting only pebble's root: true
/// once the appliance serves a pebble-issued certificate for the domain.
async fn serves_pebble_certificate(addr: std::net::SocketAddr, root_pem: &[u8]) -> bool {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(appliance::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    connector
        .connect(DOMAIN.try_into().unwrap(), tcp)
        .await
        .is_ok()
}

async fn service_obtains_a_certificate(challenge: &str) {
    let main = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (main_port, http_port) = (
        main.local_addr().unwrap().port(),
        http.local_addr().unwrap().port(),
    );
    let Some(pebble) = tokio::task::spawn_blocking(move || Pebble::start(http_port, main_port))
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut config, cert_pem) = test_config(dir.path());
    pebble.configure(&mut config, challenge);
    let listeners = appliance::app::Listeners {
        main,
        acme_http: Some(http),
    };
    let app = TestApp::start_listeners(dir, config, cert_pem, listeners, false).await;
    let root = pebble.root_pem();
    let addr = app.addr;
    eventually(
        60,
        "the service to serve a pebble-issued certificate",
        async || {
            assert!(!app.exited(), "the appliance stopped");
            serves_pebble_certificate(addr, &root).await.then_some(())
        },
    )
    .await;
    let info = appliance::tls::inspect_file(Path::new(&app.config.server.tls_cert)).unwrap();
    assert!(!info.self_signed && info.covers(DOMAIN), "{info:?}");
    let key = std::fs::metadata(&app.config.server.tls_key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    let account = app.data_dir().join("acme/account.json");
    assert_eq!(
        std::fs::metadata(&account).unwrap().permissions().mode() & 0o777,
        0o600
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_obtains_a_certificate_via_tls_alpn_01() {
    service_obtains_a_certificate("tls-alpn-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_obtains_a_certificate_via_http_01() {
    service_obtains_a_certificate("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_when_due_keeps_a_good_certificate_and_survives_a_failed_validation() {
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = http.local_addr().unwrap().port();
    let Some(pebble) = tokio::task::spawn_blocking(move || Pebble::start(http_port, free_port()))
        .await
        .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = test_config(dir.path());
    pebble.configure(&mut config, "http-01");
    let (_, reloader) = appliance::tls::server_config(
        Path::new(&config.server.tls_cert),
        Path::new(&config.server.tls_key),
    )
    .unwrap();
    let challenges = Arc::new(Challenges::new(reloader.alpn_challenges()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let responder = tokio::spawn(acme::serve_http01(http, challenges.clone(), stopped));

    // The self-signed placeholder is replaced, and served at once.
    let placeholder = reloader.current_chain();
    let first = match acme::renew_if_due(&config, &challenges, &reloader)
        .await
        .unwrap()
    {
        Renewal::Renewed(info) => info,
        other => panic!("expected a renewal, got {other:?}"),
    };
    assert!(!first.self_signed && first.covers(DOMAIN));
    let served = reloader.current_chain();
    assert_ne!(served, placeholder);
    let first_pem = std::fs::read(&config.server.tls_cert).unwrap();

    // Fresh and for the right name: nothing to do, check again later.
    match acme::renew_if_due(&config, &challenges, &reloader)
        .await
        .unwrap()
    {
        Renewal::NotDue(wait) => assert!(wait > Duration::from_secs(3600), "{wait:?}"),
        other => panic!("expected no renewal, got {other:?}"),
    }
    assert_eq!(std::fs::read(&config.server.tls_cert).unwrap(), first_pem);

    // Within renew_days of expiry: renewed (with the stored account) and swapped in.
    config.acme.renew_days = 100_000;
    match acme::renew_if_due(&config, &challenges, &reloader)
        .await
        .unwrap()
    {
        Renewal::Renewed(info) => assert!(info.covers(DOMAIN)),
        other => panic!("expected a renewal, got {other:?}"),
    }
    let second = reloader.current_chain();
    assert_ne!(second, served);
    assert_ne!(std::fs::read(&config.server.tls_cert).unwrap(), first_pem);

    // No responder: the validation fails, the error names the domain, the certificate in
    // use stays. (Pebble may reuse a recent valid authorization; a new domain avoids it.)
    let _ = stop.send(true);
    responder.await.unwrap();
    config.acme.domain = "other.example.com".into();
    let before = std::fs::read(&config.server.tls_cert).unwrap();
    let e = acme::renew_if_due(&config, &challenges, &reloader)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("other.example.com"), "{e}");
    assert_eq!(std::fs::read(&config.server.tls_cert).unwrap(), before);
    assert_eq!(reloader.current_chain(), second);
}
