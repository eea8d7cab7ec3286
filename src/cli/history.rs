//! `appliance history import --since 7d [--dry-run]`: reports a period's calls from the
//! PBX's records that Flowlu does not have yet (`crate::cdr::import`), then follows
//! their delivery (the running service's outbox sends them at Flowlu's rate limit) with
//! a progress bar. Re-running it sends nothing twice.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Subcommand;

use super::{Cli, fail};
use crate::config::parse_duration;
use crate::db::Db;

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Report the calls of the last DURATION (e.g. 7d, 12h) that Flowlu does not have.
    Import {
        #[arg(long, value_name = "DURATION")]
        since: String,
        /// Print what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Queue the calls and return without following their delivery.
        #[arg(long)]
        no_wait: bool,
    },
}

/// How long the progress bar waits for the service to deliver before giving up.
const FOLLOW_FOR: Duration = Duration::from_secs(6 * 3600);

pub fn run(cli: &Cli, command: &HistoryCommand) -> ExitCode {
    let HistoryCommand::Import {
        since,
        dry_run,
        no_wait,
    } = command;
    let since = match parse_duration(since) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => return fail(2, "--since must be longer than 0"),
        Err(e) => return fail(2, format!("--since: {e}")),
    };
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(e) => return fail(2, e),
    };
    if !config.cdr.enabled() {
        return fail(2, crate::cdr::CdrError::NotConfigured);
    }
    let db = match Db::open(&config.database_path()) {
        Ok(db) => db,
        Err(e) => return fail(1, e),
    };
    let now = crate::util::now_ms();
    let imported = db.with_conn(|c| {
        crate::cdr::import::run(c, &config, since.as_millis() as i64, now, *dry_run)
    });
    let (plan, _) = match imported {
        Ok(done) => done,
        Err(e) => return fail(1, e),
    };
    let rfc = |ms: i64| crate::util::rfc3339(Some(ms));
    if *dry_run {
        for c in &plan.new {
            println!(
                "would send {} {} {} {} {} talk {}s{}",
                rfc(c.started_at).as_str().unwrap_or(""),
                c.direction.as_str(),
                c.phone,
                c.extension.as_deref().unwrap_or("-"),
                c.status.map_or("", |s| s.as_str()),
                c.duration.unwrap_or(0),
                if c.recording_path.is_some() {
                    " (recorded)"
                } else {
                    ""
                }
            );
        }
        println!(
            "{} call(s) in the PBX's records, {} Flowlu does not have yet (dry run: nothing sent)",
            plan.found,
            plan.new.len()
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{} call(s) in the PBX's records, {} queued for Flowlu",
        plan.found,
        plan.new.len()
    );
    if *no_wait || plan.new.is_empty() {
        return ExitCode::SUCCESS;
    }
    let ids: Vec<String> = plan.new.iter().map(|c| c.id.clone()).collect();
    follow(&db, &ids)
}

/// A progress bar over the imported calls' events until all are delivered (or failed).
fn follow(db: &Db, ids: &[String]) -> ExitCode {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last = (u64::MAX, 0);
    loop {
        let (done, all) = match db
            .with_conn(|c| crate::cdr::import::progress(c, ids).map_err(crate::db::DbError::from))
        {
            Ok(p) => p,
            Err(e) => return fail(1, e),
        };
        if (done, all) != last {
            const WIDTH: usize = 30;
            let filled = if all == 0 {
                WIDTH
            } else {
                (done as usize * WIDTH / all as usize).min(WIDTH)
            };
            let bar = format!(
                "[{}{}] {done}/{all} events delivered",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled)
            );
            if tty {
                print!("\r{bar}");
                let _ = std::io::stdout().flush();
            } else {
                println!("{bar}");
            }
            last = (done, all);
        }
        if done >= all {
            if tty {
                println!();
            }
            return ExitCode::SUCCESS;
        }
        if started.elapsed() > FOLLOW_FOR {
            println!();
            return fail(1, "delivery is not finished: see `appliance outbox list`");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
