//! SQLite storage: the only store the appliance has.
//!
//! Owns opening the database file (created mode 0600), the PRAGMAs every connection
//! gets, schema migrations, and [`Db::run`], the one way async code touches SQLite.
//! Table-specific queries live with the module that owns the table.

pub mod backup;
pub mod migrate;
mod writer;

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

pub use rusqlite;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("data directory {0} does not exist (create it, or run `appliance --init`)")]
    NoDataDir(PathBuf),
    #[error("cannot create database {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "database schema version {found} is newer than this appliance supports ({supported}); \
         install a newer appliance or restore a backup"
    )]
    Newer { found: i64, supported: i64 },
    #[error("the database file holds tables that are not the appliance's; refusing to use it")]
    Foreign,
    #[error("database migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] r2d2::Error),
    /// The writer thread's transaction could not begin or commit ([`Db::write`]).
    #[error("database error: {0}")]
    Write(String),
}

/// Set on every connection, in one place. `temp_store = MEMORY`: the writer runs each
/// job in a savepoint ([`writer`]), and SQLite copies every page a savepoint first
/// changes into a sub-journal, a temporary file by default: a write system call per page
/// and about a sixth of the service's CPU under load. The copies live as long as their
/// transaction (a few hundred KiB at most) and, like the file, are never needed after a
/// crash: the WAL alone is the database's durability.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = NORMAL;
     PRAGMA foreign_keys = ON;
     PRAGMA busy_timeout = 5000;
     PRAGMA temp_store = MEMORY;";

/// Waits for another connection's write lock (replacing `busy_timeout`'s handler, which
/// sleeps 1, 2, 5, 10... ms between looks: under a stream of short transactions, such as
/// the outbox's, most of a writer's time went to sleeping after the lock was free).
/// Looks every 50 µs for the first 50 ms, then every millisecond; gives up ("database
/// is locked") after about 5 s, as `busy_timeout = 5000` did.
fn busy(tries: i32) -> bool {
    match tries {
        0..1000 => std::thread::sleep(Duration::from_micros(50)),
        1000..5950 => std::thread::sleep(Duration::from_millis(1)),
        _ => return false,
    }
    true
}

const FLAGS: OpenFlags = OpenFlags::SQLITE_OPEN_READ_WRITE.union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

/// What every connection gets when it is opened.
fn set_up(c: &mut Connection) -> rusqlite::Result<()> {
    c.execute_batch(PRAGMAS)?;
    c.busy_handler(Some(busy))?;
    // `transaction()` takes the write lock at BEGIN. A deferred transaction that reads
    // and then writes cannot wait for another writer: SQLite fails its upgrade at once
    // with "database is locked" (busy_timeout does not apply), which concurrent
    // webhook, engine and outbox writes hit.
    c.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
    // The writer connection runs the engine's and the outbox's statements (more than
    // 30 `prepare_cached` ones): with rusqlite's default of 16 the cache thrashed, and every
    // job parsed and planned its SQL again.
    c.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 128;

/// Threads of the runtime's blocking pool, which runs every [`Db::run`] and every
/// outgoing Flowlu request: `max_in_flight` deliveries (`[outbox]`, as the service
/// starts) plus room for the engine's, the web pages' and the other workers' work.
pub fn blocking_threads(max_in_flight: u64) -> usize {
    usize::try_from(max_in_flight)
        .unwrap_or(usize::MAX)
        .saturating_add(64)
}

/// Caps glibc's malloc arenas at two. By default glibc gives each thread that allocates
/// under contention an arena of its own (up to eight per core), and each keeps its freed
/// memory: with the blocking pool's threads that made the resident size grow with every
/// burst of calls rather than with what is in use. Call before threads start.
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// A pool of connections to the appliance database. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// The writer thread of [`Db::write`].
    writer: std::sync::Arc<writer::Writer>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating if needed, mode 0600) and migrates the database at `path`.
    /// The parent directory must exist; a newer or foreign database is refused unchanged.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        Self::open_with(path, migrate::MIGRATIONS)
    }

    pub fn open_with(path: &Path, migrations: &[migrate::Migration]) -> Result<Db, DbError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(DbError::NoDataDir(dir.to_path_buf()));
        }
        create_private(path)?;
        {
            // Check the version before any PRAGMA writes to the file (journal_mode does).
            let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            migrate::check_compatible(&conn, migrations)?;
            conn.execute_batch(PRAGMAS)?;
            migrate::migrate(&mut conn, migrations)?;
        }
        let manager = SqliteConnectionManager::file(path)
            .with_flags(FLAGS)
            .with_init(set_up);
        let pool = Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        let db = Db {
            pool,
            path: path.to_path_buf(),
            writer: Default::default(),
        };
        db.with_conn(|c| {
            c.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('created_at', datetime('now'))",
                [],
            )?;
            Ok::<_, DbError>(())
        })?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A connection of its own, outside the pool, set up like the pooled ones: for a
    /// worker that writes in batches (the outbox), so its page cache stays warm and it
    /// never waits for a pooled connection.
    pub fn dedicated(&self) -> Result<Connection, DbError> {
        let mut conn = Connection::open_with_flags(&self.path, FLAGS)?;
        set_up(&mut conn)?;
        Ok(conn)
    }

    /// Runs `f` with a pooled connection on tokio's blocking pool. All SQLite access from
    /// async code goes through here, so no query ever blocks a runtime worker.
    pub async fn run<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            f(&mut conn)
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("database task cancelled: {e}"),
        }
    }

    /// Runs `f` on the writer thread's connection, inside a transaction that may hold
    /// other callers' writes too (each in a savepoint of its own: a failing `f` is rolled
    /// back alone), and returns once that transaction is committed. For the hot writers
    /// (the call engine, the outbox worker): they share one connection and one commit
    /// instead of waiting for each other's write lock. `f` must not begin a transaction.
    pub async fn write<F, T, E>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        self.writer.write(move || db.dedicated(), f).await
    }

    /// Synchronous access for CLI commands and code already on a blocking thread.
    pub fn with_conn<T, E>(&self, f: impl FnOnce(&mut Connection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<DbError>,
    {
        let mut conn: PooledConnection<_> = self.pool.get().map_err(DbError::from)?;
        f(&mut conn)
    }

    /// `PRAGMA quick_check` plus a trivial query: used by `/healthz`.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run(|c| {
            c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    /// Reads a `meta` value.
    pub fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, DbError> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Returns the `meta` value for `key`, storing `make()` first if there is none.
    pub fn meta_get_or_init(
        conn: &Connection,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, DbError> {
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
            (key, make()),
        )?;
        Ok(Self::meta_get(conn, key)?.expect("just inserted"))
    }
}

/// Creates the file with mode 0600 if it does not exist yet (SQLite would use the umask).
/// SQLite gives its -wal and -shm files the same permissions as the database file.
fn create_private(path: &Path) -> Result<(), DbError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(DbError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Unit tests: a bare Flowlu account row `id` (account id `id`, domain
/// `test.flowlu.com`, rate limit 16) for the tables that refer to one.
#[cfg(test)]
pub(crate) fn add_test_integration(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO flowlu_integrations (id, platform, account_id, app_id, domain,
             app_version, placement_id, ratelimit, webhook_secret, created_at, updated_at)
         VALUES (?1, 'flowlu.com', ?1, 'app', 'test.flowlu.com', '1', 'p', 16, 's', 0, 0)",
        [id],
    )?;
    Ok(())
}

/// Unit tests: a database in a temporary directory (keep the directory) with Flowlu
/// account 1 ([`add_test_integration`]).
#[cfg(test)]
pub(crate) fn test_db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("test.db")).unwrap();
    db.with_conn(|c| Ok::<_, DbError>(add_test_integration(c, 1)?))
        .unwrap();
    (dir, db)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_a_private_file_with_pragmas_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let db = Db::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (journal, fk): (String, i64) = db
            .with_conn(|c| {
                Ok::<_, DbError>((
                    c.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                    c.pragma_query_value(None, "foreign_keys", |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(fk, 1);
        let v = db.with_conn(|c| migrate::user_version(c)).unwrap();
        assert_eq!(v, migrate::latest_version());
    }

    #[test]
    fn transactions_hold_the_write_lock_from_begin() {
        // A read-then-write transaction must never meet a writer that slipped in between
        // (SQLite would refuse its write at once): others wait for it instead.
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        let mut a = db.pool.get().unwrap();
        let b = db.pool.get().unwrap();
        b.busy_timeout(Duration::ZERO).unwrap();
        let tx = a.transaction().unwrap();
        let err = b
            .execute("INSERT INTO meta (key, value) VALUES ('b', 'x')", [])
            .unwrap_err();
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy),
            "{err}"
        );
        tx.execute("INSERT INTO meta (key, value) VALUES ('a', 'x')", [])
            .unwrap();
        tx.commit().unwrap();
        b.execute("INSERT INTO meta (key, value) VALUES ('b', 'x')", [])
            .unwrap();
        b.busy_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn missing_directory_is_a_clear_error() {
        let e = Db::open(Path::new("/nonexistent-dir/x/a.db")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir/x"), "{e}");
        assert!(!Path::new("/nonexistent-dir").exists());
    }

    #[test]
    fn newer_database_is_refused_byte_for_byte_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); PRAGMA user_version = 999;",
            )
            .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = Db::open(&path).unwrap_err();
        assert!(matches!(e, DbError::Newer { found: 999, .. }), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[tokio::test]
    async fn run_executes_on_the_blocking_pool() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        let value = db
            .run(|c| Db::meta_get_or_init(c, "k", || "v1".into()))
            .await
            .unwrap();
        let again = db
            .run(|c| Db::meta_get_or_init(c, "k", || "v2".into()))
            .await
            .unwrap();
        assert_eq!((value.as_str(), again.as_str()), ("v1", "v1"));
        db.ping().await.unwrap();
    }
}
