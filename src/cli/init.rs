//! `appliance --init`: writes a working configuration, creates the data directory and
//! database, and generates a self-signed certificate (or the placeholder ACME replaces)
//! when asked. The interactive questions live in `questions.rs`, what it detects on the
//! host in `wizard.rs`.
//!
//! Everything is validated before anything is written, and the config file is written
//! last and atomically, so a failed `--init` never leaves a half-made setup behind, and
//! an existing configuration is never replaced without `--force`.

use std::fs::{self, DirBuilder};
use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::time::Duration;

use super::{Cli, PbxArg, absolute, fail, questions};
use crate::config::{self, Config, LoadOptions, PbxType};
use crate::db::Db;
use crate::flowlu::admission;
use crate::pbx::{self, ConnectionSettings, ProbeResult};
use crate::{sysuser, tls};

pub(super) enum TlsChoice {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
    Acme(AcmeAnswers),
    PlainHttp,
}

#[derive(Default)]
pub(super) struct AcmeAnswers {
    /// Empty: the host of the public URL.
    pub domain: String,
    pub email: String,
    /// Empty: the default (http-01).
    pub challenge: String,
    /// Empty: the default (Let's Encrypt).
    pub directory: String,
}

pub(super) struct Answers {
    pub pbx: Option<PbxType>,
    pub pbx_host: String,
    pub pbx_port: u16,
    pub pbx_user: String,
    pub pbx_secret: String,
    pub public_url: String,
    pub listen: String,
    pub tls: TlsChoice,
    pub data_dir: PathBuf,
    /// The outcome of the PBX login test, when one was made.
    pub login_test: Option<ProbeResult>,
    /// Flowlu accounts to admit (`--admit`), as typed.
    pub admit: Vec<String>,
    /// A failed login test does not stop `--init` (`--pbx-optional`, or the admin chose
    /// to keep the settings in the wizard).
    pub pbx_optional: bool,
    /// The Asterisk is a FreePBX (`/etc/freepbx.conf` exists).
    pub freepbx: bool,
    /// `[pbx] agent_channel` and `context` to write (empty: the defaults).
    pub agent_channel: String,
    pub context: String,
    /// The call records found and chosen (`None`: not looked for yet).
    pub cdr: Option<super::init_cdr::CdrAnswers>,
}

/// What a FreePBX dialplan needs: agents are rung through FreePBX's own internal context
/// (so follow-me, DND and call recording apply), and calls continue there.
pub const FREEPBX_AGENT_CHANNEL: &str = "Local/{ext}@from-internal";
pub const FREEPBX_CONTEXT: &str = "from-internal";

struct Failure {
    code: u8,
    message: String,
}

fn failure(code: u8, message: impl std::fmt::Display) -> Failure {
    Failure {
        code,
        message: message.to_string(),
    }
}

pub fn run(cli: &Cli) -> ExitCode {
    match init(cli) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(f) => fail(f.code, f.message),
    }
}

fn init(cli: &Cli) -> Result<String, Failure> {
    let path = absolute(&cli.config_path());
    if path.exists() && !cli.init_args.force {
        return Err(failure(
            1,
            format!(
                "refusing to overwrite the existing configuration {}; pass --force to replace it",
                path.display()
            ),
        ));
    }
    let interactive = !cli.init_args.non_interactive && std::io::stdin().is_terminal();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failure(1, format!("cannot start the async runtime: {e}")))?;
    let mut answers = if interactive {
        questions::ask(cli, from_flags(cli), &runtime)
            .map_err(|e| failure(1, format!("init aborted: {e}")))?
    } else {
        from_flags(cli)
    };
    if answers.login_test.is_none() {
        answers.login_test = runtime.block_on(login_test(&answers));
    }
    if let Some(refused) = login_refusal(&answers) {
        return Err(failure(1, refused));
    }
    if answers.cdr.is_none() {
        answers.cdr = Some(super::init_cdr::detect(cli, answers.pbx));
    }

    let (cert, key) = match &answers.tls {
        TlsChoice::Files { cert, key } => (absolute(cert), absolute(key)),
        TlsChoice::SelfSigned | TlsChoice::Acme(_) => {
            let dir = answers.data_dir.join("tls");
            (dir.join("cert.pem"), dir.join("key.pem"))
        }
        TlsChoice::PlainHttp => (PathBuf::new(), PathBuf::new()),
    };
    let text = render(&answers, &cert, &key);

    // Validate the exact text we are about to install, before touching anything else.
    let config_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    make_dir(&config_dir).map_err(|e| failure(1, e))?;
    let staging = path.with_extension("toml.init-tmp");
    fs::write(&staging, &text)
        .map_err(|e| failure(1, format!("cannot write {}: {e}", staging.display())))?;
    let cleanup = |f: Failure| {
        let _ = fs::remove_file(&staging);
        f
    };
    let checked = match config::load(&LoadOptions {
        path: Some(staging.clone()),
        env: Vec::new(),
        flags: Vec::new(),
    }) {
        Ok((config, _)) => config,
        Err(e) => {
            let message = e.to_string().replace(
                &staging.display().to_string(),
                "the answers given to --init",
            );
            return Err(cleanup(failure(2, message)));
        }
    };
    if let TlsChoice::Files { .. } = answers.tls {
        tls::load_certified_key(&cert, &key).map_err(|e| cleanup(failure(1, e)))?;
    }
    let admit = answers
        .admit
        .iter()
        .map(|d| admission::normalize(&checked.flowlu, d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cleanup(failure(2, format!("--admit: {e}"))))?;

    make_dir(&answers.data_dir).map_err(|e| cleanup(failure(1, e)))?;
    if let TlsChoice::SelfSigned | TlsChoice::Acme(_) = answers.tls {
        let tls_dir = answers.data_dir.join("tls");
        make_dir(&tls_dir).map_err(|e| cleanup(failure(1, e)))?;
        // For ACME this is the placeholder the service serves until its first issuance.
        let mut hosts = certificate_hosts(&answers.public_url);
        if let Some(domain) = checked.acme_domain().filter(|d| !hosts.contains(d)) {
            hosts.insert(0, domain);
        }
        tls::write_self_signed(&tls_dir, &hosts).map_err(|e| cleanup(failure(1, e)))?;
    }
    let db_path = answers.data_dir.join("appliance.db");
    let db = Db::open(&db_path).map_err(|e| cleanup(failure(1, e)))?;
    let claim_code = db
        .with_conn(|c| admit_accounts(c, &admit))
        .map_err(|e| cleanup(failure(1, e)))?;
    drop(db);

    let mode = if config::running_as_root() {
        0o640
    } else {
        0o600
    };
    fs::set_permissions(&staging, fs::Permissions::from_mode(mode))
        .and_then(|()| hand_over(&staging, &answers.data_dir))
        .and_then(|()| fs::rename(&staging, &path))
        .map_err(|e| {
            cleanup(failure(
                1,
                format!("cannot install {}: {e}", path.display()),
            ))
        })?;

    let mut text = summary(&answers, &checked, &path, &db_path, &cert);
    text.push('\n');
    text.push_str(&match claim_code {
        Some(code) => super::accounts::claim_code_text(&code),
        None if admit.is_empty() => "Admitted:      the accounts admitted before are kept \
                                     (appliance accounts list)"
            .to_string(),
        None => format!(
            "Admitted:      {} (more: appliance accounts admit <domain>)",
            admit.join(", ")
        ),
    });
    Ok(text)
}

/// Admits the `--admit` accounts; the first becomes the PBX owner unless one is marked
/// already. Without any, and with no account admitted before, makes the claim code the
/// first admin types into the settings page (returned for printing).
fn admit_accounts(
    conn: &mut rusqlite::Connection,
    domains: &[String],
) -> Result<Option<String>, crate::db::DbError> {
    for domain in domains {
        admission::admit(conn, domain, "init")?;
    }
    if let Some(first) = domains.first() {
        if !admission::list(conn)?.iter().any(|a| a.pbx_owner) {
            admission::set_pbx_owner(conn, first)?;
        }
        return Ok(None);
    }
    if admission::list(conn)?.is_empty() {
        return admission::new_claim_code(conn).map(Some);
    }
    Ok(None)
}

/// Run as root on a host with the `appliance` service user (the .deb creates it): the
/// config becomes `root:appliance` 0640 and the data directory the service's, so the
/// sandboxed service (which is not root) can use what `--init` made.
fn hand_over(config: &Path, data_dir: &Path) -> std::io::Result<()> {
    if !config::running_as_root() {
        return Ok(());
    }
    let Some(user) = sysuser::service_user() else {
        return Ok(());
    };
    sysuser::chown(config, Some(0), Some(user.gid))?;
    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        sysuser::chown(&path, Some(user.uid), Some(user.gid))?;
        if path.is_dir() && !path.is_symlink() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Why `--init` stops before writing anything: the PBX login it just tested failed and
/// the admin did not say the PBX may come later.
fn login_refusal(a: &Answers) -> Option<String> {
    if a.pbx_optional {
        return None;
    }
    let (pbx, port) = (a.pbx?, effective_port(a)?);
    let why = match a.login_test.as_ref()? {
        ProbeResult::Ok(_) => return None,
        ProbeResult::Down(detail) => format!("the PBX is not reachable: {detail}"),
        ProbeResult::AuthFailed(detail) => format!("the PBX refused the credentials: {detail}"),
        ProbeResult::ChallengeRefused(detail) => format!(
            "the manager refused the MD5 challenge and [pbx] allow_plain_login is off: {detail}"
        ),
        ProbeResult::UnsupportedVersion(detail) => {
            format!("this PBX version is not supported: {detail}")
        }
    };
    Some(format!(
        "the {} login at {}:{port} failed ({why}); nothing was written. Fix --pbx-host, \
         --pbx-port, --pbx-user or --pbx-secret, or pass --pbx-optional to write the \
         configuration anyway (the service keeps retrying)",
        pbx.as_str(),
        a.pbx_host
    ))
}

/// The PBX port the answers mean (0 standing for the protocol's default).
fn effective_port(a: &Answers) -> Option<u16> {
    let kind = a.pbx?;
    Some(if a.pbx_port == 0 {
        kind.default_port()
    } else {
        a.pbx_port
    })
}

/// Tests the PBX login with the answers.
pub(super) async fn login_test(a: &Answers) -> Option<ProbeResult> {
    let kind = a.pbx?;
    let settings = ConnectionSettings {
        kind,
        host: a.pbx_host.clone(),
        port: effective_port(a)?,
        user: a.pbx_user.clone(),
        secret: crate::secret::Secret::new(a.pbx_secret.clone()),
    };
    Some(pbx::probe(&settings, Duration::from_secs(3)).await)
}

/// The dialplan lines to add to the PBX so that calls are routed through the appliance,
/// printed at the end of `--init`. Empty until call routing exists (issue 5 fills it in
/// for Asterisk and FreeSWITCH from `config.pbx`).
pub fn dialplan_snippet(config: &Config) -> String {
    let _ = config;
    String::new()
}

fn from_flags(cli: &Cli) -> Answers {
    let a = &cli.init_args;
    let pbx = match a.pbx {
        Some(PbxArg::Asterisk) => Some(PbxType::Asterisk),
        Some(PbxArg::Freeswitch) => Some(PbxType::Freeswitch),
        Some(PbxArg::None) | None => None,
    };
    // FreePBX is an Asterisk: its dialplan matters only when Asterisk is the PBX.
    let freepbx = pbx == Some(PbxType::Asterisk) && a.freepbx_conf.exists();
    let tls = match (&a.tls_cert, &a.tls_key, a.plain_http) {
        _ if a.acme => TlsChoice::Acme(AcmeAnswers {
            domain: a.acme_domain.clone().unwrap_or_default(),
            email: a.acme_email.clone().unwrap_or_default(),
            challenge: a.acme_challenge.clone().unwrap_or_default(),
            directory: a.acme_directory.clone().unwrap_or_default(),
        }),
        (Some(cert), Some(key), _) => TlsChoice::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, true) => TlsChoice::PlainHttp,
        _ => TlsChoice::SelfSigned,
    };
    Answers {
        pbx,
        pbx_host: a.pbx_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
        pbx_port: a.pbx_port.unwrap_or(0),
        pbx_user: a.pbx_user.clone().unwrap_or_default(),
        pbx_secret: a
            .pbx_secret
            .clone()
            .or_else(|| std::env::var("APPLIANCE_PBX__SECRET").ok())
            .unwrap_or_default(),
        public_url: a.public_url.clone().unwrap_or_default(),
        listen: cli
            .overrides
            .listen
            .clone()
            .unwrap_or_else(|| config::Config::defaults().server.listen),
        tls,
        data_dir: cli
            .overrides
            .data_dir
            .as_deref()
            .map(absolute)
            .unwrap_or_else(config::default_data_dir),
        login_test: None,
        admit: a.admit.clone(),
        pbx_optional: a.pbx_optional,
        freepbx,
        agent_channel: if freepbx {
            FREEPBX_AGENT_CHANNEL.into()
        } else {
            String::new()
        },
        context: if freepbx {
            FREEPBX_CONTEXT.into()
        } else {
            String::new()
        },
        cdr: None,
    }
}

/// The example config with our answers filled in: comments and every other key stay.
fn render(a: &Answers, cert: &Path, key: &Path) -> String {
    let mut doc: toml_edit::DocumentMut = config::EXAMPLE.parse().expect("example parses");
    doc["server"]["listen"] = toml_edit::value(a.listen.as_str());
    doc["server"]["public_url"] = toml_edit::value(a.public_url.as_str());
    doc["server"]["plain_http"] = toml_edit::value(matches!(a.tls, TlsChoice::PlainHttp));
    doc["server"]["tls_cert"] = toml_edit::value(cert.display().to_string());
    doc["server"]["tls_key"] = toml_edit::value(key.display().to_string());
    if let Some(pbx) = a.pbx {
        doc["pbx"]["type"] = toml_edit::value(pbx.as_str());
        doc["pbx"]["host"] = toml_edit::value(a.pbx_host.as_str());
        doc["pbx"]["port"] = toml_edit::value(i64::from(a.pbx_port));
        doc["pbx"]["user"] = toml_edit::value(a.pbx_user.as_str());
        doc["pbx"]["secret"] = toml_edit::value(a.pbx_secret.as_str());
        if !a.agent_channel.is_empty() {
            doc["pbx"]["agent_channel"] = toml_edit::value(a.agent_channel.as_str());
        }
        if !a.context.is_empty() {
            doc["pbx"]["context"] = toml_edit::value(a.context.as_str());
        }
    }
    doc["storage"]["data_dir"] = toml_edit::value(a.data_dir.display().to_string());
    if let TlsChoice::Acme(acme) = &a.tls {
        doc["acme"]["enabled"] = toml_edit::value(true);
        for (key, value) in [
            ("domain", &acme.domain),
            ("email", &acme.email),
            ("challenge", &acme.challenge),
            ("directory_url", &acme.directory),
        ] {
            if !value.is_empty() {
                doc["acme"][key] = toml_edit::value(value.as_str());
            }
        }
    }
    if let Some(cdr) = &a.cdr {
        super::init_cdr::render(&mut doc, cdr);
    }
    let date = time::OffsetDateTime::now_utc().date();
    format!("# Written by `appliance --init` on {date}.\n{doc}")
}

fn summary(a: &Answers, checked: &Config, config: &Path, db: &Path, cert: &Path) -> String {
    let mut lines = vec![
        format!("Configuration: {}", config.display()),
        format!("Database:      {}", db.display()),
    ];
    match &a.tls {
        TlsChoice::SelfSigned => lines.push(format!(
            "TLS:           self-signed certificate {} (for testing: browsers and Flowlu \
             will not trust it; use a real certificate in production)",
            cert.display()
        )),
        TlsChoice::Acme(_) => lines.push(format!(
            "TLS:           ACME ({}) for {} via {}: the service obtains the certificate when \
             it starts and renews it {} days before expiry (a self-signed placeholder {} \
             is served until then)",
            checked.acme.directory_url,
            checked.acme_domain().unwrap_or_default(),
            checked.acme.challenge,
            checked.acme.renew_days,
            cert.display()
        )),
        TlsChoice::Files { .. } => lines.push(format!("TLS:           {}", cert.display())),
        TlsChoice::PlainHttp => lines.push(
            "TLS:           plain HTTP behind a reverse proxy (set server.trusted_proxies)"
                .to_string(),
        ),
    }
    match a.pbx {
        Some(pbx) => lines.push(format!(
            "PBX:           {} at {}:{}",
            pbx.as_str(),
            a.pbx_host,
            effective_port(a).unwrap_or_default()
        )),
        None => lines.push("PBX:           not configured yet".to_string()),
    }
    if a.freepbx {
        lines.push(format!(
            "FreePBX:       detected: agents are rung through {} and calls continue in \
             context {} (FreePBX's dialplan; [pbx] agent_channel and context)",
            checked.pbx.agent_channel(PbxType::Asterisk),
            if a.context.is_empty() {
                FREEPBX_CONTEXT
            } else {
                a.context.as_str()
            }
        ));
    }
    match &a.login_test {
        Some(ProbeResult::Ok(detail)) => lines.push(format!("PBX login:     OK ({detail})")),
        Some(ProbeResult::Down(detail)) => lines.push(format!(
            "PBX login:     FAILED, the PBX is not reachable: {detail} (the service keeps retrying)"
        )),
        Some(ProbeResult::AuthFailed(detail)) => lines.push(format!(
            "PBX login:     FAILED, credentials refused: {detail} (fix [pbx] user/secret)"
        )),
        Some(ProbeResult::ChallengeRefused(detail)) => lines.push(format!(
            "PBX login:     NOT TRIED, the PBX refuses the MD5 challenge and the secret is \
             never sent in clear text unless [pbx] allow_plain_login = true: {detail}"
        )),
        Some(ProbeResult::UnsupportedVersion(detail)) => lines.push(format!(
            "PBX login:     NOT TRIED, the PBX is too old to track: {detail}"
        )),
        None => {}
    }
    if let Some(cdr) = &a.cdr {
        lines.extend(super::init_cdr::summary(cdr));
    }
    match checked.public_url() {
        None => lines.push(
            "Flowlu:        set [server] public_url, then use <public_url>/integration/settings \
             as the MiniApp iframe URL"
                .to_string(),
        ),
        Some(url) => lines.push(format!(
            "Flowlu:        MiniApp settings iframe URL {url}/integration/settings"
        )),
    }
    let dialplan = dialplan_snippet(checked);
    if !dialplan.is_empty() {
        lines.push(format!(
            "Dialplan:      add to the PBX dialplan:\n{dialplan}"
        ));
    }
    lines.push(format!(
        "Start it with: appliance run --config {}   (packaged: systemctl start appliance)",
        config.display()
    ));
    lines.join("\n")
}

/// Host names and addresses the self-signed certificate should cover.
fn certificate_hosts(public_url: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    if let Some(host) = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
    {
        hosts.push(host);
    }
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !hosts.iter().any(|h| h == extra) {
            hosts.push(extra.to_string());
        }
    }
    hosts
}

pub(super) fn hostname() -> String {
    fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Creates a directory (and parents) readable by its owner and, for root, the group.
fn make_dir(dir: &Path) -> Result<(), String> {
    let mode = if config::running_as_root() {
        0o750
    } else {
        0o700
    };
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))
}
