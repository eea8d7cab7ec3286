//! Recording URLs: a published recording is served at `/recordings/<token>` with its
//! type, length and byte ranges; expired, forged and traversal URLs are not; a file
//! swapped for a symlink after publishing is refused. Publishing itself (waiting for a
//! file still being written, refusals) is in `recordings_publish`.

use std::io::Read;
use std::path::{Path, PathBuf};

use appliance::recordings::{self, Published};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{TestApp, tls_connect};

pub const PUBLIC_URL: &str = "https://pbx.example.com:8443";

/// The PBX's recording directories, outside the appliance's data directory.
pub struct RecDirs {
    pub _tmp: tempfile::TempDir,
    /// Like `/var/spool/asterisk/monitor`.
    pub monitor: PathBuf,
    /// Like `/var/lib/freeswitch/recordings`.
    pub freeswitch: PathBuf,
    /// Somewhere no recording URL may ever reach.
    pub outside: PathBuf,
}

pub fn rec_dirs() -> RecDirs {
    let tmp = tempfile::tempdir().unwrap();
    let monitor = tmp.path().join("spool/asterisk/monitor");
    let freeswitch = tmp.path().join("lib/freeswitch/recordings");
    let outside = tmp.path().join("etc");
    for d in [&monitor, &freeswitch, &outside] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(outside.join("shadow"), b"root:SECRET-HASH:19000::::::").unwrap();
    RecDirs {
        _tmp: tmp,
        monitor,
        freeswitch,
        outside,
    }
}

/// An appliance serving recordings from `dirs`.
pub async fn start(dirs: &RecDirs, public_url: &str, max_wait: &str) -> TestApp {
    start_edited(dirs, public_url, max_wait, |_| {}).await
}

/// [`start`], then `edit` adjusts the config.
pub async fn start_edited(
    dirs: &RecDirs,
    public_url: &str,
    max_wait: &str,
    edit: impl FnOnce(&mut appliance::config::Config),
) -> TestApp {
    let (monitor, freeswitch) = (dirs.monitor.clone(), dirs.freeswitch.clone());
    let (public_url, max_wait) = (public_url.to_string(), max_wait.to_string());
    TestApp::start_with(move |c| {
        c.server.public_url = public_url;
        c.recordings.dirs = vec![
            monitor.display().to_string(),
            freeswitch.display().to_string(),
        ];
        c.recordings.settle = "50ms".into();
        c.recordings.max_wait = max_wait;
        edit(c);
    })
    .await
}

/// A 16-bit 8 kHz mono WAV with `samples` bytes of audio; `closed` puts the final sizes
/// in its header, otherwise the zeros Asterisk writes while recording.
pub fn wav(audio_bytes: usize, closed: bool) -> Vec<u8> {
    let data = audio_bytes as u32;
    let (riff, data_size) = if closed { (36 + data, data) } else { (0, 0) };
    let mut h = Vec::with_capacity(44 + audio_bytes);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&riff.to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&[1, 0, 1, 0]);
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&16000u32.to_le_bytes());
    h.extend_from_slice(&[2, 0, 16, 0]);
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_size.to_le_bytes());
    h.extend((0..audio_bytes).map(|i| (i * 7 % 256) as u8));
    h
}

/// The path part of a published URL.
pub fn path_of(published: &Published) -> String {
    let url = published.url.expose();
    let path = url
        .strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("URL not under public_url"));
    assert!(path.starts_with("/recordings/"));
    path.to_string()
}

pub struct Got {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A request whose (binary) answer is read whole.
pub async fn fetch(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
    let agent = app.agent();
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{}", app.base, path));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Vec::<u8>::new()).unwrap();
    tokio::task::spawn_blocking(move || {
        let mut resp = agent.run(request).unwrap();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let mut body = Vec::new();
        resp.body_mut().as_reader().read_to_end(&mut body).unwrap();
        Got {
            status: resp.status().as_u16(),
            headers,
            body,
        }
    })
    .await
    .unwrap()
}

/// The status line's code for a raw request target, sent exactly as written.
async fn raw_status(app: &TestApp, target: &str) -> u16 {
    let mut conn = tls_connect(app).await;
    let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("SECRET-HASH"), "{text}");
    text.get(9..12)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {text}"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_published_recording_is_served_with_its_type_length_and_validators() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let audio = wav(48_000, true);
    let file = write(&dirs.monitor, "in-74950000000-1795416368.27.wav", &audio);
    let published = recordings::publish(&app.state.recordings, "call-1", file.to_str().unwrap())
        .await
        .unwrap();
    let path = path_of(&published);
    let token = published.token.expose();
    assert_eq!(path, format!("/recordings/{token}"));
    assert_eq!(token.len(), 43);
    assert_eq!(published.size, 48_044);
    assert!(format!("{published:?}").contains("***") && !format!("{published:?}").contains(token));
    assert_eq!(
        published.expires_at,
        recordings::store::NEVER,
        "valid while the file is kept"
    );

    let got = fetch(&app, "GET", &path, &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, audio);
    assert_eq!(got.header("content-type"), Some("audio/wav"));
    assert_eq!(got.header("content-length"), Some("48044"));
    assert_eq!(got.header("accept-ranges"), Some("bytes"));
    assert_eq!(got.header("cache-control"), Some("private"));
    assert!(got.header("last-modified").unwrap().ends_with(" GMT"));
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename=\"in-74950000000-1795416368.27.wav\"")
    );
    let etag = got.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"'), "{etag}");

    let head = fetch(&app, "HEAD", &path, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("48044"));
    assert_eq!(head.header("content-type"), Some("audio/wav"));
    assert_eq!(head.header("etag"), Some(etag.as_str()));

    let cached = fetch(&app, "GET", &path, &[("If-None-Match", &etag)]).await;
    assert_eq!(cached.status, 304);
    assert!(cached.body.is_empty());

    // The database holds the token's hash, never the token.
    let db = app.db();
    let (hash, call): (Vec<u8>, String) = db
        .query_row("SELECT token_hash, call_id FROM recording_links", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(call, "call-1");
    assert_eq!(hash, sha2::Sha256::digest(token.as_bytes()).to_vec());

    // A bare name (CDR recordingfile) is looked up in each directory; the type follows
    // the extension.
    let mp3 = write(
        &dirs.freeswitch,
        "inbound-74950000000-57b97d35.mp3",
        b"ID3\x04rest",
    );
    let published = recordings::publish(
        &app.state.recordings,
        "call-2",
        "inbound-74950000000-57b97d35.mp3",
    )
    .await
    .unwrap();
    let got = fetch(&app, "GET", &path_of(&published), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("audio/mpeg"));
    assert_eq!(got.body, std::fs::read(mp3).unwrap());

    // Served under its own route name in the metrics, never under its path.
    let metrics = app.get("/metrics").await.body;
    for line in [
        "appliance_http_requests_total{route=\"recording\",status=\"200\"} 3",
        "appliance_http_requests_total{route=\"recording\",status=\"304\"} 1",
    ] {
        assert!(metrics.contains(line), "{metrics}");
    }
    assert!(!metrics.contains(token));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_ranges_are_served_as_206_and_impossible_ones_as_416() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let audio = wav(10_000, true);
    let len = audio.len();
    let file = write(&dirs.monitor, "ranges.wav", &audio);
    let published = recordings::publish(&app.state.recordings, "c", file.to_str().unwrap())
        .await
        .unwrap();
    let path = path_of(&published);
    let range = |spec: &'static str| {
        let path = path.clone();
        let app = &app;
        async move { fetch(app, "GET", &path, &[("Range", spec)]).await }
    };

    // First bytes: the header.
    let got = range("bytes=0-43").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, audio[..44]);
    assert_eq!(got.header("content-length"), Some("44"));
    let want = format!("bytes 0-43/{len}");
    assert_eq!(got.header("content-range"), Some(want.as_str()));
    assert_eq!(got.header("content-type"), Some("audio/wav"));

    // Suffix: the last 100 bytes.
    let got = range("bytes=-100").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, audio[len - 100..]);
    let want = format!("bytes {}-{}/{len}", len - 100, len - 1);
    assert_eq!(got.header("content-range"), Some(want.as_str()));

    // Open end, from the middle.
    let got = range("bytes=5000-").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, audio[5000..]);
    assert_eq!(
        got.header("content-length"),
        Some((len - 5000).to_string().as_str())
    );

    // An end past the file is cut to it.
    let got = range("bytes=10000-99999").await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, audio[10_000..]);

    // Unsatisfiable: starts at or after the end.
    for spec in ["bytes=10044-", "bytes=20000-30000", "bytes=-0"] {
        let got = range(spec).await;
        assert_eq!(got.status, 416, "{spec}");
        let want = format!("bytes */{len}");
        assert_eq!(got.header("content-range"), Some(want.as_str()), "{spec}");
    }

    // Several ranges, or an invalid header: the whole file.
    for spec in ["bytes=0-1,5-9", "bytes=9-1", "lines=1-2"] {
        let got = range(spec).await;
        assert_eq!(got.status, 200, "{spec}");
        assert_eq!(got.body, audio, "{spec}");
    }

    // If-Range with an old validator: the whole (changed) file instead of a piece of it.
    let etag = fetch(&app, "HEAD", &path, &[])
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let got = fetch(
        &app,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), len);
    let got = fetch(
        &app,
        "GET",
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, audio[..10]);

    // HEAD ignores Range (ranges are defined for GET only).
    let head = fetch(&app, "HEAD", &path, &[("Range", "bytes=0-9")]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_links_answer_410_and_are_swept_later() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let file = write(&dirs.monitor, "old.wav", &wav(100, true));
    let first = recordings::publish(&app.state.recordings, "c1", file.to_str().unwrap())
        .await
        .unwrap();
    let second = recordings::publish(&app.state.recordings, "c2", file.to_str().unwrap())
        .await
        .unwrap();
    assert_ne!(first.token.expose(), second.token.expose());
    assert_eq!(fetch(&app, "GET", &path_of(&first), &[]).await.status, 200);

    // Step the clock: c1's link expired a moment ago, c2's 31 days ago.
    let db = app.db();
    let now = now_ms();
    db.execute(
        "UPDATE recording_links SET expires_at = ?1 WHERE call_id = 'c1'",
        [now - 1],
    )
    .unwrap();
    db.execute(
        "UPDATE recording_links SET expires_at = ?1 WHERE call_id = 'c2'",
        [now - 31 * 86_400_000],
    )
    .unwrap();
    for path in [path_of(&first), path_of(&second)] {
        let got = fetch(&app, "GET", &path, &[]).await;
        assert_eq!(got.status, 410);
        assert_eq!(fetch(&app, "HEAD", &path, &[]).await.status, 410);
    }
    // The next publication sweeps links expired more than 30 days ago.
    let third = recordings::publish(&app.state.recordings, "c3", "old.wav")
        .await
        .unwrap();
    assert_eq!(fetch(&app, "GET", &path_of(&first), &[]).await.status, 410);
    assert_eq!(fetch(&app, "GET", &path_of(&second), &[]).await.status, 404);
    assert_eq!(fetch(&app, "GET", &path_of(&third), &[]).await.status, 200);
    let left: i64 = db
        .query_row("SELECT count(*) FROM recording_links", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 2);

    // A file the PBX deleted since: gone as well.
    std::fs::remove_file(&file).unwrap();
    assert_eq!(fetch(&app, "GET", &path_of(&third), &[]).await.status, 410);
    app.stop().await.unwrap();
}

/// By default (`url_ttl = "0s"`) a link works as long as the file is kept, whatever
/// later sweeps do, until it is revoked; with a `url_ttl` it expires.
#[tokio::test(flavor = "multi_thread")]
async fn links_last_as_long_as_the_file_unless_revoked_or_given_a_lifetime() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let file = write(&dirs.monitor, "kept.wav", &wav(100, true));
    let kept = recordings::publish(&app.state.recordings, "c1", file.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(kept.expires_at, recordings::store::NEVER);
    let other = recordings::publish(&app.state.recordings, "c2", "kept.wav")
        .await
        .unwrap();
    let db = app.db();
    // Published a year ago: still served, and not swept by a later publication.
    db.execute(
        "UPDATE recording_links SET created_at = created_at - ?1",
        [365 * 86_400_000i64],
    )
    .unwrap();
    recordings::publish(&app.state.recordings, "c3", "kept.wav")
        .await
        .unwrap();
    assert_eq!(fetch(&app, "GET", &path_of(&kept), &[]).await.status, 200);

    // Revoked (`appliance recordings revoke c1`): 404, the other call's link still works.
    assert_eq!(recordings::store::revoke(&db, Some("c1")).unwrap(), 1);
    assert_eq!(fetch(&app, "GET", &path_of(&kept), &[]).await.status, 404);
    assert_eq!(fetch(&app, "GET", &path_of(&other), &[]).await.status, 200);
    app.stop().await.unwrap();

    // An optional lifetime: the link carries its expiry.
    let dirs = rec_dirs();
    let app = start_edited(&dirs, PUBLIC_URL, "10s", |c| {
        c.recordings.url_ttl = "7d".into()
    })
    .await;
    write(&dirs.monitor, "short.wav", &wav(100, true));
    let before = now_ms();
    let short = recordings::publish(&app.state.recordings, "c4", "short.wav")
        .await
        .unwrap();
    let week = 7 * 86_400_000;
    assert!((before + week..=now_ms() + week).contains(&short.expires_at));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_unknown_and_traversal_urls_are_404() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let file = write(&dirs.monitor, "real.wav", &wav(100, true));
    let published = recordings::publish(&app.state.recordings, "c", file.to_str().unwrap())
        .await
        .unwrap();
    let token = published.token.expose().to_string();
    // One character changed, a fresh random token, the wrong length, the hash.
    let mut forged = token.clone().into_bytes();
    forged[0] = if forged[0] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
    for bad in [
        forged,
        appliance::secret::random_token(32),
        token[..42].to_string(),
        format!("{token}A"),
        hash,
        "real.wav".to_string(),
    ] {
        let got = fetch(&app, "GET", &format!("/recordings/{bad}"), &[]).await;
        assert_eq!(got.status, 404, "{bad}");
        assert!(!String::from_utf8_lossy(&got.body).contains("real.wav"));
    }
    // Path tricks, sent byte for byte.
    let shadow = dirs.outside.join("shadow");
    for target in [
        "/recordings/../etc/shadow".to_string(),
        "/recordings/..%2f..%2fetc%2fshadow".to_string(),
        "/recordings/%2e%2e/%2e%2e/etc/shadow".to_string(),
        format!("/recordings/{}", shadow.display()),
        format!("/recordings/{token}/../../etc/shadow"),
        format!("/recordings/{token}/"),
        format!("/recordings//{token}"),
        "/recordings/real.wav".to_string(),
        "/recordings/".to_string(),
    ] {
        assert_eq!(raw_status(&app, &target).await, 404, "{target}");
    }
    // The real link still works; other methods are refused.
    assert_eq!(raw_status(&app, &format!("/recordings/{token}")).await, 200);
    let post = app
        .request("POST", &format!("/recordings/{token}"), &[], None)
        .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_swapped_for_a_symlink_after_publishing_is_refused() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let file = write(&dirs.monitor, "call.wav", &wav(100, true));
    let published = recordings::publish(&app.state.recordings, "c", file.to_str().unwrap())
        .await
        .unwrap();
    let path = path_of(&published);
    assert_eq!(fetch(&app, "GET", &path, &[]).await.status, 200);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(dirs.outside.join("shadow"), &file).unwrap();
    let got = fetch(&app, "GET", &path, &[]).await;
    assert_eq!(got.status, 404);
    assert!(!String::from_utf8_lossy(&got.body).contains("SECRET"));
    // So is a recording directory replaced by a symlink to somewhere else.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(dirs.outside.join("call.wav"), b"not the recording").unwrap();
    let moved = dirs.monitor.with_extension("moved");
    std::fs::rename(&dirs.monitor, &moved).unwrap();
    std::os::unix::fs::symlink(&dirs.outside, &dirs.monitor).unwrap();
    let got = fetch(&app, "GET", &path, &[]).await;
    assert_eq!(got.status, 404);
    assert!(!String::from_utf8_lossy(&got.body).contains("not the recording"));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_recording_streams_whole_and_in_ranges() {
    let dirs = rec_dirs();
    let app = start(&dirs, PUBLIC_URL, "10s").await;
    let size = 20 * 1024 * 1024;
    let audio = wav(size, true);
    let expected = sha2::Sha256::digest(&audio);
    let file = write(&dirs.freeswitch, "big.wav", &audio);
    let tail = audio[audio.len() - 1000..].to_vec();
    drop(audio);
    let published = recordings::publish(&app.state.recordings, "c", file.to_str().unwrap())
        .await
        .unwrap();
    let url = format!("{}{}", app.base, path_of(&published));
    let agent = app.agent();
    // Read it as a player would: piece by piece, never holding it whole.
    let (status, length, digest, reads) = tokio::task::spawn_blocking(move || {
        let mut resp = agent.get(&url).call().unwrap();
        let length = resp.headers()["content-length"]
            .to_str()
            .unwrap()
            .to_string();
        let mut reader = resp.body_mut().as_reader();
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let (mut total, mut reads) = (0usize, 0usize);
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n;
            reads += 1;
        }
        assert_eq!(total, size + 44);
        (resp.status().as_u16(), length, hasher.finalize(), reads)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(length, (size + 44).to_string());
    assert_eq!(digest, expected);
    assert!(reads > 1);
    let got = fetch(
        &app,
        "GET",
        &path_of(&published),
        &[("Range", "bytes=-1000")],
    )
    .await;
    assert_eq!(got.status, 206);
    assert_eq!(got.body, tail);
    app.stop().await.unwrap();
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
