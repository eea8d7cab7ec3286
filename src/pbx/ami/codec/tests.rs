use super::*;

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asterisk")
}

/// Every server transcript (`X.txt`), never the `.sent` files.
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
    assert_eq!(out.len(), 15, "every Asterisk transcript");
    out
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// Feeds `chunks` through banner + check + parse as a connection would.
fn stream<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<Message> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut want_banner = true;
    let mut scanned = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if buf.starts_with(b"Asterisk Call Manager/") {
                want_banner = true;
            }
            if want_banner && !buf.is_empty() {
                match check_banner(&buf).unwrap() {
                    Some((n, version)) => {
                        assert!(!version.is_empty());
                        buf.drain(..n);
                        want_banner = false;
                        continue;
                    }
                    None => break,
                }
            }
            // Resumed the way a connection resumes; must agree with a fresh `check`.
            let found = check_from(&buf, scanned).unwrap();
            assert_eq!(found, check(&buf).unwrap());
            match found {
                Some(n) => {
                    scanned = 0;
                    out.push(parse(&buf[..n]));
                    buf.drain(..n);
                }
                None => {
                    scanned = buf.len();
                    break;
                }
            }
        }
    }
    assert!(
        buf.is_empty(),
        "bytes left over: {:?}",
        String::from_utf8_lossy(&buf)
    );
    out
}

#[test]
fn every_message_of_every_transcript_parses() {
    for (name, bytes) in transcripts() {
        let messages = parse_all(&bytes).unwrap();
        let expected = count(&bytes, b"\r\n\r\n");
        assert_eq!(messages.len(), expected, "{name}: message count");
        assert_eq!(stream([&bytes[..]]), messages, "{name}");
        for m in &messages {
            let (key, value) = m.fields.first().unwrap();
            assert!(
                key == "Event" || key == "Response",
                "{name}: message starts with {key}: {value}"
            );
            assert!(
                m.event().is_some() != m.response().is_some(),
                "{name}: {m:?}"
            );
            for (k, _) in m.fields.iter() {
                assert!(
                    !k.is_empty() && !k.contains([':', '\r', '\n']),
                    "{name}: key {k:?}"
                );
            }
        }
    }
}

#[test]
fn split_at_every_byte_boundary_gives_the_same_messages() {
    for name in [
        "actions-responses.txt",
        "sip-click-to-call-unavailable.txt",
        "sip-register-unregister.txt",
    ] {
        let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
        let whole = stream([&bytes[..]]);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(stream([a, b]), whole, "{name} split at {at}");
        }
    }
}

#[test]
fn byte_by_byte_feeding_finds_each_message_when_its_last_byte_arrives() {
    for name in ["agent-busy.txt", "sip-click-to-call-noanswer.txt"] {
        let bytes = std::fs::read(fixture_dir().join(name)).unwrap();
        let whole = stream([&bytes[..]]);
        let bytewise = stream(bytes.chunks(1));
        assert_eq!(bytewise, whole, "{name}");
    }
}

#[test]
fn known_values_come_out_of_the_recordings() {
    let bytes = std::fs::read(fixture_dir().join("agent-busy.txt")).unwrap();
    let messages = parse_all(&bytes).unwrap();
    let login = &messages[0];
    assert_eq!(login.response(), Some("Success"));
    assert_eq!(login.action_id(), Some("login-1"));
    assert_eq!(login.message(), "Authentication accepted");
    let orig = messages
        .iter()
        .find(|m| m.event() == Some("OriginateResponse"))
        .unwrap();
    assert_eq!(orig.action_id(), Some("orig-1"));
    assert_eq!(orig.get("reason"), Some("5"));
    // An event with a Response header is still an event.
    assert_eq!(orig.response(), None);
    assert_eq!(orig.get("Response"), Some("Failure"));
    // Empty values are kept as empty, `<unknown>` as written.
    let newchannel = messages
        .iter()
        .find(|m| m.event() == Some("Newchannel"))
        .unwrap();
    assert_eq!(newchannel.get("AccountCode"), Some(""));
    assert_eq!(newchannel.get("CallerIDNum"), Some("<unknown>"));
    // Uniqueids stay strings, exactly as sent.
    assert_eq!(newchannel.get("Uniqueid"), Some("1795413238.16"));

    let csc = messages
        .iter()
        .position(|m| m.action_id() == Some("csc-mid") && m.response().is_some())
        .unwrap();
    assert!(messages[csc].starts_list());
    assert!(messages[csc + 1].completes_list());
}

#[test]
fn values_keep_inner_spaces_and_colons() {
    let m = parse(b"Event: VarSet\r\nValue:   minrxlost=000.000000;  max: 1\r\nTimestamp: 1795413203.757774\r\n\r\n");
    assert_eq!(m.get("value"), Some("  minrxlost=000.000000;  max: 1"));
    let m = parse(b"Response: Follows\nOutput: line one\nno colon here\n\n");
    assert_eq!(m.get("Output"), Some("line one"));
    assert_eq!(m.get("no colon here"), Some(""));
}

#[test]
fn bare_lf_and_leading_blank_lines_are_accepted() {
    let buf = b"\r\n\nResponse: Success\nActionID: 1\n\nEvent: X\r\n";
    let n = check(buf).unwrap().unwrap();
    let m = parse(&buf[..n]);
    assert_eq!(m.action_id(), Some("1"));
    assert_eq!(check(&buf[n..]).unwrap(), None);
}

#[test]
fn banner_is_checked_by_prefix_only() {
    assert_eq!(
        check_banner(b"Asterisk Call Manager/11.0.0\r\nResponse").unwrap(),
        Some((30, "11.0.0".to_string()))
    );
    assert_eq!(
        check_banner(b"Asterisk Call Manager/99.1-custom\n")
            .unwrap()
            .unwrap()
            .1,
        "99.1-custom"
    );
    assert_eq!(check_banner(b"Asterisk Call").unwrap(), None);
    assert!(matches!(
        check_banner(b"Content-Type: auth/request\n\n"),
        Err(CodecError::NotAmi(_))
    ));
    assert!(matches!(
        check_banner(b"SSH-2.0-OpenSSH"),
        Err(CodecError::NotAmi(_))
    ));
}

#[test]
fn an_endless_message_is_refused() {
    let mut buf = b"Event: X\r\n".to_vec();
    while buf.len() <= MAX_MESSAGE {
        buf.extend_from_slice(b"Key: value value value value\r\n");
    }
    assert_eq!(check(&buf), Err(CodecError::TooLarge));
}

#[test]
fn actions_are_encoded_and_line_breaks_refused() {
    let out = encode_action(
        "Originate",
        "a-1",
        &[
            ("Channel", "PJSIP/100"),
            ("Variable", "A=1"),
            ("Variable", "B=2"),
        ],
    )
    .unwrap();
    assert_eq!(
        out,
        b"Action: Originate\r\nActionID: a-1\r\nChannel: PJSIP/100\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    );
    let back = parse(&out);
    assert_eq!(
        back.fields.get_all("variable").collect::<Vec<_>>(),
        ["A=1", "B=2"]
    );
    assert_eq!(
        encode_action("Originate", "a-2", &[("CallerID", "x\r\nAction: Hangup")]),
        Err(CodecError::LineBreak("CallerID".into()))
    );
}

/// The byte-search `check_from` and `parse` against the char-by-char versions they
/// replaced (issue 17), kept here as the reference: on many small random inputs made of
/// the bytes that matter (line ends, colons, spaces, multi-byte and invalid UTF-8), both
/// find the same message ends and the same fields.
#[test]
fn byte_searches_agree_with_the_reference_decoder() {
    fn reference_check_from(buf: &[u8], scanned: usize) -> Option<usize> {
        let mut start = 0;
        while let Some(empty) = [&b"\r\n"[..], b"\n"]
            .into_iter()
            .find(|line| buf[start..].starts_with(line))
        {
            start += empty.len();
        }
        let mut pos = start.max(scanned.saturating_sub(2));
        while let Some(off) = buf[pos..].iter().position(|&b| b == b'\n') {
            let nl = pos + off;
            let rest = &buf[nl + 1..];
            if rest.starts_with(b"\n") {
                return Some(nl + 2);
            } else if rest.starts_with(b"\r\n") {
                return Some(nl + 3);
            }
            pos = nl + 1;
        }
        None
    }
    fn reference_parse(frame: &[u8]) -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(frame);
        let mut out = Vec::new();
        for line in text.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            out.push(match line.split_once(':') {
                Some((k, v)) => (k.into(), v.strip_prefix(' ').unwrap_or(v).into()),
                None => (line.into(), String::new()),
            });
        }
        out
    }
    const ALPHABET: &[u8] = b"\r\n\r\n: :aZ\xc3\xa9\xff";
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..50_000 {
        let len = (next() % 48) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        let scanned = (next() % (len as u64 + 1)) as usize;
        let found = check_from(&buf, scanned).unwrap();
        assert_eq!(
            found,
            reference_check_from(&buf, scanned),
            "{buf:?} from {scanned}"
        );
        let frame = &buf[..found.unwrap_or(len)];
        let fields: Vec<(String, String)> = parse(frame)
            .fields
            .iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        assert_eq!(fields, reference_parse(frame), "{frame:?}");
    }
}
