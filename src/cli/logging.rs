//! The service's log: env_logger to stderr, in one of two formats, with `[log] level`
//! changeable while running (`systemctl reload`).
//!
//! Under systemd, stderr is a stream to the journal: each line then starts with its
//! syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug and trace), which
//! journald strips and stores, so `journalctl -u appliance -p warning` filters by it, and
//! carries no timestamp of ours (the journal stamps every line). Anywhere else (a
//! terminal, a file, a test) lines keep env_logger's format with a millisecond timestamp.
//!
//! The journal is recognised as systemd documents it (systemd.exec(5), `$JOURNAL_STREAM`):
//! the variable holds `device:inode` of the stream, and it counts only while stderr is
//! still that stream (a child whose stderr was redirected inherits the variable too).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::Config;

/// `[log] level` for our own crate, changed live by [`set_level`]; dependencies stay at
/// `warn` (rustls and hyper are chatty at info).
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);
/// Whether `RUST_LOG` took charge of the filter (then [`set_level`] changes nothing).
static FROM_ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `RUST_LOG` wins when set; otherwise `[log] level` applies to our crate and `warn`
/// to dependencies.
pub fn init_logging(config: &Config) {
    use crate::redact::RedactingLog;
    let journal = stderr_is_journal();
    let mut builder = env_logger::Builder::new();
    let from_env = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            builder.parse_filters(&spec);
            true
        }
        _ => {
            // The filter proper is ours (`Filtered`), so it can change while running.
            builder.filter_level(LevelFilter::Trace);
            false
        }
    };
    if journal {
        builder.format(|buf, record| {
            let line = journal_line(record.level(), record.target(), &record.args().to_string());
            buf.write_all(line.as_bytes())
        });
    } else {
        builder.format_timestamp_millis();
    }
    let logger = builder.build();
    let _ = FROM_ENV.set(from_env);
    // Dependencies' lines (a URL ureq sends to) lose their secrets like ours do.
    let installed = if from_env {
        let max = logger.filter();
        log::set_boxed_logger(Box::new(RedactingLog(logger))).map(|()| log::set_max_level(max))
    } else {
        log::set_boxed_logger(Box::new(RedactingLog(Filtered(logger))))
    };
    if installed.is_ok() && !from_env {
        set_level(config.log.level.parse().unwrap_or(LevelFilter::Info));
    }
}

/// Changes `[log] level` for the running service; false when `RUST_LOG` is in charge.
pub fn set_level(level: LevelFilter) -> bool {
    if FROM_ENV.get().copied().unwrap_or(false) {
        return false;
    }
    LEVEL.store(level as usize, Ordering::Relaxed);
    log::set_max_level(level.max(LevelFilter::Warn));
    true
}

/// The level in force for our crate (`[log] level`).
pub fn level() -> LevelFilter {
    match LEVEL.load(Ordering::Relaxed) {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// env_logger for the output, our levels for the filter.
struct Filtered(env_logger::Logger);

impl Log for Filtered {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let ours = metadata.target() == "appliance" || metadata.target().starts_with("appliance::");
        metadata.level() <= if ours { level() } else { LevelFilter::Warn }
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// The syslog priority journald reads from a line's `<N>` prefix (sd-daemon(3)).
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One record as journald reads it: every line of the message prefixed with its
/// priority (journald splits a multi-line message into entries), no timestamp.
pub fn journal_line(level: Level, target: &str, message: &str) -> String {
    let prefix = format!("<{}>", priority(level));
    let mut out = String::with_capacity(message.len() + 32);
    for (i, line) in message.split('\n').enumerate() {
        out.push_str(&prefix);
        if i == 0 {
            out.push_str(&format!("{level} {target}: "));
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether stderr is the journal stream systemd connected (`$JOURNAL_STREAM`).
fn stderr_is_journal() -> bool {
    std::env::var("JOURNAL_STREAM").is_ok_and(|value| is_stream(&value, libc::STDERR_FILENO))
}

/// Whether `fd` is the file `device:inode` (as `$JOURNAL_STREAM` gives it) names.
pub fn is_stream(value: &str, fd: libc::c_int) -> bool {
    let Some((dev, ino)) = value.trim().split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat(2) writes into a zeroed struct we own; a bad fd only returns -1.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return false;
    }
    stat.st_dev as u64 == dev && stat.st_ino as u64 == ino
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn journal_lines_carry_the_priority_and_no_timestamp() {
        assert_eq!(
            journal_line(Level::Warn, "appliance::pbx", "PBX down"),
            "<4>WARN appliance::pbx: PBX down\n"
        );
        assert_eq!(
            journal_line(Level::Error, "appliance", "x"),
            "<3>ERROR appliance: x\n"
        );
        assert!(journal_line(Level::Info, "a", "x").starts_with("<6>INFO "));
        assert!(journal_line(Level::Debug, "a", "x").starts_with("<7>"));
        assert!(journal_line(Level::Trace, "a", "x").starts_with("<7>"));
        // Every line of a multi-line message keeps the priority.
        assert_eq!(
            journal_line(Level::Error, "a", "one\ntwo"),
            "<3>ERROR a: one\n<3>two\n"
        );
    }

    #[test]
    fn the_journal_is_recognised_by_device_and_inode() {
        let file = tempfile::tempfile().unwrap();
        let meta = file.metadata().unwrap();
        let fd = file.as_raw_fd();
        assert!(is_stream(&format!("{}:{}", meta.dev(), meta.ino()), fd));
        // Another file (e.g. stderr redirected by a child that inherited the variable).
        assert!(!is_stream(
            &format!("{}:{}", meta.dev(), meta.ino() + 1),
            fd
        ));
        assert!(!is_stream("", fd));
        assert!(!is_stream("garbage", fd));
        assert!(!is_stream(&format!("{}:{}", meta.dev(), meta.ino()), -1));
    }
}
