//! Operating the compiled binary: systemd readiness notification, and `appliance backup`
//! taking consistent copies while the database is being written.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::smoke::{BIN, init, start, terminate};

#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).expect("no READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    let status = terminate(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let n = socket.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

fn backup(config: &std::path::Path, file: &std::path::Path, force: bool) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["backup", "--config"]).arg(config).arg(file);
    if force {
        cmd.arg("--force");
    }
    let out = cmd.env_remove("RUST_LOG").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Rows `w-000000`.. written in transactions of 10: a consistent copy holds a whole
/// number of transactions, with no gap.
fn written_rows(db: &std::path::Path) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let (count, max): (i64, Option<String>) = c
        .query_row(
            "SELECT count(*), max(key) FROM meta WHERE key LIKE 'w-%'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    if let Some(max) = max {
        let last: i64 = max[2..].parse().unwrap();
        assert_eq!(last + 1, count, "rows missing inside the copy");
    }
    assert_eq!(count % 10, 0, "a transaction was copied in part");
    count
}

#[test]
fn backup_copies_a_consistent_snapshot_while_the_service_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = init(dir.path(), &[]);
    let (mut server, _addr) = start(&config);
    let db_path = dir.path().join("data/appliance.db");

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writer = {
        let (stop, db_path, progress) = (stop.clone(), db_path.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut c = rusqlite::Connection::open(&db_path).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut next = 0;
            // Bounded: at most 20,000 transactions, or until told to stop.
            while !stop.load(Ordering::SeqCst) && next < 200_000 {
                let tx = c.transaction().unwrap();
                for _ in 0..10 {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, hex(randomblob(64)))",
                        [format!("w-{next:06}")],
                    )
                    .unwrap();
                    next += 1;
                }
                tx.commit().unwrap();
                progress.store(next, Ordering::SeqCst);
            }
            next
        })
    };

    // Poll (bounded) until the writer is under way.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::SeqCst) < 100 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut counts = Vec::new();
    for i in 0..3 {
        let file = dir.path().join(format!("backup-{i}.db"));
        let (code, out) = backup(&config, &file, false);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("schema version"), "{out}");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        counts.push(written_rows(&file));
    }
    let written_meanwhile = progress.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let total = writer.join().unwrap();
    assert!(counts[0] >= 100, "{counts:?}");
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(
        written_meanwhile >= counts[2],
        "{counts:?} {written_meanwhile}"
    );
    assert!(*counts.last().unwrap() <= total);

    // An existing file is never overwritten without --force.
    let file = dir.path().join("backup-0.db");
    let before = std::fs::read(&file).unwrap();
    let (code, out) = backup(&config, &file, false);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--force"), "{out}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let (code, out) = backup(&config, &file, true);
    assert_eq!(code, 0, "{out}");
    assert_eq!(written_rows(&file), total);

    // The service kept serving throughout.
    let status = terminate(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
}
