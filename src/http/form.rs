//! Decoding request bodies that browsers and Flowlu send: JSON, URL-encoded forms and
//! `multipart/form-data` (text fields only). Anything else is a 415.

use hyper::HeaderMap;
use hyper::header;

use super::HttpError;

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Json(Vec<u8>),
    Fields(Vec<(String, String)>),
}

/// Decodes `body` according to its `Content-Type`: JSON is returned raw for the caller
/// to parse; forms become (name, value) pairs in order.
pub fn decode(headers: &HeaderMap, body: &[u8], allow_json: bool) -> Result<Decoded, HttpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" if allow_json => Ok(Decoded::Json(body.to_vec())),
        "application/x-www-form-urlencoded" => {
            if std::str::from_utf8(body).is_err() {
                return Err(HttpError::bad_request(
                    "bad_form",
                    "the form body is not valid UTF-8",
                ));
            }
            Ok(Decoded::Fields(
                url::form_urlencoded::parse(body).into_owned().collect(),
            ))
        }
        "multipart/form-data" => {
            let boundary = param(content_type, "boundary").ok_or_else(|| {
                HttpError::bad_request("bad_form", "multipart/form-data without a boundary")
            })?;
            multipart(body, &boundary)
                .map(Decoded::Fields)
                .map_err(|why| HttpError::bad_request("bad_form", why))
        }
        _ => Err(HttpError::new(
            hyper::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            if allow_json {
                "send application/json, application/x-www-form-urlencoded or multipart/form-data"
            } else {
                "send application/x-www-form-urlencoded or multipart/form-data"
            },
        )),
    }
}

/// A parameter of a header value such as `multipart/form-data; boundary="x"`.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case(name) {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty()).then(|| v.to_string())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Parses a `multipart/form-data` body (RFC 7578) into text fields. Parts with a
/// `filename` (file uploads) are skipped; a part that is not UTF-8 is an error.
pub fn multipart(body: &[u8], boundary: &str) -> Result<Vec<(String, String)>, String> {
    if boundary.len() > 70 {
        return Err("the multipart boundary is longer than 70 characters".into());
    }
    let delimiter = format!("--{boundary}");
    let mut pos = find(body, delimiter.as_bytes(), 0)
        .ok_or("the multipart body does not contain its boundary")?
        + delimiter.len();
    let next_delimiter = format!("\r\n--{boundary}");
    let mut fields = Vec::new();
    loop {
        match body.get(pos..pos + 2) {
            Some(b"--") => return Ok(fields),
            Some(b"\r\n") => pos += 2,
            _ => return Err("malformed multipart body (no line break after a boundary)".into()),
        }
        let headers_end = find(body, b"\r\n\r\n", pos).ok_or("a multipart part has no headers")?;
        let headers = std::str::from_utf8(&body[pos..headers_end])
            .map_err(|_| "multipart part headers are not UTF-8")?;
        let content_start = headers_end + 4;
        let end = find(body, next_delimiter.as_bytes(), content_start)
            .ok_or("the multipart body is not terminated")?;
        let content = &body[content_start..end];
        pos = end + next_delimiter.len();

        let disposition = headers
            .split("\r\n")
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then_some(v)
            })
            .ok_or("a multipart part has no Content-Disposition")?;
        if param(disposition, "filename").is_some() {
            continue;
        }
        let name = param(disposition, "name").ok_or("a multipart part has no name")?;
        let value = std::str::from_utf8(content)
            .map_err(|_| format!("multipart field {name:?} is not UTF-8"))?;
        fields.push((name, value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn urlencoded_and_json() {
        let d = decode(
            &headers("application/x-www-form-urlencoded; charset=UTF-8"),
            b"a%5Bb%5D=1&c=x+y",
            true,
        )
        .unwrap();
        assert_eq!(
            d,
            Decoded::Fields(vec![
                ("a[b]".into(), "1".into()),
                ("c".into(), "x y".into())
            ])
        );
        assert_eq!(
            decode(&headers("application/json"), b"{}", true).unwrap(),
            Decoded::Json(b"{}".to_vec())
        );
        let e = decode(&headers("application/json"), b"{}", false).unwrap_err();
        assert_eq!(e.status.as_u16(), 415);
        let e = decode(&headers("text/plain"), b"x", true).unwrap_err();
        assert_eq!(e.status.as_u16(), 415);
        let e = decode(&HeaderMap::new(), b"x", true).unwrap_err();
        assert_eq!(e.status.as_u16(), 415);
    }

    #[test]
    fn multipart_fields_in_order_files_skipped() {
        let body = "preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"auth[access_token]\"\r\n\r\nAT\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile\r\n\
                    --XyZ\r\ncontent-disposition: form-data; name=\"multi\"\r\n\r\nline1\r\nline2\r\n--XyZ--\r\n";
        let d = decode(
            &headers("multipart/form-data; boundary=\"XyZ\""),
            body.as_bytes(),
            true,
        )
        .unwrap();
        assert_eq!(
            d,
            Decoded::Fields(vec![
                ("auth[access_token]".into(), "AT".into()),
                ("multi".into(), "line1\r\nline2".into()),
            ])
        );
    }

    #[test]
    fn broken_multipart_is_a_400() {
        for body in [
            "no boundary here",
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
            "--XyZ\r\nno-headers-end",
            "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--",
        ] {
            let e = decode(
                &headers("multipart/form-data; boundary=XyZ"),
                body.as_bytes(),
                true,
            )
            .unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{body}");
        }
        let e = decode(&headers("multipart/form-data"), b"x", true).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
    }
}
