//! `appliance accounts list|admit|revoke|pbx-owner|claim-code`: which Flowlu accounts
//! this appliance serves (`flowlu::admission`). Works on the database directly, also
//! while the service runs (SQLite WAL); changes apply to the next settings page opened.
//!
//! Exit codes: 0 done (also "was already admitted"), 1 the database failed or the
//! account named is not admitted, 2 bad usage (not a Flowlu account address).

use std::process::ExitCode;

use clap::Subcommand;

use super::{Cli, fail};
use crate::db::{Db, DbError};
use crate::flowlu::admission;

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// List the admitted accounts, earliest first, and which one owns the PBX.
    List,
    /// Admit a Flowlu account, e.g. company.flowlu.com: its admins may then open the
    /// settings page.
    Admit {
        #[arg(value_name = "DOMAIN")]
        domain: String,
    },
    /// Withdraw an account's admission: its settings page is refused, its channel is
    /// forgotten (Flowlu can no longer reach us for it) and its OAuth tokens deleted.
    /// Its settings and extension mapping are kept for a later `admit`.
    Revoke {
        #[arg(value_name = "DOMAIN")]
        domain: String,
    },
    /// Make an admitted account the owner of the PBX connection (the only one whose
    /// admins see and change it on the settings page).
    PbxOwner {
        #[arg(value_name = "DOMAIN")]
        domain: String,
    },
    /// Print a new one-time claim code (valid 24 hours, replaces any pending one): the
    /// first admin types it into the settings page to admit their account.
    ClaimCode,
}

pub fn run(cli: &Cli, command: &AccountsCommand) -> ExitCode {
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => return fail(2, e),
    };
    let domain = match command {
        AccountsCommand::Admit { domain }
        | AccountsCommand::Revoke { domain }
        | AccountsCommand::PbxOwner { domain } => {
            match admission::normalize(&config.flowlu, domain) {
                Ok(domain) => Some(domain),
                Err(e) => return fail(2, e),
            }
        }
        AccountsCommand::List | AccountsCommand::ClaimCode => None,
    };
    let db = match Db::open(&config.database_path()) {
        Ok(db) => db,
        Err(e) => return fail(1, e),
    };
    let domain = domain.unwrap_or_default();
    let result = db.with_conn(|c| -> Result<ExitCode, DbError> {
        Ok(match command {
            AccountsCommand::List => {
                let list = admission::list(c)?;
                let owner = admission::pbx_owner(c, true)?;
                if list.is_empty() {
                    println!(
                        "No Flowlu account is admitted yet: run `appliance accounts admit \
                         <company.flowlu.com>` or `appliance accounts claim-code`."
                    );
                }
                for a in list {
                    let mark = if owner.as_deref() == Some(a.domain.as_str()) {
                        "  (owns the PBX)"
                    } else {
                        ""
                    };
                    println!(
                        "{}\tadmitted {} ({}){mark}",
                        a.domain,
                        utc(a.admitted_at),
                        a.source
                    );
                }
                ExitCode::SUCCESS
            }
            AccountsCommand::Admit { .. } => {
                if admission::admit(c, &domain, "cli")? {
                    println!("{domain} admitted: its admins can now open the settings in Flowlu");
                } else {
                    println!("{domain} was already admitted");
                }
                ExitCode::SUCCESS
            }
            AccountsCommand::Revoke { .. } => match admission::revoke(c, &domain)? {
                Some(cut) => {
                    println!(
                        "{domain} revoked ({cut} integration(s) disconnected, their tokens deleted)"
                    );
                    ExitCode::SUCCESS
                }
                None => fail(1, format!("{domain} is not admitted")),
            },
            AccountsCommand::PbxOwner { .. } => {
                if admission::set_pbx_owner(c, &domain)? {
                    println!("{domain} now owns the PBX connection");
                    ExitCode::SUCCESS
                } else {
                    fail(
                        1,
                        format!("{domain} is not admitted: run `appliance accounts admit {domain}` first"),
                    )
                }
            }
            AccountsCommand::ClaimCode => {
                let code = admission::new_claim_code(c)?;
                println!("{}", claim_code_text(&code));
                ExitCode::SUCCESS
            }
        })
    });
    result.unwrap_or_else(|e| fail(1, e))
}

/// How a claim code is shown to the operator (`--init` and `accounts claim-code`).
pub fn claim_code_text(code: &str) -> String {
    format!(
        "Claim code:    {code}  (valid {} hours, once: the first Flowlu admin to open the \
         settings types it to admit their account)",
        admission::CLAIM_CODE_TTL_SECS / 3600
    )
}

fn utc(secs: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}
