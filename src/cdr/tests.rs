//! Parsing each backend's format and grouping, on rows made from the recorded scenarios.

use super::fixtures::{self, ASTERISK_NUMERIC, asterisk_columns, csv_line};
use super::group::{classify, group};
use super::{Record, Row, Source, asterisk, freeswitch, local_ms, mysql, time_zone};
use crate::calls::tracker::Rules;
use crate::calls::{Call, CallStatus, Direction};
use crate::config::{CdrConfig, Config};

fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn rules() -> Rules {
    let mut c = Config::defaults().calls;
    c.trunk_endpoints = vec!["trunk".into()];
    Rules::new(&c)
}

fn utc() -> jiff::tz::TimeZone {
    time_zone("UTC").unwrap()
}

/// The calls in Asterisk Master.csv lines of `scenario` (`new_columns`: that layout).
fn asterisk_calls(scenario: &str, new_columns: bool) -> Vec<Call> {
    let columns = asterisk_columns(new_columns);
    let records: Vec<Record> = fixtures::asterisk_rows(&fixture(scenario))
        .iter()
        .map(|r| csv_line(r, &columns, ASTERISK_NUMERIC))
        .map(|line| asterisk::csv_row(&line).expect("a cdr_csv line"))
        .map(|row| asterisk::record(&row, &utc()).expect("a record"))
        .collect();
    group(records)
        .iter()
        .filter_map(|g| classify(g, &rules()))
        .collect()
}

fn ms(text: &str) -> i64 {
    local_ms(text, &utc()).unwrap()
}

#[test]
fn cdr_csv_lines_split_as_asterisk_quotes_them() {
    let line = r#""","79161234567","74950000000","from-trunk","""Customer"" <79161234567>","PJSIP/trunk-00000017","PJSIP/100-00000018","Dial","PJSIP/100&PJSIP/101,20","2026-11-23 06:46:08","2026-11-23 06:46:13","2026-11-23 06:46:19",11,6,"ANSWERED","DOCUMENTATION","1795416368.27","inbound""#;
    let row = asterisk::csv_row(line).unwrap();
    assert_eq!(row.get(&["clid"]), "\"Customer\" <79161234567>");
    assert_eq!(row.get(&["lastdata"]), "PJSIP/100&PJSIP/101,20");
    assert_eq!(row.get(&["billsec"]), "6");
    assert_eq!(row.get(&["uniqueid"]), "1795416368.27");
    assert_eq!(row.get(&["userfield"]), "inbound");
    // A line of no layout cdr_csv writes is refused, not misread.
    assert!(asterisk::csv_row(r#""a","b",1"#).is_none());
}

#[test]
fn an_answered_incoming_call_is_one_call_for_the_employee_who_talked() {
    for new_columns in [false, true] {
        let calls = asterisk_calls("asterisk/sip-inbound-answered.txt", new_columns);
        assert_eq!(calls.len(), 1, "two rows (100 answered, 101 not), one call");
        let c = &calls[0];
        assert_eq!(c.direction, Direction::Incoming);
        assert_eq!(
            (c.phone.as_str(), c.line.as_str()),
            ("79161234567", "74950000000")
        );
        assert_eq!(c.extension.as_deref(), Some("100"));
        assert_eq!(c.status, Some(CallStatus::Answered));
        assert_eq!(c.started_at, ms("2026-11-23 06:46:08"));
        assert_eq!(c.answered_at, Some(ms("2026-11-23 06:46:13")));
        assert_eq!(c.ended_at, Some(ms("2026-11-23 06:46:19")));
        assert_eq!((c.wait, c.duration), (Some(5), Some(6)));
        assert_eq!(c.pbx_call, "1795416368.27");
        assert!(c.backfilled);
    }
}

#[test]
fn an_unanswered_incoming_call_is_missed() {
    let calls = asterisk_calls("asterisk/sip-inbound-missed.txt", true);
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c.status, Some(CallStatus::Missed));
    assert_eq!((c.wait, c.duration), (Some(20), Some(0)));
    assert!(
        matches!(c.extension.as_deref(), Some("100" | "101")),
        "{c:?}"
    );
}

#[test]
fn an_employee_calling_a_colleague_is_internal() {
    let calls = asterisk_calls("asterisk/sip-agent-to-agent.txt", false);
    let c = &calls[0];
    assert_eq!(c.direction, Direction::Internal);
    assert_eq!(
        (c.extension.as_deref(), c.phone.as_str()),
        (Some("100"), "101")
    );
    assert_eq!(
        (c.status, c.duration),
        (Some(CallStatus::Answered), Some(3))
    );
}

#[test]
fn a_click_to_call_through_a_local_channel_is_one_outgoing_call() {
    // Without linkedid (the default layout) its two rows have different uniqueids: the
    // Local channel's two halves tie them; with newcdrcolumns linkedid does.
    for new_columns in [false, true] {
        let calls = asterisk_calls("asterisk/sip-click-to-call.txt", new_columns);
        assert_eq!(calls.len(), 1, "{calls:?}");
        let c = &calls[0];
        assert_eq!(c.direction, Direction::Outgoing);
        assert_eq!(
            (c.extension.as_deref(), c.phone.as_str()),
            (Some("100"), "79990001122")
        );
        assert_eq!(c.status, Some(CallStatus::Answered));
        assert_eq!(c.answered_at, Some(ms("2026-11-23 06:47:58")));
        assert_eq!(c.duration, Some(2));
    }
}

#[test]
fn a_busy_customer_and_a_feature_code() {
    let calls = asterisk_calls("asterisk/customer-busy.txt", true);
    assert!(
        calls
            .iter()
            .all(|c| c.status != Some(CallStatus::Answered) || c.duration > Some(0)),
        "{calls:?}"
    );
    // An employee dialling *97 is a service call: never reported.
    let row = Row::from_pairs([
        ("src", "100".to_string()),
        ("dst", "*97".into()),
        ("dcontext", "from-internal".into()),
        ("channel", "PJSIP/100-00000001".into()),
        ("start", "2026-11-23 07:00:00".into()),
        ("duration", "5".into()),
        ("billsec", "5".into()),
        ("disposition", "ANSWERED".into()),
        ("uniqueid", "1795417200.1".into()),
    ]);
    let g = group(vec![asterisk::record(&row, &utc()).unwrap()]);
    assert!(classify(&g[0], &rules()).is_none());
}

fn freeswitch_calls(records: Vec<Record>) -> Vec<Call> {
    group(records)
        .iter()
        .filter_map(|g| classify(g, &rules()))
        .collect()
}

#[test]
fn freeswitch_xml_cdr_files_give_the_legs_of_one_call() {
    let rows = fixtures::freeswitch_rows(&fixture("freeswitch/sip-inbound-answered.txt"));
    assert_eq!(rows.len(), 3, "the caller and the two phones rung");
    let records: Vec<Record> = rows
        .iter()
        .map(|r| freeswitch::xml_row(&fixtures::xml_file(r)).unwrap())
        .map(|row| freeswitch::record(&row, &utc()).unwrap())
        .collect();
    let calls = freeswitch_calls(records);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.direction, Direction::Incoming);
    assert_eq!(c.phone, "79161234567");
    assert_eq!(c.line, "74950000000");
    assert_eq!(c.extension.as_deref(), Some("1000"));
    assert_eq!(c.status, Some(CallStatus::Answered));
    assert_eq!(c.pbx_call, "dccfb9ad-c57f-4297-868f-bf615353679b");
    assert_eq!((c.wait, c.duration), (Some(5), Some(7)));
    assert_eq!(
        c.started_at / 1000,
        1_795_416_601,
        "start_uepoch, to the millisecond"
    );
}

#[test]
fn freeswitch_cdr_csv_a_legs_tell_direction_and_outcome() {
    let rows = fixtures::freeswitch_rows(&fixture("freeswitch/sip-inbound-answered.txt"));
    let mut columns = freeswitch::CSV_DEFAULT.to_vec();
    columns.extend(freeswitch::CSV_EXAMPLE_EXTRA);
    // legs = "a": only the leg that called in is logged.
    let a_leg = rows
        .iter()
        .find(|r| r.get(&["direction"]) == "inbound")
        .unwrap();
    let line = csv_line(a_leg, &columns, &[]);
    let row = freeswitch::csv_row(&line).expect("the example template's 17 columns");
    assert_eq!(row.get(&["start_stamp"]), "2026-11-23 06:50:01");
    let calls = freeswitch_calls(vec![freeswitch::record(&row, &utc()).unwrap()]);
    let c = &calls[0];
    assert_eq!(
        (c.direction, c.status),
        (Direction::Incoming, Some(CallStatus::Answered))
    );
    assert_eq!(c.phone, "79161234567");
    assert_eq!(c.started_at, 1_795_416_601_000);
}

fn config_for(source: &str, path: &std::path::Path) -> CdrConfig {
    let mut c = Config::defaults().cdr;
    c.source = source.into();
    c.path = path.display().to_string();
    c.timezone = "UTC".into();
    c
}

#[test]
fn sqlite_sources_are_read_by_column_name() {
    let dir = tempfile::tempdir().unwrap();
    // cdr_sqlite3_custom.conf's shipped columns; no answer or end: from duration/billsec.
    let path = dir.path().join("master.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, calldate, clid, src, dst, dcontext,
         channel, dstchannel, lastapp, lastdata, duration, billsec, disposition, amaflags,
         accountcode, uniqueid, userfield, test);",
    )
    .unwrap();
    for r in fixtures::asterisk_rows(&fixture("asterisk/sip-inbound-answered.txt")) {
        let v = |k: &str| r.get(&[k]).to_string();
        conn.execute(
            "INSERT INTO cdr (calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp,
             lastdata, duration, billsec, disposition, amaflags, accountcode, uniqueid,
             userfield) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
            rusqlite::params![
                v("start"),
                v("clid"),
                v("src"),
                v("dst"),
                v("dcontext"),
                v("channel"),
                v("dstchannel"),
                v("lastapp"),
                v("lastdata"),
                v("duration"),
                v("billsec"),
                v("disposition"),
                v("amaflags"),
                v("accountcode"),
                v("uniqueid"),
                v("userfield")
            ],
        )
        .unwrap();
    }
    drop(conn);
    let source = Source::from_config(&config_for("asterisk-sqlite", &path))
        .unwrap()
        .unwrap();
    let start = ms("2026-11-23 06:46:08");
    let records = source.read(start - 1000, start + 1000).unwrap();
    assert_eq!(records.len(), 2);
    assert!(source.read(start + 1000, start + 9000).unwrap().is_empty());
    assert_eq!(source.newest().unwrap(), Some(start));
    let calls = freeswitch_calls(records);
    assert_eq!(calls[0].answered_at, Some(ms("2026-11-23 06:46:13")));
    assert_eq!(calls[0].duration, Some(6));
}

#[test]
fn a_missing_source_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::from_config(&config_for("asterisk-csv", &dir.path().join("Master.csv")))
        .unwrap()
        .unwrap();
    let e = source.read(0, 1).unwrap_err().to_string();
    assert!(e.contains("Master.csv"), "{e}");
}

#[test]
fn freepbx_credentials_come_from_its_files() {
    let php = "<?php\n$amp_conf['AMPDBUSER'] = 'freepbxuser';\n$amp_conf['AMPDBPASS'] = 'p4ss';\n\
               $amp_conf['AMPDBHOST'] = 'localhost';\n$amp_conf['AMPDBNAME'] = 'asterisk';\n\
               require_once('/var/www/html/admin/bootstrap.php');\n";
    let keys = mysql::parse_settings(php);
    assert!(keys.contains(&("AMPDBUSER".into(), "freepbxuser".into())));
    assert!(keys.contains(&("AMPDBPASS".into(), "p4ss".into())));
    let dir = tempfile::tempdir().unwrap();
    let amportal = dir.path().join("amportal.conf");
    std::fs::write(
        &amportal,
        "# FreePBX\nAMPDBUSER=asteriskuser\nAMPDBPASS=\"x y\"\nCDRDBNAME=cdrs\n",
    )
    .unwrap();
    let mut c = config_for("freepbx", dir.path());
    c.freepbx_conf = dir.path().join("absent.conf").display().to_string();
    c.amportal_conf = amportal.display().to_string();
    let o = mysql::MysqlOpts::freepbx(&c);
    assert_eq!(
        (o.user.as_str(), o.password.expose(), o.database.as_str()),
        ("asteriskuser", "x y", "cdrs")
    );
    assert!(!o.describe().contains("x y"), "never the password");
}

#[test]
fn local_times_follow_the_zone() {
    let moscow = time_zone("Europe/Moscow").unwrap();
    assert_eq!(
        local_ms("2026-11-23 09:46:08", &moscow),
        local_ms("2026-11-23 06:46:08", &utc())
    );
    assert_eq!(
        local_ms("2026-11-23%2006%3A46%3A08", &utc()),
        Some(ms("2026-11-23 06:46:08"))
    );
    assert_eq!(local_ms("", &utc()), None);
    assert!(time_zone("Mars/Olympus").is_err());
}
