//! Online backups: a consistent copy of the live database, taken while the service keeps
//! writing (`VACUUM INTO` reads one snapshot; WAL writers are not blocked).
//!
//! The copy is written beside the destination as a 0600 temporary file, checked
//! (`PRAGMA integrity_check`), synced, and only then put in place, so a failed backup
//! never leaves a half-written file under the requested name or replaces a good one.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no database at {0}")]
    NoDatabase(PathBuf),
    #[error("{0} already exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the copy failed its integrity check: {0}")]
    Corrupt(String),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
}

/// Copies the database at `source` to `dest` (mode 0600). Refuses an existing `dest`
/// unless `force`.
pub fn backup(source: &Path, dest: &Path, force: bool) -> Result<BackupInfo, BackupError> {
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source.to_path_buf()));
    }
    if dest.exists() && !force {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Write { path, source }
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let aside = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    // VACUUM INTO accepts an existing empty file, which keeps our 0600 mode.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&aside)
        .map_err(write_err(&aside))?;
    let result = copy_and_check(source, &aside).and_then(|version| {
        place(&aside, dest, force)?;
        let bytes = std::fs::metadata(dest).map_err(write_err(dest))?.len();
        Ok(BackupInfo {
            path: dest.to_path_buf(),
            bytes,
            schema_version: version,
        })
    });
    let _ = std::fs::remove_file(&aside);
    result
}

fn copy_and_check(source: &Path, aside: &Path) -> Result<i64, BackupError> {
    let sqlite = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sqlite { path, source }
    };
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(source))?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(sqlite(source))?;
    let target = aside.to_str().ok_or_else(|| BackupError::Write {
        path: aside.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
    })?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(sqlite(source))?;
    drop(conn);

    let copy = Connection::open_with_flags(aside, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite(aside))?;
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sqlite(aside))?;
    if check != "ok" {
        return Err(BackupError::Corrupt(check));
    }
    let version = copy
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sqlite(aside))?;
    drop(copy);
    std::fs::File::open(aside)
        .and_then(|f| f.sync_all())
        .map_err(|source| BackupError::Write {
            path: aside.to_path_buf(),
            source,
        })?;
    Ok(version)
}

/// Moves the finished copy to `dest`: `rename` replaces (with `force`); a hard link
/// fails if `dest` appeared meanwhile, so nothing is ever overwritten by surprise.
fn place(aside: &Path, dest: &Path, force: bool) -> Result<(), BackupError> {
    let result = if force {
        std::fs::rename(aside, dest)
    } else {
        std::fs::hard_link(aside, dest)
    };
    result.map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => BackupError::Exists(dest.to_path_buf()),
        _ => BackupError::Write {
            path: dest.to_path_buf(),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::db::{Db, DbError};

    #[test]
    fn copies_consistently_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.db");
        let db = Db::open(&src).unwrap();
        db.with_conn(|c| {
            for i in 0..100 {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, 'v')",
                    [format!("k{i}")],
                )?;
            }
            Ok::<_, DbError>(())
        })
        .unwrap();
        let dest = dir.path().join("copy.db");
        let info = backup(&src, &dest, false).unwrap();
        assert_eq!(info.schema_version, crate::db::migrate::latest_version());
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy
            .query_row("SELECT count(*) FROM meta WHERE key LIKE 'k%'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 100);

        let before = std::fs::read(&dest).unwrap();
        let e = backup(&src, &dest, false).unwrap_err();
        assert!(matches!(e, BackupError::Exists(_)), "{e}");
        assert_eq!(std::fs::read(&dest).unwrap(), before);
        backup(&src, &dest, true).unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("partial"))
            .collect();
        assert!(leftovers.is_empty());

        let e = backup(&dir.path().join("none.db"), &dir.path().join("x.db"), false).unwrap_err();
        assert!(matches!(e, BackupError::NoDatabase(_)), "{e}");
        assert!(!dir.path().join("x.db").exists());
    }
}
