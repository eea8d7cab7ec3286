//! The one writer connection of the service's busiest writers (the call engine and the
//! outbox worker), with group commit.
//!
//! A thread of its own owns one connection. [`Db::write`](super::Db::write) hands it a
//! closure; the thread runs every closure queued meanwhile in ONE transaction, each in a
//! savepoint of its own (a closure that fails is rolled back alone), commits once and
//! only then answers each caller. So a burst of engine batches and outbox batches costs
//! one commit (one WAL append) instead of one each, the two never wait for each other's
//! write lock (nor sleep in SQLite's busy handler), and their pages stay in one warm
//! cache instead of invalidating each other's. Other writers (web pages, webhooks, the
//! CLI) keep using the pool and take turns with this thread through SQLite's lock.
//!
//! Durability is unchanged: a caller learns that its write succeeded only after the
//! transaction holding it was committed.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use rusqlite::Connection;

use super::DbError;

/// Most closures committed together (bounds one transaction's size and the wait of the
/// first closure in it).
const GROUP: usize = 64;

/// Told, once the group's transaction is over, whether it committed (`None`) or why not.
type Finish = Box<dyn FnOnce(Option<&str>) + Send>;
/// A queued write: runs in the group's transaction (or is told why there is none).
type Job = Box<dyn FnOnce(Result<&Connection, &str>) -> Finish + Send>;

/// The handle of the writer thread, started on first use.
#[derive(Default)]
pub(super) struct Writer {
    queue: OnceLock<Mutex<mpsc::Sender<Job>>>,
}

impl Writer {
    /// Runs `f` in the next group transaction on the writer thread and waits for the
    /// commit. `open` makes the writer's connection (once).
    pub(super) async fn write<F, T, E>(
        &self,
        open: impl FnOnce() -> Result<Connection, DbError> + Send + 'static,
        f: F,
    ) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<std::thread::Result<Result<T, E>>>();
        let job: Job = Box::new(move |conn| {
            let conn = match conn {
                Ok(conn) => conn,
                Err(why) => {
                    let _ = tx.send(Ok(Err(DbError::Write(why.to_string()).into())));
                    return Box::new(|_| ());
                }
            };
            let result = in_savepoint(conn, f);
            Box::new(move |committed| {
                let result = match (result, committed) {
                    (Ok(Ok(_)), Some(why)) => Ok(Err(DbError::Write(why.to_string()).into())),
                    (result, _) => result,
                };
                let _ = tx.send(result);
            })
        });
        let sent = {
            let queue = self.queue.get_or_init(|| Mutex::new(start(open)));
            let queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.send(job).is_ok()
        };
        if !sent {
            return Err(DbError::Write("the database writer has stopped".into()).into());
        }
        match rx.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(DbError::Write("the database writer has stopped".into()).into()),
        }
    }
}

/// Runs `f` in a savepoint: released when it succeeds, rolled back when it fails or
/// panics (the panic is handed back to the caller).
fn in_savepoint<T, E: From<DbError>>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> std::thread::Result<Result<T, E>> {
    if let Err(e) = run(conn, "SAVEPOINT job") {
        return Ok(Err(DbError::from(e).into()));
    }
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(conn)));
    let ended = if matches!(result, Ok(Ok(_))) {
        run(conn, "RELEASE job")
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    };
    match ended {
        Ok(()) => result,
        Err(e) => Ok(Err(DbError::from(e).into())),
    }
}

/// Runs one of the group's own statements, prepared once (not parsed again for each of
/// the thousands of jobs a second a backlog brings).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Starts the writer thread; it ends when every handle is gone.
fn start(open: impl FnOnce() -> Result<Connection, DbError> + Send + 'static) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("appliance-db".into())
        .spawn(move || serve(open, rx))
        .expect("cannot start the database writer thread");
    tx
}

fn serve(open: impl FnOnce() -> Result<Connection, DbError>, rx: mpsc::Receiver<Job>) {
    let conn = open().map_err(|e| e.to_string());
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < GROUP {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let conn = match &conn {
            Ok(conn) => conn,
            Err(why) => {
                for job in jobs {
                    job(Err(why))(None);
                }
                continue;
            }
        };
        if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
            let why = e.to_string();
            for job in jobs {
                job(Err(&why))(None);
            }
            continue;
        }
        let finishes: Vec<Finish> = jobs.into_iter().map(|job| job(Ok(conn))).collect();
        let committed = match run(conn, "COMMIT") {
            Ok(()) => None,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Some(format!("cannot commit: {e}"))
            }
        };
        for finish in finishes {
            finish(committed.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Db, DbError};

    fn count(db: &Db) -> i64 {
        db.with_conn(|c| {
            Ok::<_, DbError>(c.query_row(
                "SELECT count(*) FROM meta WHERE key LIKE 'w%'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap()
    }

    #[tokio::test]
    async fn writes_are_committed_before_they_return_and_a_failure_is_rolled_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        // Many writers at once: grouped into few transactions, each write on its own.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                db.write(move |c| {
                    c.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, 'x')",
                        [format!("w{i}")],
                    )?;
                    if i % 10 == 0 {
                        // Fails after writing: its row must go, the others' stay.
                        c.execute(
                            "INSERT INTO meta (key, value) VALUES (?1, 'again')",
                            [format!("w{i}")],
                        )?;
                    }
                    Ok::<_, DbError>(i)
                })
                .await
            }));
        }
        let mut failed = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => {}
                Err(DbError::Sqlite(_)) => failed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(failed, 20);
        // Seen by another connection: committed.
        assert_eq!(count(&db), 180);
    }

    #[tokio::test]
    async fn a_panicking_write_is_rolled_back_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("a.db")).unwrap();
        let d = db.clone();
        let panicked = tokio::spawn(async move {
            d.write(|c| {
                c.execute("INSERT INTO meta (key, value) VALUES ('w1', 'x')", [])?;
                if c.is_autocommit() {
                    return Ok::<_, DbError>(());
                }
                panic!("boom");
            })
            .await
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        db.write(|c| {
            c.execute("INSERT INTO meta (key, value) VALUES ('w2', 'x')", [])?;
            Ok::<_, DbError>(())
        })
        .await
        .unwrap();
        assert_eq!(count(&db), 1);
    }
}
