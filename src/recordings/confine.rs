//! Which files may ever be served: regular files inside one of `[recordings] dirs` once
//! every symlink is resolved, and never the appliance's own data, keys or configuration.
//!
//! Paths from the PBX are first checked lexically ([`candidates`], no I/O), then each
//! candidate is canonicalized, checked against the canonicalized directories, opened
//! without following a final symlink and without blocking (a FIFO must not hang us), and
//! the opened descriptor's real path is checked once more, so a directory swapped for a
//! symlink between the check and the open is caught too.

use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::config::Config;

/// Why a path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Empty, contains NUL, or climbs with `..`.
    Invalid(&'static str),
    /// Exists (or its directory does) but outside every recording directory.
    Outside,
    /// Not a regular file (a directory, FIFO, device, socket).
    NotRegular,
}

/// The places a PBX-reported path may name, in the order they are tried. Pure.
///
/// An absolute path stands for itself first; then its file name is tried in every
/// directory too (the PBX may see the same directory under another path: a container, a
/// chroot, a bind mount). A relative path (CDR `recordingfile` is often a
/// bare file name) is tried in every directory, and a bare name also in FreePBX's dated
/// sub-directories `YYYY/MM/DD` around `today` (FreePBX records there but stores only the
/// name; the call may have started the day before, and the PBX's local date may differ
/// from UTC by a day).
pub fn candidates(
    dirs: &[PathBuf],
    pbx_path: &str,
    today: time::Date,
) -> Result<Vec<PathBuf>, Rejection> {
    let path = checked(pbx_path)?;
    if path.is_absolute() {
        let mut out = vec![path.to_path_buf()];
        if let Some(name) = path.file_name() {
            out.extend(dirs.iter().map(|d| d.join(name)));
        }
        return Ok(out);
    }
    let mut out: Vec<PathBuf> = dirs.iter().map(|d| d.join(path)).collect();
    if path.components().count() == 1 {
        let days = (-2..=1).filter_map(|n| today.checked_add(time::Duration::days(n)));
        for day in days.rev() {
            let dated = format!(
                "{:04}/{:02}/{:02}",
                day.year(),
                u8::from(day.month()),
                day.day()
            );
            out.extend(dirs.iter().map(|d| d.join(&dated).join(path)));
        }
    }
    Ok(out)
}

/// The path itself if it is acceptable at all: not empty, no NUL byte, no `..`.
pub fn checked(pbx_path: &str) -> Result<&Path, Rejection> {
    if pbx_path.is_empty() {
        return Err(Rejection::Invalid("the recording path is empty"));
    }
    if pbx_path.contains('\0') {
        return Err(Rejection::Invalid("the recording path contains a NUL byte"));
    }
    let path = Path::new(pbx_path);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(Rejection::Invalid("the recording path contains \"..\""));
    }
    if path.file_name().is_none() {
        return Err(Rejection::Invalid("the recording path names no file"));
    }
    Ok(path)
}

/// Lexical pre-check without I/O: could `pbx_path` be inside `dirs` at all? (Strict:
/// the file-name fallback of [`candidates`] for absolute paths is not counted.)
pub fn lexically_inside(dirs: &[PathBuf], pbx_path: &str) -> bool {
    match checked(pbx_path) {
        Ok(path) if path.is_relative() => !dirs.is_empty(),
        Ok(path) => dirs.iter().any(|d| path.starts_with(d) && path != d),
        Err(_) => false,
    }
}

/// The recording directories and the forbidden places, canonicalized now. Building one
/// touches the file system: do it on a blocking thread.
#[derive(Debug, Clone)]
pub struct Confinement {
    dirs: Vec<PathBuf>,
    forbidden: Vec<PathBuf>,
}

impl Confinement {
    pub fn from_config(config: &Config) -> Confinement {
        let mut forbidden = vec![config.data_dir()];
        for file in [&config.server.tls_cert, &config.server.tls_key] {
            if !file.is_empty() {
                forbidden.push(PathBuf::from(file));
            }
        }
        forbidden.extend(config.origin.clone());
        Confinement::new(&config.recordings.dirs(), &forbidden)
    }

    /// Directories that do not exist (yet) are left out: nothing inside them can be
    /// served until they do.
    pub fn new(dirs: &[PathBuf], forbidden: &[PathBuf]) -> Confinement {
        let canonical = |paths: &[PathBuf]| -> Vec<PathBuf> {
            paths
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .collect()
        };
        let mut forbidden_all = canonical(forbidden);
        // Also the paths as written, in case they do not exist yet.
        forbidden_all.extend(forbidden.iter().cloned());
        Confinement {
            dirs: canonical(dirs),
            forbidden: forbidden_all,
        }
    }

    /// True when the canonical path `p` lies strictly inside a recording directory and
    /// outside everything forbidden.
    pub fn contains(&self, p: &Path) -> bool {
        self.dirs.iter().any(|d| p.starts_with(d) && p != d)
            && !self.forbidden.iter().any(|f| p.starts_with(f))
    }
}

/// A recording file, opened after every check passed.
#[derive(Debug)]
pub struct Opened {
    pub file: File,
    pub meta: Metadata,
    /// The canonical path (no symlinks anywhere in it).
    pub path: PathBuf,
}

/// What looking at one candidate found.
#[derive(Debug)]
pub enum Probe {
    Found(Opened),
    Missing,
    Rejected(Rejection),
}

/// Resolves `candidate` and opens it if it is a regular file inside the confinement.
pub fn probe(confinement: &Confinement, candidate: &Path) -> std::io::Result<Probe> {
    let canonical = match std::fs::canonicalize(candidate) {
        Ok(p) => p,
        Err(e) if is_missing(&e) => {
            // Missing, but if its directory exists outside, waiting will not help.
            let parent = candidate.parent().map(std::fs::canonicalize);
            return Ok(match parent {
                Some(Ok(dir)) if !confinement.contains(&dir.join("x")) => {
                    Probe::Rejected(Rejection::Outside)
                }
                _ => Probe::Missing,
            });
        }
        Err(e) => return Err(e),
    };
    if !confinement.contains(&canonical) {
        return Ok(Probe::Rejected(Rejection::Outside));
    }
    open_exact(confinement, &canonical)
}

/// Opens `canonical` only if it is still exactly that: no symlink anywhere on the way,
/// a regular file, inside the confinement. Used when serving a published link.
pub fn open_exact(confinement: &Confinement, canonical: &Path) -> std::io::Result<Probe> {
    match std::fs::canonicalize(canonical) {
        Ok(now) if now == canonical => {}
        Ok(_) => return Ok(Probe::Rejected(Rejection::Outside)),
        Err(e) if is_missing(&e) => return Ok(Probe::Missing),
        Err(e) => return Err(e),
    }
    if !confinement.contains(canonical) {
        return Ok(Probe::Rejected(Rejection::Outside));
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(canonical)
    {
        Ok(f) => f,
        // ELOOP: the last component became a symlink since canonicalize.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Probe::Rejected(Rejection::Outside));
        }
        Err(e) if is_missing(&e) => return Ok(Probe::Missing),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Probe::Rejected(Rejection::NotRegular));
    }
    if let Some(real) = real_path(&file)
        && (real != canonical || !confinement.contains(&real))
    {
        return Ok(Probe::Rejected(Rejection::Outside));
    }
    Ok(Probe::Found(Opened {
        file,
        meta,
        path: canonical.to_path_buf(),
    }))
}

/// Where the kernel says an open descriptor's file is (`None` without `/proc`).
fn real_path(file: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

fn is_missing(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    struct Dirs {
        _tmp: tempfile::TempDir,
        rec: PathBuf,
        other: PathBuf,
        outside: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let rec = tmp.path().join("monitor");
        let other = tmp.path().join("recordings");
        let outside = tmp.path().join("secret");
        for d in [&rec, &other, &outside] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(outside.join("passwd"), b"root:x:0:0").unwrap();
        Dirs {
            _tmp: tmp,
            rec,
            other,
            outside,
        }
    }

    fn confinement(d: &Dirs) -> Confinement {
        Confinement::new(&[d.rec.clone(), d.other.clone()], &[])
    }

    fn today() -> time::Date {
        time::macros::date!(2026 - 03 - 01)
    }

    /// The first candidate that probes as found, or the last rejection.
    fn resolve(c: &Confinement, d: &Dirs, pbx_path: &str) -> Result<PathBuf, Rejection> {
        let mut rejected = None;
        for candidate in candidates(&[d.rec.clone(), d.other.clone()], pbx_path, today())? {
            match probe(c, &candidate).unwrap() {
                Probe::Found(o) => return Ok(o.path),
                Probe::Missing => {}
                Probe::Rejected(r) => rejected = Some(r),
            }
        }
        Err(rejected.unwrap_or(Rejection::Invalid("missing")))
    }

    #[test]
    fn files_inside_are_found_by_absolute_path_and_by_name_in_each_dir() {
        let d = dirs();
        let c = confinement(&d);
        std::fs::write(d.rec.join("in-1.wav"), b"x").unwrap();
        std::fs::write(d.other.join("fs-1.wav"), b"y").unwrap();
        let abs = d.rec.join("in-1.wav");
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(
            resolve(&c, &d, abs.to_str().unwrap()).unwrap(),
            canonical(&abs)
        );
        assert_eq!(resolve(&c, &d, "in-1.wav").unwrap(), canonical(&abs));
        assert_eq!(
            resolve(&c, &d, "fs-1.wav").unwrap(),
            canonical(&d.other.join("fs-1.wav"))
        );
        // "//" and "." are only spelling.
        let spelled = format!("{}//./in-1.wav", d.rec.display());
        assert_eq!(resolve(&c, &d, &spelled).unwrap(), canonical(&abs));
        // FreePBX: the CDR has the bare name, the file is in YYYY/MM/DD.
        let dated = d.rec.join("2026/02/28");
        std::fs::create_dir_all(&dated).unwrap();
        std::fs::write(dated.join("q-700-1.wav"), b"z").unwrap();
        assert_eq!(
            resolve(&c, &d, "q-700-1.wav").unwrap(),
            canonical(&dated.join("q-700-1.wav"))
        );
    }

    #[test]
    fn traversal_and_absolute_paths_outside_are_refused() {
        let d = dirs();
        let c = confinement(&d);
        for bad in [
            "../secret/passwd".to_string(),
            format!("{}/../secret/passwd", d.rec.display()),
            "a/../../secret/passwd".to_string(),
        ] {
            assert!(
                matches!(resolve(&c, &d, &bad), Err(Rejection::Invalid(_))),
                "{bad}"
            );
            assert!(
                !lexically_inside(std::slice::from_ref(&d.rec), &bad),
                "{bad}"
            );
        }
        let outside = d.outside.join("passwd");
        assert_eq!(
            resolve(&c, &d, outside.to_str().unwrap()),
            Err(Rejection::Outside)
        );
        // Missing, in an existing directory outside: refused at once, not waited for.
        let missing = d.outside.join("later.wav");
        assert_eq!(
            resolve(&c, &d, missing.to_str().unwrap()),
            Err(Rejection::Outside)
        );
        assert_eq!(resolve(&c, &d, "/etc/passwd"), Err(Rejection::Outside));
        for bad in ["", "a\0b", "/"] {
            assert!(matches!(resolve(&c, &d, bad), Err(Rejection::Invalid(_))));
        }
        // A sibling whose name starts like a recording directory is not inside it.
        let sibling = PathBuf::from(format!("{}-old", d.rec.display()));
        std::fs::create_dir(&sibling).unwrap();
        std::fs::write(sibling.join("a.wav"), b"x").unwrap();
        let p = sibling.join("a.wav");
        assert_eq!(
            resolve(&c, &d, p.to_str().unwrap()),
            Err(Rejection::Outside)
        );
        assert!(!lexically_inside(
            std::slice::from_ref(&d.rec),
            p.to_str().unwrap()
        ));
    }

    #[test]
    fn symlinks_may_not_lead_outside() {
        let d = dirs();
        let c = confinement(&d);
        // A file symlink inside pointing outside.
        symlink(d.outside.join("passwd"), d.rec.join("evil.wav")).unwrap();
        assert_eq!(resolve(&c, &d, "evil.wav"), Err(Rejection::Outside));
        let abs = d.rec.join("evil.wav");
        assert!(lexically_inside(
            std::slice::from_ref(&d.rec),
            abs.to_str().unwrap()
        ));
        assert_eq!(
            resolve(&c, &d, abs.to_str().unwrap()),
            Err(Rejection::Outside)
        );
        // A directory symlink inside pointing outside.
        symlink(&d.outside, d.rec.join("linked")).unwrap();
        assert_eq!(resolve(&c, &d, "linked/passwd"), Err(Rejection::Outside));
        // A symlink inside pointing to another file inside is that file.
        std::fs::write(d.other.join("real.wav"), b"x").unwrap();
        symlink(d.other.join("real.wav"), d.rec.join("alias.wav")).unwrap();
        assert_eq!(
            resolve(&c, &d, "alias.wav").unwrap(),
            std::fs::canonicalize(d.other.join("real.wav")).unwrap()
        );
        // A recording directory that is itself a symlink is followed (it is configured).
        let tmp = tempfile::tempdir().unwrap();
        let link_dir = tmp.path().join("monitor-link");
        symlink(&d.rec, &link_dir).unwrap();
        std::fs::write(d.rec.join("x.wav"), b"x").unwrap();
        let via_link = Confinement::new(std::slice::from_ref(&link_dir), &[]);
        match probe(&via_link, &link_dir.join("x.wav")).unwrap() {
            Probe::Found(o) => {
                assert_eq!(o.path, std::fs::canonicalize(d.rec.join("x.wav")).unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_regular_files_are_opened() {
        let d = dirs();
        let c = confinement(&d);
        std::fs::create_dir(d.rec.join("dir.wav")).unwrap();
        assert_eq!(resolve(&c, &d, "dir.wav"), Err(Rejection::NotRegular));
        let fifo = d.rec.join("pipe.wav");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        // Opening a FIFO without O_NONBLOCK would hang here.
        assert_eq!(resolve(&c, &d, "pipe.wav"), Err(Rejection::NotRegular));
        assert!(matches!(
            probe(&c, &d.rec.join("nothing.wav")).unwrap(),
            Probe::Missing
        ));
        // A recording directory itself is never a recording.
        assert_eq!(
            resolve(&c, &d, d.rec.to_str().unwrap()),
            Err(Rejection::Outside)
        );
    }

    #[test]
    fn serving_refuses_a_file_swapped_for_a_symlink() {
        let d = dirs();
        let c = confinement(&d);
        let file = d.rec.join("call.wav");
        std::fs::write(&file, b"audio").unwrap();
        let canonical = std::fs::canonicalize(&file).unwrap();
        assert!(matches!(
            open_exact(&c, &canonical).unwrap(),
            Probe::Found(_)
        ));
        std::fs::remove_file(&file).unwrap();
        symlink(d.outside.join("passwd"), &file).unwrap();
        assert!(matches!(
            open_exact(&c, &canonical).unwrap(),
            Probe::Rejected(Rejection::Outside)
        ));
        // Even a symlink to another recording is not the file that was published.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(d.rec.join("other.wav"), b"x").unwrap();
        symlink(d.rec.join("other.wav"), &file).unwrap();
        assert!(matches!(
            open_exact(&c, &canonical).unwrap(),
            Probe::Rejected(Rejection::Outside)
        ));
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(
            open_exact(&c, &canonical).unwrap(),
            Probe::Missing
        ));
    }

    #[test]
    fn the_appliance_s_own_files_are_never_inside() {
        let d = dirs();
        let data = d.rec.join("appliance-data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("appliance.db"), b"db").unwrap();
        let c = Confinement::new(std::slice::from_ref(&d.rec), std::slice::from_ref(&data));
        let db = std::fs::canonicalize(data.join("appliance.db")).unwrap();
        assert!(!c.contains(&db));
        assert!(matches!(
            probe(&c, &db).unwrap(),
            Probe::Rejected(Rejection::Outside)
        ));
    }
}
