//! The AMI codec on arbitrary bytes: the banner, then messages fed in chunks whose size
//! the input's first byte chooses, exactly as a connection feeds them; every message goes
//! through the event mapping too. Nothing may panic, every length `check` reports must lie
//! inside the buffer, and chunked feeding (resumed with `check_from`) must find the same
//! messages as one whole buffer.

#![no_main]

use appliance::pbx::ami::{codec, events};
use libfuzzer_sys::fuzz_target;

fn stream(data: &[u8], chunk: usize) -> Result<Vec<codec::Message>, codec::CodecError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut scanned = 0;
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        // Resumed as a connection resumes it; the whole-buffer pass below uses plain
        // `check`, so any disagreement shows up as different messages.
        loop {
            let Some(n) = codec::check_from(&buf, scanned)? else {
                scanned = buf.len();
                break;
            };
            scanned = 0;
            assert!(n > 0 && n <= buf.len(), "check said {n} of {}", buf.len());
            let msg = codec::parse(&buf[..n]);
            if !msg.fields.is_empty() {
                out.push(msg);
            }
            buf.drain(..n);
        }
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    if let Ok(Some((n, _version))) = codec::check_banner(data) {
        assert!(n <= data.len());
    }
    let whole = stream(data, data.len());
    let chunked = stream(data, first as usize % 64 + 1);
    // However the bytes arrive, the same messages (or the same refusal).
    assert_eq!(whole, chunked);
    let mut out = Vec::new();
    for msg in whole.unwrap_or_default() {
        let _ = msg.event();
        let _ = msg.response();
        let _ = msg.starts_list() || msg.completes_list();
        events::map(&msg, &mut out);
        let _ = events::snapshot(&msg);
        let _ = events::timestamp(&msg);
    }
});
