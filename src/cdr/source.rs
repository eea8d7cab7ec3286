//! Where call records come from (`[cdr] source`), and reading a period of them. Every
//! source is read-only and on this host; reads block (files, SQLite, the MySQL client)
//! and run on the blocking pool.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rusqlite::OpenFlags;

use super::mysql::MysqlOpts;
use super::{CdrError, Record, Row, asterisk, freeswitch, time_zone};
use crate::config::CdrConfig;

#[derive(Debug, Clone)]
pub enum Kind {
    Mysql(MysqlOpts),
    AsteriskCsv,
    AsteriskSqlite,
    FreeswitchCsv,
    FreeswitchXml,
    FreeswitchSqlite,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub kind: Kind,
    pub path: PathBuf,
    pub table: String,
    tz: jiff::tz::TimeZone,
}

/// A day either side of a period, for prefilters on local-time text and file times.
const SLACK_MS: i64 = 86_400_000;

impl Source {
    /// The configured source, `None` when `[cdr] source` is empty.
    pub fn from_config(c: &CdrConfig) -> Result<Option<Source>, CdrError> {
        let (kind, default) = match c.source.as_str() {
            "" => return Ok(None),
            "freepbx" => (Kind::Mysql(MysqlOpts::freepbx(c)), ""),
            "mysql" => (Kind::Mysql(MysqlOpts::from_config(c)), ""),
            "asterisk-csv" => (Kind::AsteriskCsv, "/var/log/asterisk/cdr-csv/Master.csv"),
            "asterisk-sqlite" => (Kind::AsteriskSqlite, "/var/log/asterisk/master.db"),
            "freeswitch-csv" => (
                Kind::FreeswitchCsv,
                "/var/log/freeswitch/cdr-csv/Master.csv",
            ),
            "freeswitch-xml" => (Kind::FreeswitchXml, "/var/log/freeswitch/xml_cdr"),
            "freeswitch-sqlite" => (Kind::FreeswitchSqlite, "/var/lib/freeswitch/db/cdr.db"),
            other => return Err(CdrError::Config(format!("unknown [cdr] source {other:?}"))),
        };
        let path = if c.path.is_empty() { default } else { &c.path };
        Ok(Some(Source {
            kind,
            path: PathBuf::from(path),
            table: c.table.clone(),
            tz: time_zone(&c.timezone).map_err(CdrError::Config)?,
        }))
    }

    /// What is read, for doctor, logs and the settings page (never a password).
    pub fn describe(&self) -> String {
        let p = self.path.display();
        match &self.kind {
            Kind::Mysql(o) => o.describe(),
            Kind::AsteriskCsv => format!("Asterisk cdr_csv {p}"),
            Kind::AsteriskSqlite => format!("Asterisk cdr_sqlite3_custom {p}"),
            Kind::FreeswitchCsv => format!("FreeSWITCH mod_cdr_csv {p}"),
            Kind::FreeswitchXml => format!("FreeSWITCH mod_xml_cdr {p}"),
            Kind::FreeswitchSqlite => format!("FreeSWITCH mod_cdr_sqlite {p}"),
        }
    }

    fn asterisk(&self) -> bool {
        matches!(
            self.kind,
            Kind::Mysql(_) | Kind::AsteriskCsv | Kind::AsteriskSqlite
        )
    }

    pub(super) fn record(&self, row: &Row) -> Option<Record> {
        if self.asterisk() {
            asterisk::record(row, &self.tz)
        } else {
            freeswitch::record(row, &self.tz)
        }
    }

    /// The records of calls that started in `[from_ms, to_ms)`.
    pub fn read(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Record>, CdrError> {
        let rows = self.rows(from_ms - SLACK_MS, to_ms + SLACK_MS)?;
        Ok(rows
            .iter()
            .filter_map(|r| self.record(r))
            .filter(|r| r.start >= from_ms && r.start < to_ms)
            .collect())
    }

    /// The newest record's start (unix ms), `None` when there is none.
    pub fn newest(&self) -> Result<Option<i64>, CdrError> {
        if let Kind::Mysql(o) = &self.kind {
            return o.newest();
        }
        let rows = self.rows(i64::MIN / 4, i64::MAX / 4)?;
        Ok(rows
            .iter()
            .filter_map(|r| self.record(r))
            .map(|r| r.start)
            .max())
    }

    pub(super) fn rows(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Row>, CdrError> {
        match &self.kind {
            Kind::Mysql(o) => o.rows(from_ms, to_ms),
            Kind::AsteriskCsv => csv_rows(&self.path, asterisk::csv_row),
            Kind::FreeswitchCsv => csv_rows(&self.path, freeswitch::csv_row),
            Kind::AsteriskSqlite => sqlite_rows(&self.path, &self.table),
            Kind::FreeswitchSqlite => sqlite_rows(&self.path, &self.table),
            Kind::FreeswitchXml => xml_rows(&self.path, from_ms),
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CdrError + '_ {
    move |source| CdrError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The CSV file and its rotated copies beside it (`Master.csv.1`, `Master.csv-20261123`;
/// compressed ones are skipped). A directory means its `Master.csv`.
fn csv_files(path: &Path) -> Result<Vec<PathBuf>, CdrError> {
    let file = if path.is_dir() {
        path.join("Master.csv")
    } else {
        path.to_path_buf()
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let n = entry.file_name().to_string_lossy().into_owned();
        let rotated = n.len() > name.len()
            && n.starts_with(name)
            && !n.ends_with(".gz")
            && !n.ends_with(".xz")
            && !n.ends_with(".bz2");
        if rotated {
            files.push(entry.path());
        }
    }
    if !file.exists() && files.is_empty() {
        return Err(io(&file)(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        )));
    }
    files.sort();
    if file.exists() {
        files.push(file);
    }
    Ok(files)
}

fn csv_rows(path: &Path, parse: fn(&str) -> Option<Row>) -> Result<Vec<Row>, CdrError> {
    let mut out = Vec::new();
    for file in csv_files(path)? {
        let f = std::fs::File::open(&file).map_err(io(&file))?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io(&file))?;
            if line.trim().is_empty() {
                continue;
            }
            match parse(&line) {
                Some(row) => out.push(row),
                None => log::debug!("{}: a line of an unknown layout skipped", file.display()),
            }
        }
    }
    Ok(out)
}

fn sqlite_rows(path: &Path, table: &str) -> Result<Vec<Row>, CdrError> {
    let err = |source| CdrError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{}\"", table.replace('"', "")))
        .map_err(err)?;
    let names: Vec<String> = stmt
        .column_names()
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    let rows = stmt
        .query_map([], |r| {
            let mut row = Row::default();
            for (i, name) in names.iter().enumerate() {
                let value = match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => String::new(),
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    rusqlite::types::ValueRef::Real(f) => f.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                };
                row.0.insert(name.clone(), value);
            }
            Ok(row)
        })
        .map_err(err)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(err)
}

/// `*.xml` files in the directory (and one level of subdirectories, for a dated
/// `log-dir`), modified since `from_ms` (a file is written when its leg ends).
fn xml_rows(dir: &Path, from_ms: i64) -> Result<Vec<Row>, CdrError> {
    let mut files = Vec::new();
    let mut dirs = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = dirs.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            let meta = entry.metadata().map_err(io(&path))?;
            if meta.is_dir() && depth < 1 {
                dirs.push((path, depth + 1));
            } else if meta.is_file() && path.extension().is_some_and(|e| e == "xml") {
                let modified = meta
                    .modified()
                    .ok()
                    .map(crate::calls::tracker::ms)
                    .unwrap_or(i64::MAX);
                if modified >= from_ms {
                    files.push(path);
                }
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(io(&file))?;
        match freeswitch::xml_row(&text) {
            Ok(row) => out.push(row),
            Err(why) => log::warn!("{}: not a mod_xml_cdr file: {why}", file.display()),
        }
    }
    Ok(out)
}
