//! What `--init` finds of the PBX's call records on this host, and reading a source once
//! to show it works (`--init`, `doctor`).
//!
//! Every path is looked up under a root (`/` in production, `--cdr-root` in tests), in
//! the order the richest records come first: FreePBX's database, Asterisk's `cdr_csv`
//! and `cdr_sqlite3_custom`, FreeSWITCH's `mod_xml_cdr` files (both legs, recordings),
//! `mod_cdr_csv` and `mod_cdr_sqlite`.

use std::path::{Path, PathBuf};

use super::{CdrError, Source, mysql};
use crate::config::{CdrConfig, Config, PbxType};

/// A source found on this host: the `[cdr]` keys that read it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `[cdr] source`.
    pub source: &'static str,
    /// `[cdr] path` (empty for the MySQL sources).
    pub path: String,
    /// `[cdr] timezone` the PBX's settings call for ("" when they say nothing).
    pub timezone: String,
    /// `[cdr] freepbx_conf` / `amportal_conf` (FreePBX).
    pub freepbx_conf: String,
    pub amportal_conf: String,
    /// What made it a candidate, for the admin.
    pub why: String,
}

impl Candidate {
    /// `[cdr]` as `--init` would write it: the defaults with this source's keys.
    pub fn config(&self) -> CdrConfig {
        let mut c = Config::defaults().cdr;
        c.source = self.source.to_string();
        c.path = self.path.clone();
        c.timezone = self.timezone.clone();
        if !self.freepbx_conf.is_empty() {
            c.freepbx_conf = self.freepbx_conf.clone();
            c.amportal_conf = self.amportal_conf.clone();
        }
        c
    }
}

/// One read of a source: how many rows it holds, how many name no call, the newest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    /// Rows read (`None` for MySQL, which is asked for its newest only).
    pub rows: Option<usize>,
    /// Rows no call can be made of (no `uniqueid`/`linkedid`, no start time).
    pub unusable: usize,
    /// The newest record's start (unix ms).
    pub newest: Option<i64>,
}

impl Survey {
    /// One line for the admin: the newest record, and what is wrong with the rest.
    pub fn describe(&self) -> String {
        let mut text = match self.newest {
            Some(ms) => format!(
                "newest record {}",
                crate::util::rfc3339(Some(ms)).as_str().unwrap_or("")
            ),
            None => "no records yet".to_string(),
        };
        if self.unusable > 0 {
            text.push_str(&format!(
                "; {} of {} rows name no call and are skipped (Asterisk cdr.conf [csv]: \
                 loguniqueid = yes or newcdrcolumns = yes)",
                self.unusable,
                self.rows.unwrap_or(0)
            ));
        }
        text
    }
}

/// Reads the whole source once.
pub fn survey(source: &Source) -> Result<Survey, CdrError> {
    if let super::source::Kind::Mysql(o) = &source.kind {
        return Ok(Survey {
            rows: None,
            unusable: 0,
            newest: o.newest()?,
        });
    }
    let rows = source.rows(i64::MIN / 4, i64::MAX / 4)?;
    let records: Vec<_> = rows.iter().filter_map(|r| source.record(r)).collect();
    Ok(Survey {
        rows: Some(rows.len()),
        unusable: rows.len() - records.len(),
        newest: records.iter().map(|r| r.start).max(),
    })
}

/// Reads `c` once: what it describes as, and the survey or why it cannot be read.
pub fn check(c: &CdrConfig) -> (String, Result<Survey, String>) {
    match Source::from_config(c) {
        Ok(Some(source)) => (
            source.describe(),
            survey(&source).map_err(|e| e.to_string()),
        ),
        Ok(None) => (String::new(), Err(CdrError::NotConfigured.to_string())),
        Err(e) => (c.source.clone(), Err(e.to_string())),
    }
}

fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Asterisk's `cdr.conf` `[csv]` `usegmtime` (the shipped file turns it on): its
/// Master.csv times are then UTC.
pub fn csv_uses_gmt(cdr_conf: &str) -> bool {
    let mut section = String::new();
    for raw in cdr_conf.lines() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix('[') {
            section = rest
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
        } else if section == "csv"
            && let Some((key, value)) = line.split_once('=')
            && key.trim().eq_ignore_ascii_case("usegmtime")
        {
            let value = value.trim_start_matches('>').trim().to_ascii_lowercase();
            return matches!(value.as_str(), "yes" | "true" | "y" | "t" | "1" | "on");
        }
    }
    false
}

/// The sources present under `root` for `pbx` (both PBXs' when `None`), richest first.
pub fn candidates(root: &Path, pbx: Option<PbxType>) -> Vec<Candidate> {
    let mut out = Vec::new();
    let found = |source: &'static str, path: PathBuf, why: String| Candidate {
        source,
        path: path.display().to_string(),
        timezone: String::new(),
        freepbx_conf: String::new(),
        amportal_conf: String::new(),
        why,
    };
    if pbx != Some(PbxType::Freeswitch) {
        let (freepbx, amportal) = (
            under(root, "/etc/freepbx.conf"),
            under(root, "/etc/amportal.conf"),
        );
        let names_user = |p: &Path| {
            std::fs::read_to_string(p).is_ok_and(|t| {
                mysql::parse_settings(&t)
                    .iter()
                    .any(|(k, _)| k == "AMPDBUSER")
            })
        };
        if let Some(file) = [&freepbx, &amportal].into_iter().find(|p| names_user(p)) {
            out.push(Candidate {
                path: String::new(),
                freepbx_conf: freepbx.display().to_string(),
                amportal_conf: amportal.display().to_string(),
                ..found(
                    "freepbx",
                    PathBuf::new(),
                    format!("FreePBX ({} names its database user)", file.display()),
                )
            });
        }
        let csv = under(root, "/var/log/asterisk/cdr-csv/Master.csv");
        if csv.is_file() {
            let gmt = std::fs::read_to_string(under(root, "/etc/asterisk/cdr.conf"))
                .is_ok_and(|t| csv_uses_gmt(&t));
            out.push(Candidate {
                timezone: if gmt { "UTC".into() } else { String::new() },
                ..found(
                    "asterisk-csv",
                    csv,
                    if gmt {
                        "Asterisk cdr_csv (cdr.conf: usegmtime = yes, times in UTC)".into()
                    } else {
                        "Asterisk cdr_csv (times in this host's zone)".into()
                    },
                )
            });
        }
        let db = under(root, "/var/log/asterisk/master.db");
        if db.is_file() {
            out.push(found(
                "asterisk-sqlite",
                db,
                "Asterisk cdr_sqlite3_custom".into(),
            ));
        }
    }
    if pbx != Some(PbxType::Asterisk) {
        // (source, where, what it is, a directory), the first of a source's places only.
        let places: &[(&'static str, &str, &str, bool)] = &[
            (
                "freeswitch-xml",
                "/var/log/freeswitch/xml_cdr",
                "mod_xml_cdr",
                true,
            ),
            (
                "freeswitch-csv",
                "/var/log/freeswitch/cdr-csv/Master.csv",
                "mod_cdr_csv",
                false,
            ),
            (
                "freeswitch-sqlite",
                "/var/lib/freeswitch/db/cdr.db",
                "mod_cdr_sqlite",
                false,
            ),
            (
                "freeswitch-sqlite",
                "/usr/local/freeswitch/db/cdr.db",
                "mod_cdr_sqlite",
                false,
            ),
        ];
        for (source, place, module, dir) in places {
            let path = under(root, place);
            let present = if *dir { path.is_dir() } else { path.is_file() };
            if present && !out.iter().any(|c: &Candidate| c.source == *source) {
                out.push(found(source, path, format!("FreeSWITCH {module}")));
            }
        }
    }
    out
}

/// A source `--init` proposes, with what one read of it showed.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub candidate: Candidate,
    pub describe: String,
    pub read: Result<Survey, String>,
}

impl Proposal {
    /// One line: what it is, and its newest record or why it cannot be read.
    pub fn line(&self) -> String {
        match &self.read {
            Ok(s) => format!("{}: {}", self.describe, s.describe()),
            Err(e) => format!("{}: cannot be read: {e}", self.candidate.source),
        }
    }
}

/// Every candidate under `root`, each read once (a MySQL one connects).
pub fn propose(root: &Path, pbx: Option<PbxType>) -> Vec<Proposal> {
    candidates(root, pbx)
        .into_iter()
        .map(|candidate| {
            let (describe, read) = check(&candidate.config());
            Proposal {
                candidate,
                describe,
                read,
            }
        })
        .collect()
}

/// The source `--init` writes: `wanted` ("auto": the first that can be read; a source
/// name: that one, found or at its usual place; "none": nothing).
pub fn choose(proposals: &[Proposal], wanted: &str, root: &Path) -> Option<Proposal> {
    match wanted {
        "none" => None,
        "auto" | "" => proposals.iter().find(|p| p.read.is_ok()).cloned(),
        source => proposals
            .iter()
            .find(|p| p.candidate.source == source)
            .cloned()
            .or_else(|| {
                let source = crate::config::CDR_SOURCES
                    .iter()
                    .copied()
                    .find(|s| *s == source)?;
                let freepbx = |p: &str| match source {
                    "freepbx" => under(root, p).display().to_string(),
                    _ => String::new(),
                };
                let candidate = Candidate {
                    source,
                    path: String::new(),
                    timezone: String::new(),
                    freepbx_conf: freepbx("/etc/freepbx.conf"),
                    amportal_conf: freepbx("/etc/amportal.conf"),
                    why: "asked for (--cdr)".into(),
                };
                // A file source at its usual place (under `root`).
                let mut candidate = candidate;
                if let Ok(Some(usual)) = Source::from_config(&candidate.config())
                    && !matches!(usual.kind, super::source::Kind::Mysql(_))
                {
                    candidate.path = under(root, &usual.path.display().to_string())
                        .display()
                        .to_string();
                }
                let (describe, read) = check(&candidate.config());
                Some(Proposal {
                    candidate,
                    describe,
                    read,
                })
            }),
    }
}
