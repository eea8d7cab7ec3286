//! `appliance outbox list|show|retry|purge`: look at and repair event delivery from the
//! shell. Works while the service runs (SQLite WAL); re-queued events are picked up by
//! the running worker within seconds.

use std::process::ExitCode;

use clap::Subcommand;

use super::{Cli, fail};
use crate::config::parse_duration;
use crate::db::{Db, DbError};
use crate::outbox::{self, State};

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List events, newest first.
    List {
        /// Only events in this state: pending, delivered or failed.
        #[arg(long)]
        state: Option<String>,
        /// Only events of this integration (account) id.
        #[arg(long)]
        integration: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one event: its body and every delivery attempt.
    Show { id: i64 },
    /// Send failed events again from the start of the retry schedule.
    Retry {
        /// Event ids to retry.
        ids: Vec<i64>,
        /// Retry every failed event (of --integration, when given).
        #[arg(long, conflicts_with = "ids")]
        all_failed: bool,
        #[arg(long)]
        integration: Option<i64>,
    },
    /// Delete delivered (and, with --failed, failed) events finished before a cut-off.
    /// Pending events are never deleted.
    Purge {
        /// e.g. 30d, 12h.
        #[arg(long, value_name = "DURATION")]
        older_than: String,
        /// Delete failed events too.
        #[arg(long)]
        failed: bool,
    },
}

pub fn run(cli: &Cli, command: &OutboxCommand) -> ExitCode {
    let db = match super::open_db(cli) {
        Ok(db) => db,
        Err(code) => return code,
    };
    match execute(&db, command) {
        Ok(code) => code,
        Err(e) => fail(1, e),
    }
}

fn execute(db: &Db, command: &OutboxCommand) -> Result<ExitCode, DbError> {
    db.with_conn(|c| match command {
        OutboxCommand::List {
            state,
            integration,
            limit,
        } => {
            let state = match state.as_deref().map(|s| (s, State::parse(s))) {
                None => None,
                Some((_, Some(state))) => Some(state),
                Some((s, None)) => {
                    return Ok(fail(
                        2,
                        format!("unknown state {s:?}: use pending, delivered or failed"),
                    ));
                }
            };
            let rows = outbox::list(c, state, *integration, *limit)?;
            println!(
                "{:>8}  {:>5}  {:<16}  {:<10}  {:>3}  {:<20}  {:<24}  last result",
                "id", "acct", "event", "state", "try", "created", "call"
            );
            for r in rows {
                println!(
                    "{:>8}  {:>5}  {:<16}  {:<10}  {:>3}  {:<20}  {:<24}  {}",
                    r.id,
                    r.integration_id,
                    r.kind,
                    r.state.as_str(),
                    r.attempts,
                    fmt_ms(r.created_at),
                    r.call_key,
                    r.last_error.as_deref().unwrap_or(match r.last_status {
                        Some(_) => "ok",
                        None => "-",
                    })
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Show { id } => {
            let Some((row, payload, attempts)) = outbox::show(c, *id)? else {
                return Ok(fail(1, format!("no outbox event with id {id}")));
            };
            println!("id:         {}", row.id);
            println!("event:      {} ({})", row.kind, row.event_id);
            println!("account:    {}", row.integration_id);
            println!("call:       {}", row.call_key);
            println!("state:      {}", row.state.as_str());
            println!("created:    {}", fmt_ms(row.created_at));
            if row.state == State::Pending {
                println!("next try:   {}", fmt_ms(row.next_attempt_at));
            }
            println!("body:       {payload}");
            for a in attempts {
                println!(
                    "attempt {:>2}: {} {:>5} ms  {}  {}",
                    a.attempt,
                    fmt_ms(a.started_at),
                    a.duration_ms,
                    a.status.map_or("-".into(), |s| s.to_string()),
                    a.error.or(a.response_body).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Retry {
            ids,
            all_failed,
            integration,
        } => {
            if ids.is_empty() && !all_failed {
                return Ok(fail(2, "name event ids to retry, or pass --all-failed"));
            }
            let n = outbox::replay(c, ids, *integration)?;
            println!("{n} event(s) queued for delivery again");
            if !ids.is_empty() && n < ids.len() {
                return Ok(fail(
                    1,
                    format!("{} of the given ids are not failed events", ids.len() - n),
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
        OutboxCommand::Purge { older_than, failed } => {
            let age = match parse_duration(older_than) {
                Ok(age) => age,
                Err(why) => return Ok(fail(2, format!("--older-than: {why}"))),
            };
            let before = outbox::now_ms() - age.as_millis() as i64;
            let n = outbox::purge(c, before, *failed)?;
            println!("{n} event(s) deleted");
            Ok(ExitCode::SUCCESS)
        }
    })
}

/// Unix milliseconds as `2026-11-23 12:00:00` UTC.
fn fmt_ms(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ms / 1000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}
