//! The checks themselves. Each reads what it checks and returns its report lines; none
//! writes anything (the database is opened read-only, the PBX only gets a login test).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::{CheckFuture, Context, Finding};
use crate::config::Config;
use crate::pbx::{self, ProbeResult};
use crate::sysuser::{self, SystemUser};
use crate::tls;

fn config_of(ctx: &Context) -> Option<&Config> {
    ctx.config.as_ref().ok()
}

pub fn config(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let path = ctx.config_path.display();
        let config = match &ctx.config {
            Ok(config) => config,
            Err(e) => return vec![Finding::fail("config", e.to_string())],
        };
        let mut out = vec![Finding::ok("config", format!("{path} is valid"))];
        if config.public_url().is_none() {
            out.push(Finding::warn(
                "config",
                "server.public_url is not set: Flowlu needs it to reach the appliance",
            ));
        }
        out
    })
}

/// The config file holds secrets: only root and the service may read it.
pub fn config_file(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Ok(meta) = std::fs::metadata(&ctx.config_path) else {
            return Vec::new(); // reported by `config`
        };
        let path = ctx.config_path.display();
        let mode = meta.permissions().mode() & 0o777;
        let mut out = Vec::new();
        if mode & 0o007 != 0 {
            out.push(Finding::warn(
                "permissions",
                format!("{path} is mode {mode:o}: other users can read its secrets (chmod 640)"),
            ));
        }
        if let Some(user) = sysuser::service_user()
            && !user.can_read(&meta)
        {
            out.push(Finding::fail(
                "permissions",
                format!(
                    "the service user {} cannot read {path} (chown root:{} and chmod 640)",
                    user.name, user.name
                ),
            ));
        }
        if out.is_empty() {
            out.push(Finding::ok(
                "permissions",
                format!("{path} is mode {mode:o}, readable by the service only"),
            ));
        }
        out
    })
}

pub fn data_dir(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        let dir = config.data_dir();
        let meta = match std::fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => meta,
            Ok(_) => {
                return vec![Finding::fail(
                    "data dir",
                    format!("{} is not a directory", dir.display()),
                )];
            }
            Err(e) => {
                return vec![Finding::fail(
                    "data dir",
                    format!("{}: {e} (run `appliance --init`)", dir.display()),
                )];
            }
        };
        let mode = meta.permissions().mode() & 0o777;
        let mut out = Vec::new();
        if mode & 0o007 != 0 {
            out.push(Finding::warn(
                "data dir",
                format!(
                    "{} is mode {mode:o}: other users can look inside (chmod 750)",
                    dir.display()
                ),
            ));
        }
        if let Some(user) = sysuser::service_user()
            && !user.can_write(&meta)
        {
            out.push(Finding::fail(
                "data dir",
                format!(
                    "the service user {} cannot write {} (chown -R {}: it)",
                    user.name,
                    dir.display(),
                    user.name
                ),
            ));
        }
        if out.is_empty() {
            out.push(Finding::ok(
                "data dir",
                format!("{} (mode {mode:o})", dir.display()),
            ));
        }
        out
    })
}

pub fn database(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        let path = config.database_path();
        if !path.exists() {
            return vec![Finding::fail(
                "database",
                format!("{} does not exist (run `appliance --init`)", path.display()),
            )];
        }
        let mut out = match tokio::task::spawn_blocking(move || inspect_database(&path)).await {
            Ok(findings) => findings,
            Err(e) => vec![Finding::fail("database", format!("check crashed: {e}"))],
        };
        if let Some(user) = sysuser::service_user()
            && let Ok(meta) = std::fs::metadata(config.database_path())
            && !(user.can_read(&meta) && user.can_write(&meta))
        {
            out.push(Finding::fail(
                "database",
                format!(
                    "the service user {} cannot read and write {} (chown {}: it)",
                    user.name,
                    config.database_path().display(),
                    user.name
                ),
            ));
        }
        out
    })
}

fn inspect_database(path: &Path) -> Vec<Finding> {
    let shown = path.display();
    let conn = match Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) {
        Ok(conn) => conn,
        Err(e) => return vec![Finding::fail("database", format!("{shown}: {e}"))],
    };
    let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
    let integrity: Result<Vec<String>, _> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect());
    let mut out = Vec::new();
    match integrity {
        Ok(lines) if lines == ["ok"] => {}
        Ok(lines) => out.push(Finding::fail(
            "database",
            format!(
                "{shown}: integrity check failed: {} (restore a backup)",
                lines.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ),
        )),
        Err(e) => {
            out.push(Finding::fail("database", format!("{shown}: {e}")));
            return out;
        }
    }
    let version: i64 = match conn.pragma_query_value(None, "user_version", |r| r.get(0)) {
        Ok(v) => v,
        Err(e) => {
            out.push(Finding::fail("database", format!("{shown}: {e}")));
            return out;
        }
    };
    let latest = crate::db::migrate::latest_version();
    if version > latest {
        out.push(Finding::fail(
            "database",
            format!(
                "{shown}: schema version {version} is newer than this appliance supports ({latest})"
            ),
        ));
    } else if version < latest {
        out.push(Finding::warn(
            "database",
            format!("{shown}: schema version {version}; the service migrates it to {latest} at its next start"),
        ));
    } else if out.is_empty() {
        out.push(Finding::ok(
            "database",
            format!("{shown}: integrity ok, schema version {version}"),
        ));
    }
    out
}

pub fn tls(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        if config.server.plain_http {
            return vec![Finding::ok(
                "tls",
                "plain HTTP behind a reverse proxy: TLS is the proxy's job",
            )];
        }
        let cert = Path::new(&config.server.tls_cert);
        let key = Path::new(&config.server.tls_key);
        let mut out = Vec::new();
        if let Err(e) = tls::load_certified_key(cert, key) {
            return vec![Finding::fail("tls", e.to_string())];
        }
        let info = match tls::inspect_file(cert) {
            Ok(info) => info,
            Err(e) => return vec![Finding::fail("tls", e.to_string())],
        };
        let shown = cert.display();
        let now = time::OffsetDateTime::now_utc();
        let days = info.remaining().whole_days();
        if info.not_before > now {
            out.push(Finding::fail(
                "tls",
                format!("{shown} is not valid before {}", info.not_before.date()),
            ));
        }
        if info.not_after <= now {
            out.push(Finding::fail(
                "tls",
                format!("{shown} expired on {}", info.not_after.date()),
            ));
        } else if days < ctx.cert_warn_days {
            out.push(Finding::warn(
                "tls",
                format!(
                    "{shown} expires in {days} day(s), on {}",
                    info.not_after.date()
                ),
            ));
        }
        if let Some(host) = config
            .public_url()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
            && !info.covers(&host)
        {
            out.push(Finding::fail(
                "tls",
                format!(
                    "{shown} does not cover {host}, the host of server.public_url (it names {})",
                    info.names.join(", ")
                ),
            ));
        }
        if info.self_signed {
            let why = if config.acme.enabled {
                "a self-signed placeholder: ACME has not issued a certificate yet (see the service log)"
            } else {
                "self-signed: browsers and Flowlu will not trust it (fine for testing only)"
            };
            out.push(Finding::warn("tls", format!("{shown} is {why}")));
        }
        if let Some(user) = sysuser::service_user() {
            for file in [cert, key] {
                if let Ok(meta) = std::fs::metadata(file)
                    && !(user.can_read(&meta) && user.can_traverse_to(file))
                {
                    out.push(Finding::fail(
                        "tls",
                        format!(
                            "the service user {} cannot read {}",
                            user.name,
                            file.display()
                        ),
                    ));
                }
            }
        }
        if out.is_empty() {
            out.push(Finding::ok(
                "tls",
                format!(
                    "{shown} matches its key, valid until {} ({days} days)",
                    info.not_after.date()
                ),
            ));
        }
        out
    })
}

pub fn acme(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        if !config.acme.enabled {
            return Vec::new();
        }
        let domain = config.acme_domain().unwrap_or_default();
        vec![Finding::ok(
            "acme",
            format!(
                "{domain} via {} from {}, renewed {} days before expiry by the running service",
                config.acme.challenge, config.acme.directory_url, config.acme.renew_days
            ),
        )]
    })
}

pub fn pbx(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        let Some((settings, from)) = super::service::pbx_in_force(config) else {
            return vec![Finding::warn(
                "pbx",
                "no PBX configured ([pbx] type is empty, none saved on the settings page): \
                 calls cannot be tracked",
            )];
        };
        let allow_plain = config.pbx.allow_plain_login;
        match pbx::probe_with(&settings, ctx.pbx_timeout, allow_plain).await {
            ProbeResult::Ok(detail) => vec![Finding::ok("pbx", format!("{detail} ({from})"))],
            ProbeResult::Down(detail) => vec![Finding::fail("pbx", format!("{detail} ({from})"))],
            ProbeResult::AuthFailed(detail) => vec![Finding::fail(
                "pbx",
                format!("{detail} (check the user and secret in {from})"),
            )],
            ProbeResult::ChallengeRefused(detail) => vec![Finding::fail(
                "pbx",
                format!("challenge refused, the secret was not sent: {detail} ({from})"),
            )],
            ProbeResult::UnsupportedVersion(detail) => vec![Finding::fail(
                "pbx",
                format!("unsupported PBX version: {detail} ({from})"),
            )],
        }
    })
}

/// The PBX's call records (`[cdr]`, issue 14): readable, and their newest record.
pub fn cdr(ctx: &Context) -> CheckFuture<'_> {
    Box::pin(async move {
        let Some(config) = config_of(ctx).cloned() else {
            return Vec::new();
        };
        tokio::task::spawn_blocking(move || vec![cdr_finding(&config)])
            .await
            .unwrap_or_default()
    })
}

/// `appliance doctor`'s finding: the source can be read, and its newest record.
fn cdr_finding(config: &Config) -> Finding {
    use crate::cdr::Source;
    const CHECK: &str = "call records";
    let source = match Source::from_config(&config.cdr) {
        Ok(Some(source)) => source,
        Ok(None) => {
            return Finding::warn(
                CHECK,
                "[cdr] source is empty: calls made while the appliance is stopped or \
                 disconnected are not back-filled (README, \"Call history and back-fill\")",
            );
        }
        Err(e) => return Finding::fail(CHECK, e.to_string()),
    };
    // Its newest record, and rows no call can be made of (`cdr::detect::Survey`).
    match crate::cdr::detect::survey(&source) {
        Ok(survey) => {
            let detail = format!("{}: {}", source.describe(), survey.describe());
            if survey.newest.is_none() || survey.unusable > 0 {
                Finding::warn(CHECK, detail)
            } else {
                Finding::ok(CHECK, detail)
            }
        }
        Err(e) => Finding::fail(CHECK, format!("{}: {e}", source.describe())),
    }
}

/// The service user can read every configured recording directory that exists.
pub fn recordings(ctx: &Context) -> CheckFuture<'_> {
    use std::os::unix::fs::MetadataExt;
    Box::pin(async move {
        let Some(config) = config_of(ctx) else {
            return Vec::new();
        };
        let dirs = &config.recordings.dirs;
        if dirs.is_empty() {
            return vec![Finding::ok(
                "recordings",
                "recordings.dirs is empty: recordings are not published",
            )];
        }
        let existing: Vec<(&Path, std::fs::Metadata)> = dirs
            .iter()
            .map(Path::new)
            .filter_map(|d| std::fs::metadata(d).ok().map(|m| (d, m)))
            .collect();
        if existing.is_empty() {
            return vec![Finding::ok(
                "recordings",
                format!(
                    "none of recordings.dirs exists on this host ({})",
                    dirs.join(", ")
                ),
            )];
        }
        let user = sysuser::service_user();
        existing
            .into_iter()
            .map(|(dir, meta)| match &user {
                None => Finding::ok("recordings", format!("{} exists", dir.display())),
                Some(user) if readable(user, dir, &meta) => Finding::ok(
                    "recordings",
                    format!("the service user can read {}", dir.display()),
                ),
                Some(user) => Finding::warn(
                    "recordings",
                    format!(
                        "the service user {} cannot read {}: add it to the group that owns \
                         it (adduser {} {}) and restart the service",
                        user.name,
                        dir.display(),
                        user.name,
                        group_name(meta.gid()).unwrap_or_else(|| meta.gid().to_string())
                    ),
                ),
            })
            .collect()
    })
}

/// The name of group `gid`, from the group database.
fn group_name(gid: u32) -> Option<String> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == gid).then(|| name.to_string())
    })
}

fn readable(user: &SystemUser, path: &Path, meta: &std::fs::Metadata) -> bool {
    user.can_read(meta) && user.can_traverse_to(path)
}
