//! A throwaway MariaDB server for the CDR tests (Debian's `mariadb-server`): its own data
//! directory, Unix socket and loopback port in a temp dir, FreePBX's `asteriskcdrdb.cdr`
//! table, and a read-only user for the appliance. Killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance::cdr::Row;
use mysql::prelude::Queryable;

/// FreePBX 16's `asteriskcdrdb.cdr`, column for column (its installer's `cdr.sql`).
const FREEPBX_CDR: &str = "CREATE TABLE `cdr` (
  `calldate` datetime NOT NULL DEFAULT '0000-00-00 00:00:00',
  `clid` varchar(80) NOT NULL DEFAULT '',
  `src` varchar(80) NOT NULL DEFAULT '',
  `dst` varchar(80) NOT NULL DEFAULT '',
  `dcontext` varchar(80) NOT NULL DEFAULT '',
  `channel` varchar(80) NOT NULL DEFAULT '',
  `dstchannel` varchar(80) NOT NULL DEFAULT '',
  `lastapp` varchar(80) NOT NULL DEFAULT '',
  `lastdata` varchar(80) NOT NULL DEFAULT '',
  `duration` int(11) NOT NULL DEFAULT '0',
  `billsec` int(11) NOT NULL DEFAULT '0',
  `disposition` varchar(45) NOT NULL DEFAULT '',
  `amaflags` int(11) NOT NULL DEFAULT '0',
  `accountcode` varchar(20) NOT NULL DEFAULT '',
  `uniqueid` varchar(32) NOT NULL DEFAULT '',
  `userfield` varchar(255) NOT NULL DEFAULT '',
  `did` varchar(50) NOT NULL DEFAULT '',
  `recordingfile` varchar(255) NOT NULL DEFAULT '',
  `cnum` varchar(80) NOT NULL DEFAULT '',
  `cnam` varchar(80) NOT NULL DEFAULT '',
  `outbound_cnum` varchar(80) NOT NULL DEFAULT '',
  `outbound_cnam` varchar(80) NOT NULL DEFAULT '',
  `dst_cnam` varchar(80) NOT NULL DEFAULT '',
  `linkedid` varchar(32) NOT NULL DEFAULT '',
  `peeraccount` varchar(80) NOT NULL DEFAULT '',
  `sequence` int(11) NOT NULL DEFAULT '0',
  KEY `calldate` (`calldate`),
  KEY `dst` (`dst`),
  KEY `accountcode` (`accountcode`),
  KEY `uniqueid` (`uniqueid`),
  KEY `did` (`did`),
  KEY `recordingfile` (`recordingfile`(191)),
  KEY `linkedid` (`linkedid`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// The appliance's user: `SELECT` on the CDR database only.
pub const USER: &str = "appliance_cdr";
pub const PASSWORD: &str = "cdr-test-Secret-7";

pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn found(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

impl MariaDb {
    /// A running server, or `None` (the test then skips, saying why) when Debian's
    /// `mariadb-server` is not installed and `CI` is unset; under `CI` that is a failure.
    pub fn start() -> Option<MariaDb> {
        let (Some(install), Some(server)) = (found("mariadb-install-db"), found("mariadbd")) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but mariadb-install-db / mariadbd are missing: install mariadb-server"
            );
            eprintln!(
                "SKIPPED: the real MariaDB test needs Debian's mariadb-server \
                 (mariadb-install-db, mariadbd); .ci/run installs it"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // Its own temp dir: the server's temporary files in a shared /tmp can collide
        // with another test's server (and are removed by whoever cleans /tmp).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let out = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(server)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .arg(format!("--port={port}"))
            // Local times as Asterisk writes them with usegmtime: UTC, whatever the host's.
            .args([
                "--bind-address=127.0.0.1",
                "--user=root",
                "--default-time-zone=+00:00",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut db = MariaDb { dir, port, child };
        db.wait_ready();
        db.setup();
        Some(db)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Polls the socket until the server answers (deadline 60 s: a loaded machine).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let err = match mysql::Conn::new(self.root_opts()) {
                Ok(_) => return,
                Err(e) => e,
            };
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("mariadbd exited ({status}): {err}; its log: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "MariaDB did not accept connections within 60 s: {err}; its log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn socket(&self) -> String {
        self.dir.path().join("sock").display().to_string()
    }

    fn root_opts(&self) -> mysql::OptsBuilder {
        mysql::OptsBuilder::new()
            .user(Some("root"))
            .socket(Some(self.socket()))
    }

    fn root(&self) -> mysql::Conn {
        mysql::Conn::new(self.root_opts()).unwrap()
    }

    fn setup(&self) {
        let mut c = self.root();
        c.query_drop("CREATE DATABASE asteriskcdrdb").unwrap();
        c.query_drop("USE asteriskcdrdb").unwrap();
        c.query_drop(FREEPBX_CDR).unwrap();
        for host in ["localhost", "127.0.0.1"] {
            c.query_drop(format!(
                "CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{PASSWORD}'"
            ))
            .unwrap();
            c.query_drop(format!(
                "GRANT SELECT ON asteriskcdrdb.* TO '{USER}'@'{host}'"
            ))
            .unwrap();
        }
    }

    /// Inserts rows made from a transcript's `Event: Cdr` blocks as Asterisk's
    /// `cdr_adaptive_odbc` writes them into FreePBX's table: the start as `calldate`,
    /// `amaflags` as its number.
    pub fn insert(&self, rows: &[Row]) {
        let mut c = self.root();
        c.query_drop("USE asteriskcdrdb").unwrap();
        let text = [
            "clid",
            "src",
            "dst",
            "dcontext",
            "channel",
            "dstchannel",
            "lastapp",
            "lastdata",
            "disposition",
            "accountcode",
            "uniqueid",
            "userfield",
            "recordingfile",
            "linkedid",
            "peeraccount",
        ];
        for row in rows {
            let amaflags = match row.get(&["amaflags"]) {
                "OMIT" => 1,
                "BILLING" => 2,
                "DOCUMENTATION" => 3,
                _ => 0,
            };
            let mut params: Vec<mysql::Value> = vec![row.get(&["start"]).into()];
            params.extend(text.iter().map(|k| mysql::Value::from(row.get(&[k]))));
            for k in ["duration", "billsec", "sequence"] {
                params.push(row.int(&[k]).unwrap_or(0).into());
            }
            params.push(amaflags.into());
            c.exec_drop(
                format!(
                    "INSERT INTO cdr (calldate, {}, duration, billsec, sequence, amaflags)
                     VALUES ({})",
                    text.join(", "),
                    vec!["?"; params.len()].join(", ")
                ),
                params,
            )
            .unwrap();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
