//! Asterisk's CDR rows: `cdr_csv`'s Master.csv (its two column layouts), and the named
//! columns of `cdr_sqlite3_custom` and of MySQL tables (FreePBX's `asteriskcdrdb.cdr`).
//!
//! Checked against Asterisk's own `cdr/cdr_csv.c` (`build_csv_record`: 16 columns, then
//! `uniqueid` when `loguniqueid`, `userfield` when `loguserfield`, then `peeraccount`,
//! `linkedid`, `sequence` when `newcdrcolumns`; an unset time is an empty bare field) and
//! the shipped `cdr_sqlite3_custom.conf` (`calldate, clid, dcontext, channel, dstchannel,
//! lastapp, lastdata, duration, billsec, …, uniqueid, userfield`: no `src` or `dst`).
//!
//! One row is one pair of legs: `channel` (party A, who placed it) and `dstchannel`
//! (party B, whom it dialled), with `disposition` the outcome of that pair. Rows of one
//! call share `linkedid` (when the backend keeps it) and party A's `uniqueid`.

use super::{Party, Record, Row, local_ms};
use crate::pbx::{Channel, DialStatus, Origin, asterisk_endpoint};

/// `cdr_csv`'s columns with the shipped `cdr.conf` `[csv]` (loguniqueid and loguserfield
/// on): 18 columns. With both off (no `[csv]` keys) only the first 16.
pub const CSV_DEFAULT: &[&str] = &[
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
];

/// With `newcdrcolumns = yes`: three more (21 columns).
pub const CSV_NEW_COLUMNS: &[&str] = &["peeraccount", "linkedid", "sequence"];

/// Splits one CSV line as `cdr_csv` writes it: fields in double quotes (quotes inside
/// doubled), numbers and unset times bare, separated by commas.
pub fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.trim_end_matches(['\r', '\n']).chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (c, quoted) {
            // mod_cdr_csv's templates put a space before some quoted fields.
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            (',', false) => out.push(std::mem::take(&mut field)),
            (c, _) => field.push(c),
        }
    }
    out.push(field);
    out
}

/// The names of a Master.csv line's columns, told by how many there are: 16 plus
/// `uniqueid` and/or `userfield` (17 is told apart by what the value looks like), plus
/// the three `newcdrcolumns` (19 to 21).
pub fn csv_layout(fields: &[String]) -> Option<Vec<&'static str>> {
    let base = &CSV_DEFAULT[..16];
    let looks_like_uniqueid = |s: &str| {
        s.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && (a.to_string() + b).bytes().all(|c| c.is_ascii_digit())
        })
    };
    let mut names: Vec<&'static str> = base.to_vec();
    let (optional, new_columns) = match fields.len() {
        n @ 16..=18 => (n - 16, false),
        n @ 19..=21 => (n - 19, true),
        _ => return None,
    };
    match optional {
        0 => {}
        1 if looks_like_uniqueid(&fields[16]) => names.push("uniqueid"),
        1 => names.push("userfield"),
        _ => names.extend(["uniqueid", "userfield"]),
    }
    if new_columns {
        names.extend(CSV_NEW_COLUMNS);
    }
    Some(names)
}

/// One Master.csv line as a [`Row`]; `None` when its shape is not one `cdr_csv` writes.
pub fn csv_row(line: &str) -> Option<Row> {
    let fields = split_csv(line);
    let names = csv_layout(&fields)?;
    Some(Row::from_pairs(names.into_iter().zip(fields)))
}

/// The number in a Caller*ID (`"Name" <number>`, or a bare number).
fn clid_number(clid: &str) -> &str {
    match (clid.rfind('<'), clid.rfind('>')) {
        (Some(a), Some(b)) if a < b => &clid[a + 1..b],
        _ => clid.trim(),
    }
}

/// The number the first target of a `Dial()` argument (`lastdata`) dials:
/// `PJSIP/79990001122@trunk`, `SIP/trunk/79990001122`, `PJSIP/trunk/sip:7999…@host`,
/// `PJSIP/101&PJSIP/102,20` (→ `101`), `Local/101@from-internal`.
pub fn dial_target(lastdata: &str) -> &str {
    let first = lastdata.split([',', '&']).next().unwrap_or("").trim();
    let Some((tech, rest)) = first.split_once('/') else {
        return "";
    };
    if tech.eq_ignore_ascii_case("local") {
        // Local/<exten>@<context>[/options]
        return rest.split(['@', '/']).next().unwrap_or("");
    }
    let target = match rest.split_once('/') {
        Some((_, resource)) => resource,
        None => rest,
    };
    let target = target.strip_prefix("sip:").unwrap_or(target);
    target.split(['@', '/']).next().unwrap_or("")
}

fn dial_status(disposition: &str) -> DialStatus {
    match disposition.trim().to_ascii_uppercase().as_str() {
        "ANSWERED" => DialStatus::Answer,
        "BUSY" => DialStatus::Busy,
        "NO ANSWER" => DialStatus::NoAnswer,
        "CONGESTION" => DialStatus::Congestion,
        // FAILED: the channel could not be reached.
        _ => DialStatus::ChanUnavail,
    }
}

fn channel(name: &str, caller_number: &str, exten: &str, context: &str, origin: Origin) -> Channel {
    Channel {
        name: name.to_string(),
        caller_number: caller_number.to_string(),
        exten: exten.to_string(),
        context: context.to_string(),
        origin,
        local: name.starts_with("Local/"),
        endpoint: asterisk_endpoint(name),
        ..Channel::default()
    }
}

/// One row as a record. Times: `calldate_epoch` (MySQL, converted by the server),
/// else `start`/`calldate` in `tz`; answer and end from their columns, else from
/// `duration` and `billsec` (FreePBX and `cdr_sqlite3_custom` keep only the start).
pub fn record(row: &Row, tz: &jiff::tz::TimeZone) -> Option<Record> {
    let start = row
        .int(&["calldate_epoch"])
        .map(|s| s * 1000)
        .or_else(|| local_ms(row.get(&["start", "calldate"]), tz))?;
    let duration = row.int(&["duration"]).unwrap_or(0).max(0);
    let billsec = row.int(&["billsec"]).unwrap_or(0).max(0);
    let end = local_ms(row.get(&["end"]), tz).unwrap_or(start + duration * 1000);
    let dial = dial_status(row.get(&["disposition"]));
    let answered = dial == DialStatus::Answer;
    let answer = local_ms(row.get(&["answer"]), tz)
        .or_else(|| (answered && billsec > 0).then(|| end - billsec * 1000))
        .or_else(|| answered.then_some(end))
        .filter(|_| answered);
    let uniqueid = row.get(&["uniqueid"]);
    let linkedid = row.get(&["linkedid"]);
    let links = super::links(&[linkedid, uniqueid])?;
    // cdr_sqlite3_custom's shipped columns have no `src` and `dst`: the caller from the
    // Caller*ID, and what an employee dialled from the Dial() it ran.
    let src = match row.get(&["src", "source"]) {
        "" => clid_number(row.get(&["clid"])),
        src => src,
    };
    let (dst, context) = (row.get(&["dst", "destination"]), row.get(&["dcontext"]));
    let dial_target = match row.get(&["lastapp"]) {
        app if dst.is_empty() && app.eq_ignore_ascii_case("dial") => {
            dial_target(row.get(&["lastdata"]))
        }
        _ => "",
    };
    let (chan, dstchan) = (row.get(&["channel"]), row.get(&["dstchannel"]));
    let caller = (!chan.is_empty()).then(|| Party {
        channel: Channel {
            id: uniqueid.to_string(),
            ..channel(chan, src, dst, context, Origin::Inbound)
        },
        ..Party::default()
    });
    let callee = (!dstchan.is_empty()).then(|| Party {
        channel: channel(
            dstchan,
            src,
            if dst.is_empty() { dial_target } else { dst },
            "",
            Origin::Outbound,
        ),
        answered_at: answer,
        dial: (!answered).then_some(dial.clone()),
        hangup_cause: String::new(),
    });
    let recording = row.get(&["recordingfile"]);
    Some(Record {
        links,
        start,
        end: end.max(start),
        caller,
        callee,
        dialled: dst.to_string(),
        dial_target: dial_target.to_string(),
        single_leg: false,
        did: row.get(&["did"]).to_string(),
        recording: (!recording.is_empty()).then(|| recording.to_string()),
    })
    // A row whose party A answered by itself (nobody dialled: a Local ;2 half in the
    // dialplan, an IVR) still says whether it was answered.
    .map(|mut r| {
        if r.callee.is_none()
            && let Some(c) = r.caller.as_mut()
        {
            c.answered_at = answer;
            c.dial = (!answered).then_some(dial);
        }
        r
    })
}
