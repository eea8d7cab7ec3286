//! `appliance doctor`: a list of independent checks, each printing one or more lines
//! `OK`/`WARN`/`FAIL` with a detail, and a non-zero exit when anything failed.
//!
//! Owns the report format and the order of checks. A check reads; it never changes a
//! file, the database or the PBX. To add one: write `fn name(ctx: &Context) ->
//! CheckFuture<'_>` (in `checks.rs` or a new file) and list it in [`CHECKS`].

mod checks;
mod listener;
mod service;

pub use service::pbx_in_force;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{Config, ConfigError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub status: Status,
    /// Short name of the check, e.g. `database`.
    pub check: &'static str,
    /// What was found, naming files and keys; never a secret.
    pub detail: String,
}

impl Finding {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Ok,
            check,
            detail: detail.into(),
        }
    }

    pub fn warn(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Warn,
            ..Finding::ok(check, detail)
        }
    }

    pub fn fail(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            status: Status::Fail,
            ..Finding::ok(check, detail)
        }
    }
}

/// What every check may look at.
pub struct Context {
    pub config_path: PathBuf,
    /// The merged configuration, or why it could not be loaded (then the checks that
    /// need it report nothing: the `config` check has already failed).
    pub config: Result<Config, ConfigError>,
    /// How long the PBX login test may take.
    pub pbx_timeout: Duration,
    /// Days before expiry a certificate is reported as WARN.
    pub cert_warn_days: i64,
}

impl Context {
    pub fn new(config_path: PathBuf, config: Result<Config, ConfigError>) -> Context {
        Context {
            config_path,
            config,
            pbx_timeout: Duration::from_secs(5),
            cert_warn_days: 14,
        }
    }
}

pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Vec<Finding>> + Send + 'a>>;
pub type Check = for<'a> fn(&'a Context) -> CheckFuture<'a>;

/// Every check, in report order.
pub const CHECKS: &[Check] = &[
    checks::config,
    checks::config_file,
    checks::data_dir,
    checks::database,
    checks::tls,
    checks::acme,
    checks::pbx,
    checks::recordings,
    checks::cdr,
    listener::service,
    service::flowlu,
];

/// Runs every check in [`CHECKS`] order.
pub async fn run(ctx: &Context) -> Vec<Finding> {
    let mut findings = Vec::new();
    for check in CHECKS {
        findings.extend(check(ctx).await);
    }
    findings
}

/// The printed report: one aligned line per finding and a summary line.
pub fn report(findings: &[Finding]) -> String {
    let width = findings.iter().map(|f| f.check.len()).max().unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            f.status, f.check, f.detail
        ));
    }
    let count = |s: Status| findings.iter().filter(|f| f.status == s).count();
    out.push_str(&format!(
        "doctor: {} OK, {} WARN, {} FAIL\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}

/// The worst status found (OK when there were no findings).
pub fn worst(findings: &[Finding]) -> Status {
    findings
        .iter()
        .map(|f| f.status)
        .max()
        .unwrap_or(Status::Ok)
}
