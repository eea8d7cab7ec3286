//! Parsing each backend's format and grouping, on rows made from the recorded scenarios.

use super::fixtures::{self, asterisk_columns, asterisk_csv_line};
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
    calls_in_layout(scenario, &asterisk_columns(new_columns))
}

/// The calls in Master.csv lines of `scenario` written with `columns`.
fn calls_in_layout(scenario: &str, columns: &[&str]) -> Vec<Call> {
    let records: Vec<Record> = fixtures::asterisk_rows(&fixture(scenario))
        .iter()
        .map(|r| asterisk_csv_line(r, columns))
        .map(|line| asterisk::csv_row(&line).expect("a cdr_csv line"))
        .map(|row| asterisk::record(&row, &utc()).expect("a record"))
        .collect();
    group(records)
        .iter()
        .filter_map(|g| classify(g, &rules()))
        .collect()
}

/// Every layout `cdr_csv` writes that names the call (`loguniqueid` or `newcdrcolumns`
/// on): `build_csv_record`'s 16 columns, `uniqueid` and/or `userfield`, then
/// `peeraccount, linkedid, sequence`.
fn csv_layouts() -> Vec<Vec<&'static str>> {
    let base = &asterisk::CSV_DEFAULT[..16];
    let mut out = Vec::new();
    for optional in [
        &["uniqueid"][..],
        &["uniqueid", "userfield"],
        &[],
        &["userfield"],
    ] {
        for new_columns in [false, true] {
            if !new_columns && !optional.contains(&"uniqueid") {
                continue; // no id at all: see the test below
            }
            let mut c = base.to_vec();
            c.extend(optional);
            if new_columns {
                c.extend(asterisk::CSV_NEW_COLUMNS);
            }
            out.push(c);
        }
    }
    out
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
fn every_cdr_csv_layout_is_read_by_its_column_count() {
    for columns in csv_layouts() {
        let calls = calls_in_layout("asterisk/sip-inbound-answered.txt", &columns);
        assert_eq!(calls.len(), 1, "{} columns: {calls:?}", columns.len());
        assert_eq!(calls[0].duration, Some(6), "{} columns", columns.len());
        assert_eq!(
            calls[0].pbx_call,
            "1795416368.27",
            "{} columns",
            columns.len()
        );
    }
    // The missed call's rows have no answer time: cdr_csv writes it as an empty bare
    // field, not "".
    let row = &fixtures::asterisk_rows(&fixture("asterisk/sip-inbound-missed.txt"))[0];
    let line = asterisk_csv_line(row, &asterisk_columns(false));
    assert!(line.contains("\",,\""), "{line}");
    // Neither loguniqueid nor newcdrcolumns: nothing names the call, the row is unusable.
    let line = asterisk_csv_line(row, &asterisk::CSV_DEFAULT[..16]);
    let row = asterisk::csv_row(&line).expect("16 columns");
    assert!(asterisk::record(&row, &utc()).is_none());
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
    // legs = "a" (the shipped cdr_csv.conf.xml): only the leg that called in is logged.
    let a_leg = rows
        .iter()
        .find(|r| r.get(&["direction"]) == "inbound")
        .unwrap();
    // The shipped templates, by their column counts: built-in default, example (the
    // shipped default-template), linksys, asterisk, snom.
    for n in [13, 15, 17, 18, 20] {
        let columns = freeswitch::csv_layout(n).unwrap();
        let line = fixtures::freeswitch_csv_line(a_leg, &columns);
        let row = freeswitch::csv_row(&line).expect("a shipped template");
        assert_eq!(row.get(&["start_stamp"]), "2026-11-23 06:50:01", "{n}");
        let calls = freeswitch_calls(vec![freeswitch::record(&row, &utc()).unwrap()]);
        let c = &calls[0];
        assert_eq!(
            (c.direction, c.status),
            (Direction::Incoming, Some(CallStatus::Answered)),
            "{n}"
        );
        assert_eq!(c.phone, "79161234567", "{n}");
        assert_eq!(c.started_at, 1_795_416_601_000, "{n}");
        assert_eq!(c.duration, Some(7), "{n}");
    }
    // The built-in template's `, "${accountcode}"`: a space before the quote.
    let line = fixtures::freeswitch_csv_line(a_leg, &freeswitch::csv_layout(13).unwrap());
    assert!(line.contains("\", \""), "{line}");
    assert!(
        freeswitch::csv_row("\"a\",\"b\"").is_none(),
        "no template of 2 columns"
    );
}

fn config_for(source: &str, path: &std::path::Path) -> CdrConfig {
    let mut c = Config::defaults().cdr;
    c.source = source.into();
    c.path = path.display().to_string();
    c.timezone = "UTC".into();
    c
}

/// A `master.db` as `cdr_sqlite3_custom` makes it with the shipped
/// `cdr_sqlite3_custom.conf`: `CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, <columns>)`,
/// every value inserted as quoted text.
fn sqlite3_custom_db(path: &std::path::Path, scenarios: &[&str]) {
    const COLUMNS: &[&str] = &[
        "calldate",
        "clid",
        "dcontext",
        "channel",
        "dstchannel",
        "lastapp",
        "lastdata",
        "duration",
        "billsec",
        "disposition",
        "amaflags",
        "accountcode",
        "uniqueid",
        "userfield",
        "test",
    ];
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE cdr (AcctId INTEGER PRIMARY KEY, {})",
        COLUMNS.join(",")
    ))
    .unwrap();
    for scenario in scenarios {
        for r in fixtures::asterisk_rows(&fixture(scenario)) {
            let values: Vec<String> = COLUMNS
                .iter()
                .map(|c| match *c {
                    "calldate" => r.get(&["start"]),
                    c => r.0.get(c).map_or("", String::as_str),
                })
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect();
            conn.execute_batch(&format!(
                "INSERT INTO cdr ({}) VALUES ({})",
                COLUMNS.join(","),
                values.join(",")
            ))
            .unwrap();
        }
    }
}

#[test]
fn sqlite_sources_are_read_by_column_name() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped columns: no answer or end (from duration/billsec), no src or dst (the
    // caller from clid, what an employee dialled from the Dial() in lastdata).
    let path = dir.path().join("master.db");
    sqlite3_custom_db(
        &path,
        &[
            "asterisk/sip-inbound-answered.txt",
            "asterisk/sip-click-to-call.txt",
            "asterisk/sip-agent-to-agent.txt",
        ],
    );
    let source = Source::from_config(&config_for("asterisk-sqlite", &path))
        .unwrap()
        .unwrap();
    let start = ms("2026-11-23 06:46:08");
    let records = source.read(start - 1000, start + 1000).unwrap();
    assert_eq!(records.len(), 2);
    assert!(source.read(start + 1000, start + 9000).unwrap().is_empty());
    let calls = freeswitch_calls(records);
    assert_eq!(calls[0].direction, Direction::Incoming);
    assert_eq!(calls[0].phone, "79161234567", "from clid");
    assert_eq!(calls[0].extension.as_deref(), Some("100"));
    assert_eq!(calls[0].answered_at, Some(ms("2026-11-23 06:46:13")));
    assert_eq!(calls[0].duration, Some(6));
    let all = freeswitch_calls(source.read(0, i64::MAX / 4).unwrap());
    let outgoing = all
        .iter()
        .find(|c| c.direction == Direction::Outgoing)
        .expect("the click-to-call");
    assert_eq!(
        (outgoing.extension.as_deref(), outgoing.phone.as_str()),
        (Some("100"), "79990001122"),
        "the number from Dial(Local/79990001122@pstn-sim,30)"
    );
    let internal = all
        .iter()
        .find(|c| c.direction == Direction::Internal)
        .expect("the agent-to-agent call");
    assert_eq!(internal.phone, "101");
    assert_eq!(
        source.newest().unwrap(),
        all.iter().map(|c| c.started_at).max()
    );
}

#[test]
fn dial_targets() {
    for (lastdata, number) in [
        ("PJSIP/79990001122@trunk,60", "79990001122"),
        ("SIP/trunk/79990001122,60,tT", "79990001122"),
        ("PJSIP/trunk/sip:79990001122@203.0.113.5", "79990001122"),
        ("PJSIP/100&PJSIP/101,20", "100"),
        ("Local/101@from-internal/n", "101"),
        ("", ""),
    ] {
        assert_eq!(asterisk::dial_target(lastdata), number, "{lastdata}");
    }
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

#[test]
fn a_survey_shows_the_newest_record_and_rows_that_name_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("Master.csv");
    let rows = fixtures::asterisk_rows(&fixture("asterisk/sip-inbound-answered.txt"));
    let cdr = config_for("asterisk-csv", &csv);
    let line = |columns: &[&str]| asterisk_csv_line(&rows[0], columns);
    std::fs::write(&csv, line(&asterisk_columns(true))).unwrap();
    let (what, survey) = super::detect::check(&cdr);
    let survey = survey.unwrap();
    assert!(what.contains("Master.csv"), "{what}");
    assert_eq!((survey.rows, survey.unusable), (Some(1), 0));
    assert_eq!(survey.describe(), "newest record 2026-11-23T06:46:08Z");
    // A second line without uniqueid or linkedid (loguniqueid off, no newcdrcolumns).
    let both = line(&asterisk_columns(true)) + &line(&asterisk::CSV_DEFAULT[..16]);
    std::fs::write(&csv, both).unwrap();
    let survey = super::detect::check(&cdr).1.unwrap();
    assert_eq!((survey.rows, survey.unusable), (Some(2), 1));
    assert!(
        survey.describe().contains("1 of 2 rows name no call"),
        "{}",
        survey.describe()
    );
}

#[test]
fn mod_cdr_sqlite_rows_are_read_from_its_own_table() {
    // mod_cdr_sqlite.c's CREATE TABLE and its default template's INSERT (legs = a).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdr.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE cdr (caller_id_name VARCHAR, caller_id_number VARCHAR,
         destination_number VARCHAR, context VARCHAR, start_stamp DATETIME,
         answer_stamp DATETIME, end_stamp DATETIME, duration INTEGER, billsec INTEGER,
         hangup_cause VARCHAR, uuid VARCHAR, bleg_uuid VARCHAR, account_code VARCHAR)",
    )
    .unwrap();
    let rows = fixtures::freeswitch_rows(&fixture("freeswitch/sip-inbound-answered.txt"));
    let a_leg = rows
        .iter()
        .find(|r| r.get(&["direction"]) == "inbound")
        .unwrap();
    let v = |k: &str| format!("\"{}\"", a_leg.get(&[k]));
    let n = |k: &str| a_leg.get(&[k]).to_string();
    let values = [
        v("caller_id_name"),
        v("caller_id_number"),
        v("destination_number"),
        v("context"),
        v("start_stamp"),
        v("answer_stamp"),
        v("end_stamp"),
        n("duration"),
        n("billsec"),
        v("hangup_cause"),
        v("uuid"),
        v("bleg_uuid"),
        v("accountcode"),
    ];
    conn.execute_batch(&format!("INSERT INTO cdr VALUES ({})", values.join(",")))
        .unwrap();
    drop(conn);
    let source = Source::from_config(&config_for("freeswitch-sqlite", &path))
        .unwrap()
        .unwrap();
    let calls = freeswitch_calls(source.read(0, i64::MAX / 4).unwrap());
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(
        (c.direction, c.status, c.phone.as_str()),
        (
            Direction::Incoming,
            Some(CallStatus::Answered),
            "79161234567"
        )
    );
    assert_eq!(c.started_at, 1_795_416_601_000);
    assert_eq!(c.duration, Some(7));
}
