//! Back-fill from a real MariaDB server with FreePBX's `asteriskcdrdb.cdr` table
//! (`tests/it/mariadb.rs`), through the Unix socket (`source = "mysql"`) and loopback
//! TCP with the credentials read from a `/etc/freepbx.conf` (`source = "freepbx"`).

use std::sync::Arc;

use appliance::cdr::Row;
use appliance::secret::Secret;

use crate::cdr_backfill::reported_once_at_start;
use crate::mariadb::{MariaDb, PASSWORD, USER};

fn common(c: &mut appliance::Config) {
    c.cdr.timezone = "UTC".into();
    c.cdr.max_gap = "36500d".into();
    c.cdr.mysql_database = "asteriskcdrdb".into();
    c.cdr.table = "cdr".into();
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_calls_are_back_filled_from_mariadb_over_its_socket() {
    let Some(db) = MariaDb::start() else { return };
    let socket = db.socket();
    let write = |rows: &[Row]| db.insert(rows);
    let source = Arc::new(move |c: &mut appliance::Config| {
        common(c);
        c.cdr.source = "mysql".into();
        c.cdr.mysql_socket = socket.clone();
        c.cdr.mysql_user = USER.into();
        c.cdr.mysql_password = Secret::new(PASSWORD);
    });
    reported_once_at_start(write, source).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freepbx_source_reads_its_database_user_from_freepbx_conf_over_tcp() {
    let Some(db) = MariaDb::start() else { return };
    // What FreePBX's installer writes, with this server's loopback port.
    let conf = db.dir.path().join("freepbx.conf");
    std::fs::write(
        &conf,
        format!(
            "<?php\n$amp_conf['AMPDBUSER'] = '{USER}';\n$amp_conf['AMPDBPASS'] = '{PASSWORD}';\n\
             $amp_conf['AMPDBHOST'] = '127.0.0.1';\n$amp_conf['AMPDBPORT'] = '{}';\n\
             $amp_conf['AMPDBNAME'] = 'asterisk';\n$amp_conf['AMPDBENGINE'] = 'mysql';\n\
             $amp_conf['datasource'] = '';\n\
             require_once('/var/www/html/admin/bootstrap.php');\n?>\n",
            db.port
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let missing = db.dir.path().join("amportal.conf").display().to_string();
    let write = |rows: &[Row]| db.insert(rows);
    let source = Arc::new(move |c: &mut appliance::Config| {
        common(c);
        c.cdr.source = "freepbx".into();
        // Nothing in [cdr] itself: user, password, host and port come from the file.
        c.cdr.mysql_socket = String::new();
        c.cdr.mysql_user = "nobody".into();
        c.cdr.mysql_password = Secret::new("wrong");
        c.cdr.freepbx_conf = conf.clone();
        c.cdr.amportal_conf = missing.clone();
    });
    reported_once_at_start(write, source).await;
}
