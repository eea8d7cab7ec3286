//! Paths, URLs and messages as they may appear in logs: secrets become `***`.
//!
//! Redaction goes by what a value is, never by where it stands, so that no spelling of a
//! path (`//`, an extra segment, upper case, percent-encoding) can carry a secret into a
//! log line:
//!
//! - a path segment or query value is masked when, percent-decoded (repeatedly, so that
//!   `%2541` counts as `A`), it contains a *token-like run*: at least [`MIN_RUN`]
//!   characters of the token alphabet `A-Z a-z 0-9 - _` mixing at least two of upper
//!   case, lower case and digits. Every token the appliance makes ([`random_token`]: 43
//!   characters of URL-safe base64 for 32 bytes; Flowlu's uuids are 36) is such a run,
//!   while path words (`flowlu-entities`, lower case), numeric ids and phone numbers
//!   (digits only) and short things stay readable;
//! - a query value is masked whatever it looks like when its key names a secret
//!   ([`SECRET_WORDS`]), read after percent-decoding (repeatedly), `+` as a space and
//!   case-folding, and ignoring everything but letters and digits (`Api_Key+`, `k%65y`);
//! - a query key that itself decodes to something with `=`, `&` or `;` in it, or to a
//!   token-like run (`key%3DSECRET`), is masked whole.
//!
//! [`random_token`]: crate::secret::random_token

/// The shortest token-like run that is masked.
pub const MIN_RUN: usize = 16;

/// Query keys containing one of these words (after normalizing) never show their value.
const SECRET_WORDS: &[&str] = &[
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "csrf",
    "auth",
    "signature",
    "session",
    "code",
    "cred",
];

const MASK: &str = "***";

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// True when `text` contains a token-like run (see the module documentation).
pub fn looks_secret(text: &str) -> bool {
    text.split(|c: char| !token_char(c)).any(|run| {
        if run.len() < MIN_RUN {
            return false;
        }
        let upper = run.bytes().any(|b| b.is_ascii_uppercase());
        let lower = run.bytes().any(|b| b.is_ascii_lowercase());
        let digit = run.bytes().any(|b| b.is_ascii_digit());
        usize::from(upper) + usize::from(lower) + usize::from(digit) >= 2
    })
}

/// One round of percent-decoding (and `+` as a space when `plus_is_space`), lossy.
fn decode_once(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-decoded until nothing changes (at most a few rounds: double encoding).
fn decode(text: &str, plus_is_space: bool) -> String {
    let mut current = text.to_string();
    for _ in 0..4 {
        let next = decode_once(&current, plus_is_space);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

/// True for a query key that names a secret, however it is spelled.
fn secret_key(decoded: &str) -> bool {
    let folded: String = decoded
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_WORDS.iter().any(|w| folded.contains(w))
}

fn segment(raw: &str) -> &str {
    if looks_secret(&decode(raw, false)) {
        MASK
    } else {
        raw
    }
}

fn query_pair(raw: &str) -> String {
    let (raw_key, raw_value) = match raw.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (raw, None),
    };
    let key = decode(raw_key, true);
    let shown_key = if looks_secret(&key) || key.contains(['=', '&', ';']) {
        MASK
    } else {
        raw_key
    };
    match raw_value {
        None => shown_key.to_string(),
        Some(v) if secret_key(&key) || looks_secret(&decode(v, true)) => {
            format!("{shown_key}={MASK}")
        }
        Some(v) => format!("{shown_key}={v}"),
    }
}

/// A query string with secrets masked; `&` and `;` both separate pairs.
fn redact_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut rest = query;
    loop {
        let cut = rest.find(['&', ';']).unwrap_or(rest.len());
        out.push_str(&query_pair(&rest[..cut]));
        if cut == rest.len() {
            return out;
        }
        out.push_str(&rest[cut..=cut]);
        rest = &rest[cut + 1..];
    }
}

/// A request path and query as the access log shows them: every segment and query value
/// that is (or may be) a secret replaced by `***`.
pub fn redact_path(path: &str, query: Option<&str>) -> String {
    let mut logged: String = path.split('/').map(segment).collect::<Vec<_>>().join("/");
    if let Some(query) = query {
        logged.push('?');
        logged.push_str(&redact_query(query));
    }
    logged
}

/// A URL (one we send to, or one a message names) for a log line: any user name and
/// password dropped, path and query as [`redact_path`], no fragment. Not a URL: treated
/// as free text ([`redact_text`]).
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return redact_text(url);
    };
    let Some(host) = parsed.host_str() else {
        return redact_text(url);
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let user = if parsed.username().is_empty() && parsed.password().is_none() {
        ""
    } else {
        "***@"
    };
    format!(
        "{}://{user}{host}{port}{}",
        parsed.scheme(),
        redact_path(parsed.path(), parsed.query())
    )
}

/// Free text (an error message that may quote a URL): every token-like run, and every
/// value after a secret-named `key=`, replaced by `***`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let masked = match word.split_once('?') {
            Some((before, query)) => format!("{}?{}", mask_runs(before), redact_query(query)),
            None => mask_runs(word),
        };
        // A secret percent-encoded past the run rule (`%41bc…`): the whole word goes.
        if looks_secret(&decode(&masked, true).replace(MASK, " ")) {
            out.push_str(MASK);
        } else {
            out.push_str(&masked);
        }
    }
    out
}

/// `word` with each token-like run replaced by `***`, the rest kept.
fn mask_runs(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if looks_secret(run) {
            out.push_str(MASK);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in word.chars() {
        if token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// A logger that passes every line of other crates (ureq, hyper, rustls...: they may
/// print a URL we send to, with its token) through [`redact_text`] before `L` writes it.
/// The appliance's own lines are left as written: each place that logs a path or URL
/// redacts it, and call and event ids stay readable.
pub struct RedactingLog<L>(pub L);

impl<L: log::Log> log::Log for RedactingLog<L> {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if record.target().starts_with("appliance") {
            return self.0.log(record);
        }
        let text = redact_text(&record.args().to_string());
        self.0.log(
            &log::Record::builder()
                .args(format_args!("{text}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests;
