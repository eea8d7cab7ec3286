//! `GET /recordings/<token>` (and HEAD): a call recording, streamed from disk in chunks,
//! with byte ranges, validators and a content type by extension.
//!
//! Which file a token stands for, and whether it may be served, is decided by
//! `crate::recordings::open_link` (on every request, so a file swapped for a symlink
//! since it was published is refused). Here only HTTP happens: conditional requests,
//! `Range`, headers, and a body that reads the file 64 KiB at a time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};

use super::HttpError;
use super::range::{self, Ranged};
use super::respond::{self, BoxError, Response};
use crate::app::State;
use crate::recordings::{self, Served};

/// Bytes read from disk per body frame.
pub const CHUNK: usize = 64 * 1024;

const IMF_FIXDATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

pub async fn get(
    state: &State,
    token: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let served = recordings::open_link(&state.recordings, token).await?;
    let etag = etag(&served);
    let modified = http_date(served.modified);
    let len = served.len;
    if not_modified(headers, &etag, served.modified) {
        let mut resp = hyper::Response::new(respond::full(Bytes::new()));
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        set_common(resp.headers_mut(), &served.file_name, &etag, &modified);
        return Ok(resp);
    }
    // Range applies to GET only (RFC 9110 14.2), and only while If-Range still matches.
    let ranged = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(value) if method == Method::GET && if_range_holds(headers, &etag, &modified) => {
            range::parse(value, len)
        }
        _ => Ranged::Full,
    };
    let (status, start, count) = match ranged {
        Ranged::Full => (StatusCode::OK, 0, len),
        Ranged::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Ranged::Unsatisfiable => {
            let mut resp = respond::json(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &json!({"error": {
                    "code": "range_not_satisfiable",
                    "message": format!("the recording has {len} bytes"),
                }}),
            );
            let h = resp.headers_mut();
            h.insert(header::CONTENT_RANGE, value(&format!("bytes */{len}")));
            set_common(h, &served.file_name, &etag, &modified);
            return Ok(resp);
        }
    };
    let content_type = value(&served.content_type);
    let mut file = tokio::fs::File::from_std(served.file);
    let body = if method == Method::HEAD {
        respond::full(Bytes::new())
    } else {
        if start > 0 {
            file.seek(std::io::SeekFrom::Start(start))
                .await
                .map_err(internal)?;
        }
        FileBody::new(file, count).boxed()
    };
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + count - 1;
        h.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {start}-{end}/{len}")),
        );
    }
    set_common(h, &served.file_name, &etag, &modified);
    Ok(resp)
}

/// Headers every answer about an existing recording carries.
fn set_common(h: &mut HeaderMap, file_name: &str, etag: &str, modified: &str) {
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, value(etag));
    h.insert(header::LAST_MODIFIED, value(modified));
    // The URL is a bearer credential: shared caches must not keep the answer.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; media-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    let name: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !name.is_empty() {
        h.insert(
            header::CONTENT_DISPOSITION,
            value(&format!("inline; filename=\"{name}\"")),
        );
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header values built from ASCII")
}

fn internal(e: std::io::Error) -> HttpError {
    log::error!("serving a recording: {e}");
    HttpError::internal()
}

/// Changes whenever the file is replaced (inode), grows or is rewritten.
fn etag(s: &Served) -> String {
    let nanos = s
        .modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{:x}-{:x}\"", s.inode, s.len, nanos)
}

fn http_date(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(IMF_FIXDATE)
        .unwrap_or_default()
}

fn parse_http_date(s: &str) -> Option<SystemTime> {
    let dt = time::PrimitiveDateTime::parse(s.trim(), IMF_FIXDATE).ok()?;
    Some(dt.assume_utc().into())
}

/// `If-None-Match` (any of our tag, weakly compared, or `*`), else `If-Modified-Since`.
fn not_modified(headers: &HeaderMap, etag: &str, modified: SystemTime) -> bool {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        return inm
            .split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    match since {
        // HTTP dates have whole seconds.
        Some(since) => {
            let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            secs(modified) <= secs(since)
        }
        None => false,
    }
}

/// `If-Range`: a strong tag equal to ours, or exactly our Last-Modified date.
fn if_range_holds(headers: &HeaderMap, etag: &str, modified: &str) -> bool {
    match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(v) => {
            let v = v.trim();
            v == etag || v == modified
        }
    }
}

/// A response body reading `remaining` bytes of a file, at most [`CHUNK`] per frame, so
/// memory use does not depend on the recording's size.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Box<[u8]>,
}

impl FileBody {
    pub fn new(file: tokio::fs::File, remaining: u64) -> FileBody {
        let size = remaining.min(CHUNK as u64) as usize;
        FileBody {
            file,
            remaining,
            buf: vec![0; size].into_boxed_slice(),
        }
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(this.buf.len() as u64) as usize;
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Ok(())) if read.filled().is_empty() => Poll::Ready(Some(Err(
                "the recording became shorter while it was being sent".into(),
            ))),
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(read.filled());
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn the_body_streams_in_bounded_chunks() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..(3 * CHUNK + 123)).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let mut file = tokio::fs::File::from_std(f);
        file.seek(std::io::SeekFrom::Start(100)).await.unwrap();
        let mut body = FileBody::new(file, data.len() as u64 - 100);
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK, "{}", chunk.len());
            got.extend_from_slice(&chunk);
            frames += 1;
        }
        assert_eq!(got, data[100..]);
        assert!(frames >= 4, "{frames}");
    }

    #[tokio::test]
    async fn a_file_that_shrinks_mid_download_ends_in_an_error_not_a_short_body() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 1000]).unwrap();
        std::io::Seek::rewind(&mut f).unwrap();
        let mut body = FileBody::new(tokio::fs::File::from_std(f), 5000);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 1000);
        assert!(body.frame().await.unwrap().is_err());
    }

    #[test]
    fn http_dates_round_trip() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
        assert_eq!(parse_http_date("yesterday"), None);
    }

    #[test]
    fn conditional_headers() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(784_111_777_500);
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, "\"a\"", t));
        h.insert(
            header::IF_MODIFIED_SINCE,
            value("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert!(not_modified(&h, "\"a\"", t));
        h.insert(
            header::IF_MODIFIED_SINCE,
            value("Sun, 06 Nov 1994 08:49:36 GMT"),
        );
        assert!(!not_modified(&h, "\"a\"", t));
        // If-None-Match wins over If-Modified-Since.
        h.insert(header::IF_NONE_MATCH, value("\"b\", W/\"a\""));
        assert!(not_modified(&h, "\"a\"", t));
        h.insert(header::IF_NONE_MATCH, value("\"b\""));
        assert!(!not_modified(&h, "\"a\"", t));

        let mut h = HeaderMap::new();
        let date = http_date(t);
        assert!(if_range_holds(&h, "\"a\"", &date));
        h.insert(header::IF_RANGE, value("\"a\""));
        assert!(if_range_holds(&h, "\"a\"", &date));
        h.insert(header::IF_RANGE, value("W/\"a\""));
        assert!(!if_range_holds(&h, "\"a\"", &date));
        h.insert(header::IF_RANGE, value(&date));
        assert!(if_range_holds(&h, "\"a\"", &date));
        h.insert(header::IF_RANGE, value("\"old\""));
        assert!(!if_range_holds(&h, "\"a\"", &date));
    }
}
