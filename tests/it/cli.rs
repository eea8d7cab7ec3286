//! Command-line behaviour of the compiled binary: bad input exits non-zero with one clear
//! line and leaves existing data alone.

use std::process::Command;

use crate::smoke::{BIN, init};

fn run(args: &[&str], config: &std::path::Path) -> (i32, String) {
    let (code, _, stderr) = output(args, config);
    (code, stderr)
}

/// Runs the binary with `args` and `--config`: exit code, stdout, stderr (trimmed).
fn output(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn version_is_printed() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("appliance {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let before = std::fs::read(&config).unwrap();
    let (code, err) = run(&["--init", "--non-interactive"], &config);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&config).unwrap(), before);
    let (code, err) = run(
        &[
            "--init",
            "--non-interactive",
            "--force",
            "--pbx",
            "freeswitch",
            "--data-dir",
        ],
        &config,
    );
    assert_eq!(code, 2, "a flag without its value is a usage error: {err}");
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args([
            "--init",
            "--non-interactive",
            "--force",
            "--pbx",
            "freeswitch",
            "--pbx-optional",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .arg("--cdr-root")
        .arg(dir.path().join("no-pbx-files"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("type = \"freeswitch\""), "{text}");
}

#[test]
fn check_config_prints_merged_config_with_secrets_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(
        dir.path(),
        &[
            "--pbx",
            "asterisk",
            "--pbx-user",
            "ami",
            "--pbx-secret",
            "s3cret-value",
        ],
    );
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .env("APPLIANCE_PBX__HOST", "10.1.2.3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("host = \"10.1.2.3\""), "{shown}");
    assert!(shown.contains("secret = \"***\""), "{shown}");
    assert!(!shown.contains("s3cret-value"));
    assert!(!std::fs::read_to_string(&config).unwrap().is_empty());
}

#[test]
fn malformed_config_and_unknown_keys_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[pbx]\nhots = \"x\"\n");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let (code, err) = run(&["run"], &bad);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("pbx") && err.contains("bad.toml"), "{err}");

    std::fs::write(&bad, "[server\n").unwrap();
    let (code, err) = run(&["check-config"], &bad);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml"), "{err}");

    let (code, err) = run(&["run"], &dir.path().join("missing.toml"));
    assert_eq!(code, 2);
    assert!(
        err.contains("missing.toml") && err.contains("--init"),
        "{err}"
    );
}

#[test]
fn runtime_problems_exit_1_with_one_line_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let db = dir.path().join("data/appliance.db");

    // Port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["run", "--listen", &port, "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&port) && err.contains("in use"), "{err}");

    // Database from a newer version.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA user_version = 9999;").unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let (code, err) = run(&["run"], &config);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("newer"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), before);

    // Missing data directory.
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = dir.path().join("gone");
    let bad = dir.path().join("moved.toml");
    std::fs::write(
        &bad,
        text.replace(
            &format!("data_dir = \"{}\"", dir.path().join("data").display()),
            &format!("data_dir = \"{}\"", moved.display()),
        ),
    )
    .unwrap();
    let (code, err) = run(&["run"], &bad);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("gone") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!moved.exists());

    // Unreadable certificate.
    std::fs::write(dir.path().join("data/tls/cert.pem"), "not a certificate").unwrap();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA user_version = 1;").unwrap();
    }
    let (code, err) = run(&["run"], &config);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cert.pem"), "{err}");
}

/// `appliance accounts ...`: exit code, stdout, stderr.
fn accounts(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    output(&[&["accounts"], args].concat(), config)
}

#[test]
fn init_admits_the_named_account_and_accounts_manages_the_list() {
    let dir = tempfile::tempdir().unwrap();
    // A bad --admit is a usage error and writes nothing.
    let config = dir.path().join("config.toml");
    let (code, err) = run(
        &[
            "--init",
            "--non-interactive",
            "--self-signed",
            "--cdr",
            "none",
            "--admit",
            "evil.com",
        ],
        &config,
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--admit") && err.contains("allowed_domains"),
        "{err}"
    );
    assert!(!config.exists());

    let config = init(dir.path(), &["--admit", "https://Acme.flowlu.com/"]);
    let (code, out, _) = accounts(&["list"], &config);
    assert_eq!(code, 0);
    assert!(out.starts_with("acme.flowlu.com\tadmitted "), "{out}");
    assert!(out.contains("(init)  (owns the PBX)"), "{out}");

    let (code, out, _) = accounts(&["admit", "beta.flowlu.com"], &config);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "beta.flowlu.com admitted: its admins can now open the settings in Flowlu"
        )
    );
    let (code, out, _) = accounts(&["admit", "beta.flowlu.com"], &config);
    assert_eq!(
        (code, out.as_str()),
        (0, "beta.flowlu.com was already admitted")
    );
    for bad in ["flowlu.com", "1.2.3.4", "beta.flowlu.com:443"] {
        let (code, _, err) = accounts(&["admit", bad], &config);
        assert_eq!(code, 2, "{bad}: {err}");
    }
    let (code, _, err) = accounts(&["pbx-owner", "gamma.flowlu.com"], &config);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is not admitted"), "{err}");
    let (code, _, _) = accounts(&["pbx-owner", "beta.flowlu.com"], &config);
    assert_eq!(code, 0);
    let (_, out, _) = accounts(&["list"], &config);
    let beta = out.lines().find(|l| l.starts_with("beta.")).unwrap();
    assert!(beta.ends_with("(owns the PBX)"), "{out}");

    let (code, out, _) = accounts(&["revoke", "acme.flowlu.com"], &config);
    assert_eq!(code, 0, "{out}");
    let (code, _, err) = accounts(&["revoke", "acme.flowlu.com"], &config);
    assert_eq!(code, 1);
    assert!(err.contains("acme.flowlu.com is not admitted"), "{err}");
    let (_, out, _) = accounts(&["list"], &config);
    assert!(!out.contains("acme.flowlu.com"), "{out}");

    let (code, out, _) = accounts(&["claim-code"], &config);
    assert_eq!(code, 0);
    let code_text = out.strip_prefix("Claim code:    ").unwrap();
    assert_eq!(
        code_text.split_whitespace().next().unwrap().len(),
        24,
        "{out}"
    );
}

#[test]
fn check_config_says_when_the_settings_page_pbx_overrides_pbx() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(
        dir.path(),
        &[
            "--pbx",
            "asterisk",
            "--pbx-host",
            "10.0.0.5",
            "--pbx-port",
            "1",
        ],
    );
    let check = || {
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (shown, err) = check();
    assert!(
        !shown.contains("overridden") && !err.contains("overridden"),
        "{err}"
    );

    // An admin saves a FreeSWITCH on the settings page.
    let mut db = rusqlite::Connection::open(dir.path().join("data/appliance.db")).unwrap();
    db.execute(
        "INSERT INTO flowlu_integrations (id, platform, account_id, app_id, domain,
             app_version, placement_id, ratelimit, webhook_secret, created_at, updated_at)
         VALUES (3, 'flowlu.com', '3', 'app', 'test.flowlu.com', '1', 'p', 16, 's', 0, 0)",
        [],
    )
    .unwrap();
    let saved = appliance::pbx::ConnectionSettings {
        kind: appliance::config::PbxType::Freeswitch,
        host: "127.0.0.1".into(),
        port: 8021,
        user: String::new(),
        secret: appliance::secret::Secret::new("pbx-pass-2"),
    };
    appliance::flowlu::admission::admit(&db, "test.flowlu.com", "cli").unwrap();
    assert!(appliance::flowlu::pbx_settings::save(&mut db, &saved, 3, true).unwrap());
    let (shown, err) = check();
    let first = shown.lines().next().unwrap();
    assert!(first.starts_with("# [pbx] below is overridden"), "{shown}");
    assert!(first.contains("freeswitch at 127.0.0.1:8021"), "{first}");
    assert!(first.contains("asterisk at 10.0.0.5:1"), "{first}");
    assert!(err.contains("settings page"), "{err}");
    assert!(!shown.contains("pbx-pass-2") && !err.contains("pbx-pass-2"));
    // Still a configuration TOML parses.
    toml::from_str::<toml::Value>(&shown).unwrap();
}

#[test]
fn recordings_revoke_withdraws_a_calls_links() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let db = rusqlite::Connection::open(dir.path().join("data/appliance.db")).unwrap();
    for (n, call) in ["c1", "c1", "c2"].iter().enumerate() {
        let link = appliance::recordings::store::Link {
            call_id: call.to_string(),
            path: "/var/spool/asterisk/monitor/x.wav".into(),
            content_type: "audio/wav".into(),
            size: 1,
            created_at: 0,
            expires_at: appliance::recordings::store::NEVER,
        };
        let hash = appliance::recordings::store::token_hash(&format!("token-{n}"));
        appliance::recordings::store::insert(&db, &hash, &link).unwrap();
    }
    let out = Command::new(BIN)
        .args(["recordings", "revoke", "c1", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2 recording link(s) revoked"
    );
    let left: Vec<String> = db
        .prepare("SELECT call_id FROM recording_links")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(left, ["c2"]);
    let (code, err) = run(&["recordings", "revoke"], &config);
    assert_eq!(code, 2, "a call id or --all is required: {err}");
}
