//! Static files embedded from `assets/static/` at compile time.

use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, StatusCode};

use super::HttpError;
use super::respond::{self, Response};

/// (file name, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/static/style.css"),
    ),
    (
        "settings.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/static/settings.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/static/icon.svg"),
    ),
];

fn etag(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..12]))
}

/// `GET /assets/<name>` with an ETag so browsers revalidate cheaply.
pub fn get(name: &str, headers: &HeaderMap) -> Result<Response, HttpError> {
    let (_, content_type, bytes) = FILES
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(HttpError::not_found)?;
    let tag = etag(bytes);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut resp = if matches {
        respond::bytes(StatusCode::NOT_MODIFIED, content_type, Vec::new())
    } else {
        respond::bytes(StatusCode::OK, content_type, *bytes)
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex etag"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(resp)
}
