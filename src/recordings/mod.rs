//! Call recordings: turning the file the PBX recorded into an unguessable, expiring URL
//! for Flowlu (`call.recording`), and finding that file again when the URL is fetched.
//!
//! Owns the `recording_links` table ([`store`]), the rule of which files may ever be served
//! ([`confine`]: regular files inside `[recordings] dirs`, symlinks resolved, never the
//! appliance's own files), and when a recording is complete ([`complete`]). The HTTP side
//! (`GET /recordings/<token>`, ranges, caching headers) is `crate::http`'s; it asks
//! [`open_link`] for the file. It never writes or deletes recordings: they are the PBX's.
//!
//! The engine calls [`publish`] after hang-up with the path the PBX reported
//! (`MIXMONITOR_FILENAME`, CDR `recordingfile`, FreeSWITCH `Record-File-Path`).

pub mod complete;
pub mod confine;
pub mod store;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::config::{Config, RecordingsConfig, format_duration};
use crate::db::{Db, DbError};
use crate::secret::Secret;
use complete::{HEADER_BYTES, Observation, Settler};
use confine::{Confinement, Probe, Rejection};

/// How long an expired link keeps answering 410 Gone before its row is swept away (then
/// it is 404 like any unknown token).
pub const GONE_GRACE: Duration = Duration::from_secs(30 * 86_400);

/// Length of a token in a URL: 32 random bytes, URL-safe base64 without padding.
const TOKEN_CHARS: usize = 43;

/// What publishing and serving recordings use: the database and the configuration in
/// force (`[recordings]` as reloaded last, `[server] public_url`). Cheap to clone.
#[derive(Clone)]
pub struct Recordings {
    db: Db,
    live: watch::Receiver<Arc<Config>>,
}

impl Recordings {
    pub fn new(db: Db, live: watch::Receiver<Arc<Config>>) -> Recordings {
        Recordings { db, live }
    }

    fn current(&self) -> Arc<Config> {
        self.live.borrow().clone()
    }
}

/// A recording made available to Flowlu.
#[derive(Debug, Clone)]
pub struct Published {
    /// The random part of the URL (shown as `***`).
    pub token: Secret,
    /// `{server.public_url}/recordings/{token}`, for `recording_url` in `call.recording`.
    pub url: Secret,
    /// When the URL stops working, unix milliseconds.
    pub expires_at: i64,
    /// The file's size when published (a WAV of only its 44-byte header holds no audio:
    /// the engine may choose not to report it).
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("recording path {path:?} refused: {why}")]
    Invalid { path: String, why: &'static str },
    #[error("recordings.dirs is empty: recordings are not published")]
    Disabled,
    #[error("server.public_url is not set: recording URLs cannot be built")]
    NoPublicUrl,
    #[error("recording {path:?} not found in recordings.dirs within {waited}")]
    NotFound { path: String, waited: String },
    #[error("recording {path:?} is not inside recordings.dirs (after resolving symlinks): refused")]
    Outside { path: String },
    #[error("recording {path:?} is not a regular file: refused")]
    NotRegular { path: String },
    #[error("recording {path:?} was still being written after {waited}")]
    NotComplete { path: String, waited: String },
    #[error("cannot read recording {path:?}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    /// Serving: no link has this token (or it is not even token-shaped).
    #[error("no such recording")]
    UnknownLink,
    /// Serving: the link's time is over.
    #[error("this recording link has expired")]
    Expired,
    /// Serving: the file was deleted since it was published.
    #[error("the recording is no longer on the PBX")]
    Gone,
    /// Serving: the file is no longer what was published (e.g. now a symlink).
    #[error("the recording file changed since it was published: refused")]
    Replaced,
}

impl From<rusqlite::Error> for RecordingError {
    fn from(e: rusqlite::Error) -> Self {
        RecordingError::Db(DbError::from(e))
    }
}

/// Cheap pre-check without I/O: false when `pbx_path` can never be published (empty, has
/// `..` or NUL, no directories configured, or an absolute path outside every configured
/// directory as written). True does not promise the file exists or passes the checks
/// [`publish`] makes after resolving symlinks.
pub fn eligible(config: &RecordingsConfig, pbx_path: &str) -> bool {
    confine::lexically_inside(&config.dirs(), pbx_path)
}

/// The content type served for a recording, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        // Asterisk's WAV49 (GSM in a WAV container) uses ".WAV".
        Some("wav" | "wav49") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg" | "oga" | "opus" | "spx") => "audio/ogg",
        Some("gsm") => "audio/x-gsm",
        Some("flac") => "audio/flac",
        Some("m4a" | "mp4") => "audio/mp4",
        Some("aac") => "audio/aac",
        Some("webm") => "audio/webm",
        Some("ulaw" | "ul" | "mu" | "pcm" | "au") => "audio/basic",
        Some("alaw" | "al") => "audio/x-alaw-basic",
        _ => "application/octet-stream",
    }
}

/// Makes the recording at `pbx_path` (as the PBX reported it) available at a new
/// unguessable URL valid for `[recordings] url_ttl`.
///
/// Waits (up to `max_wait`) for the file to appear and to be complete; refuses anything
/// that is not a regular file inside `[recordings] dirs` once symlinks are resolved. Each
/// call makes a new link; earlier links stay valid until they expire.
pub async fn publish(
    recordings: &Recordings,
    call_id: &str,
    pbx_path: &str,
) -> Result<Published, RecordingError> {
    // [recordings] as reloaded last.
    let config = recordings.current();
    let public_url = config
        .public_url()
        .ok_or(RecordingError::NoPublicUrl)?
        .to_string();
    let r = &config.recordings;
    if r.dirs.is_empty() {
        return Err(RecordingError::Disabled);
    }
    let today = time::OffsetDateTime::now_utc().date();
    let candidates = confine::candidates(&r.dirs(), pbx_path, today)
        .map_err(|why| refused(pbx_path, LookError::Rejected(why)))?;
    let found = wait_complete(config.clone(), pbx_path, Arc::new(candidates)).await?;
    let token = crate::secret::random_token(32);
    let hash = store::token_hash(&token);
    let now = unix_ms(SystemTime::now());
    let ttl = r.url_ttl();
    let link = store::Link {
        call_id: call_id.to_string(),
        path: found.path.to_string_lossy().into_owned(),
        content_type: content_type(&found.path).to_string(),
        size: found.len as i64,
        created_at: now,
        expires_at: if ttl.is_zero() {
            store::NEVER
        } else {
            now.saturating_add(ttl.as_millis() as i64)
        },
    };
    let (expires_at, size) = (link.expires_at, found.len);
    let logged = link.clone();
    let swept = recordings
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let swept = store::sweep(&tx, now - GONE_GRACE.as_millis() as i64)?;
            store::insert(&tx, &hash, &link)?;
            tx.commit()?;
            Ok::<_, RecordingError>(swept)
        })
        .await?;
    if swept > 0 {
        log::debug!("removed {swept} recording link(s) expired more than 30 days ago");
    }
    log::info!(
        "recording of call {} published: {} ({}, {} bytes, link valid {})",
        logged.call_id,
        logged.path,
        logged.content_type,
        logged.size,
        if ttl.is_zero() {
            "while the file is kept".to_string()
        } else {
            format!("for {}", r.url_ttl)
        }
    );
    Ok(Published {
        url: Secret::new(format!("{public_url}/recordings/{token}")),
        token: Secret::new(token),
        expires_at,
        size,
    })
}

/// Polls the candidates until one is complete, the path is refused, or `max_wait` ends.
async fn wait_complete(
    config: Arc<Config>,
    pbx_path: &str,
    candidates: Arc<Vec<PathBuf>>,
) -> Result<Observation, RecordingError> {
    let r = &config.recordings;
    let (settle, max_wait) = (r.settle(), r.max_wait());
    let poll = (settle / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let deadline = tokio::time::Instant::now() + max_wait;
    let mut settler = Settler::new(settle);
    let mut ever_found = false;
    loop {
        let (config, candidates) = (config.clone(), candidates.clone());
        let seen = tokio::task::spawn_blocking(move || {
            look(&Confinement::from_config(&config), &candidates)
        })
        .await
        .expect("recording probe task")
        .map_err(|e| refused(pbx_path, e))?;
        let now = tokio::time::Instant::now();
        match seen {
            Some(seen) => {
                ever_found = true;
                let candidate = seen.clone();
                if settler.observe(now.into_std(), SystemTime::now(), seen) {
                    return Ok(candidate);
                }
            }
            None => settler.forget(),
        }
        if now >= deadline {
            let (path, waited) = (pbx_path.to_string(), format_duration(max_wait));
            return Err(if ever_found {
                RecordingError::NotComplete { path, waited }
            } else {
                RecordingError::NotFound { path, waited }
            });
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

/// Why a candidate could not be looked at, before it becomes a [`RecordingError`].
enum LookError {
    Rejected(Rejection),
    Io(PathBuf, std::io::Error),
}

fn refused(pbx_path: &str, e: LookError) -> RecordingError {
    let path = pbx_path.to_string();
    match e {
        LookError::Rejected(Rejection::Outside) => RecordingError::Outside { path },
        LookError::Rejected(Rejection::NotRegular) => RecordingError::NotRegular { path },
        LookError::Rejected(Rejection::Invalid(why)) => RecordingError::Invalid { path, why },
        LookError::Io(at, source) => RecordingError::Io {
            path: at.display().to_string(),
            source,
        },
    }
}

/// One look at every candidate: the first acceptable file found, `None` when there is
/// none yet, or the reason a candidate was refused.
fn look(
    confinement: &Confinement,
    candidates: &[PathBuf],
) -> Result<Option<Observation>, LookError> {
    let mut rejected = None;
    for (i, candidate) in candidates.iter().enumerate() {
        match confine::probe(confinement, candidate) {
            Ok(Probe::Found(opened)) => {
                let mut head = Vec::with_capacity(HEADER_BYTES);
                (&opened.file)
                    .take(HEADER_BYTES as u64)
                    .read_to_end(&mut head)
                    .map_err(|e| LookError::Io(opened.path.clone(), e))?;
                let len = opened.meta.len();
                return Ok(Some(Observation {
                    header: complete::wav_header(&head, len),
                    len,
                    modified: opened.meta.modified().unwrap_or(UNIX_EPOCH),
                    path: opened.path,
                }));
            }
            Ok(Probe::Missing) => {}
            // An absolute path that exists but is refused is the PBX's file: never fall
            // back to a same-named file in a recording directory.
            Ok(Probe::Rejected(why)) if i == 0 && candidate.is_absolute() => {
                return Err(LookError::Rejected(why));
            }
            Ok(Probe::Rejected(why)) => rejected = rejected.or(Some(why)),
            Err(e) => return Err(LookError::Io(candidate.clone(), e)),
        }
    }
    match rejected {
        Some(why) => Err(LookError::Rejected(why)),
        None => Ok(None),
    }
}

/// A recording file ready to be served, opened after every check passed.
#[derive(Debug)]
pub struct Served {
    pub file: File,
    pub len: u64,
    pub modified: SystemTime,
    /// Inode number, for the ETag.
    pub inode: u64,
    pub content_type: String,
    /// The file's name, for `Content-Disposition`.
    pub file_name: String,
}

/// Finds and opens the file behind `token` (the last path segment of a recording URL).
pub async fn open_link(recordings: &Recordings, token: &str) -> Result<Served, RecordingError> {
    let shaped = token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !shaped {
        return Err(RecordingError::UnknownLink);
    }
    let hash = store::token_hash(token);
    let link = recordings
        .db
        .run(move |c| Ok::<_, RecordingError>(store::find(c, &hash)?))
        .await?
        .ok_or(RecordingError::UnknownLink)?;
    if unix_ms(SystemTime::now()) >= link.expires_at {
        return Err(RecordingError::Expired);
    }
    let config = recordings.current();
    let path = PathBuf::from(&link.path);
    let opened = tokio::task::spawn_blocking(move || {
        confine::open_exact(&Confinement::from_config(&config), &path)
    })
    .await
    .expect("recording open task")
    .map_err(|source| RecordingError::Io {
        path: link.path.clone(),
        source,
    })?;
    match opened {
        Probe::Found(o) => {
            use std::os::unix::fs::MetadataExt;
            Ok(Served {
                len: o.meta.len(),
                modified: o.meta.modified().unwrap_or(UNIX_EPOCH),
                inode: o.meta.ino(),
                file: o.file,
                file_name: o
                    .path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                content_type: link.content_type,
            })
        }
        Probe::Missing => Err(RecordingError::Gone),
        Probe::Rejected(why) => {
            log::warn!(
                "recording link of call {} refused: {} is no longer the regular file inside \
                 recordings.dirs that was published ({why:?})",
                link.call_id,
                link.path
            );
            Err(RecordingError::Replaced)
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        for (name, expected) in [
            ("/r/in-1.wav", "audio/wav"),
            ("/r/in-1.WAV", "audio/wav"),
            ("/r/a.mp3", "audio/mpeg"),
            ("/r/a.ogg", "audio/ogg"),
            ("/r/a.opus", "audio/ogg"),
            ("/r/a.gsm", "audio/x-gsm"),
            ("/r/a.flac", "audio/flac"),
            ("/r/a.ulaw", "audio/basic"),
            ("/r/a.alaw", "audio/x-alaw-basic"),
            ("/r/a.sln", "application/octet-stream"),
            ("/r/noext", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
    }

    #[test]
    fn eligibility_is_decided_without_touching_the_disk() {
        let mut config = Config::defaults().recordings;
        assert!(eligible(
            &config,
            "/var/spool/asterisk/monitor/in-74950000000-1795416368.27.wav"
        ));
        assert!(eligible(
            &config,
            "/var/lib/freeswitch/recordings/inbound-74950000000-57b97d35.wav"
        ));
        assert!(eligible(&config, "in-74950000000-1795416368.27.wav"));
        assert!(eligible(&config, "2026/03/01/q-1.wav"));
        for never in [
            "",
            "/etc/passwd",
            "/var/spool/asterisk/monitor",
            "/var/spool/asterisk/monitor/../../../etc/shadow",
            "../x.wav",
            "/var/spool/asterisk/monitor-old/a.wav",
        ] {
            assert!(!eligible(&config, never), "{never}");
        }
        config.dirs.clear();
        assert!(!eligible(&config, "in-1.wav"));
    }
}
