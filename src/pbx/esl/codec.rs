//! The FreeSWITCH event socket wire format, as pure functions over a byte buffer (no I/O,
//! fuzzed).
//!
//! Every message is an envelope: `Key: Value` lines ended by LF, an empty line, then
//! `Content-Length` bytes of body when that header is present. [`check`] tells a connection
//! whether a whole envelope is in hand and how long it is; [`parse`] splits it into headers
//! and body. The body of `text/event-plain` is itself a header block (values URL-encoded)
//! optionally followed by its own `Content-Length` body (a `BACKGROUND_JOB` result): both
//! are read from the bytes already in hand by [`parse_event_plain`]. `text/event-json`
//! bodies are one JSON object ([`parse_event_json`]), with the nested body under `_body`.
//! The outbound socket's channel data is an event serialized as the envelope itself
//! ([`parse_channel_data`]).

use super::super::fields::Fields;

/// Header blocks larger than this are refused (real ones are well under 1 KiB; event-plain
/// headers live in the body, not here).
pub const MAX_HEADER: usize = 64 * 1024;
/// Bodies larger than this are refused. `show channels` on a loaded switch is the largest
/// real body: about 1.6 KiB per channel.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("event socket header block longer than {MAX_HEADER} bytes")]
    HeaderTooLarge,
    #[error("event socket Content-Length {0:?} is not a length we accept")]
    BadLength(String),
    #[error("event body is not valid: {0}")]
    BadEvent(String),
    #[error("an event socket command contains a line break")]
    LineBreak,
}

/// One message from the event socket: outer headers (never URL-encoded) and the body.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub headers: Fields,
    pub body: Vec<u8>,
}

impl Envelope {
    pub fn content_type(&self) -> &str {
        self.headers.str("Content-Type")
    }

    pub fn body_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("headers", &self.headers)
            .field("body", &self.body_text())
            .finish()
    }
}

/// One event: its headers (decoded) and its own body, if it has one.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub headers: Fields,
    pub body: Option<String>,
}

impl Event {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.headers.get(key)
    }

    pub fn name(&self) -> &str {
        self.headers.str("Event-Name")
    }

    /// `Event-Subclass` of a `CUSTOM` event (`sofia::register`).
    pub fn subclass(&self) -> &str {
        self.headers.str("Event-Subclass")
    }
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

/// Where the header block of `buf` ends: the offset just past its empty line.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    while let Some(off) = buf[pos..].iter().position(|&b| b == b'\n') {
        let nl = pos + off;
        let line = &buf[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = nl + 1;
        if line.is_empty() {
            return Some(pos);
        }
    }
    None
}

fn content_length(headers: &[u8]) -> Result<usize, CodecError> {
    for line in headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"Content-Length") {
            continue;
        }
        let raw = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        return match raw.parse::<usize>() {
            Ok(n) if n <= MAX_BODY => Ok(n),
            _ => Err(CodecError::BadLength(raw.chars().take(40).collect())),
        };
    }
    Ok(0)
}

/// `Ok(Some(n))` when the first `n` bytes of `buf` hold a whole envelope; `Ok(None)` when
/// more bytes are needed.
pub fn check(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    // Only the (small) header block is scanned, never the body, so calling this again
    // after every read costs little even for a large body.
    let Some(end) = header_end(buf) else {
        if buf.len() > MAX_HEADER {
            return Err(CodecError::HeaderTooLarge);
        }
        return Ok(None);
    };
    if end > MAX_HEADER {
        return Err(CodecError::HeaderTooLarge);
    }
    let body = content_length(&buf[..end])?;
    let total = end + body;
    Ok((buf.len() >= total).then_some(total))
}

fn push_header_lines(block: &str, fields: &mut Fields, decode: bool) {
    for line in block.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (key, value) = match line.split_once(':') {
            Some((k, v)) => (k, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if decode && value.contains('%') {
            fields.push_with(key, |out| url_decode_into(value, out));
        } else {
            fields.push(key, value);
        }
    }
}

/// Parses one envelope as delimited by [`check`].
pub fn parse(frame: &[u8]) -> Result<Envelope, CodecError> {
    let end = header_end(frame).unwrap_or(frame.len());
    let body_len = content_length(&frame[..end])?;
    let body = frame
        .get(end..end + body_len)
        .ok_or_else(|| CodecError::BadLength(body_len.to_string()))?;
    let text = String::from_utf8_lossy(&frame[..end]);
    let mut headers = Fields::with_capacity(text.len(), 4);
    push_header_lines(&text, &mut headers, false);
    Ok(Envelope {
        headers,
        body: body.to_vec(),
    })
}

/// Parses a `text/event-plain` body: URL-decoded headers, then the nested body of the
/// length its own `Content-Length` gives, taken from `body` itself.
pub fn parse_event_plain(body: &[u8]) -> Result<Event, CodecError> {
    let end = header_end(body).unwrap_or(body.len());
    let inner_len = content_length(&body[..end])?;
    let inner = match inner_len {
        0 => None,
        n => {
            let bytes = body.get(end..end + n).ok_or_else(|| {
                CodecError::BadEvent(format!(
                    "nested Content-Length {n} but only {} bytes follow",
                    body.len() - end
                ))
            })?;
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    };
    let text = String::from_utf8_lossy(&body[..end]);
    let mut headers = Fields::with_capacity(text.len(), 96);
    push_header_lines(&text, &mut headers, true);
    Ok(Event {
        headers,
        body: inner,
    })
}

/// Parses the reply to `connect` on an outbound socket (the dialplan's `socket`
/// application): FreeSWITCH serializes a `CHANNEL_DATA` event as the reply itself, so the
/// outer header block (`Content-Type: command/reply` among them) carries the channel's
/// variables URL-encoded, exactly like an event-plain body. `frame` is one whole envelope
/// as delimited by [`check`].
pub fn parse_channel_data(frame: &[u8]) -> Result<Event, CodecError> {
    parse_event_plain(frame)
}

/// Parses a `text/event-json` body. Arrays (multi-valued headers) become repeated keys;
/// `_body` becomes the body.
pub fn parse_event_json(body: &[u8]) -> Result<Event, CodecError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| CodecError::BadEvent(e.to_string()))?;
    let mut headers = Fields::with_capacity(body.len(), map.len());
    let mut inner = None;
    for (key, value) in &map {
        if key == "_body" {
            inner = Some(json_text(value));
            continue;
        }
        match value {
            serde_json::Value::Array(items) => {
                for item in items {
                    headers.push(key, &json_text(item));
                }
            }
            other => headers.push(key, &json_text(other)),
        }
    }
    Ok(Event {
        headers,
        body: inner,
    })
}

fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Decodes `%XX` escapes (FreeSWITCH's `switch_url_encode` output). A `%` not followed by
/// two hex digits is kept as written; `+` is not a space here.
pub fn url_decode_into(value: &str, out: &mut String) {
    let bytes = value.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            decoded.push(h << 4 | l);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    out.push_str(&String::from_utf8_lossy(&decoded));
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Encodes a command: its line, extra headers (`Job-UUID`), and the empty line. Refuses
/// line breaks, which would end the command early and start another.
pub fn encode_command(line: &str, headers: &[(&str, &str)]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(line.len() + 64);
    if line.contains(['\r', '\n']) {
        return Err(CodecError::LineBreak);
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    for (key, value) in headers {
        if key.contains(['\r', '\n']) || value.contains(['\r', '\n']) {
            return Err(CodecError::LineBreak);
        }
        out.extend_from_slice(format!("{key}: {value}\n").as_bytes());
    }
    out.push(b'\n');
    Ok(out)
}

/// Splits a whole transcript into envelopes (tests, fuzzing, benchmarks).
pub fn parse_all(mut buf: &[u8]) -> Result<Vec<Envelope>, CodecError> {
    let mut out = Vec::new();
    while let Some(n) = check(buf)? {
        out.push(parse(&buf[..n])?);
        buf = &buf[n..];
    }
    Ok(out)
}

/// The event inside an envelope, when it carries one.
pub fn event_of(env: &Envelope) -> Result<Option<Event>, CodecError> {
    match env.content_type() {
        "text/event-plain" => parse_event_plain(&env.body).map(Some),
        "text/event-json" => parse_event_json(&env.body).map(Some),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
