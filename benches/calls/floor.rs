//! The machine's floor, measured in the same run as the appliance: what one thread does
//! with the two things every delivered event needs, a SQLite WAL commit (with the
//! appliance's PRAGMAs) and a keep-alive POST of an event-sized body to the same
//! receiver. The appliance's figures are printed as ratios of these, so runs on
//! different (or differently loaded) machines compare.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// One loop's result.
pub struct Loop {
    pub per_second: f64,
    /// CPU of the looping thread per iteration.
    pub cpu_us: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer; CLOCK_THREAD_CPUTIME_ID always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn measure(n: usize, mut once: impl FnMut(usize)) -> Loop {
    let mut each = Vec::with_capacity(n);
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for i in 0..n {
        let t = Instant::now();
        once(i);
        each.push(t.elapsed());
    }
    let (cpu, wall) = (thread_cpu() - cpu0, t0.elapsed());
    Loop {
        per_second: n as f64 / wall.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / n as f64,
        p50: super::percentile(each.clone(), 0.5),
        p99: super::percentile(each, 0.99),
    }
}

/// `n` commits of one event-sized row each, in WAL mode with `synchronous = NORMAL`.
pub fn sqlite_commits(dir: &Path, n: usize) -> Loop {
    let conn = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);",
    )
    .unwrap();
    let payload = "x".repeat(500);
    measure(n, |i| {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.execute(
            "INSERT INTO t (id, payload) VALUES (?1, ?2)",
            (i as i64, &payload),
        )
        .unwrap();
        conn.execute_batch("COMMIT").unwrap();
    })
}

/// `n` POSTs of an event-sized JSON body over one keep-alive connection.
pub fn keepalive_posts(receiver: SocketAddr, n: usize) -> Loop {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let url = format!("http://{receiver}/floor");
    let body = format!("{{\"event\":\"floor\",\"pad\":\"{}\"}}", "x".repeat(480));
    measure(n, |_| {
        let mut resp = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .unwrap();
        resp.body_mut().read_to_vec().unwrap();
    })
}
