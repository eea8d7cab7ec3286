//! The compiled binary as systemd runs it: log lines in the journal's format when stderr
//! is the journal stream, and `systemctl reload` (SIGHUP) re-reading the configuration.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::smoke::{BIN, init, terminate};

/// Starts `appliance run` with stderr into `log`; `journal`: with `$JOURNAL_STREAM`
/// naming that file (as systemd sets it), else naming another file.
fn start_logging_to(config: &Path, log: &Path, journal: bool) -> Child {
    let file = std::fs::File::create(log).unwrap();
    let meta = file.metadata().unwrap();
    let ino = if journal { meta.ino() } else { meta.ino() + 1 };
    Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env("JOURNAL_STREAM", format!("{}:{ino}", meta.dev()))
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Waits (at most 20 s) until the log at `path` has a line containing `what`; returns
/// the whole log.
pub fn log_with(path: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.lines().any(|l| l.contains(what)) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no line with {what:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn setup(dir: &Path) -> std::path::PathBuf {
    init(dir, &["--pbx", "asterisk", "--pbx-port", "1"])
}

/// Runs the service until it logs that it serves, then stops it (exit 0); returns the
/// whole log and the "serving" line.
fn run_until_serving(config: &Path, log: &Path, journal: bool) -> (String, String) {
    let mut child = start_logging_to(config, log, journal);
    let text = log_with(log, "serving https://");
    assert_eq!(
        terminate(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
    let serving = text
        .lines()
        .find(|l| l.contains("serving https://"))
        .unwrap()
        .to_string();
    (text, serving)
}

#[test]
fn under_systemd_lines_carry_syslog_priorities_and_no_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = dir.path().join("journal.log");
    let (text, serving) = run_until_serving(&config, &log, true);
    assert!(
        serving.starts_with("<6>INFO appliance::app: appliance "),
        "{serving}"
    );
    for line in text.lines() {
        let priority = line.strip_prefix('<').and_then(|l| l.split_once('>'));
        assert!(
            matches!(priority, Some(("3" | "4" | "6" | "7", _))),
            "every line starts with its priority: {line}"
        );
        assert!(!line.contains("[20"), "no timestamp: {line}");
    }

    // $JOURNAL_STREAM inherited, but stderr is another file: the terminal format.
    let (text, serving) = run_until_serving(&config, &log, false);
    assert!(serving.starts_with("[20"), "timestamped: {serving}");
    assert!(!text.contains("<6>"), "{text}");
}

fn hangup(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
}

#[test]
fn sighup_reloads_the_log_level_and_keeps_running_on_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let log = dir.path().join("journal.log");
    let mut child = start_logging_to(&config, &log, true);
    log_with(&log, "serving https://");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("level = \"info\""), "{text}");
    std::fs::write(
        &config,
        text.replace("level = \"info\"", "level = \"debug\""),
    )
    .unwrap();
    hangup(&child);
    let after = log_with(&log, "reload: applied log.level");
    assert!(
        after.contains("<6>INFO appliance::reload: reload: applied log.level"),
        "{after}"
    );
    // A debug line: the new level is in force (it was filtered out before).
    log_with(
        &log,
        "<7>DEBUG appliance::reload: reload: log level now DEBUG",
    );

    std::fs::write(&config, "[server\n").unwrap();
    hangup(&child);
    let after = log_with(&log, "reload: keeping the running configuration");
    assert!(after.contains("<3>ERROR"), "{after}");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(
        terminate(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );
}
