//! The context Flowlu POSTs when it opens the settings iframe, in every shape it may take.
//!
//! Flowlu's article lists the fields (`domain`, `language`, `placement`, `https`,
//! `account`, `app`, `auth`, `ratelimit`) but not the encoding, and a browser navigation
//! can only POST a form. So we accept a JSON document, form fields with bracketed
//! (`auth[access_token]`) or dotted (`auth.access_token`) keys, and a form field whose
//! value is the whole JSON document. Everything becomes one JSON tree, which is read
//! leniently (numbers and booleans where text is expected are fine, unknown fields are
//! ignored) and validated strictly. Field names live here and nowhere else.

use serde_json::{Map, Value};

use super::FlowluError;
use crate::secret::Secret;

/// Used when Flowlu's POST carries no `ratelimit.limit` [ours]: a conservative budget.
pub const DEFAULT_RATELIMIT: u32 = 5;

/// A validated iframe context. `domain` is only syntactically non-empty here; where it
/// may be contacted is decided by [`super::domain::target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IframeContext {
    pub domain: String,
    /// `en` or `ru` (anything else falls back to `en`).
    pub language: &'static str,
    /// False only when the POST said `https = "0"`.
    pub https: bool,
    pub account_id: String,
    /// The MiniApp id (`ref_id` when registering the channel).
    pub app_id: String,
    pub app_version: String,
    /// The integration point id (`manifest_id` when registering the channel).
    pub placement_id: String,
    pub placement_code: String,
    pub access_token: Secret,
    pub refresh_token: Secret,
    /// `auth.expires_at` exactly as posted.
    pub expires_at_raw: String,
    /// `auth.expires_at` read with the configured offset, as Unix seconds (UTC).
    pub expires_at: i64,
    pub ratelimit: u32,
}

/// Parses a JSON body. Not JSON, or not an object: 400.
pub fn from_json(body: &[u8], utc_offset_minutes: i64) -> Result<IframeContext, FlowluError> {
    let value: Value = super::json::parse(body)
        .map_err(|e| FlowluError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(FlowluError::BadRequest(
            "the JSON body must be an object".into(),
        ));
    }
    from_value(&value, utc_offset_minutes)
}

/// Parses decoded form fields (urlencoded or multipart): bracketed or dotted keys, or
/// one field holding the whole context as JSON.
pub fn from_fields(
    fields: &[(String, String)],
    utc_offset_minutes: i64,
) -> Result<IframeContext, FlowluError> {
    let has_flat_domain = fields.iter().any(|(k, _)| k == "domain");
    if !has_flat_domain {
        // The whole context in one field, e.g. `data={"domain": ...}`.
        let embedded = fields.iter().find_map(|(_, v)| {
            let v = v.trim_start();
            if !v.starts_with('{') {
                return None;
            }
            let doc = serde_json::from_str::<Value>(v).ok()?;
            doc.get("domain")?;
            // Read again strictly: a key given twice in the embedded context is a 400.
            Some(super::json::parse_str(v).map_err(|e| {
                FlowluError::BadRequest(format!("the context field is not valid JSON: {e}"))
            }))
        });
        if let Some(doc) = embedded {
            return from_value(&doc?, utc_offset_minutes);
        }
    }
    from_value(&tree(fields)?, utc_offset_minutes)
}

/// `auth[access_token]`, `auth.access_token` and `auth[access_token]` nested deeper all
/// become paths into one JSON object. A key given twice, or used both as a value and as
/// a parent, is a 400: two readings of one request must never be possible.
fn tree(fields: &[(String, String)]) -> Result<Value, FlowluError> {
    let mut root = Map::new();
    for (key, value) in fields {
        let path = key_path(key);
        let dup = || FlowluError::BadRequest(format!("form field {key:?} is given twice"));
        let mut node = &mut root;
        for (i, segment) in path.iter().enumerate() {
            if i + 1 == path.len() {
                if node.contains_key(*segment) {
                    return Err(dup());
                }
                node.insert(segment.to_string(), Value::String(value.clone()));
            } else {
                let child = node
                    .entry(segment.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                node = child.as_object_mut().ok_or_else(dup)?;
            }
        }
    }
    Ok(Value::Object(root))
}

/// Splits `a[b][c]` or `a.b.c` (or a mix) into segments; a malformed key stays whole.
fn key_path(key: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for part in key.split('.') {
        match part.find('[') {
            Some(open) if part.ends_with(']') => {
                out.push(&part[..open]);
                for seg in part[open + 1..part.len() - 1].split("][") {
                    out.push(seg);
                }
            }
            _ => out.push(part),
        }
    }
    if out
        .iter()
        .any(|s| s.is_empty() || s.contains('[') || s.contains(']'))
    {
        return vec![key];
    }
    out
}

/// Text at `path`: strings as they are, numbers and booleans printed; `None` when absent
/// or null; an object or array where text belongs is a 422.
fn text(root: &Value, path: &[&str]) -> Result<Option<String>, FlowluError> {
    let mut node = root;
    for seg in path {
        match node.get(seg) {
            Some(next) => node = next,
            None => return Ok(None),
        }
    }
    match node {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(if *b { "1" } else { "0" }.to_string())),
        _ => Err(FlowluError::Invalid(format!(
            "{} must be a text value",
            path.join(".")
        ))),
    }
}

fn required(root: &Value, path: &[&str]) -> Result<String, FlowluError> {
    match text(root, path)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(FlowluError::Invalid(format!(
            "{} is missing or empty",
            path.join(".")
        ))),
    }
}

/// Printable ASCII without spaces, at most `max` bytes.
fn check_token_like(name: &str, value: &str, max: usize) -> Result<(), FlowluError> {
    if value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FlowluError::Invalid(format!(
            "{name} must be at most {max} printable characters without spaces"
        )));
    }
    Ok(())
}

fn from_value(root: &Value, utc_offset_minutes: i64) -> Result<IframeContext, FlowluError> {
    let domain = required(root, &["domain"])?;
    let account_id = required(root, &["account", "id"])?;
    let app_id = required(root, &["app", "id"])?;
    let app_version = required(root, &["app", "version"])?;
    let placement_id = required(root, &["placement", "id"])?;
    let access_token = required(root, &["auth", "access_token"])?;
    let refresh_token = required(root, &["auth", "refresh_token"])?;
    let expires_at_raw = required(root, &["auth", "expires_at"])?;
    let placement_code = text(root, &["placement", "code"])?.unwrap_or_default();

    if account_id.len() > 64
        || !account_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(FlowluError::Invalid(
            "account.id must be at most 64 letters, digits, '-' or '_'".into(),
        ));
    }
    check_token_like("app.id", &app_id, 128)?;
    check_token_like("placement.id", &placement_id, 128)?;
    check_token_like("placement.code", &placement_code, 128)?;
    if app_version.len() > 64
        || !app_version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    {
        return Err(FlowluError::Invalid(
            "app.version must be a version such as 1.0.0".into(),
        ));
    }
    check_token_like("auth.access_token", &access_token, 4096)?;
    check_token_like("auth.refresh_token", &refresh_token, 4096)?;
    let expires_at = super::tokens::parse_expires_at(&expires_at_raw, utc_offset_minutes)
        .ok_or_else(|| {
            FlowluError::Invalid(format!(
                "auth.expires_at {:?} is not a time such as 2026-03-27 17:29:33",
                expires_at_raw.chars().take(40).collect::<String>()
            ))
        })?;

    let https = match text(root, &["https"])?.as_deref().map(str::trim) {
        None | Some("1") | Some("true") => true,
        Some("0") | Some("false") => false,
        Some(other) => {
            return Err(FlowluError::Invalid(format!(
                "https must be \"1\" or \"0\", not {:?}",
                other.chars().take(20).collect::<String>()
            )));
        }
    };
    let language = match text(root, &["language"])?
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .get(..2)
    {
        Some("ru") => "ru",
        _ => "en",
    };
    let ratelimit = match text(root, &["ratelimit", "limit"])? {
        None => DEFAULT_RATELIMIT,
        Some(s) if s.trim().is_empty() => DEFAULT_RATELIMIT,
        Some(s) => s
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                FlowluError::Invalid("ratelimit.limit must be a whole number from 1".into())
            })?,
    };
    Ok(IframeContext {
        domain,
        language,
        https,
        account_id,
        app_id,
        app_version,
        placement_id,
        placement_code,
        access_token: Secret::new(access_token),
        refresh_token: Secret::new(refresh_token),
        expires_at_raw,
        expires_at,
        ratelimit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const JSON: &str = r#"{"domain": "acme.flowlu.com", "language": "ru",
        "placement": {"id": 42, "code": "contactcenter.service.wizard"}, "https": "1",
        "account": {"id": 123456}, "app": {"id": "app-7", "version": "1.0.0"},
        "auth": {"expires_at": "2026-03-27 17:29:33", "access_token": "AT", "refresh_token": "RT"},
        "ratelimit": {"limit": "16"}, "unknown": {"x": [1, 2]}}"#;

    fn expected() -> IframeContext {
        IframeContext {
            domain: "acme.flowlu.com".into(),
            language: "ru",
            https: true,
            account_id: "123456".into(),
            app_id: "app-7".into(),
            app_version: "1.0.0".into(),
            placement_id: "42".into(),
            placement_code: "contactcenter.service.wizard".into(),
            access_token: Secret::new("AT"),
            refresh_token: Secret::new("RT"),
            expires_at_raw: "2026-03-27 17:29:33".into(),
            expires_at: 1_774_632_573,
            ratelimit: 16,
        }
    }

    #[test]
    fn json_with_numbers_for_strings() {
        assert_eq!(from_json(JSON.as_bytes(), 0).unwrap(), expected());
    }

    #[test]
    fn bracketed_dotted_and_embedded_json_forms_agree() {
        let flat = [
            ("domain", "acme.flowlu.com"),
            ("language", "ru"),
            ("placement{}id", "42"),
            ("placement{}code", "contactcenter.service.wizard"),
            ("https", "1"),
            ("account{}id", "123456"),
            ("app{}id", "app-7"),
            ("app{}version", "1.0.0"),
            ("auth{}expires_at", "2026-03-27 17:29:33"),
            ("auth{}access_token", "AT"),
            ("auth{}refresh_token", "RT"),
            ("ratelimit{}limit", "16"),
        ];
        for style in ["bracket", "dot"] {
            let fields: Vec<(String, String)> = flat
                .iter()
                .map(|(k, v)| {
                    let key = match (style, k.split_once("{}")) {
                        (_, None) => k.to_string(),
                        ("bracket", Some((a, b))) => format!("{a}[{b}]"),
                        (_, Some((a, b))) => format!("{a}.{b}"),
                    };
                    (key, v.to_string())
                })
                .collect();
            assert_eq!(from_fields(&fields, 0).unwrap(), expected(), "{style}");
        }
        let embedded = pairs(&[("data", JSON)]);
        assert_eq!(from_fields(&embedded, 0).unwrap(), expected());
    }

    #[test]
    fn the_offset_moves_expiry_and_other_formats_parse() {
        let ctx = from_json(JSON.as_bytes(), 180).unwrap();
        assert_eq!(ctx.expires_at, 1_774_632_573 - 3 * 3600);
        let doc = JSON.replace("2026-03-27 17:29:33", "2026-03-27T17:29:33Z");
        assert_eq!(
            from_json(doc.as_bytes(), 180).unwrap().expires_at,
            1_774_632_573
        );
    }

    #[test]
    fn validation_failures_name_the_field() {
        let cases = [
            ("\"domain\": \"acme.flowlu.com\",", "", "domain"),
            (
                "\"access_token\": \"AT\"",
                "\"access_token\": \"\"",
                "auth.access_token",
            ),
            (
                "\"access_token\": \"AT\"",
                "\"access_token\": \"A T\"",
                "auth.access_token",
            ),
            ("\"id\": 123456", "\"id\": \"12/34\"", "account.id"),
            (
                "\"version\": \"1.0.0\"",
                "\"version\": \"1 0\"",
                "app.version",
            ),
            ("2026-03-27 17:29:33", "tomorrow", "auth.expires_at"),
            ("\"https\": \"1\"", "\"https\": \"yes\"", "https"),
            ("\"limit\": \"16\"", "\"limit\": \"-1\"", "ratelimit.limit"),
            ("\"id\": 42,", "\"id\": {\"a\": 1},", "placement.id"),
        ];
        for (from, to, field) in cases {
            let doc = JSON.replacen(from, to, 1);
            assert_ne!(doc, JSON, "{from}");
            let e = from_json(doc.as_bytes(), 0).unwrap_err();
            assert!(matches!(e, FlowluError::Invalid(_)), "{e:?}");
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
        assert!(matches!(
            from_json(b"not json", 0),
            Err(FlowluError::BadRequest(_))
        ));
        assert!(matches!(
            from_json(b"[1]", 0),
            Err(FlowluError::BadRequest(_))
        ));
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        let twice = pairs(&[("domain", "a.flowlu.com"), ("domain", "b.flowlu.com")]);
        assert!(matches!(
            from_fields(&twice, 0),
            Err(FlowluError::BadRequest(_))
        ));
        let both = pairs(&[
            ("domain", "a.flowlu.com"),
            ("auth", "x"),
            ("auth[access_token]", "y"),
        ]);
        assert!(matches!(
            from_fields(&both, 0),
            Err(FlowluError::BadRequest(_))
        ));
        let mixed = pairs(&[("domain", "a.flowlu.com"), ("auth.access_token", "x")]);
        let e = from_fields(&mixed, 0).unwrap_err();
        assert!(e.to_string().contains("account.id"), "{e}");
    }

    #[test]
    fn key_paths() {
        assert_eq!(key_path("a[b][c]"), ["a", "b", "c"]);
        assert_eq!(key_path("a.b"), ["a", "b"]);
        assert_eq!(key_path("a.b[c]"), ["a", "b", "c"]);
        assert_eq!(key_path("a[b"), ["a[b"]);
        assert_eq!(key_path("a[]"), ["a[]"]);
    }
}
