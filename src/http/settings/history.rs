//! The settings page's call history card (issue 14): "Import calls of the last N days"
//! (1, 7 or 30), run in the background with the CLI's own import
//! ([`crate::cdr::import::run`]), its progress, and the last back-fill and import.
//!
//! - Only the account that owns the PBX connection ([`admission::pbx_owner`]) may start
//!   one; others see the last runs only.
//! - One import at a time per appliance ([`Imports`], in [`crate::app::AppState`]): it
//!   runs while the PBX's records are read and until every call it queued is sent (or
//!   given up, see the delivery log). A second start meanwhile says it is running.
//! - Progress is "N of M calls sent": a call counts once none of its events waits in the
//!   outbox ([`crate::outbox::calls_sent`]). The page refreshes itself while an
//!   import runs (`history-status`, a form like the others; `settings.js` submits it
//!   every few seconds while nothing else on the page was touched).

use std::sync::Mutex;

use hyper::StatusCode;
use serde::Serialize;

use super::actions::{Fields, Outcome, field};
use super::view::{Notice, t, utc};
use crate::app::State;
use crate::cdr::store::{self as cdr_store, Run};
use crate::db::DbError;
use crate::flowlu::admission;
use crate::flowlu::pbx_settings;
use crate::flowlu::store::Integration;
use crate::http::HttpError;

/// The periods the page offers, in days.
pub const DAYS: &[u32] = &[1, 7, 30];

/// The appliance's import job (at most one).
#[derive(Default)]
pub struct Imports {
    job: Mutex<Option<Job>>,
}

#[derive(Debug, Clone)]
struct Job {
    /// Tells one start from the next (a start replaces the job only if it is unchanged).
    generation: u64,
    days: u32,
    phase: Phase,
}

#[derive(Debug, Clone)]
enum Phase {
    /// Reading the PBX's records and queueing the calls.
    Reading,
    /// `calls` (integration id, call id) are queued; the outbox sends them. Calls of
    /// no account (`unassigned`) have no events.
    Queued {
        found: usize,
        calls: Vec<(i64, String)>,
        unassigned: u64,
    },
    Failed(String),
}

impl Imports {
    fn get(&self) -> Option<Job> {
        self.job.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the job when it is still `seen` (by generation); false if another start
    /// came first.
    fn replace_if(&self, seen: Option<u64>, days: u32) -> Option<u64> {
        let mut job = self.job.lock().unwrap_or_else(|e| e.into_inner());
        if job.as_ref().map(|j| j.generation) != seen {
            return None;
        }
        let generation = seen.map_or(1, |g| g + 1);
        *job = Some(Job {
            generation,
            days,
            phase: Phase::Reading,
        });
        Some(generation)
    }

    fn finish(&self, generation: u64, phase: Phase) {
        let mut job = self.job.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(j) = job.as_mut().filter(|j| j.generation == generation) {
            j.phase = phase;
        }
    }
}

/// The job as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub days: u32,
    pub running: bool,
    pub reading: bool,
    pub found: usize,
    pub sent: u64,
    pub total: u64,
    pub error: Option<String>,
}

/// One past back-fill or import.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub when: String,
    pub found: i64,
    pub reported: i64,
    pub corrected: i64,
    pub error: Option<String>,
}

/// What the card shows.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    /// `[cdr] source` is set.
    pub configured: bool,
    /// This account owns the PBX connection.
    pub may_start: bool,
    pub days: &'static [u32],
    pub job: Option<JobView>,
    pub last_import: Option<RunView>,
    pub last_backfill: Option<RunView>,
}

fn run_view(r: Run, owner: bool) -> RunView {
    RunView {
        when: utc(r.finished_at.unwrap_or(r.started_at)),
        found: r.found,
        reported: r.reported,
        corrected: r.corrected,
        error: r
            .error
            .filter(|_| owner)
            .map(|e| crate::redact::redact_text(&e)),
    }
}

/// The job with its progress read from the outbox.
async fn job_view(state: &State) -> Result<Option<JobView>, DbError> {
    let Some(job) = state.settings_live.history.get() else {
        return Ok(None);
    };
    let mut view = JobView {
        days: job.days,
        running: false,
        reading: false,
        found: 0,
        sent: 0,
        total: 0,
        error: None,
    };
    match job.phase {
        Phase::Reading => (view.running, view.reading) = (true, true),
        Phase::Failed(e) => view.error = Some(e),
        Phase::Queued {
            found,
            calls,
            unassigned,
        } => {
            view.found = found;
            view.total = calls.len() as u64 + unassigned;
            view.sent = unassigned
                + state
                    .db
                    .run(move |c| Ok::<_, DbError>(crate::outbox::calls_sent(c, &calls)?))
                    .await?;
            view.running = view.sent < view.total;
        }
    }
    Ok(Some(view))
}

/// Whether `integration`'s account owns the PBX connection.
async fn owns_pbx(state: &State, integration: &Integration) -> Result<bool, DbError> {
    let domain = integration.domain.clone();
    let config_pbx = state.config.pbx.kind().is_some();
    state
        .db
        .run(move |c| {
            let configured = config_pbx || pbx_settings::load(c)?.is_some();
            Ok(admission::is_admitted(c, &domain)?
                && admission::pbx_owner(c, configured)?.as_deref() == Some(domain.as_str()))
        })
        .await
}

pub async fn view(state: &State, integration: &Integration) -> Result<HistoryView, DbError> {
    let owner = owns_pbx(state, integration).await?;
    let (last_import, last_backfill) = state
        .db
        .run(|c| {
            Ok::<_, DbError>((
                cdr_store::last_run(c, "import")?,
                cdr_store::last_run(c, "backfill")?,
            ))
        })
        .await?;
    let mut job = job_view(state).await?;
    if !owner && let Some(j) = job.as_mut() {
        j.error = None;
    }
    Ok(HistoryView {
        configured: state.config.cdr.enabled(),
        may_start: owner,
        days: DAYS,
        job,
        last_import: last_import.map(|r| run_view(r, owner)),
        last_backfill: last_backfill.map(|r| run_view(r, owner)),
    })
}

/// The progress as a notice.
fn progress_notice(lang: &str, job: &JobView) -> Notice {
    let text = if job.reading {
        t(lang, "history_reading")
    } else if let Some(e) = &job.error {
        format!("{}: {e}", t(lang, "history_failed"))
    } else if job.total == 0 {
        t(lang, "history_nothing_new")
    } else {
        t(lang, "history_progress")
            .replace("{sent}", &job.sent.to_string())
            .replace("{total}", &job.total.to_string())
    };
    Notice {
        text,
        error: job.error.is_some(),
    }
}

/// `history-import`: starts an import of the last `days` days.
pub async fn start(
    state: &State,
    integration: &Integration,
    lang: &'static str,
    fields: &Fields,
) -> Result<Outcome, HttpError> {
    let Some(days) = field(fields, "days")
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| DAYS.contains(d))
    else {
        return Ok(Outcome::invalid(lang, t(lang, "history_bad_days")));
    };
    if !state.config.cdr.enabled() {
        return Ok(Outcome::invalid(lang, t(lang, "history_not_configured")));
    }
    if !owns_pbx(state, integration).await? {
        log::warn!(
            "integration {}: refused a history import: it does not own the PBX",
            integration.id
        );
        return Ok(Outcome::forbidden(lang, "history_not_owner"));
    }
    let seen = state.settings_live.history.get().map(|j| j.generation);
    let running = job_view(state).await?.filter(|j| j.running);
    let generation = match running {
        Some(_) => None,
        None => state.settings_live.history.replace_if(seen, days),
    };
    let Some(generation) = generation else {
        let job = job_view(state).await?;
        let progress = job.as_ref().map(|j| progress_notice(lang, j).text);
        return Ok(Outcome {
            notice: Notice {
                text: format!(
                    "{} {}",
                    t(lang, "history_running"),
                    progress.unwrap_or_default()
                ),
                error: true,
            },
            status: StatusCode::CONFLICT,
            pbx_form: None,
        });
    };
    log::info!(
        "integration {}: history import of the last {days} day(s) started from the settings page",
        integration.id
    );
    let state = state.clone();
    tokio::spawn(async move {
        let config = state.config.clone();
        let since = i64::from(days) * 86_400_000;
        let now = crate::outbox::now_ms();
        let result = state
            .db
            .run(move |c| crate::cdr::import::run(c, &config, since, now, false))
            .await;
        let phase = match result {
            Ok((plan, written)) => {
                log::info!(
                    "history import: {} call(s) in the PBX's records, {} queued for Flowlu",
                    plan.found,
                    plan.new.len()
                );
                // The account of each new call, as it was written.
                let new: std::collections::BTreeSet<&str> =
                    plan.new.iter().map(|c| c.id.as_str()).collect();
                let calls: std::collections::BTreeSet<(i64, String)> = written
                    .iter()
                    .filter(|w| new.contains(w.call.id.as_str()))
                    .filter_map(|w| Some((w.call.integration_id?, w.call.id.clone())))
                    .collect();
                let unassigned = (new.len() - calls.len()) as u64;
                crate::engine::after_recorded(&state.engine_deps(), written);
                Phase::Queued {
                    found: plan.found,
                    calls: calls.into_iter().collect(),
                    unassigned,
                }
            }
            Err(e) => {
                log::warn!("history import failed: {e}");
                Phase::Failed(crate::redact::redact_text(&e.to_string()))
            }
        };
        state.settings_live.history.finish(generation, phase);
    });
    Ok(Outcome::ok(lang, "history_started"))
}

/// `history-status`: the page again, with the import's progress on top of its card.
pub async fn status(state: &State, lang: &'static str) -> Result<Outcome, HttpError> {
    let job = job_view(state).await?;
    Ok(match job {
        Some(j) => Outcome {
            notice: progress_notice(lang, &j),
            status: StatusCode::OK,
            pbx_form: None,
        },
        None => Outcome::ok(lang, "history_none"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_replaces_the_job_it_saw_only() {
        let imports = Imports::default();
        let first = imports.replace_if(None, 7).unwrap();
        assert_eq!(
            imports.replace_if(None, 7),
            None,
            "another start came first"
        );
        imports.finish(first, Phase::Failed("x".into()));
        let second = imports.replace_if(Some(first), 30).unwrap();
        imports.finish(first, Phase::Failed("stale".into()));
        let job = imports.get().unwrap();
        assert_eq!((job.generation, job.days), (second, 30));
        assert!(
            matches!(job.phase, Phase::Reading),
            "a stale finish is ignored"
        );
    }
}
