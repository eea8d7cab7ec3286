//! `--init` finds the PBX's call records (issue 14): files laid out as the PBX modules
//! write them under a temp root (`--cdr-root`, never the host's own /etc or /var/log),
//! reads the proposed source once to show its newest record, and writes `[cdr]`.

use std::path::Path;

use appliance::cdr::Row;
use appliance::cdr::fixtures::{
    asterisk_columns, asterisk_csv_line, asterisk_rows, freeswitch_rows, xml_file,
};

use crate::mariadb::{MariaDb, PASSWORD, USER};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Writes `text` at `path` under `root`, making its directories.
fn put(root: &Path, path: &str, text: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

fn master_csv(scenarios: &[&str], columns: &[&str]) -> String {
    scenarios
        .iter()
        .flat_map(|s| asterisk_rows(&fixture(&format!("asterisk/{s}.txt"))))
        .map(|r| asterisk_csv_line(&r, columns))
        .collect()
}

/// `--init` for `pbx` with the call records under `root`, which must succeed; (stdout,
/// `[cdr]`).
fn init(dir: &Path, root: &Path, pbx: &str, extra: &[&str]) -> (String, toml::Table) {
    let out = std::process::Command::new(crate::smoke::BIN)
        .args(["--init", "--non-interactive", "--plain-http"])
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(dir.join("config.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args([
            "--pbx",
            pbx,
            "--pbx-port",
            "1",
            "--pbx-optional",
            "--cdr-root",
        ])
        .arg(root)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let code = out.status.code().unwrap_or(-1);
    assert_eq!(code, 0, "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    (stdout, config["cdr"].as_table().unwrap().clone())
}

/// [`init`] into a directory of its own: (stdout, `[cdr]`).
fn init_fresh(root: &Path, pbx: &str, extra: &[&str]) -> (String, toml::Table) {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), root, pbx, extra)
}

fn key<'a>(cdr: &'a toml::Table, key: &str) -> &'a str {
    cdr[key].as_str().unwrap()
}

#[test]
fn an_asterisk_master_csv_is_proposed_with_the_zone_cdr_conf_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    put(
        &root,
        "var/log/asterisk/cdr-csv/Master.csv",
        &master_csv(
            &["sip-inbound-answered", "sip-agent-to-agent"],
            &asterisk_columns(true),
        ),
    );
    // The shipped cdr.conf: [csv] usegmtime=yes, so Master.csv's times are UTC.
    put(
        &root,
        "etc/asterisk/cdr.conf",
        "[general]\n;enable=yes\n\n[csv]\nusegmtime=yes    ; log date/time in GMT.  Default is \"no\"\n\
         loguniqueid=yes  ; log uniqueid.  Default is \"no\"\n",
    );
    let (out, cdr) = init(dir.path(), &root, "asterisk", &[]);
    assert_eq!(key(&cdr, "source"), "asterisk-csv");
    let csv = root.join("var/log/asterisk/cdr-csv/Master.csv");
    assert_eq!(key(&cdr, "path"), csv.display().to_string());
    assert_eq!(key(&cdr, "timezone"), "UTC");
    assert!(
        out.contains(&format!(
            "Call records:  Asterisk cdr_csv {}: newest record 2026-11-23T06:48:50Z",
            csv.display()
        )),
        "the newest of the two calls, read back: {out}"
    );

    // Without usegmtime the host's zone stays; `--cdr none` writes no source.
    std::fs::remove_file(root.join("etc/asterisk/cdr.conf")).unwrap();
    let (_, cdr) = init_fresh(&root, "asterisk", &[]);
    assert_eq!(key(&cdr, "timezone"), "");
    let (out, cdr) = init_fresh(&root, "asterisk", &["--cdr", "none"]);
    assert_eq!(key(&cdr, "source"), "");
    assert!(
        out.contains("Call records:  not read (--cdr none)"),
        "{out}"
    );
}

#[test]
fn rows_that_name_no_call_are_pointed_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // cdr.conf [csv] with loguniqueid off and no newcdrcolumns: 16 columns, no ids.
    let csv = master_csv(
        &["sip-inbound-answered"],
        &appliance::cdr::asterisk::CSV_DEFAULT[..16],
    );
    put(&root, "var/log/asterisk/cdr-csv/Master.csv", &csv);
    let (out, cdr) = init(dir.path(), &root, "asterisk", &[]);
    assert_eq!(key(&cdr, "source"), "asterisk-csv");
    assert!(
        out.contains("no records yet; 2 of 2 rows name no call")
            && out.contains("loguniqueid = yes"),
        "{out}"
    );
}

#[test]
fn freeswitch_xml_cdr_files_come_before_its_master_csv() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let rows: Vec<Row> = freeswitch_rows(&fixture("freeswitch/sip-inbound-answered.txt"));
    for row in &rows {
        put(
            &root,
            &format!("var/log/freeswitch/xml_cdr/{}.cdr.xml", row.get(&["uuid"])),
            &xml_file(row),
        );
    }
    put(&root, "var/log/freeswitch/cdr-csv/Master.csv", "");
    let (out, cdr) = init(dir.path(), &root, "freeswitch", &[]);
    assert_eq!(key(&cdr, "source"), "freeswitch-xml");
    let xml = root.join("var/log/freeswitch/xml_cdr");
    assert_eq!(key(&cdr, "path"), xml.display().to_string());
    assert!(
        out.contains("FreeSWITCH mod_xml_cdr") && out.contains("newest record 2026-11-23T06:50"),
        "{out}"
    );
    // Asked for the CSV instead: it is written, and shown empty.
    let (out, cdr) = init_fresh(&root, "freeswitch", &["--cdr", "freeswitch-csv"]);
    assert_eq!(key(&cdr, "source"), "freeswitch-csv");
    assert!(
        out.contains("mod_cdr_csv") && out.contains("no records yet"),
        "{out}"
    );
}

#[test]
fn nothing_found_writes_no_source_and_says_where_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("empty-root");
    std::fs::create_dir_all(&root).unwrap();
    let (out, cdr) = init(dir.path(), &root, "freeswitch", &[]);
    assert_eq!(key(&cdr, "source"), "");
    assert!(out.contains("Call records:  none found"), "{out}");
    // Asked for one that is not there (yet): written at its usual place, with why it
    // cannot be read.
    let (out, cdr) = init_fresh(&root, "asterisk", &["--cdr", "asterisk-sqlite"]);
    assert_eq!(key(&cdr, "source"), "asterisk-sqlite");
    let db = root.join("var/log/asterisk/master.db");
    assert_eq!(key(&cdr, "path"), db.display().to_string());
    assert!(
        out.contains("asterisk-sqlite: cannot be read") && out.contains("back-fill will fail"),
        "{out}"
    );
}

#[test]
fn freepbx_is_proposed_from_its_conf_and_read_from_a_real_mariadb() {
    let Some(db) = MariaDb::start() else { return };
    db.insert(&asterisk_rows(&fixture(
        "asterisk/sip-inbound-answered.txt",
    )));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    put(
        &root,
        "etc/freepbx.conf",
        &format!(
            "<?php\n$amp_conf['AMPDBUSER'] = '{USER}';\n$amp_conf['AMPDBPASS'] = '{PASSWORD}';\n\
             $amp_conf['AMPDBHOST'] = '127.0.0.1';\n$amp_conf['AMPDBPORT'] = '{}';\n\
             $amp_conf['AMPDBNAME'] = 'asterisk';\n\
             require_once('/var/www/html/admin/bootstrap.php');\n?>\n",
            db.port
        ),
    );
    // FreePBX also keeps cdr_csv's Master.csv: its database comes first.
    put(&root, "var/log/asterisk/cdr-csv/Master.csv", "");
    let (out, cdr) = init(dir.path(), &root, "asterisk", &[]);
    assert_eq!(key(&cdr, "source"), "freepbx");
    assert_eq!(
        key(&cdr, "freepbx_conf"),
        root.join("etc/freepbx.conf").display().to_string()
    );
    assert!(
        out.contains(&format!(
            "MySQL asteriskcdrdb.cdr at 127.0.0.1:{} as \"{USER}\": newest record 2026-11-23T06:46:08Z",
            db.port
        )),
        "{out}"
    );
    assert!(!out.contains(PASSWORD), "never the password: {out}");
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(
        !text.contains(PASSWORD),
        "the password stays in FreePBX's file"
    );
}

#[test]
fn an_unreadable_freepbx_database_gives_way_to_a_readable_source() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    put(
        &root,
        "etc/amportal.conf",
        &format!(
            "AMPDBUSER=asteriskuser\nAMPDBPASS=s3cret-pw\nAMPDBHOST=127.0.0.1\nAMPDBPORT={closed}\n"
        ),
    );
    put(
        &root,
        "var/log/asterisk/cdr-csv/Master.csv",
        &master_csv(&["sip-inbound-answered"], &asterisk_columns(false)),
    );
    let (out, cdr) = init(dir.path(), &root, "asterisk", &[]);
    assert_eq!(key(&cdr, "source"), "asterisk-csv", "{out}");
    // Asked for it anyway: written, with the reason it cannot be read yet.
    let (out, cdr) = init_fresh(&root, "asterisk", &["--cdr", "freepbx"]);
    assert_eq!(key(&cdr, "source"), "freepbx");
    assert!(
        out.contains("freepbx: cannot be read: MySQL") && out.contains("back-fill will fail"),
        "{out}"
    );
    assert!(!out.contains("s3cret-pw"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wizard_lists_the_sources_found_and_writes_the_one_chosen() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    put(
        &root,
        "var/log/asterisk/cdr-csv/Master.csv",
        &master_csv(&["sip-inbound-answered"], &asterisk_columns(true)),
    );
    for row in freeswitch_rows(&fixture("freeswitch/sip-inbound-answered.txt")) {
        put(
            &root,
            &format!("var/log/freeswitch/xml_cdr/{}.cdr.xml", row.get(&["uuid"])),
            &xml_file(&row),
        );
    }
    let closed = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let mut cmd = std::process::Command::new(crate::smoke::BIN);
    cmd.args(["--init", "--config"])
        .arg(dir.path().join("config.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--detect-ami", &closed(), "--detect-esl", &closed()])
        .arg("--manager-conf")
        .arg(dir.path().join("no-manager.conf"))
        .arg("--freepbx-conf")
        .arg(dir.path().join("no-freepbx.conf"))
        .arg("--cdr-root")
        .arg(&root)
        .env_remove("RUST_LOG");
    let (code, transcript) = tokio::task::spawn_blocking(move || {
        let mut t = crate::pty::Pty::spawn(cmd);
        t.expect("PBX type (asterisk/freeswitch/none) [asterisk]: ");
        t.send_line("none");
        t.expect("Looking for the PBX's call records");
        t.expect("Asterisk cdr_csv ");
        t.expect(": newest record 2026-11-23T06:46:08Z");
        t.expect("FreeSWITCH mod_xml_cdr ");
        t.expect("Back-fill calls from (asterisk-csv/freeswitch-xml/none) [asterisk-csv]: ");
        t.send_line("freeswitch-xml");
        crate::wizard::finish_self_signed(&mut t);
        t.wait()
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{transcript}");
    let text = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let cdr = config["cdr"].as_table().unwrap();
    assert_eq!(key(cdr, "source"), "freeswitch-xml");
    assert_eq!(
        key(cdr, "path"),
        root.join("var/log/freeswitch/xml_cdr")
            .display()
            .to_string()
    );
    assert!(
        transcript.contains("Call records:  FreeSWITCH mod_xml_cdr"),
        "{transcript}"
    );
}
