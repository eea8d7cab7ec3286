//! The AMI wire format, as pure functions over a byte buffer (no I/O, fuzzed).
//!
//! After a one-line banner (`Asterisk Call Manager/11.0.0\r\n`) both directions exchange
//! messages: `Key: Value` lines ended by CRLF, a message ended by an empty line. A
//! connection calls [`check`] on its buffer to learn whether a whole message is in hand and
//! how long it is, splits that many bytes off and hands them to [`parse`], mini-redis style.
//! Lines ended by a bare LF are accepted too (some AMI proxies send them); keys keep their
//! case but are matched without it; repeated keys are all kept.

use std::sync::LazyLock;

use memchr::memmem;

use super::super::fields::Fields;

/// A message larger than this without its terminating empty line is refused: a broken or
/// hostile peer must not make us buffer without bound. The largest real replies
/// (`ListCommands`, `EndpointDetail`) are a few KiB.
pub const MAX_MESSAGE: usize = 1 << 20;

/// The banner line must start with this (the version after the slash varies).
pub const BANNER_PREFIX: &str = "Asterisk Call Manager/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("AMI message longer than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("AMI banner missing: the peer sent {0:?}")]
    NotAmi(String),
    #[error("a value for AMI header {0} contains a line break")]
    LineBreak(String),
}

/// One AMI message: a response, an event or (from the client) an action.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub fields: Fields,
}

impl Message {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key)
    }

    /// `Event:` value, when this is an event.
    pub fn event(&self) -> Option<&str> {
        self.fields.get("Event")
    }

    /// `Response:` value (`Success`, `Error`, `Goodbye`, `Follows`), when this is a response.
    /// `OriginateResponse` events also carry a `Response:` header, so check `event()` first.
    pub fn response(&self) -> Option<&str> {
        if self.event().is_some() {
            return None;
        }
        self.fields.get("Response")
    }

    pub fn action_id(&self) -> Option<&str> {
        self.fields.get("ActionID")
    }

    /// `Response: Success` (or `Goodbye`/`Follows`, which also mean the action worked).
    pub fn is_success(&self) -> bool {
        matches!(self.response(), Some(r) if !r.eq_ignore_ascii_case("Error"))
    }

    /// A response that opens an event list (`EventList: start`).
    pub fn starts_list(&self) -> bool {
        self.response().is_some()
            && self
                .fields
                .get("EventList")
                .is_some_and(|v| v.eq_ignore_ascii_case("start"))
    }

    /// The event that closes an event list (`EventList: Complete`).
    pub fn completes_list(&self) -> bool {
        self.event().is_some()
            && self
                .fields
                .get("EventList")
                .is_some_and(|v| v.eq_ignore_ascii_case("Complete"))
    }

    /// `Message:` of a response, for error texts.
    pub fn message(&self) -> &str {
        self.fields.str("Message")
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields.fmt(f)
    }
}

/// Finds the banner line. `Ok(Some((consumed, version)))` once the first line is complete.
pub fn check_banner(buf: &[u8]) -> Result<Option<(usize, String)>, CodecError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > 1024 || (!buf.is_empty() && !BANNER_PREFIX.as_bytes().starts_with(head(buf)))
        {
            return Err(CodecError::NotAmi(lossy_head(buf)));
        }
        return Ok(None);
    };
    let line = trim_cr(&buf[..nl]);
    let text = String::from_utf8_lossy(line);
    match text.strip_prefix(BANNER_PREFIX) {
        Some(version) => Ok(Some((nl + 1, version.trim().to_string()))),
        None => Err(CodecError::NotAmi(lossy_head(buf))),
    }
}

fn head(buf: &[u8]) -> &[u8] {
    &buf[..buf.len().min(BANNER_PREFIX.len())]
}

fn lossy_head(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned()
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `Ok(Some(n))` when the first `n` bytes of `buf` hold a whole message (with its
/// terminating empty line, and any empty lines before it); `Ok(None)` when more bytes are
/// needed.
pub fn check(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    check_from(buf, 0)
}

/// [`check`] for a buffer whose first `scanned` bytes were already checked without
/// finding the end (the length it had when `check` last said `None`): the search resumes
/// there, so a large message arriving in many small reads costs linear time, not
/// quadratic.
pub fn check_from(buf: &[u8], scanned: usize) -> Result<Option<usize>, CodecError> {
    // Empty lines before a message are not its end.
    let mut start = 0;
    loop {
        if buf[start..].starts_with(b"\r\n") {
            start += 2;
        } else if buf[start..].starts_with(b"\n") {
            start += 1;
        } else {
            break;
        }
    }
    // A line feed ending a line, followed by an empty line ("\n" or "\r\n"). Back up two
    // bytes so a line feed whose followers had not arrived yet is looked at again. One
    // search for the usual CRLF end over the whole message, then one for a bare-LF end
    // only in front of it, rather than a search per line.
    let pos = start.max(scanned.saturating_sub(2));
    let crlf = CRLF_END.find(&buf[pos..]).map(|off| pos + off);
    let before = crlf.map_or(buf.len(), |nl| nl + 1);
    let lf = LF_END.find(&buf[pos..before]).map(|off| pos + off);
    let end = match (lf, crlf) {
        (Some(nl), _) => Some(nl + 2),
        (None, Some(nl)) => Some(nl + 3),
        (None, None) => None,
    };
    match end {
        Some(end) if end > MAX_MESSAGE => Err(CodecError::TooLarge),
        Some(end) => Ok(Some(end)),
        None if buf.len() > MAX_MESSAGE => Err(CodecError::TooLarge),
        None => Ok(None),
    }
}

/// The end of a line followed by an empty line: CRLF (what Asterisk sends) or bare LF.
static CRLF_END: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\n\r\n"));
static LF_END: LazyLock<memmem::Finder<'static>> = LazyLock::new(|| memmem::Finder::new(b"\n\n"));

/// Parses one message as delimited by [`check`]. Never fails: bytes that are not UTF-8 are
/// replaced, a line without a colon becomes a key with an empty value.
///
/// The message is checked as UTF-8 once (the lossy copy only when it is not UTF-8) and its
/// text kept whole as the fields' text; each line becomes a key and a value range of it,
/// found with byte searches.
pub fn parse(frame: &[u8]) -> Message {
    let Ok(text) = std::str::from_utf8(frame) else {
        return parse(String::from_utf8_lossy(frame).as_bytes());
    };
    // `frame` is now the fields' text byte for byte: the ranges found in it are theirs.
    let mut fields = Fields::over(text.to_owned(), 24);
    let mut start = 0;
    while start < frame.len() {
        let next = memchr::memchr(b'\n', &frame[start..]).map_or(frame.len(), |off| start + off);
        let end = if next > start && frame[next - 1] == b'\r' {
            next - 1
        } else {
            next
        };
        if end > start {
            match memchr::memchr(b':', &frame[start..end]) {
                Some(off) => {
                    let colon = start + off;
                    let value = if colon + 1 < end && frame[colon + 1] == b' ' {
                        colon + 2
                    } else {
                        colon + 1
                    };
                    fields.push_span(start..colon, value..end);
                }
                None => fields.push_span(start..end, end..end),
            }
        }
        start = next + 1;
    }
    Message { fields }
}

/// Encodes an action. Refuses any key or value with a line break: a caller ID or a number
/// must never be able to smuggle a second action into the stream.
pub fn encode_action(
    action: &str,
    action_id: &str,
    headers: &[(&str, &str)],
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64 + headers.len() * 32);
    let mut line = |key: &str, value: &str| -> Result<(), CodecError> {
        if [key, value].iter().any(|s| s.contains(['\r', '\n'])) {
            return Err(CodecError::LineBreak(key.to_string()));
        }
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
        Ok(())
    };
    line("Action", action)?;
    line("ActionID", action_id)?;
    for (key, value) in headers {
        line(key, value)?;
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// Splits a whole transcript into messages (tests, fuzzing, benchmarks): the banner lines
/// are skipped, the rest goes through [`check`] and [`parse`] exactly as a connection does.
pub fn parse_all(mut buf: &[u8]) -> Result<Vec<Message>, CodecError> {
    let mut out = Vec::new();
    loop {
        if buf.starts_with(BANNER_PREFIX.as_bytes()) {
            match check_banner(buf)? {
                Some((n, _)) => buf = &buf[n..],
                None => return Ok(out),
            }
            continue;
        }
        match check(buf)? {
            Some(n) => {
                let msg = parse(&buf[..n]);
                if !msg.fields.is_empty() {
                    out.push(msg);
                }
                buf = &buf[n..];
            }
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests;
