//! `[cdr]`: where the PBX keeps its own call records (CDR), read to back-fill the calls
//! the appliance did not see and to import history (`crate::cdr`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Sources, parse_duration};
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdrConfig {
    /// "" (none), "freepbx", "mysql", "asterisk-csv", "asterisk-sqlite", "freeswitch-csv",
    /// "freeswitch-xml" or "freeswitch-sqlite".
    pub source: String,
    /// The file (CSV, SQLite) or directory (CSV, XML files); "" for the source's default.
    pub path: String,
    /// The time zone the PBX writes local times in ("" for this host's, or "UTC").
    pub timezone: String,
    /// How far before the last event the appliance saw a back-fill starts reading.
    pub margin: String,
    /// The longest gap back-filled after an outage (older calls: `history import`).
    pub max_gap: String,
    pub mysql_host: String,
    pub mysql_port: u16,
    /// A Unix socket instead of host and port.
    pub mysql_socket: String,
    pub mysql_user: String,
    pub mysql_password: Secret,
    pub mysql_database: String,
    /// The CDR table (MySQL, SQLite).
    pub table: String,
    /// FreePBX's files naming its database user (read when `source = "freepbx"`).
    pub freepbx_conf: String,
    pub amportal_conf: String,
}

/// The sources `[cdr] source` may name.
pub const CDR_SOURCES: &[&str] = &[
    "freepbx",
    "mysql",
    "asterisk-csv",
    "asterisk-sqlite",
    "freeswitch-csv",
    "freeswitch-xml",
    "freeswitch-sqlite",
];

impl CdrConfig {
    pub fn margin(&self) -> Duration {
        parse_duration(&self.margin).expect("validated")
    }

    pub fn max_gap(&self) -> Duration {
        parse_duration(&self.max_gap).expect("validated")
    }

    pub fn enabled(&self) -> bool {
        !self.source.is_empty()
    }
}

impl Config {
    pub(super) fn validate_cdr(&self, sources: &Sources) -> Result<(), ConfigError> {
        let c = &self.cdr;
        let bad = |key: &str, message: String| Err(sources.error(key, message));
        if !c.source.is_empty() && !CDR_SOURCES.contains(&c.source.as_str()) {
            return bad(
                "cdr.source",
                format!(
                    "{:?} is not one of {} (or empty)",
                    c.source,
                    CDR_SOURCES.join(", ")
                ),
            );
        }
        for (key, value) in [("cdr.margin", &c.margin), ("cdr.max_gap", &c.max_gap)] {
            if let Err(why) = parse_duration(value) {
                return bad(key, why);
            }
        }
        if !c.timezone.is_empty() && crate::util::time_zone(&c.timezone).is_err() {
            return bad(
                "cdr.timezone",
                format!(
                    "{:?} is not a known time zone (e.g. UTC, Europe/Moscow)",
                    c.timezone
                ),
            );
        }
        if !c
            .table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || c.table.is_empty()
        {
            return bad(
                "cdr.table",
                "must be a plain table name (letters, digits, _)".into(),
            );
        }
        if !c
            .mysql_database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return bad(
                "cdr.mysql_database",
                "must be a plain database name (letters, digits, _)".into(),
            );
        }
        Ok(())
    }
}
