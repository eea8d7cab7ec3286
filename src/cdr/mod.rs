//! The PBX's own call records (CDR): no call is ever missing.
//!
//! Every PBX keeps a durable record of each call. After every start and PBX reconnect the
//! appliance reads the records of the gap ([`backfill`]) and reports each call it never
//! saw, through the same call record, Flowlu events and outbox as live calls; a call it
//! did see but had to close blindly at the outage gets its real end and talk time. `appliance
//! history import` ([`import`]) reports a period's calls Flowlu does not have yet.
//!
//! - [`source`]: where records come from ([`Source`], from `[cdr]`) and reading a period;
//!   [`asterisk`] and [`freeswitch`]: each PBX's row layouts as its modules write them;
//!   [`mysql`]: FreePBX's `asteriskcdrdb.cdr` and any Asterisk CDR table in MySQL/MariaDB.
//! - [`group`]: rows → one call per real call (Asterisk `linkedid`/`uniqueid`, FreeSWITCH
//!   call UUIDs), classified with the live tracker's own rules
//!   (`calls::tracker::Rules::{role, placed_by}`, `calls::tracker::from_dial`).
//! - [`correct`]: a back-fill's corrections reach the result callbacks (the pending
//!   `call.completed` rewritten, else a `call.corrected` delivery).
//! - [`detect`]: the sources `--init` finds on this host, and one read of a source to
//!   show it works (its newest record, rows that name no call).
//! - [`store`]: the back-fill bookkeeping (last PBX event seen, past runs) and matching
//!   records to calls already stored.

pub mod asterisk;
pub mod backfill;
pub mod correct;
pub mod detect;
pub mod fixtures;
pub mod freeswitch;
pub mod group;
pub mod import;
pub mod mysql;
pub mod source;
pub mod store;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use source::Source;

/// Why records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    #[error("no call record source is configured ([cdr] source)")]
    NotConfigured,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    #[error("SQLite {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("MySQL: {0}")]
    Mysql(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

impl From<rusqlite::Error> for CdrError {
    fn from(e: rusqlite::Error) -> Self {
        CdrError::Db(e.into())
    }
}

/// One CDR row with its columns by lowercase name, values as text (as every backend
/// writes them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row(pub HashMap<String, String>);

impl Row {
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> Row {
        Row(pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect())
    }

    /// The value of the first of `names` that is present and not empty.
    pub fn get(&self, names: &[&str]) -> &str {
        names
            .iter()
            .find_map(|n| self.0.get(*n).map(String::as_str).filter(|v| !v.is_empty()))
            .unwrap_or("")
    }

    pub fn int(&self, names: &[&str]) -> Option<i64> {
        let v = self.get(names);
        v.parse::<i64>()
            .ok()
            .or_else(|| v.parse::<f64>().ok().map(|f| f as i64))
    }
}

/// One party of a record, as the live tracker would have seen its channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Party {
    pub channel: crate::pbx::Channel,
    /// When this party answered (unix ms).
    pub answered_at: Option<i64>,
    /// How its dial attempt ended, when it did not answer.
    pub dial: Option<crate::pbx::DialStatus>,
    pub hangup_cause: String,
}

/// One record, normalized: one PBX leg (FreeSWITCH) or one pair of legs (Asterisk).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The ids that tie the rows of one call together; the first is the PBX's id for
    /// the call (`calls.pbx_call`: Asterisk `linkedid`, else `uniqueid`; FreeSWITCH the
    /// call UUID, else the leg's UUID).
    pub links: Vec<String>,
    pub start: i64,
    pub end: i64,
    /// The party that placed this leg (Asterisk: the channel; FreeSWITCH: an inbound leg).
    pub caller: Option<Party>,
    /// The party it reached (Asterisk: the destination channel; FreeSWITCH: an outbound
    /// leg).
    pub callee: Option<Party>,
    /// What the caller dialled (`dst`, `destination_number`).
    pub dialled: String,
    /// When the backend keeps no `dst`: the number the caller's Dial() rang (Asterisk
    /// `lastdata`), what an employee dialled.
    pub dial_target: String,
    /// The DID, when the backend keeps one apart (FreePBX `did`).
    pub did: String,
    pub recording: Option<String>,
    /// One leg's own record (FreeSWITCH): when no other leg of the call is logged
    /// (`legs = a`), its answer is the call's.
    pub single_leg: bool,
}

/// The non-empty ids among `ids`, each once, in order; `None` when there is none.
pub fn links(ids: &[&str]) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        if !id.is_empty() && !out.iter().any(|l| l == id) {
            out.push(id.to_string());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A time zone by name (`crate::util`'s: `config` checks `[cdr] timezone` with it too).
pub use crate::util::time_zone;

/// `2026-11-23 06:46:08` (also with `T`, fractions, or `%20`/`%3A` escapes as FreeSWITCH
/// URL-encodes them) in `tz` as unix milliseconds; `None` for an empty or zero time.
pub fn local_ms(text: &str, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let text = text.trim().replace("%20", " ").replace("%3A", ":");
    if text.is_empty() || text.starts_with("0000") {
        return None;
    }
    let civil: jiff::civil::DateTime = text.replace(' ', "T").parse().ok()?;
    let zoned = civil.to_zoned(tz.clone()).ok()?;
    Some(zoned.timestamp().as_millisecond())
}

/// Seconds (or microseconds, when `micros`) since the epoch as unix ms; `None` for 0.
pub fn epoch_ms(text: &str, micros: bool) -> Option<i64> {
    let n: i64 = text.trim().parse().ok()?;
    (n > 0).then(|| if micros { n / 1000 } else { n * 1000 })
}
