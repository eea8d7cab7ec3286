//! Call records made from recorded PBX transcripts, for tests: Asterisk's `Event: Cdr`
//! blocks carry the fields it writes to every CDR backend, FreeSWITCH's
//! `CHANNEL_HANGUP_COMPLETE` the variables `mod_cdr_csv` / `mod_xml_cdr` write. And the
//! files those backends write, byte for byte in their formats.

use std::collections::HashMap;

use super::Row;
use crate::pbx::esl::codec::url_decode_into;

/// `Key: Value` blocks of a transcript (AMI CRLF or ESL LF), in order.
fn blocks(transcript: &str) -> Vec<Vec<(String, String)>> {
    let text = transcript.replace("\r\n", "\n");
    text.split("\n\n")
        .map(|b| {
            b.lines()
                .filter_map(|l| {
                    l.split_once(": ")
                        .or_else(|| l.strip_suffix(':').map(|k| (k, "")))
                })
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .filter(|b| !b.is_empty())
        .collect()
}

fn field<'a>(b: &'a [(String, String)], key: &str) -> &'a str {
    b.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// The CDR rows of an AMI transcript, with `linkedid` from the channels' `Newchannel`
/// and `recordingfile` from `MIXMONITOR_FILENAME` (what FreePBX stores).
pub fn asterisk_rows(transcript: &str) -> Vec<Row> {
    let blocks = blocks(transcript);
    let mut linked: HashMap<String, String> = HashMap::new();
    let mut recording: HashMap<String, String> = HashMap::new();
    for b in &blocks {
        match field(b, "Event") {
            "Newchannel" => {
                linked.insert(field(b, "Uniqueid").into(), field(b, "Linkedid").into());
            }
            "VarSet" if field(b, "Variable") == "MIXMONITOR_FILENAME" => {
                recording.insert(field(b, "Linkedid").into(), field(b, "Value").into());
            }
            _ => {}
        }
    }
    let names = [
        ("AccountCode", "accountcode"),
        ("Source", "src"),
        ("Destination", "dst"),
        ("DestinationContext", "dcontext"),
        ("CallerID", "clid"),
        ("Channel", "channel"),
        ("DestinationChannel", "dstchannel"),
        ("LastApplication", "lastapp"),
        ("LastData", "lastdata"),
        ("StartTime", "start"),
        ("AnswerTime", "answer"),
        ("EndTime", "end"),
        ("Duration", "duration"),
        ("BillableSeconds", "billsec"),
        ("Disposition", "disposition"),
        ("AMAFlags", "amaflags"),
        ("UniqueID", "uniqueid"),
        ("UserField", "userfield"),
    ];
    blocks
        .iter()
        .filter(|b| field(b, "Event") == "Cdr")
        .map(|b| {
            let mut row = Row::from_pairs(names.iter().map(|(k, n)| (*n, field(b, k).to_string())));
            let uniqueid = field(b, "UniqueID");
            let linkedid = linked
                .get(uniqueid)
                .cloned()
                .unwrap_or_else(|| uniqueid.into());
            let file = recording.get(&linkedid).cloned().unwrap_or_default();
            row.0.insert("linkedid".into(), linkedid);
            row.0.insert("recordingfile".into(), file);
            row.0.insert("peeraccount".into(), String::new());
            row.0.insert("sequence".into(), "0".into());
            row
        })
        .collect()
}

/// The `CHANNEL_HANGUP_COMPLETE` events of an ESL transcript as rows of variables
/// (URL-decoded), with the channel's name and direction.
pub fn freeswitch_rows(transcript: &str) -> Vec<Row> {
    blocks(transcript)
        .iter()
        .filter(|b| field(b, "Event-Name") == "CHANNEL_HANGUP_COMPLETE")
        .map(|b| {
            let mut row = Row::default();
            for (k, v) in b {
                let mut value = String::new();
                url_decode_into(v, &mut value);
                // The caller profile's fields, as templates' ${caller_id_number} see them.
                let key = match k.as_str() {
                    "Caller-Channel-Name" => "channel_name".to_string(),
                    "Caller-Caller-ID-Number" => "caller_id_number".to_string(),
                    "Caller-Destination-Number" => "destination_number".to_string(),
                    "Caller-Context" => "context".to_string(),
                    k => match k.strip_prefix("variable_") {
                        Some(name) => name.to_ascii_lowercase(),
                        None => continue,
                    },
                };
                row.0.entry(key).or_insert(value);
            }
            row
        })
        .collect()
}

/// One line as `cdr_csv` / `mod_cdr_csv` write it: text quoted (quotes doubled), the
/// `numeric` columns bare.
pub fn csv_line(row: &Row, columns: &[&str], numeric: &[&str]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .map(|c| {
            let v = row.0.get(*c).map_or("", String::as_str);
            if numeric.contains(c) {
                v.to_string()
            } else {
                format!("\"{}\"", v.replace('"', "\"\""))
            }
        })
        .collect();
    fields.join(",") + "\n"
}

/// One Master.csv line exactly as `cdr_csv` writes it: `duration`, `billsec` and
/// `sequence` bare, an unset time (`answer` of an unanswered row) an empty bare field,
/// everything else quoted.
pub fn asterisk_csv_line(row: &Row, columns: &[&str]) -> String {
    let mut bare: Vec<&str> = ASTERISK_NUMERIC.to_vec();
    for time in ["start", "answer", "end"] {
        if row.get(&[time]).is_empty() {
            bare.push(time);
        }
    }
    csv_line(row, columns, &bare)
}

/// One Master.csv line as `mod_cdr_csv` writes a shipped template: every field quoted,
/// the built-in template's `accountcode` after `, ` (13 columns).
pub fn freeswitch_csv_line(row: &Row, columns: &[&str]) -> String {
    let line = csv_line(row, columns, &[]);
    match columns.len() {
        13 => match line.rfind(",\"") {
            Some(at) => format!("{}, {}", &line[..at], &line[at + 1..]),
            None => line,
        },
        _ => line,
    }
}

/// Asterisk Master.csv columns (default layout, or `newcdrcolumns`).
pub fn asterisk_columns(new_columns: bool) -> Vec<&'static str> {
    let mut c = super::asterisk::CSV_DEFAULT.to_vec();
    if new_columns {
        c.extend(super::asterisk::CSV_NEW_COLUMNS);
    }
    c
}

/// Asterisk's bare (unquoted) CSV columns.
pub const ASTERISK_NUMERIC: &[&str] = &["duration", "billsec", "sequence"];

/// A `mod_xml_cdr` file for a row of variables (values URL-encoded, as it writes them).
pub fn xml_file(row: &Row) -> String {
    let encode = |v: &str| {
        v.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    const PROFILE: &[&str] = &[
        "channel_name",
        "caller_id_number",
        "destination_number",
        "context",
    ];
    let mut names: Vec<&String> = row
        .0
        .keys()
        .filter(|k| !PROFILE.contains(&k.as_str()))
        .collect();
    names.sort();
    let vars: String = names
        .iter()
        .map(|k| format!("    <{k}>{}</{k}>\n", encode(&row.0[*k])))
        .collect();
    let text = |k: &str| {
        row.0
            .get(k)
            .cloned()
            .unwrap_or_default()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    };
    format!(
        "<?xml version=\"1.0\"?>\n<cdr core-uuid=\"fixture\" switchname=\"fs\">\n  \
         <channel_data>\n    <direction>{}</direction>\n  </channel_data>\n  \
         <variables>\n{vars}  </variables>\n  <callflow>\n    <caller_profile>\n      \
         <caller_id_number>{}</caller_id_number>\n      \
         <destination_number>{}</destination_number>\n      <context>{}</context>\n      \
         <chan_name>{}</chan_name>\n    </caller_profile>\n  </callflow>\n</cdr>\n",
        text("direction"),
        text("caller_id_number"),
        text("destination_number"),
        text("context"),
        text("channel_name"),
    )
}

/// Moves a FreeSWITCH row of variables (from [`freeswitch_rows`]) `secs` later: the
/// `*_uepoch`, `*_epoch` and `*_stamp` times (stamps read as UTC).
pub fn shift_freeswitch(row: &mut Row, secs: i64) {
    let utc = jiff::tz::TimeZone::UTC;
    for (key, value) in row.0.iter_mut() {
        let shifted = if key.ends_with("_uepoch") {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| (n + secs * 1_000_000).to_string())
        } else if key.ends_with("_epoch") {
            value
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(|n| (n + secs).to_string())
        } else if key.ends_with("_stamp") {
            super::local_ms(value, &utc)
                .and_then(|ms| jiff::Timestamp::from_millisecond(ms + secs * 1000).ok())
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        } else {
            None
        };
        if let Some(v) = shifted {
            *value = v;
        }
    }
}
