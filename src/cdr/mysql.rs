//! Asterisk CDR tables in MySQL/MariaDB: FreePBX's `asteriskcdrdb.cdr` (its database
//! user read from `/etc/freepbx.conf` or `/etc/amportal.conf`) or any `cdr_adaptive_odbc`
//! / `cdr_mysql` table with Asterisk's column names. Read-only, through the blocking
//! `mysql` client (pure Rust, without TLS: links statically), from the blocking pool.

use std::path::Path;
use std::time::Duration;

use mysql::prelude::Queryable;

use super::{CdrError, Row};
use crate::config::CdrConfig;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct MysqlOpts {
    pub host: String,
    pub port: u16,
    pub socket: String,
    pub user: String,
    pub password: Secret,
    pub database: String,
    pub table: String,
}

impl MysqlOpts {
    pub fn from_config(c: &CdrConfig) -> MysqlOpts {
        MysqlOpts {
            host: c.mysql_host.clone(),
            port: c.mysql_port,
            socket: c.mysql_socket.clone(),
            user: c.mysql_user.clone(),
            password: c.mysql_password.clone(),
            database: c.mysql_database.clone(),
            table: c.table.clone(),
        }
    }

    /// FreePBX's database user from `freepbx_conf` (PHP: `$amp_conf['AMPDBUSER'] =
    /// '...';`) or else `amportal_conf` (`AMPDBUSER=...`), over `[cdr]`'s own keys.
    pub fn freepbx(c: &CdrConfig) -> MysqlOpts {
        let mut o = MysqlOpts::from_config(c);
        let keys = read_settings(Path::new(&c.freepbx_conf))
            .or_else(|| read_settings(Path::new(&c.amportal_conf)))
            .unwrap_or_default();
        let get = |k: &str| {
            keys.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("AMPDBUSER") {
            o.user = v;
        }
        if let Some(v) = get("AMPDBPASS") {
            o.password = Secret::new(v);
        }
        if let Some(v) = get("AMPDBHOST") {
            o.host = v;
        }
        if let Some(v) = get("AMPDBPORT").and_then(|p| p.parse().ok()) {
            o.port = v;
        }
        if let Some(v) = get("AMPDBSOCK") {
            o.socket = v;
        }
        if let Some(v) = get("CDRDBNAME") {
            o.database = v;
        }
        if let Some(v) = get("CDRDBTABLENAME") {
            o.table = v;
        }
        o
    }

    /// Where it connects, for doctor and logs (never the password).
    pub fn describe(&self) -> String {
        let at = if self.socket.is_empty() {
            format!("{}:{}", self.host, self.port)
        } else {
            self.socket.clone()
        };
        format!(
            "MySQL {}.{} at {at} as {:?}",
            self.database, self.table, self.user
        )
    }

    fn connect(&self) -> Result<mysql::Conn, CdrError> {
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !plain(&self.database) || !plain(&self.table) || self.table.is_empty() {
            return Err(CdrError::Config(
                "the CDR database and table must be plain names".into(),
            ));
        }
        let timeout = Some(Duration::from_secs(10));
        let mut b = mysql::OptsBuilder::new()
            .user(Some(self.user.clone()))
            .pass(Some(self.password.expose().to_string()))
            .db_name((!self.database.is_empty()).then(|| self.database.clone()))
            .tcp_connect_timeout(timeout)
            .read_timeout(timeout)
            .prefer_socket(false);
        b = if self.socket.is_empty() {
            b.ip_or_hostname(Some(self.host.clone()))
                .tcp_port(self.port)
        } else {
            b.socket(Some(self.socket.clone()))
        };
        mysql::Conn::new(b).map_err(|e| CdrError::Mysql(e.to_string()))
    }

    /// The rows that started in `[from_ms, to_ms)`, oldest first, with the start as the
    /// server converts it (`calldate_epoch`: its time zone, as Asterisk wrote it).
    pub fn rows(&self, from_ms: i64, to_ms: i64) -> Result<Vec<Row>, CdrError> {
        let mut conn = self.connect()?;
        // Integers and checked names only: nothing here comes from a request.
        let sql = format!(
            "SELECT *, UNIX_TIMESTAMP(calldate) AS calldate_epoch FROM `{}`
             WHERE calldate >= FROM_UNIXTIME({}) AND calldate < FROM_UNIXTIME({})
             ORDER BY calldate",
            self.table,
            from_ms.div_euclid(1000),
            to_ms.div_euclid(1000).max(0) + 1
        );
        let result = conn
            .query_iter(sql)
            .map_err(|e| CdrError::Mysql(e.to_string()))?;
        let mut out = Vec::new();
        for row in result {
            let row = row.map_err(|e| CdrError::Mysql(e.to_string()))?;
            let names: Vec<String> = row
                .columns_ref()
                .iter()
                .map(|c| c.name_str().to_ascii_lowercase())
                .collect();
            let values = row.unwrap();
            out.push(Row(names
                .into_iter()
                .zip(values.into_iter().map(text))
                .collect()));
        }
        Ok(out)
    }

    /// The newest record's start (unix ms), if any.
    pub fn newest(&self) -> Result<Option<i64>, CdrError> {
        let mut conn = self.connect()?;
        let sql = format!("SELECT UNIX_TIMESTAMP(MAX(calldate)) FROM `{}`", self.table);
        let v: Option<Option<i64>> = conn
            .query_first(sql)
            .map_err(|e| CdrError::Mysql(e.to_string()))?;
        Ok(v.flatten().map(|s| s * 1000))
    }
}

fn text(v: mysql::Value) -> String {
    match v {
        mysql::Value::NULL => String::new(),
        mysql::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
        mysql::Value::Int(i) => i.to_string(),
        mysql::Value::UInt(i) => i.to_string(),
        other => mysql::from_value_opt::<String>(other).unwrap_or_default(),
    }
}

/// `KEY=value` (amportal.conf) or `$amp_conf['KEY'] = 'value';` (freepbx.conf) lines.
pub fn parse_settings(text: &str) -> Vec<(String, String)> {
    let unquote = |v: &str| {
        let v = v.trim().trim_end_matches(';').trim();
        v.trim_matches(|c| c == '\'' || c == '"').to_string()
    };
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with("//") {
                return None;
            }
            if let Some(rest) = line.strip_prefix("$amp_conf[") {
                let (key, value) = rest.split_once(']')?;
                let value = value.trim().strip_prefix('=')?;
                return Some((unquote(key), unquote(value)));
            }
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            (!key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
                .then(|| (key.to_string(), unquote(value)))
        })
        .collect()
}

fn read_settings(path: &Path) -> Option<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).ok()?;
    let keys = parse_settings(&text);
    keys.iter().any(|(k, _)| k == "AMPDBUSER").then_some(keys)
}
