//! The compiled binary end to end: `--init` into a temp dir, `run`, `GET /healthz` over
//! TLS, SIGTERM, exit 0.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_appliance");

/// `appliance --init` non-interactively into `dir` (config `dir/config.toml`, data
/// `dir/data`), with `extra` flags.
pub fn init_command(dir: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--init",
        "--non-interactive",
        "--self-signed",
        "--listen",
        "127.0.0.1:0",
    ])
    .arg("--config")
    .arg(dir.join("config.toml"))
    .arg("--data-dir")
    .arg(dir.join("data"))
    // Call records are looked for there, never in the host's /etc and /var/log.
    .arg("--cdr-root")
    .arg(dir.join("no-pbx-files"))
    .args(extra)
    .env_remove("RUST_LOG")
    .env_remove("APPLIANCE_PBX__SECRET");
    cmd
}

/// Runs `appliance --init` non-interactively into `dir` and returns the config path.
pub fn init(dir: &std::path::Path, extra: &[&str]) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    let out = init_command(dir, extra)
        // The tests' PBX is fake, down or absent: the login test may fail.
        .arg("--pbx-optional")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    config
}

/// Starts `appliance run` and returns it with the address from its "serving" log line.
pub fn start(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving https://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_string();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the binary did not report its address");
    (child, addr)
}

pub fn agent_trusting(cert_pem: &[u8]) -> ureq::Agent {
    let cert = ureq::tls::Certificate::from_pem(cert_pem)
        .unwrap()
        .to_owned();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![cert])))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

/// Sends SIGTERM and waits (bounded) for the exit status.
pub fn terminate(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the binary did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn init_run_healthz_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(
        dir.path(),
        &[
            "--pbx",
            "asterisk",
            "--pbx-host",
            "127.0.0.1",
            "--pbx-port",
            "1",
        ],
    );
    let (mut child, addr) = start(&config);
    let cert = std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap();
    let agent = agent_trusting(&cert);
    let mut resp = agent.get(format!("https://{addr}/healthz")).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["database"], "ok");
    assert_eq!(body["pbx"], "down");
    let status = terminate(&mut child, Duration::from_secs(10));
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
}
