//! `appliance --init`: writes a working configuration, creates the data directory and
//! database, and generates a self-signed certificate when asked.
//!
//! Everything is validated before anything is written, and the config file is written
//! last and atomically, so a failed `--init` never leaves a half-made setup behind, and
//! an existing configuration is never replaced without `--force`.

use std::fs::{self, DirBuilder};
use std::io::IsTerminal;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Cli, PbxArg, absolute, fail, prompt};
use crate::config::{self, LoadOptions, PbxType};
use crate::db::Db;
use crate::tls;

enum TlsChoice {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned,
    PlainHttp,
}

struct Answers {
    pbx: Option<PbxType>,
    pbx_host: String,
    pbx_port: u16,
    pbx_user: String,
    pbx_secret: String,
    public_url: String,
    listen: String,
    tls: TlsChoice,
    data_dir: PathBuf,
}

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
    let answers = if interactive {
        ask(cli).map_err(|e| failure(1, format!("init aborted: {e}")))?
    } else {
        from_flags(cli)
    };

    let (cert, key) = match &answers.tls {
        TlsChoice::Files { cert, key } => (absolute(cert), absolute(key)),
        TlsChoice::SelfSigned => {
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
    let checked = config::load(&LoadOptions {
        path: Some(staging.clone()),
        env: Vec::new(),
        flags: Vec::new(),
    });
    if let Err(e) = checked {
        let message = e.to_string().replace(
            &staging.display().to_string(),
            "the answers given to --init",
        );
        return Err(cleanup(failure(2, message)));
    }
    if let TlsChoice::Files { .. } = answers.tls {
        tls::load_certified_key(&cert, &key).map_err(|e| cleanup(failure(1, e)))?;
    }

    make_dir(&answers.data_dir).map_err(|e| cleanup(failure(1, e)))?;
    if let TlsChoice::SelfSigned = answers.tls {
        let tls_dir = answers.data_dir.join("tls");
        make_dir(&tls_dir).map_err(|e| cleanup(failure(1, e)))?;
        let hosts = certificate_hosts(&answers.public_url);
        tls::write_self_signed(&tls_dir, &hosts).map_err(|e| cleanup(failure(1, e)))?;
    }
    let db_path = answers.data_dir.join("appliance.db");
    Db::open(&db_path).map_err(|e| cleanup(failure(1, e)))?;

    let mode = if config::running_as_root() {
        0o640
    } else {
        0o600
    };
    fs::set_permissions(&staging, fs::Permissions::from_mode(mode))
        .and_then(|()| fs::rename(&staging, &path))
        .map_err(|e| {
            cleanup(failure(
                1,
                format!("cannot install {}: {e}", path.display()),
            ))
        })?;

    Ok(summary(&answers, &path, &db_path, &cert))
}

fn from_flags(cli: &Cli) -> Answers {
    let a = &cli.init_args;
    let pbx = match a.pbx {
        Some(PbxArg::Asterisk) => Some(PbxType::Asterisk),
        Some(PbxArg::Freeswitch) => Some(PbxType::Freeswitch),
        Some(PbxArg::None) | None => None,
    };
    let tls = match (&a.tls_cert, &a.tls_key, a.plain_http) {
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
    }
}

/// The interactive questions; flags given on the command line become the defaults.
fn ask(cli: &Cli) -> std::io::Result<Answers> {
    let mut a = from_flags(cli);
    eprintln!("Setting up the appliance. Press Enter to accept the value in brackets.");
    let kind = prompt::choose(
        "PBX type",
        &["asterisk", "freeswitch", "none"],
        a.pbx.map_or("asterisk", PbxType::as_str),
    )?;
    a.pbx = PbxType::parse(&kind);
    if let Some(pbx) = a.pbx {
        a.pbx_host = prompt::ask("PBX host", &a.pbx_host)?;
        let default_port = if a.pbx_port == 0 {
            pbx.default_port()
        } else {
            a.pbx_port
        };
        loop {
            let port = prompt::ask("PBX port", &default_port.to_string())?;
            match port.parse::<u16>() {
                Ok(p) if p > 0 => {
                    a.pbx_port = p;
                    break;
                }
                _ => eprintln!("  please enter a port number from 1 to 65535"),
            }
        }
        if pbx == PbxType::Asterisk {
            let user = if a.pbx_user.is_empty() {
                "appliance"
            } else {
                &a.pbx_user
            };
            a.pbx_user = prompt::ask("AMI user name (manager.conf)", user)?;
            a.pbx_secret = prompt::ask_secret("AMI secret", &a.pbx_secret)?;
        } else {
            let default = if a.pbx_secret.is_empty() {
                "ClueCon"
            } else {
                &a.pbx_secret
            };
            a.pbx_secret = prompt::ask_secret("Event socket password", default)?;
        }
    }
    let url_default = if a.public_url.is_empty() {
        format!("https://{}:8443", hostname())
    } else {
        a.public_url.clone()
    };
    a.public_url = prompt::ask(
        "Public HTTPS URL Flowlu will use for this appliance",
        &url_default,
    )?;
    a.listen = prompt::ask("Listen address", &a.listen)?;
    let current = match a.tls {
        TlsChoice::Files { .. } => "files",
        TlsChoice::SelfSigned => "self-signed",
        TlsChoice::PlainHttp => "proxy",
    };
    let tls = prompt::choose(
        "TLS certificate: existing files, self-signed (testing only), or a reverse proxy terminates TLS",
        &["files", "self-signed", "proxy"],
        current,
    )?;
    a.tls = match tls.as_str() {
        "files" => TlsChoice::Files {
            cert: prompt::ask("Certificate chain (PEM)", "/etc/appliance/cert.pem")?.into(),
            key: prompt::ask("Private key (PEM)", "/etc/appliance/key.pem")?.into(),
        },
        "proxy" => TlsChoice::PlainHttp,
        _ => TlsChoice::SelfSigned,
    };
    let dir = prompt::ask("Data directory", &a.data_dir.display().to_string())?;
    a.data_dir = absolute(Path::new(&dir));
    Ok(a)
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
    }
    doc["storage"]["data_dir"] = toml_edit::value(a.data_dir.display().to_string());
    let date = time::OffsetDateTime::now_utc().date();
    format!("# Written by `appliance --init` on {date}.\n{doc}")
}

fn summary(a: &Answers, config: &Path, db: &Path, cert: &Path) -> String {
    let mut lines = vec![
        format!("Configuration: {}", config.display()),
        format!("Database:      {}", db.display()),
    ];
    match a.tls {
        TlsChoice::SelfSigned => lines.push(format!(
            "TLS:           self-signed certificate {} (for testing: browsers and Flowlu \
             will not trust it; use a real certificate in production)",
            cert.display()
        )),
        TlsChoice::Files { .. } => lines.push(format!("TLS:           {}", cert.display())),
        TlsChoice::PlainHttp => lines.push(
            "TLS:           plain HTTP behind a reverse proxy (set server.trusted_proxies)"
                .to_string(),
        ),
    }
    match a.pbx {
        Some(pbx) => lines.push(format!("PBX:           {} at {}", pbx.as_str(), a.pbx_host)),
        None => lines.push("PBX:           not configured yet".to_string()),
    }
    if a.public_url.is_empty() {
        lines.push(
            "Flowlu:        set [server] public_url, then use <public_url>/integration/settings \
             as the MiniApp iframe URL"
                .to_string(),
        );
    } else {
        lines.push(format!(
            "Flowlu:        MiniApp settings iframe URL {}/integration/settings",
            a.public_url.trim_end_matches('/')
        ));
    }
    lines.push(format!(
        "Start it with: appliance run --config {}",
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

fn hostname() -> String {
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
