//! Back-fill: after every start and PBX reconnect, the calls of the gap.
//!
//! The gap runs from the last time the appliance saw the PBX alive ([`store::last_seen`],
//! noted by the engine through [`Seen`]) less `[cdr] margin` (never further back than
//! `[cdr] max_gap`) to the moment the connection was back. Each call in the PBX's records
//! of that gap is, by its PBX ids ([`store::known`]):
//! - unknown: reported as a new call, marked back-filled, with the events a live call
//!   gets (`call.init`, `call.connected` when answered, `call.completed`), its result
//!   callback and its recording, in one transaction with its call row;
//! - a call the appliance closed blindly at the outage (its cause says so): corrected
//!   with the real end, talk time and outcome, and reported again with `call.state` (and
//!   to the result callbacks, [`super::correct`]);
//! - any other known call: left alone (never reported twice).
//!
//! Calls that ended after the reconnect were seen live and are left to the tracker.

use std::sync::Mutex;

use rusqlite::Connection;

use super::group::{Group, classify, group};
use super::store::{self, Run};
use super::{CdrError, Source};
use crate::calls::tracker::{Emit, Rules, Update};
use crate::calls::{Call, CallState, CallStatus};
use crate::engine::{Batch, Deps};
use crate::util::now_ms;

/// The tracker's words for a call it closed without seeing its end (`tracker::legs`;
/// the cause may lead with a code, `0 ended while…`).
const BLIND_CLOSE: &[&str] = &[
    "ended while the PBX connection was down",
    "ended while the appliance was not connected to the PBX",
];

/// One run's plan: new calls to report and known calls to correct.
#[derive(Debug, Default)]
pub struct Plan {
    pub found: usize,
    pub new: Vec<Call>,
    pub corrected: Vec<Call>,
}

impl Plan {
    /// The updates to write: a new call gets a live call's events, a correction
    /// `call.state`.
    pub fn updates(self) -> Vec<Update> {
        let new = self.new.into_iter().map(|call| {
            let mut emit = vec![Emit::Init];
            if call.status == Some(CallStatus::Answered) {
                emit.push(Emit::Connected);
            }
            emit.push(Emit::Completed);
            Update { call, emit }
        });
        let fixed = self.corrected.into_iter().map(|call| Update {
            call,
            emit: vec![Emit::State],
        });
        new.chain(fixed).collect()
    }
}

/// Decides what to do with each call of `groups` (see the module docs); groups that
/// ended after `until` are left to the live tracker.
pub fn plan(
    conn: &Connection,
    groups: &[Group],
    rules: &Rules,
    until: i64,
) -> rusqlite::Result<Plan> {
    let mut plan = Plan::default();
    for g in groups.iter().filter(|g| g.end() <= until) {
        let Some(call) = classify(g, rules) else {
            continue;
        };
        plan.found += 1;
        match store::known(conn, &g.ids())? {
            None => plan.new.push(call),
            Some(mut known)
                if known.state == CallState::Ended
                    && !known.backfilled
                    && known
                        .hangup_cause
                        .as_deref()
                        .is_some_and(|c| BLIND_CLOSE.iter().any(|b| c.contains(b))) =>
            {
                known.answered_at = call.answered_at.or(known.answered_at);
                known.ended_at = call.ended_at;
                known.duration = call.duration;
                known.wait = call.wait;
                known.status = call.status;
                known.hangup_cause = call.hangup_cause;
                known.recording_path = known.recording_path.or(call.recording_path);
                known.backfilled = true;
                plan.corrected.push(known);
            }
            Some(_) => {}
        }
    }
    Ok(plan)
}

/// One back-fill or import at a time in this process: planning and writing must not
/// interleave with another run's, or one call could be reported by both.
static RUNNING: Mutex<()> = Mutex::new(());

/// Reads `[from, to)` from the source, and reports and corrects what [`plan`] says,
/// recording the run. Blocking. `dry_run`: decides and returns the plan, writes nothing.
pub fn apply(
    conn: &mut Connection,
    source: &Source,
    rules: &Rules,
    kind: &str,
    (from, to): (i64, i64),
    dry_run: bool,
) -> Result<(Plan, Vec<crate::engine::Recorded>), CdrError> {
    let records = source.read(from, to)?;
    let groups = group(records);
    let _one = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
    let plan = plan(conn, &groups, rules, to)?;
    if dry_run {
        return Ok((plan, Vec::new()));
    }
    // Before the write: a crash between the two resends, never loses, a correction.
    super::correct::enqueue(conn, &plan.corrected)?;
    let now = now_ms();
    let id = store::start_run(conn, kind, from, to, now)?;
    let mut run = Run {
        kind: kind.into(),
        started_at: now,
        finished_at: None,
        from_ms: from,
        to_ms: to,
        found: plan.found as i64,
        reported: plan.new.len() as i64,
        corrected: plan.corrected.len() as i64,
        error: None,
    };
    let summary = Plan {
        found: plan.found,
        new: plan.new.clone(),
        corrected: plan.corrected.clone(),
    };
    let written = crate::engine::write_recorded(conn, plan.updates(), rules);
    if let Err(e) = &written {
        run.error = Some(e.to_string());
        (run.reported, run.corrected) = (0, 0);
    }
    store::finish_run(conn, id, &run, now_ms())?;
    let written = written.map_err(|e| CdrError::Config(e.to_string()))?;
    Ok((summary, written))
}

/// Notes that the PBX is alive, in the database at most every [`Seen::EVERY_MS`]. From a
/// start or a disconnect until the next resync the gap is open: nothing is noted, so the
/// back-fill that follows the resync still reads from the last time the PBX was seen.
#[derive(Debug, Default)]
pub struct Seen {
    written: i64,
    /// Between a resync and the next disconnect.
    live: bool,
}

impl Seen {
    const EVERY_MS: i64 = 30_000;

    /// An event batch came in at `now` (`gone`: the connection just ended; `resynced`:
    /// the PBX's channels were just read again, and the back-fill is taking the gap).
    pub async fn note(&mut self, deps: &Deps, now: i64, gone: bool, resynced: bool) {
        if !deps.config.cdr.enabled() {
            return;
        }
        if resynced {
            self.live = true;
            self.written = now;
            return;
        }
        if !self.live || (!gone && now - self.written < Self::EVERY_MS) {
            return;
        }
        self.live &= !gone;
        self.written = now;
        if let Err(e) = deps
            .db
            .run(move |c| store::set_seen(c, now).map_err(crate::db::DbError::from))
            .await
        {
            log::warn!("back-fill: cannot note the PBX as seen: {e}");
        }
    }
}

/// The engine's side of the back-fill: notes the PBX alive, and after a resync reads
/// the gap's records.
impl crate::engine::Backfill for Seen {
    fn batch<'a>(&'a mut self, deps: &'a Deps, b: Batch) -> crate::engine::BatchFuture<'a> {
        Box::pin(async move {
            self.note(deps, b.at, b.gone, b.resynced).await;
            if b.resynced {
                spawn_after_resync(deps, b.at);
            }
        })
    }
}

/// After a resync at `until`: back-fills the gap in the background.
pub fn spawn_after_resync(deps: &Deps, until: i64) {
    if !deps.config.cdr.enabled() {
        return;
    }
    let deps = deps.clone();
    tokio::spawn(async move {
        if let Err(e) = run_gap(&deps, until).await {
            log::warn!("back-fill: {e}");
        }
    });
}

async fn run_gap(deps: &Deps, until: i64) -> Result<(), CdrError> {
    let Some(source) = Source::from_config(&deps.config.cdr)? else {
        return Ok(());
    };
    let cdr = deps.config.cdr.clone();
    let rules = Rules::new(&deps.config.calls);
    let outcome = deps
        .db
        .run(move |conn| {
            let Some(seen) = store::last_seen(conn)? else {
                return Ok(None); // a new install: nothing was missed yet
            };
            let from = (seen - cdr.margin().as_millis() as i64)
                .max(until - cdr.max_gap().as_millis() as i64);
            apply(conn, &source, &rules, "backfill", (from, until), false).map(Some)
        })
        .await?;
    if let Some((plan, written)) = outcome {
        log::info!(
            "back-fill: {} call(s) in the PBX's records of the gap, {} reported, {} corrected",
            plan.found,
            plan.new.len(),
            plan.corrected.len()
        );
        crate::engine::after_recorded(deps, written);
    }
    Ok(())
}
