//! `appliance doctor` on the compiled binary: a good setup passes, each broken part is a
//! FAIL line naming the cause with exit 1, a certificate close to expiry is a WARN.

use std::path::Path;
use std::process::Command;

use crate::fake_pbx::ami::{FakeAmi, Script};
use crate::smoke::{BIN, init};

fn doctor(config: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["doctor", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !stdout.contains("s3cret"),
        "the report must never show the secret:\n{stdout}"
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn line<'a>(report: &'a str, status: &str, check: &str) -> &'a str {
    report
        .lines()
        .find(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(status) && words.next() == Some(check)
        })
        .unwrap_or_else(|| panic!("no {status} {check} line in:\n{report}"))
}

/// A certificate for localhost valid from `from` to `until` days from now, written over
/// the setup's self-signed pair.
fn write_cert(data: &Path, from: i64, until: i64) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(until);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(data.join("tls/cert.pem"), cert.pem()).unwrap();
    std::fs::write(data.join("tls/key.pem"), key.serialize_pem()).unwrap();
}

fn setup(dir: &Path, pbx_port: u16) -> std::path::PathBuf {
    init(
        dir,
        &[
            "--pbx",
            "asterisk",
            "--pbx-port",
            &pbx_port.to_string(),
            "--pbx-user",
            "appliance",
            "--pbx-secret",
            "s3cret",
            "--public-url",
            "https://localhost:8443",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_and_a_near_expiry_certificate_warns() {
    let ami = FakeAmi::start(vec![Script::new("actions-responses")]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), ami.port());
    let (code, report) = tokio::task::spawn_blocking(move || doctor(&config))
        .await
        .unwrap();
    assert_eq!(code, 0, "{report}");
    assert!(line(&report, "OK", "config").contains("is valid"));
    assert!(line(&report, "OK", "database").contains("integrity ok, schema version"));
    assert!(line(&report, "OK", "data").contains(&dir.path().join("data").display().to_string()));
    assert!(line(&report, "WARN", "tls").contains("self-signed"));
    assert!(line(&report, "OK", "pbx").contains(&ami.port().to_string()));
    assert!(!report.lines().any(|l| l.starts_with("FAIL")), "{report}");
    assert!(report.trim_end().ends_with(", 0 FAIL"), "{report}");

    write_cert(&dir.path().join("data"), -80, 5);
    let config = dir.path().join("config.toml");
    let (code, report) = tokio::task::spawn_blocking(move || doctor(&config))
        .await
        .unwrap();
    assert_eq!(code, 0, "a warning is not a failure:\n{report}");
    let warn = line(&report, "WARN", "tls");
    assert!(warn.contains("expires in"), "{report}");
}

#[test]
fn a_broken_setup_fails_with_one_line_per_cause() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the PBX is down.
    let config = setup(dir.path(), 1);
    let data = dir.path().join("data");
    write_cert(&data, -400, -1);
    {
        let c = rusqlite::Connection::open(data.join("appliance.db")).unwrap();
        c.execute_batch("PRAGMA user_version = 999;").unwrap();
    }
    let db_before = std::fs::read(data.join("appliance.db")).unwrap();
    let (code, report) = doctor(&config);
    assert_eq!(code, 1, "{report}");
    assert!(line(&report, "FAIL", "tls").contains("expired"), "{report}");
    assert!(
        line(&report, "FAIL", "database").contains("newer"),
        "{report}"
    );
    assert!(
        line(&report, "FAIL", "pbx").contains("127.0.0.1:1"),
        "{report}"
    );
    assert!(report.contains("3 FAIL"), "{report}");
    assert_eq!(
        std::fs::read(data.join("appliance.db")).unwrap(),
        db_before,
        "doctor must not modify the database"
    );

    // A key that does not belong to the certificate, and a file that is not a database.
    let other = tempfile::tempdir().unwrap();
    appliance::tls::write_self_signed(other.path(), &["localhost".into()]).unwrap();
    std::fs::copy(other.path().join("key.pem"), data.join("tls/key.pem")).unwrap();
    std::fs::write(data.join("appliance.db"), vec![b'x'; 8192]).unwrap();
    let (code, report) = doctor(&config);
    assert_eq!(code, 1, "{report}");
    assert!(
        line(&report, "FAIL", "tls").contains("does not match"),
        "{report}"
    );
    assert!(
        line(&report, "FAIL", "database").contains("appliance.db"),
        "{report}"
    );

    // A configuration that does not load: one FAIL, and the checks needing it are silent.
    std::fs::write(dir.path().join("bad.toml"), "[pbx]\nhots = 1\n").unwrap();
    let (code, report) = doctor(&dir.path().join("bad.toml"));
    assert_eq!(code, 1, "{report}");
    assert!(line(&report, "FAIL", "config").contains("hots"), "{report}");
    assert!(report.contains(" 1 FAIL"), "{report}");
    for check in ["database", "tls", "pbx"] {
        assert!(
            !report
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(check)),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pbx_login_fails_as_such() {
    let (_, fail) = pbx_failure(Script::new("actions-responses").refuse_login()).await;
    assert!(fail.contains("refused"), "{fail}");
}

/// `appliance doctor` against a fake AMI playing `script`: the fake, and the pbx FAIL line
/// (asserting exit code 1).
async fn pbx_failure(script: Script) -> (crate::fake_pbx::Fake, String) {
    let ami = FakeAmi::start(vec![script]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), ami.port());
    let (code, report) = tokio::task::spawn_blocking(move || doctor(&config))
        .await
        .unwrap();
    assert_eq!(code, 1, "{report}");
    let fail = line(&report, "FAIL", "pbx").to_string();
    (ami, fail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_refusing_the_challenge_fails_as_such_and_gets_no_secret() {
    let script = Script::new("actions-responses").without_challenge();
    let (ami, fail) = pbx_failure(script).await;
    assert!(
        fail.contains("challenge refused, the secret was not sent"),
        "{fail}"
    );
    assert!(ami.sent_named("Login").is_empty(), "{:?}", ami.sent());
}

/// A running appliance (PBX: an Asterisk nobody answers on) with account acc-1 connected
/// by user 7 with token tok-1.
async fn connected_service() -> crate::flowlu_support::Rig {
    let r = crate::flowlu_support::rig(|c| {
        c.pbx = crate::fake_pbx::pbx_config("asterisk", 1);
    })
    .await;
    r.fake.add_user("tok-1", "7", "Ann", "");
    let s = r
        .session(&crate::flowlu_support::Ctx::new(
            "acc-1",
            "acme.flowlu.com",
            "tok-1",
        ))
        .await;
    assert_eq!(r.act("connect", &s, &[]).await.status, 200);
    r
}

/// The status and detail of each finding of `check`.
fn findings_of(
    findings: &[appliance::doctor::Finding],
    check: &str,
) -> Vec<(appliance::doctor::Status, String)> {
    findings
        .iter()
        .filter(|f| f.check == check)
        .map(|f| (f.status, f.detail.clone()))
        .collect()
}

/// The doctor's view of the running appliance `r`: its listener on loopback, its routing
/// ports as the service bound them, `public_url` as given.
fn service_context(r: &crate::flowlu_support::Rig, public_url: &str) -> appliance::doctor::Context {
    let mut config = r.app.config.clone();
    config.server.listen = r.app.addr.to_string();
    if let Some(agi) = r.app.state.routing.agi_addr() {
        config.routing.agi_listen = agi.to_string();
    }
    if let Some(esl) = r.app.state.routing.esl_addr() {
        config.routing.esl_listen = esl.to_string();
    }
    config.server.public_url = public_url.into();
    appliance::doctor::Context::new(r.app.dir.path().join("none.toml"), Ok(config))
}

/// The checks of what the running service talks to, in-process against a live appliance:
/// its listener answers, the routing port is held by the service itself (its /healthz
/// says so), public_url reaches it, each connected Flowlu account is reachable with its
/// token, and the clock is compared with Flowlu's.
#[tokio::test(flavor = "multi_thread")]
async fn the_running_service_and_its_flowlu_accounts_check_out() {
    use appliance::doctor::{Status, run};

    let r = connected_service().await;
    let agi =
        crate::harness::eventually(10, "FastAGI bound", async || r.app.state.routing.agi_addr())
            .await;
    // The test certificate names localhost but no public CA signed it.
    let public = format!("https://localhost:{}", r.app.addr.port());
    let ctx = service_context(&r, &public);
    let findings = run(&ctx).await;
    let of = |check: &str| findings_of(&findings, check);
    assert_eq!(of("https")[0].0, Status::Ok, "{findings:?}");
    assert!(
        of("https")[0].1.contains(&r.app.addr.to_string()),
        "{findings:?}"
    );
    assert_eq!(of("routing")[0].0, Status::Ok, "{findings:?}");
    assert!(
        of("routing")[0].1.contains(&format!("agi://{agi}/route")),
        "{findings:?}"
    );
    assert_eq!(of("public_url")[0].0, Status::Warn, "{findings:?}");
    assert!(
        of("public_url")[0].1.contains("not trusted"),
        "{findings:?}"
    );
    let flowlu = of("flowlu");
    assert_eq!(flowlu.len(), 1, "{findings:?}");
    assert_eq!(flowlu[0].0, Status::Ok, "{findings:?}");
    assert!(flowlu[0].1.contains("acc-1") && flowlu[0].1.contains("token accepted"));
    assert!(!flowlu[0].1.contains("tok-1"), "never the token");
    // The fake Flowlu stamps hyper's Date: the clocks agree.
    assert_eq!(of("clock")[0].0, Status::Ok, "{findings:?}");
    // The probe was a read: core/user/get with the stored token.
    let probe = r.fake.requests_to("/api/v1/module/core/user/get");
    assert_eq!(
        probe.last().unwrap().header("authorization"),
        Some("Bearer tok-1")
    );

    // A public URL that does not lead here fails; a token Flowlu refuses is a warning
    // (the service refreshes it), nothing is changed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    r.fake.remove_user("tok-1");
    let findings = run(&service_context(&r, &nowhere)).await;
    let of = |check: &str| findings_of(&findings, check);
    assert_eq!(of("public_url")[0].0, Status::Fail, "{findings:?}");
    assert!(
        of("public_url")[0].1.contains("does not reach"),
        "{findings:?}"
    );
    assert_eq!(of("flowlu")[0].0, Status::Warn, "{findings:?}");
    assert_eq!(
        r.count("SELECT needs_reconnect FROM flowlu_integrations"),
        0
    );
}

/// The routing port held by another program: the service says it cannot listen, and the
/// doctor fails naming the cause (today's "something answers" is no proof).
#[tokio::test(flavor = "multi_thread")]
async fn a_routing_port_held_by_another_program_fails() {
    use appliance::doctor::{Status, run};

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let busy_for_config = busy.clone();
    let r = crate::flowlu_support::rig(move |c| {
        c.pbx = crate::fake_pbx::pbx_config("asterisk", 1);
        c.routing.agi_listen = busy_for_config;
    })
    .await;
    crate::harness::eventually(10, "FastAGI unavailable", async || {
        let health = r.app.get("/healthz").await.json();
        (health["routing"]["agi"]["state"] == "unavailable").then_some(())
    })
    .await;
    let findings = run(&service_context(&r, "")).await;
    let routing = findings_of(&findings, "routing");
    assert_eq!(routing[0].0, Status::Fail, "{findings:?}");
    assert!(routing[0].1.contains(&busy), "{routing:?}");
    assert!(routing[0].1.contains("another program"), "{routing:?}");
    drop(taken);
}

/// The PBX saved on the settings page is the one the service uses, so it is the one the
/// doctor checks: here a FreeSWITCH (the config file says Asterisk), whose routing server
/// is the outbound event socket the running appliance now serves.
#[tokio::test(flavor = "multi_thread")]
async fn the_pbx_saved_on_the_settings_page_is_checked_with_its_routing_hook() {
    use appliance::doctor::{Status, run};
    use appliance::pbx::ConnectionSettings;

    let r = connected_service().await;
    // A closed port for the PBX itself: the login check fails and says where it came from.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let id = r.count("SELECT id FROM flowlu_integrations");
    let saved = ConnectionSettings {
        kind: appliance::config::PbxType::Freeswitch,
        host: "127.0.0.1".into(),
        port: closed_port,
        user: String::new(),
        secret: appliance::secret::Secret::new("pbx-pass-1"),
    };
    // As the settings page saves it: stored, then published to the running service.
    assert!(appliance::flowlu::pbx_settings::save(&mut r.app.db(), &saved, id, false).unwrap());
    r.app.state.pbx_settings.send_replace(Some(saved));
    let esl = crate::harness::eventually(10, "ESL routing bound", async || {
        let health = r.app.get("/healthz").await.json();
        (health["pbx_detail"]["type"] == "freeswitch")
            .then(|| r.app.state.routing.esl_addr())
            .flatten()
    })
    .await;

    let findings = run(&service_context(&r, "")).await;
    let of = |check: &str| findings_of(&findings, check);
    let routing = of("routing");
    assert_eq!(routing.len(), 1, "{findings:?}");
    assert_eq!(routing[0].0, Status::Ok, "{findings:?}");
    assert!(
        routing[0].1.contains(&format!("socket {esl} async full")),
        "{routing:?}"
    );
    let pbx = of("pbx");
    assert_eq!(pbx[0].0, Status::Fail, "{findings:?}");
    assert!(pbx[0].1.contains("the settings page"), "{pbx:?}");
    assert!(
        !format!("{findings:?}").contains("pbx-pass-1"),
        "never the secret"
    );
}
