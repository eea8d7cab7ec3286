//! `appliance --init` as a wizard on a real pseudo-terminal, and the same choices as
//! non-interactive flags: PBX detection, credentials offered from manager.conf, the
//! login test, ACME answers, and the iframe URL at the end.

use std::path::Path;
use std::process::Command;

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::pty::Pty;
use crate::smoke::BIN;

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
    // dropped: nothing listens there any more
}

fn wizard(dir: &Path, ami_addr: &str, esl_addr: &str, manager_conf: &Path) -> Pty {
    let mut cmd = Command::new(BIN);
    cmd.args(["--init", "--config"])
        .arg(dir.join("config.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--detect-ami", ami_addr, "--detect-esl", esl_addr])
        .arg("--manager-conf")
        .arg(manager_conf)
        .arg("--freepbx-conf")
        .arg(dir.join("no-freepbx.conf"))
        .arg("--cdr-root")
        .arg(dir.join("no-pbx-files"))
        .env_remove("RUST_LOG")
        .env_remove("APPLIANCE_PBX__SECRET");
    Pty::spawn(cmd)
}

/// The wizard's questions after the PBX: https://localhost:8443, a loopback port 0,
/// a self-signed certificate, the default data directory, no account (a claim code).
pub(crate) fn finish_self_signed(t: &mut Pty) {
    t.expect("Public HTTPS URL");
    t.send_line("https://localhost:8443");
    t.expect("Listen address");
    t.send_line("127.0.0.1:0");
    t.expect("TLS certificate");
    t.send_line("self-signed");
    t.expect("Data directory [");
    t.send_line("");
    t.expect("Flowlu account to admit");
    t.send_line("");
}

fn config_value(config: &toml::Table, section: &str, key: &str) -> toml::Value {
    config[section][key].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wizard_detects_asterisk_offers_manager_conf_and_sets_up_acme() {
    let ami = FakeAmi::start(vec![Script::new("actions-responses")]).await;
    let dir = tempfile::tempdir().unwrap();
    let manager_conf = dir.path().join("manager.conf");
    std::fs::write(
        &manager_conf,
        "[general]\nenabled = yes\nport = 5038\n\n[appliance]\nsecret = s3cret\nread = all\nwrite = all\n",
    )
    .unwrap();
    let ami_addr = format!("127.0.0.1:{}", ami.port());
    let esl_addr = format!("127.0.0.1:{}", closed_port());
    let path = dir.path().to_path_buf();
    let (code, transcript) = tokio::task::spawn_blocking(move || {
        let mut t = wizard(&path, &ami_addr, &esl_addr, &manager_conf);
        t.expect(&format!("found Asterisk (AMI) on {ami_addr}"));
        t.expect("PBX type (asterisk/freeswitch/none) [asterisk]: ");
        t.send_line("");
        t.expect("Use AMI user \"appliance\" from ");
        t.expect("(yes/no) [yes]: ");
        t.send_line("");
        t.expect("PBX host [127.0.0.1]: ");
        t.send_line("");
        // The detected port wins over the one in manager.conf.
        t.expect(&format!(
            "PBX port [{}]: ",
            ami_addr.rsplit(':').next().unwrap()
        ));
        t.send_line("");
        t.expect("AMI user name (manager.conf) [appliance]: ");
        t.send_line("");
        t.expect("AMI secret [keep current]: ");
        t.send_line("");
        t.expect("  OK: ");
        t.expect("Public HTTPS URL Flowlu will use for this appliance [https://");
        t.send_line("https://pbx.example.com:8443");
        t.expect("Listen address [0.0.0.0:8443]: ");
        t.send_line("127.0.0.1:0");
        t.expect("TLS certificate (files/acme/self-signed/proxy) [self-signed]: ");
        t.send_line("letsencrypt");
        t.expect("please answer one of: files, acme, self-signed, proxy");
        t.send_line("acme");
        t.expect("Domain name to certify [pbx.example.com]: ");
        t.send_line("");
        t.expect("Contact e-mail for expiry notices (optional): ");
        t.send_line("ops@example.com");
        t.expect("Challenge (http-01/tls-alpn-01) [http-01]: ");
        t.send_line("tls-alpn-01");
        t.expect("ACME directory URL [https://acme-v02.api.letsencrypt.org/directory]: ");
        t.send_line("https://acme-staging-v02.api.letsencrypt.org/directory");
        t.expect("Data directory [");
        t.send_line("");
        t.expect("Flowlu account to admit, e.g. company.flowlu.com (empty: print a claim code): ");
        t.send_line("https://Acme.flowlu.com/");
        t.wait()
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{transcript}");
    assert!(
        !transcript.contains("s3cret"),
        "the secret must not be echoed:\n{transcript}"
    );
    assert!(
        transcript.contains(
            "MiniApp settings iframe URL https://pbx.example.com:8443/integration/settings"
        ),
        "{transcript}"
    );
    assert!(transcript.contains("PBX login:     OK"), "{transcript}");
    assert!(
        transcript.contains("Admitted:      acme.flowlu.com"),
        "{transcript}"
    );
    let config: toml::Table =
        toml::from_str(&std::fs::read_to_string(dir.path().join("config.toml")).unwrap()).unwrap();
    assert_eq!(
        config_value(&config, "pbx", "type").as_str(),
        Some("asterisk")
    );
    assert_eq!(
        config_value(&config, "pbx", "user").as_str(),
        Some("appliance")
    );
    assert_eq!(
        config_value(&config, "pbx", "secret").as_str(),
        Some("s3cret")
    );
    assert_eq!(
        config_value(&config, "pbx", "port").as_integer(),
        Some(i64::from(ami.port()))
    );
    assert_eq!(
        config_value(&config, "acme", "enabled").as_bool(),
        Some(true)
    );
    assert_eq!(
        config_value(&config, "acme", "challenge").as_str(),
        Some("tls-alpn-01")
    );
    assert_eq!(
        config_value(&config, "acme", "email").as_str(),
        Some("ops@example.com")
    );
    assert_eq!(
        config_value(&config, "acme", "directory_url").as_str(),
        Some("https://acme-staging-v02.api.letsencrypt.org/directory")
    );
    // The placeholder the service serves until its first issuance covers the domain.
    let cert = dir.path().join("data/tls/cert.pem");
    let info = appliance::tls::inspect_file(&cert).unwrap();
    assert!(info.covers("pbx.example.com") && info.self_signed);
    // Detection and the login test both reached the (fake) PBX.
    let connections = ami.connections();
    assert!(connections >= 2, "{connections} connection(s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wizard_without_a_detected_pbx_retests_after_corrections() {
    let ami = FakeAmi::start(vec![Script::new("actions-responses")]).await;
    let ami_port = ami.port();
    let dir = tempfile::tempdir().unwrap();
    let (ami_addr, esl_addr) = (
        format!("127.0.0.1:{}", closed_port()),
        format!("127.0.0.1:{}", closed_port()),
    );
    let down_port = closed_port();
    let path = dir.path().to_path_buf();
    let missing = dir.path().join("no-manager.conf");
    let (code, transcript) = tokio::task::spawn_blocking(move || {
        let mut t = wizard(&path, &ami_addr, &esl_addr, &missing);
        t.expect("nothing answers on");
        t.expect("PBX type (asterisk/freeswitch/none) [asterisk]: ");
        t.send_line("asterisk");
        t.expect("no credentials to offer (");
        t.expect("PBX host [127.0.0.1]: ");
        t.send_line("");
        t.expect("PBX port [5038]: ");
        t.send_line(&down_port.to_string());
        t.expect("AMI user name (manager.conf) [appliance]: ");
        t.send_line("");
        t.expect("AMI secret: ");
        t.send_line("s3cret");
        t.expect("the PBX is not reachable");
        t.expect("Change the PBX settings and test again? (yes/no) [yes]: ");
        t.send_line("yes");
        t.expect("PBX host [127.0.0.1]: ");
        t.send_line("");
        t.expect(&format!("PBX port [{down_port}]: "));
        t.send_line("99999");
        t.expect("please enter a port number from 1 to 65535");
        t.send_line(&ami_port.to_string());
        t.expect("AMI user name (manager.conf) [appliance]: ");
        t.send_line("");
        t.expect("AMI secret [keep current]: ");
        t.send_line("");
        t.expect("  OK: ");
        finish_self_signed(&mut t);
        t.wait()
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{transcript}");
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(text.contains(&format!("port = {}", ami_port)), "{text}");
    assert!(text.contains("enabled = false"), "ACME stays off: {text}");
    assert!(transcript.contains("https://localhost:8443/integration/settings"));
    // No account named: a one-time claim code instead.
    assert!(
        transcript.contains("Claim code:    ") && transcript.contains("valid 24 hours"),
        "{transcript}"
    );
}

#[test]
fn init_flags_set_up_acme_and_report_the_login_test() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let out = Command::new(BIN)
        .args([
            "--init",
            "--non-interactive",
            "--acme",
            "--acme-email",
            "ops@example.com",
        ])
        .args([
            "--public-url",
            "https://pbx.example.com",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--pbx",
            "freeswitch",
            "--pbx-port",
            &closed_port().to_string(),
            "--pbx-optional",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("PBX login:     FAILED, the PBX is not reachable"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "ACME (https://acme-v02.api.letsencrypt.org/directory) for pbx.example.com via http-01"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://pbx.example.com/integration/settings"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(parsed["acme"]["enabled"].as_bool(), Some(true));
    assert_eq!(
        parsed["acme"]["domain"].as_str(),
        Some(""),
        "the public URL's host is used"
    );
    assert_eq!(parsed["acme"]["email"].as_str(), Some("ops@example.com"));
    let info = appliance::tls::inspect_file(&dir.path().join("data/tls/cert.pem")).unwrap();
    assert!(info.covers("pbx.example.com"));
    // check-config accepts what --init wrote.
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ACME needs a DNS name: an IP address in the public URL is refused with the key named.
    let out = Command::new(BIN)
        .args(["--init", "--non-interactive", "--force", "--acme"])
        .args(["--public-url", "https://192.0.2.1:8443"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acme.domain"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        text,
        "a refused --init changes nothing"
    );
}

/// `--init` with flags only, into `dir`; returns (exit code, stdout, stderr).
fn init_with(dir: &Path, extra: &[&str]) -> (i32, String, String) {
    let out = crate::smoke::init_command(dir, extra).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The `[pbx]` key `key` of the config `--init` wrote into `dir`.
fn written(dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    config_value(&parsed, "pbx", key)
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_failed_pbx_login_stops_init_unless_the_pbx_is_optional() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().to_string();
    let pbx = [
        "--pbx",
        "asterisk",
        "--pbx-port",
        port.as_str(),
        "--pbx-user",
        "ami",
    ];
    let (code, _, err) = init_with(dir.path(), &pbx);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
    assert!(
        err.contains(&format!("asterisk login at 127.0.0.1:{port} failed"))
            && err.contains("not reachable")
            && err.contains("--pbx-optional"),
        "{err}"
    );
    assert!(!dir.path().join("config.toml").exists(), "nothing written");
    assert!(!dir.path().join("data").exists(), "nothing written");

    let optional: Vec<&str> = pbx.iter().copied().chain(["--pbx-optional"]).collect();
    let (code, out, err) = init_with(dir.path(), &optional);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("PBX:           asterisk at 127.0.0.1:{port}")),
        "{out}"
    );
    assert!(
        out.contains("PBX login:     FAILED, the PBX is not reachable"),
        "{out}"
    );
    assert!(dir.path().join("config.toml").exists());

    // No PBX named: nothing to test, nothing to fail (the README's first command).
    let other = tempfile::tempdir().unwrap();
    let (code, out, err) = init_with(other.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("PBX:           not configured yet"), "{out}");
}

#[test]
fn freepbx_is_detected_and_its_dialplan_proposed() {
    let dir = tempfile::tempdir().unwrap();
    let freepbx = dir.path().join("freepbx.conf");
    std::fs::write(&freepbx, "<?php\n$amp_conf['AMPDBUSER'] = 'freepbxuser';\n").unwrap();
    let port = closed_port().to_string();
    let asterisk_with = |dir: &Path, freepbx_conf: &Path| {
        let conf = freepbx_conf.display().to_string();
        let args = ["--pbx", "asterisk", "--pbx-port", &port, "--pbx-optional"];
        init_with(dir, &[&args[..], &["--freepbx-conf", &conf]].concat())
    };
    let (code, out, err) = asterisk_with(dir.path(), &freepbx);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("FreePBX:       detected: agents are rung through Local/{ext}@from-internal"),
        "{out}"
    );
    assert_eq!(
        written(dir.path(), "agent_channel").as_deref(),
        Some("Local/{ext}@from-internal")
    );
    assert_eq!(
        written(dir.path(), "context").as_deref(),
        Some("from-internal")
    );

    // Without FreePBX (or for FreeSWITCH) the defaults stay.
    let plain = tempfile::tempdir().unwrap();
    let (code, _, err) = asterisk_with(plain.path(), &plain.path().join("none.conf"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(written(plain.path(), "agent_channel").as_deref(), Some(""));
}
