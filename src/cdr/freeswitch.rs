//! FreeSWITCH's CDR rows: `mod_cdr_csv` lines (its shipped templates), `mod_xml_cdr`
//! files, and `mod_cdr_sqlite`'s table, as one [`Row`] of channel variables each.
//!
//! Checked against FreeSWITCH's `mod_cdr_csv.c` (built-in `default` template, every
//! field quoted, `, "${accountcode}"` with a space; `Master.csv` renamed
//! `Master.csv.<Y-m-d-H-M-S>` on HUP), the shipped `cdr_csv.conf.xml` (`default-template`
//! `example`, `legs` `a`), `mod_xml_cdr` (`<uuid>.cdr.xml`, values URL-encoded) and
//! `mod_cdr_sqlite.c` (table `cdr` in the core database directory, `cdr.db`).
//!
//! One row is one leg. Legs of one call are tied by their UUIDs: `call_uuid`, the other
//! leg's `bleg_uuid` / `last_bridge_to` / `originator`, and the leg's own `uuid`.

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{Party, Record, Row, epoch_ms, local_ms};
use crate::pbx::esl::codec::url_decode_into;
use crate::pbx::{Channel, DialStatus, Origin};

/// `mod_cdr_csv`'s built-in `default` template (13 columns), used when
/// `cdr_csv.conf.xml` names no `default-template`.
pub const CSV_BUILTIN: &[&str] = &[
    "caller_id_name",
    "caller_id_number",
    "destination_number",
    "context",
    "start_stamp",
    "answer_stamp",
    "end_stamp",
    "duration",
    "billsec",
    "hangup_cause",
    "uuid",
    "bleg_uuid",
    "accountcode",
];

/// The shipped `cdr_csv.conf.xml`'s `default-template`, `example`: the built-in's
/// columns and the codecs (15).
pub const CSV_EXAMPLE_CODECS: &[&str] = &["read_codec", "write_codec"];

/// The shipped `linksys` (17) and `snom` (20) templates add these to `example`'s.
const CSV_LINKSYS: &[&str] = &["sip_user_agent", "sip_p_rtp_stat"];
const CSV_SNOM: &[&str] = &[
    "sip_user_agent",
    "call_clientcode",
    "sip_rtp_rxstat",
    "sip_rtp_txstat",
    "sofia_record_file",
];

/// The shipped `asterisk` template: Asterisk's Master.csv order in FreeSWITCH's
/// variables (18): these, the built-in's times to cause, then `CSV_ASTERISK_TAIL`.
const CSV_ASTERISK_HEAD: &[&str] = &[
    "accountcode",
    "caller_id_number",
    "destination_number",
    "context",
    "caller_id",
    "channel_name",
    "bridge_channel",
    "last_app",
    "last_arg",
];
const CSV_ASTERISK_TAIL: &[&str] = &["amaflags", "uuid", "userfield"];

/// The columns of the shipped template with `n` of them.
pub fn csv_layout(n: usize) -> Option<Vec<&'static str>> {
    let mut names = CSV_BUILTIN.to_vec();
    match n {
        13 => {}
        15 => names.extend(CSV_EXAMPLE_CODECS),
        17 => names.extend(CSV_EXAMPLE_CODECS.iter().chain(CSV_LINKSYS)),
        18 => {
            let times_to_cause = &CSV_BUILTIN[4..10];
            return Some([CSV_ASTERISK_HEAD, times_to_cause, CSV_ASTERISK_TAIL].concat());
        }
        20 => names.extend(CSV_EXAMPLE_CODECS.iter().chain(CSV_SNOM)),
        _ => return None,
    }
    Some(names)
}

/// One Master.csv line (the same quoting as Asterisk's) as a [`Row`], by the shipped
/// template its column count names.
pub fn csv_row(line: &str) -> Option<Row> {
    let fields = super::asterisk::split_csv(line);
    let names = csv_layout(fields.len())?;
    Some(Row::from_pairs(names.into_iter().zip(fields)))
}

/// One `mod_xml_cdr` file: every `<variables>` child (URL-decoded), the first caller
/// profile's numbers and channel name, and the file `record_session` wrote (its
/// `app_log`).
pub fn xml_row(xml: &str) -> Result<Row, String> {
    let mut reader = Reader::from_str(xml);
    let mut row = Row::default();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                text.clear();
            }
            Event::Empty(e) if e.name().as_ref() == b"application" => {
                let attr = |name: &[u8]| {
                    e.attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == name)
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_default()
                };
                if attr(b"app_name") == "record_session" {
                    let mut decoded = String::new();
                    url_decode_into(&attr(b"app_data"), &mut decoded);
                    row.0.entry("record_session".into()).or_insert(decoded);
                }
            }
            Event::Text(t) => text.push_str(&String::from_utf8_lossy(t.as_ref())),
            Event::GeneralRef(r) => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                text.push_str(match name.as_str() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                });
            }
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str).unwrap_or("");
                let mut value = String::new();
                url_decode_into(text.trim(), &mut value);
                let key = match parent {
                    "variables" => Some(name.to_ascii_lowercase()),
                    "caller_profile" => Some(match name.as_str() {
                        "chan_name" => "channel_name".to_string(),
                        other => format!("profile_{other}"),
                    }),
                    _ => None,
                };
                if let Some(key) = key {
                    row.0.entry(key).or_insert(value);
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if row.0.is_empty() {
        return Err("no <variables> in the file".into());
    }
    Ok(row)
}

/// One leg as a record. Times from `*_uepoch` / `*_epoch` when the row has them, else
/// the `*_stamp` local times in `tz`.
pub fn record(row: &Row, tz: &jiff::tz::TimeZone) -> Option<Record> {
    let time = |name: &str| {
        epoch_ms(row.get(&[&format!("{name}_uepoch")]), true)
            .or_else(|| epoch_ms(row.get(&[&format!("{name}_epoch")]), false))
            .or_else(|| local_ms(row.get(&[&format!("{name}_stamp")]), tz))
    };
    let start = time("start")?;
    let end =
        time("end").unwrap_or_else(|| start + row.int(&["duration"]).unwrap_or(0).max(0) * 1000);
    let billsec = row.int(&["billsec"]).unwrap_or(0);
    let answered_at = time("answer").or_else(|| (billsec > 0).then(|| end - billsec * 1000));
    let uuid = row.get(&["uuid"]);
    let links = super::links(&[
        row.get(&["call_uuid"]),
        uuid,
        row.get(&["bleg_uuid"]),
        row.get(&["last_bridge_to"]),
        row.get(&["originator"]),
        row.get(&["originating_leg_uuid"]),
    ])?;
    let name = row.get(&["channel_name"]);
    // mod_cdr_csv's a-legs carry no direction: they are the legs that called in.
    let inbound = !matches!(row.get(&["direction", "call_direction"]), "outbound");
    let dialled = row.get(&["destination_number", "profile_destination_number"]);
    let cause = row.get(&["hangup_cause"]);
    let endpoint = row
        .get(&["dialed_user", "presence_id"])
        .split('@')
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let party = Party {
        channel: Channel {
            id: uuid.to_string(),
            call: links[0].clone(),
            name: name.to_string(),
            caller_number: row
                .get(&["caller_id_number", "profile_caller_id_number"])
                .to_string(),
            exten: endpoint.clone().unwrap_or_else(|| dialled.to_string()),
            context: row.get(&["context", "profile_context"]).to_string(),
            origin: if inbound {
                Origin::Inbound
            } else {
                Origin::Outbound
            },
            local: name.starts_with("loopback/"),
            endpoint: if inbound { None } else { endpoint },
            ..Channel::default()
        },
        answered_at,
        dial: answered_at
            .is_none()
            .then(|| DialStatus::from_freeswitch_cause(cause)),
        hangup_cause: cause.to_string(),
    };
    let (caller, callee) = if inbound {
        let mut party = party;
        party.channel.exten = dialled.to_string();
        (Some(party), None)
    } else {
        (None, Some(party))
    };
    let recording = row.get(&["record_session", "record_path", "recording_file"]);
    Some(Record {
        links,
        start,
        end: end.max(start),
        caller,
        callee,
        dialled: dialled.to_string(),
        dial_target: String::new(),
        single_leg: true,
        did: String::new(),
        recording: (!recording.is_empty()).then(|| recording.to_string()),
    })
}
