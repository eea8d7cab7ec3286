//! The event socket codec on arbitrary bytes: envelopes fed in chunks whose size the
//! input's first byte chooses, each event body (plain or JSON) parsed and mapped; the raw
//! input is also tried directly as an event-plain body, outbound-socket channel data, a
//! JSON body and a `show channels as json` answer. Nothing may panic, every length
//! `check` reports must lie inside the buffer, and chunked feeding must find the same
//! envelopes.

#![no_main]

use appliance::pbx::esl::{codec, events};
use libfuzzer_sys::fuzz_target;

fn stream(data: &[u8], chunk: usize) -> Result<Vec<codec::Envelope>, codec::CodecError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(n) = codec::check(&buf)? {
            assert!(n > 0 && n <= buf.len(), "check said {n} of {}", buf.len());
            out.push(codec::parse(&buf[..n])?);
            buf.drain(..n);
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let whole = stream(data, data.len());
    let chunked = stream(data, first as usize % 64 + 1);
    // However the bytes arrive, the same envelopes (or the same refusal).
    assert_eq!(whole, chunked);
    let mut mapper = events::Mapper::new();
    let mut out = Vec::new();
    for env in whole.unwrap_or_default() {
        if let Ok(Some(event)) = codec::event_of(&env) {
            mapper.map(&event, &mut out);
        }
        let _ = events::snapshot(&env.body_text());
    }
    if let Ok(event) = codec::parse_event_plain(data) {
        mapper.map(&event, &mut out);
    }
    if let Ok(Some(n)) = codec::check(data) {
        let _ = codec::parse_channel_data(&data[..n]);
    }
    if let Ok(event) = codec::parse_event_json(data) {
        mapper.map(&event, &mut out);
    }
    let _ = events::snapshot(&String::from_utf8_lossy(data));
});
