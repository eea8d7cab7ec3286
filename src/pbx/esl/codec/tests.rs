use super::*;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/freeswitch")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

fn transcripts() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert_eq!(out.len(), 17, "every FreeSWITCH transcript");
    out
}

/// Feeds `chunks` through check + parse as a connection does; fails on leftovers.
fn stream<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Envelope> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(n) = check(&buf).unwrap() {
            out.push(parse(&buf[..n]).unwrap());
            buf.drain(..n);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

const KNOWN_TYPES: &[&str] = &[
    "auth/request",
    "command/reply",
    "api/response",
    "text/event-plain",
    "text/event-json",
    "text/disconnect-notice",
];

#[test]
fn every_message_of_every_transcript_parses() {
    for (name, bytes) in transcripts() {
        let envelopes = stream([&bytes[..]]);
        assert!(!envelopes.is_empty(), "{name}");
        assert_eq!(envelopes, parse_all(&bytes).unwrap(), "{name}");
        let mut sequences = std::collections::HashSet::new();
        for env in &envelopes {
            assert!(KNOWN_TYPES.contains(&env.content_type()), "{name}: {env:?}");
            let Some(event) = event_of(env).unwrap() else {
                continue;
            };
            assert!(!event.name().is_empty(), "{name}: event without a name");
            // Each event once, whole: a misframed message would repeat or mangle its number.
            let seq: u64 = event.get("Event-Sequence").unwrap().parse().unwrap();
            assert!(sequences.insert(seq), "{name}: sequence {seq} seen twice");
            // Values may hold decoded line breaks (an SDP body); keys never do.
            for (k, _) in event.headers.iter() {
                assert!(
                    !k.is_empty() && !k.contains(['\n', ':']),
                    "{name}: key {k:?}"
                );
            }
        }
        if envelopes.iter().any(|e| e.content_type() == "auth/request") {
            assert_eq!(envelopes[0].content_type(), "auth/request", "{name}");
        }
    }
}

#[test]
fn split_at_every_byte_boundary_gives_the_same_messages() {
    for name in [
        "api-responses.txt",
        "sip-actions-registered.txt",
        "sip-register-unregister.txt",
    ] {
        let bytes = read(name);
        let whole = stream([&bytes[..]]);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(stream([a, b]), whole, "{name} split at {at}");
        }
    }
}

#[test]
fn byte_by_byte_feeding_gives_the_same_messages() {
    for name in ["sip-click-to-call-noanswer.txt", "api-responses.txt"] {
        let bytes = read(name);
        assert_eq!(stream(bytes.chunks(1)), stream([&bytes[..]]), "{name}");
    }
}

#[test]
fn replies_and_bodies_come_out_as_recorded() {
    let envelopes = parse_all(&read("api-responses.txt")).unwrap();
    assert_eq!(envelopes[0].content_type(), "auth/request");
    assert_eq!(envelopes[1].headers.get("reply-text"), Some("+OK accepted"));
    // A body without a final newline ends exactly at Content-Length.
    let dir = envelopes
        .iter()
        .find(|e| e.body.starts_with(b"/work"))
        .unwrap();
    assert_eq!(
        dir.body_text(),
        "/work/peers/freeswitch/var/lib/freeswitch/recordings"
    );
    assert!(
        envelopes
            .iter()
            .any(|e| e.body_text() == "-ERR No such channel!\n")
    );
    let bye = envelopes
        .iter()
        .find(|e| e.content_type() == "text/disconnect-notice")
        .unwrap();
    assert!(bye.body_text().starts_with("Disconnected, goodbye."));
    assert_eq!(
        envelopes
            .iter()
            .filter(|e| e.content_type() == "auth/request")
            .count(),
        2,
        "the transcript holds a second connection with a wrong password"
    );
    assert_eq!(
        envelopes.last().unwrap().content_type(),
        "text/disconnect-notice"
    );
    assert!(
        envelopes
            .iter()
            .any(|e| e.headers.get("Reply-Text") == Some("-ERR invalid"))
    );
}

fn background_job(name: &str) -> Event {
    parse_all(&read(name))
        .unwrap()
        .iter()
        .filter_map(|e| event_of(e).unwrap())
        .find(|e| e.name() == "BACKGROUND_JOB")
        .unwrap()
}

#[test]
fn nested_bodies_and_url_decoding_match_between_plain_and_json() {
    let plain = background_job("originate-plain-mid-call-show-channels.txt");
    assert_eq!(
        plain.get("Job-UUID"),
        Some("7f4de4bc-0000-4000-8000-000000000042")
    );
    assert_eq!(
        plain.body.as_deref(),
        Some("+OK 18ebf15d-9f85-4dbe-9930-3ef17129f2ea\n")
    );
    let json = background_job("json-ok.txt");
    assert_eq!(
        json.body.as_deref(),
        Some("+OK c044438d-520c-4ab1-ba94-7a69b0d83ba0\n")
    );
    let arg = "{origination_caller_id_number=100,origination_caller_id_name=CRM,crm_call_id=crm-42}loopback/100/agents 79990001122 XML from-crm";
    assert_eq!(plain.get("Job-Command-Arg"), Some(arg));
    assert_eq!(json.get("Job-Command-Arg"), Some(arg));
    assert_eq!(plain.get("FreeSWITCH-IPv6"), Some("fd00::2"));
    assert_eq!(json.get("FreeSWITCH-IPv6"), Some("fd00::2"));
    assert_eq!(plain.get("Event-Date-Local"), Some("2026-11-23 05:56:13"));
    assert_eq!(json.get("Event-Date-Local"), Some("2026-11-23 05:56:56"));

    let busy = background_job("agent-busy.txt");
    assert_eq!(busy.body.as_deref(), Some("-ERR USER_BUSY\n"));
}

#[test]
fn json_arrays_become_repeated_headers() {
    let envelopes = parse_all(&read("json-ok.txt")).unwrap();
    let event = envelopes
        .iter()
        .filter_map(|e| event_of(e).unwrap())
        .find(|e| e.headers.get_all("variable_DP_MATCH").count() > 1)
        .expect("an event with an array header");
    let values: Vec<_> = event.headers.get_all("variable_DP_MATCH").collect();
    assert!(values.len() >= 2, "{values:?}");
}

#[test]
fn url_decoding_keeps_stray_percent_signs() {
    let mut out = String::new();
    url_decode_into("a%20b%3A%zz%4", &mut out);
    assert_eq!(out, "a b:%zz%4");
    out.clear();
    url_decode_into("tone_stream://%(2000,0,440)+x", &mut out);
    assert_eq!(out, "tone_stream://%(2000,0,440)+x");
}

#[test]
fn nested_length_beyond_the_body_is_an_error() {
    let body = b"Event-Name: BACKGROUND_JOB\nContent-Length: 50\n\n+OK short\n";
    assert!(matches!(
        parse_event_plain(body),
        Err(CodecError::BadEvent(_))
    ));
}

#[test]
fn rude_rejection_and_partial_messages() {
    let msg = b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n";
    assert_eq!(check(&msg[..msg.len() - 1]).unwrap(), None);
    assert_eq!(check(msg).unwrap(), Some(msg.len()));
    let env = parse(msg).unwrap();
    assert_eq!(env.content_type(), "text/rude-rejection");
    assert_eq!(env.body_text(), "Access Denied, go away.\n");
}

#[test]
fn bad_lengths_and_huge_headers_are_refused() {
    assert!(matches!(
        check(b"Content-Type: api/response\nContent-Length: -3\n\n"),
        Err(CodecError::BadLength(_))
    ));
    assert!(matches!(
        check(b"Content-Length: 99999999999999999999\n\n"),
        Err(CodecError::BadLength(_))
    ));
    let endless = vec![b'a'; MAX_HEADER + 1];
    assert_eq!(check(&endless), Err(CodecError::HeaderTooLarge));
}

#[test]
fn commands_are_encoded_and_line_breaks_refused() {
    assert_eq!(
        encode_command("bgapi originate x", &[("Job-UUID", "u-1")]).unwrap(),
        b"bgapi originate x\nJob-UUID: u-1\n\n"
    );
    assert_eq!(
        encode_command("api status\n\nexit", &[]),
        Err(CodecError::LineBreak)
    );
}

/// The reply mod_event_socket gives to `connect` on an outbound socket, built the way its
/// `connect` handler does: the channel's CHANNEL_CREATE headers as recorded (renamed
/// CHANNEL_DATA), then `Content-Type`, `Reply-Text` (`+OK\n`), `Socket-Mode` and
/// `Control`, all serialized URL-encoded, ended by the empty line.
fn channel_data_frame() -> Vec<u8> {
    let create = parse_all(&read("sip-inbound-answered.txt"))
        .unwrap()
        .into_iter()
        .find(|e| {
            event_of(e)
                .unwrap()
                .is_some_and(|ev| ev.name() == "CHANNEL_CREATE")
        })
        .unwrap();
    let headers = String::from_utf8(create.body).unwrap();
    let mut frame = headers
        .trim_end_matches('\n')
        .replace("Event-Name: CHANNEL_CREATE", "Event-Name: CHANNEL_DATA");
    frame.push_str(
        "\nContent-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\n\
         Control: single-channel\n\n",
    );
    frame.into_bytes()
}

#[test]
fn outbound_channel_data_is_decoded_like_an_event() {
    let frame = channel_data_frame();
    assert_eq!(
        check(&frame).unwrap(),
        Some(frame.len()),
        "one whole envelope"
    );
    let env = parse(&frame).unwrap();
    assert_eq!(env.content_type(), "command/reply");
    assert!(env.body.is_empty());
    let data = parse_channel_data(&frame).unwrap();
    assert_eq!(data.name(), "CHANNEL_DATA");
    assert_eq!(data.get("Reply-Text"), Some("+OK\n"));
    assert_eq!(
        data.get("Channel-Name"),
        Some("sofia/external/79161234567@127.0.0.1")
    );
    assert_eq!(
        data.get("Unique-ID"),
        Some("dccfb9ad-c57f-4297-868f-bf615353679b")
    );
    assert_eq!(data.get("Caller-Destination-Number"), Some("74950000000"));
    assert_eq!(
        data.get("variable_sip_user_agent"),
        Some("baresip v1.0.0 (x86_64/linux)")
    );
}
