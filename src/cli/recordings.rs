//! `appliance recordings revoke`: withdraw recording links already sent to Flowlu (a
//! link otherwise works as long as its file is kept, or until `[recordings] url_ttl`).
//! Works while the service runs; a revoked URL answers 404 at once.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Cli, fail};
use crate::recordings::store;

#[derive(Debug, Subcommand)]
pub enum RecordingsCommand {
    /// Revoke the recording links of the given calls (or of every call with --all).
    Revoke {
        /// Call ids (as in calls.list and the call events' call_id).
        #[arg(value_name = "CALL_ID", required_unless_present = "all")]
        calls: Vec<String>,
        /// Revoke every recording link.
        #[arg(long, conflicts_with = "calls")]
        all: bool,
    },
}

pub fn run(cli: &Cli, command: &RecordingsCommand) -> ExitCode {
    let db = match super::open_db(cli) {
        Ok(db) => db,
        Err(code) => return code,
    };
    let RecordingsCommand::Revoke { calls, all } = command;
    let revoked = db.with_conn(|c| {
        if *all {
            return Ok::<_, crate::db::DbError>(store::revoke(c, None)?);
        }
        let mut n = 0;
        for call in calls {
            n += store::revoke(c, Some(call))?;
        }
        Ok(n)
    });
    match revoked {
        Ok(n) => {
            println!("{n} recording link(s) revoked");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}
